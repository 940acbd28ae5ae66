"""Hugging Face Jobs as a backend, with the real `huggingface_hub` client against the local Hub's Jobs API
(emulators/hub_jobs.py: each job a real process with its environment and secrets, logs, timeout, cancel, retries).

- `invoke hfjobs.train` runs the command framework's toy trainer end to end, checkpoints to the hf:// store;
- a machine lost mid-run (an injected infrastructure failure) ends its job; the launcher starts a new one and the
  runtime resumes from the store (attempts 1: the server's retries are documented nowhere);
- a refused create is one line with its ledger line settled; a create whose answer is lost finds its job;
- a job that hangs past its timeout is ended by the server, with no launcher attached;
- `invoke cleanup` cancels a job the launcher lost;
- no secret is in the job spec's environment or command, the launcher's output, or any file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fixtures_hub import HUB_TOKEN, HUB_USER

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toy_trainer.py"
WANDB_CANARY = "wandbCANARY" + "5" * 24

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def jobs(hub_server, tmp_path):
    """The local Hub with Jobs, the launcher's environment, and a config writer."""
    hub_server.jobs.job_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # the image's python: this one [INF]
    work = tmp_path / "lab"
    work.mkdir()
    env = {**os.environ, **hub_server.client_env(HUB_TOKEN), "HOME": str(tmp_path / "home"), "WANDB_API_KEY": WANDB_CANARY,
           "TRAINYARD_LEDGER": str(work / "runs" / "ledger.jsonl"), "RUNPOD_API_KEY": "", "VERDA_CLIENT_ID": ""}

    def config(run_id: str, steps: int = 60, pace: float = 0.05, time_limit: float = 300, **sections) -> Path:
        data = {"job": {"name": run_id}, "framework": "command",
                "command": {"run": f"TOY_STEP_SECONDS={pace} {sys.executable} {TOY}"},
                "training": {"steps": steps, "save_freq": 10}, "checkpoint": {"upload_poll_seconds": 0.2},
                "resources": {"gpu": "L4"}, "limits": {"time_limit": time_limit, "grace_s": 5},
                "wandb": {"enable": True},
                "hfjobs": {"skip_setup": True, "python": sys.executable, "poll_seconds": 0.2}, **sections}
        path = work / f"{run_id}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def invoke(*args: str, timeout: float = 300, **more_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=work, env={**env, **more_env},
                              capture_output=True, text=True, timeout=timeout)

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ledger() -> dict:
        from helpers.ledger import Ledger

        return {k[1]: e for k, e in Ledger(work / "runs" / "ledger.jsonl").entries().items()}

    return hub_server, work, config, invoke, start, ledger


def store_step(hub, run_id: str) -> int | None:
    from helpers.runtime.store import open_store

    return open_store(f"hf://{HUB_USER}/{run_id}-checkpoints").latest_step()


def no_secret_anywhere(hub, work: Path, *outputs: str) -> None:
    for spec in hub.jobs.requests:
        visible = json.dumps({k: v for k, v in spec.items() if k != "secrets"})
        assert HUB_TOKEN not in visible and WANDB_CANARY not in visible, "a secret in the job's env/command"
        assert set(spec.get("secrets") or {}) <= {"HF_TOKEN", "WANDB_API_KEY"}
    for text in outputs:
        assert HUB_TOKEN not in text and WANDB_CANARY not in text
    for path in work.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert HUB_TOKEN.encode() not in data and WANDB_CANARY.encode() not in data, path


def test_train_runs_the_toy_job_end_to_end_with_secrets_as_job_secrets(jobs):
    hub, work, config, invoke, _start, ledger = jobs
    done = invoke("hfjobs.train", "--config", str(config("e2e", steps=30, pace=0.02)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "step:30 " in done.stdout and "COMPLETED" in done.stdout
    assert store_step(hub, "e2e") == 30
    (entry,) = ledger().values()
    assert entry["state"] == "terminated" and entry["flavor"] == "l4x1" and entry["price_per_hour"] == 0.80
    (spec,) = hub.jobs.requests
    assert spec["flavor"] == "l4x1" and spec["timeoutSeconds"] == 305 and spec["attempts"] == 1
    assert spec["labels"]["trainyard"] == entry["id"] and set(spec["secrets"]) == {"HF_TOKEN", "WANDB_API_KEY"}
    assert "Hugging Face: using HF_TOKEN from the environment" in done.stdout  # the job had it, as a secret
    shown = invoke("hfjobs.logs", "e2e")
    assert shown.returncode == 0 and "step:30 " in shown.stdout, shown.stdout[-2000:] + shown.stderr[-2000:]
    fetched = invoke("hfjobs.fetch", "e2e")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert json.loads((work / "runs/e2e/outputs/training_state/training_step.json").read_text())["step"] == 30
    no_secret_anywhere(hub, work, done.stdout, done.stderr, shown.stdout, fetched.stdout)


def test_the_step_in_the_launchers_progress_is_read_as_the_runtime_reads_it(jobs):
    """LeRobot logs step 1,000 as `step:1K`: the launcher's progress line says step 1000, not 1."""
    hub, work, config, invoke, _start, ledger = jobs
    job = config("big", training={"steps": 1100, "save_freq": 1100},
                 command={"run": f"TOY_STEP_SECONDS=0.002 TOY_BIG_NUMBERS=1 {sys.executable} {TOY}"})
    done = invoke("hfjobs.train", "--config", str(job), TRAINYARD_COST_EVERY_S="0.2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "step:1K " in done.stdout  # the trainer's own line, as LeRobot writes it
    seen = [int(line.split(" step ")[1].split("/")[0]) for line in done.stdout.splitlines()
            if line.startswith("[trainyard] job ") and " step " in line]
    assert seen and max(seen) >= 1000 and all(s <= 1100 for s in seen), done.stdout[-3000:]


def test_a_lost_job_is_relaunched_by_the_launcher_and_the_run_resumes_from_the_store(jobs):
    """attempts 1 (HF's default; what the server counts as a failure is documented nowhere): the machine goes away
    mid-run, the job ends in ERROR, and the launcher starts a NEW job that resumes from the store."""
    hub, work, config, invoke, start, ledger = jobs
    launcher = start("hfjobs.train", "--config", str(config("flaky", steps=80, pace=0.1)))
    deadline = time.monotonic() + 120
    while (store_step(hub, "flaky") or 0) < 20:
        assert time.monotonic() < deadline and launcher.poll() is None, "no checkpoint reached the store"
        time.sleep(0.3)
    (job_id,) = list(hub.jobs.jobs)
    hub.jobs.fail(job_id)  # the machine goes away mid-run
    out, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, out[-3000:]
    first, second = sorted(hub.jobs.jobs.values(), key=lambda j: j.created)
    assert (first.attempt, first.stage) == (1, "ERROR") and second.stage == "COMPLETED"
    assert [spec["attempts"] for spec in hub.jobs.requests] == [1, 1]
    resumed = [int(line.split()[-1]) for line in out.splitlines() if line.startswith("resumed from step")]
    assert resumed and resumed[-1] >= 20, out[-3000:]
    assert store_step(hub, "flaky") == 80
    entries = sorted(ledger().values(), key=lambda e: e["created"])
    assert [e["state"] for e in entries] == ["terminated", "terminated"] and entries[1]["recovery"] == 1
    assert entries[1]["replaces"] == entries[0]["id"]
    no_secret_anywhere(hub, work, out)


def test_a_job_that_hangs_past_its_timeout_is_ended_by_the_server_without_the_launcher(jobs):
    hub, work, config, invoke, _start, ledger = jobs
    done = invoke("hfjobs.train", "--config", str(config("hung", steps=100000, pace=0.05, time_limit=3)), "--detach")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (job_id,) = list(hub.jobs.jobs)
    job = hub.jobs.wait(job_id, "RUNNING", 30)
    time.sleep(1)
    os.killpg(job.process.pid, signal.SIGSTOP)  # the machine hangs: nothing in it runs any more
    ended = hub.jobs.wait(job_id, ("ERROR", "COMPLETED", "CANCELED"), 30)
    # [DOC] the job ends at its timeoutSeconds (limit + grace), enforced by the server; its message is [INF]: not read
    assert ended.stage == "ERROR" and hub.jobs.requests[0]["timeoutSeconds"] == 3 + 5
    assert ended.finished - ended.started <= 3 + 5 + 2
    cleanup = invoke("cleanup", "--yes")
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert all(e["state"] == "terminated" for e in ledger().values())


def test_cleanup_cancels_a_job_the_launcher_lost(jobs):
    hub, work, config, invoke, start, ledger = jobs
    launcher = start("hfjobs.train", "--config", str(config("lost", steps=100000, pace=0.05)))
    deadline = time.monotonic() + 60
    while not hub.jobs.jobs or next(iter(hub.jobs.jobs.values())).stage != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    launcher.send_signal(signal.SIGKILL)  # the laptop dies: nobody follows the job
    launcher.wait()
    (job_id,) = list(hub.jobs.jobs)
    assert hub.jobs.jobs[job_id].stage == "RUNNING"
    status = invoke("hfjobs.status")
    assert status.returncode == 0 and "RUNNING" in status.stdout, status.stdout + status.stderr
    cleanup = invoke("cleanup", "--yes")
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert hub.jobs.jobs[job_id].stage == "CANCELED"
    assert all(e["state"] == "terminated" for e in ledger().values())


def test_plan_and_the_cloud_table_show_hf_jobs_flavors_with_prices(jobs):
    hub, work, config, invoke, _start, _ledger = jobs
    path = config("planned")
    offline = invoke("plan", "--config", str(path), "--backend", "hfjobs", "--offline", "--json")
    doc = json.loads(offline.stdout)
    assert doc["backend"] == "hfjobs" and doc["instance_type"] == "l4x1" and doc["price_per_hour"] == 0.80
    live = json.loads(invoke("plan", "--config", str(path), "--backend", "hfjobs", "--json").stdout)
    assert live["price_source"] == "live" and live["price_per_hour"] == pytest.approx(0.80, abs=0.01)
    cloud = json.loads(invoke("plan", "--config", str(path), "--backend", "cloud", "--offline", "--json").stdout)
    assert "hfjobs" in cloud["clouds"] and any(o["backend"] == "hfjobs" for o in cloud["cloud_offers"])
    hardware = invoke("hfjobs.hardware")
    assert hardware.returncode == 0 and "a100-large" in hardware.stdout and "2.50" in hardware.stdout


def test_a_job_without_a_time_limit_is_refused_before_anything_is_created(jobs):
    hub, work, config, invoke, _start, ledger = jobs
    path = config("unlimited", limits={"timeout": False})
    done = invoke("hfjobs.train", "--config", str(path))
    assert done.returncode == 2 and "limits.time_limit" in done.stderr and "30 minutes" in done.stderr
    assert hub.jobs.requests == [] and ledger() == {}


@pytest.mark.parametrize("status, says", [(402, "the Hub answered 402"), (403, "HF_TOKEN: the Hub refused")])
def test_a_refused_create_is_one_line_and_its_ledger_line_is_settled(jobs, status, says):
    """The Jobs server refuses the create (no credit, a namespace the token may not use): one line, no traceback, no
    job, and the ledger line written before the call is settled as failed (`invoke cleanup` has nothing to chase)."""
    hub, work, config, invoke, _start, ledger = jobs
    hub.jobs.refuse_next_create(status, "Payment Required" if status == 402 else "Forbidden")
    done = invoke("hfjobs.train", "--config", str(config("refused", steps=10)))
    assert done.returncode in (1, 2) and says in done.stderr, done.stdout[-2000:] + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert hub.jobs.jobs == {}
    (entry,) = ledger().values()
    assert entry["state"] == "failed"


def test_a_create_whose_answer_is_lost_finds_its_job_instead_of_starting_a_second(jobs):
    hub, work, config, invoke, _start, ledger = jobs
    hub.jobs.lose_next_create_answer()
    done = invoke("hfjobs.train", "--config", str(config("lost-answer", steps=20, pace=0.01)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert len(hub.jobs.requests) == 1 and "COMPLETED" in done.stdout
    (entry,) = ledger().values()
    assert entry["state"] == "terminated" and entry["instance_id"] in hub.jobs.jobs


def test_more_server_attempts_split_the_budget_under_the_worst_reading():
    """Whether `timeoutSeconds` counts per attempt is documented nowhere: with 3 attempts each gets a third of what
    the budget buys, so even if every attempt runs to its timeout the job cannot bill past the budget."""
    from helpers.backends.hf_jobs import timeout_seconds
    from helpers.config import validate

    def job(attempts):
        return validate({"framework": "command", "command": {"run": "true"}, "hfjobs": {"attempts": attempts},
                         "limits": {"time_limit": "10h", "budget_usd": 3.0}})

    one, three = timeout_seconds(job(1), 1.0), timeout_seconds(job(3), 1.0)  # $1/h: the budget buys 3 h
    assert one == 3 * 3600 and three == 3600 and 3 * three * 1.0 / 3600 <= 3.0
