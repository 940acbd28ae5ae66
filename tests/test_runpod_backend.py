"""The RunPod backend end to end: Trainyard's REST v2 client (and the REAL `runpod` SDK for spot, GraphQL) against
the emulator, whose pods are real sshd hosts
(their own PID namespace), the REAL runtime bundle — started over SSH by the shared instance flow (runpod.mode ssh,
seed 004) or from the pod's start command with no SSH at all (runpod.mode start_command, seed 000) — and
checkpoints going to the local Hub server or a directory store.

The trainer is tests/toy_trainer.py (framework `command`, LeRobot's checkpoint layout). An emulated pod sees this
machine's files outside /root, so the jobs set `runpod.python` to this venv's Python and `runpod.skip_setup: true`:
the runtime runs with that interpreter (which has huggingface_hub) instead of building a trainer venv with pip on
every pod — the switch seed 004's prebuilt image (`--skip-setup`) uses on a real pod. `--rehearse` makes the same
substitution by itself (only when runpod.python is left at its default).

Seed 000's config.yaml (two `!CMD TRAIN` runs of LeRobot ACT, 1000 + 3000 steps) is not trained here: its pod spec,
start command, job document and rendered LeRobot commands are checked to be exactly the seed's, and the pod is
created from that spec on an emulator whose pods run nothing (the LeRobot training itself is covered by
tests/test_lerobot_e2e.py on the local backend, with the same runtime).
"""

from __future__ import annotations

import base64
import re
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from helpers.backends.base import LaunchOptions, RunHandle
from helpers.backends.runpod.api import RunPodApi, SpotUnavailable, client
from helpers.backends.runpod.pods import RunPodProvider, pod_spec, start_command, tag_of
from helpers.bundle import bundle_env
from tests.fixtures_hub import HUB_USER
from tests.openapi_contract import RUNPOD, runpod_exchanges
from tests.webhook import Webhook

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toy_trainer.py"
INVOKE = str(Path(sys.executable).with_name("invoke"))
CANARY = "wandb" + "C4NARY" * 4
SEED_CONFIG = REPO / "configs" / "seeds" / "runpod_config.yaml"

pytestmark = pytest.mark.slow

# What seed 000's `!CMD STOP` script does inside the pod (runpodctl stop pod $RUNPOD_POD_ID), with the pod's own key,
# through REST v2 (the API that outlives GraphQL).
STOP_ME = '''
import json, os, urllib.request
url = os.environ.get("RUNPOD_REST_URL", "https://api.runpod.io") + "/v2/pods/" + os.environ["RUNPOD_POD_ID"] + "/action"
request = urllib.request.Request(url, data=json.dumps({"action": "stop"}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"]})
print("stopping my own pod:", urllib.request.urlopen(request, timeout=30).status, flush=True)
'''


# ------------------------------------------------------------------------------------------------ helpers


class World:
    """The emulator, the Hub, an SSH key, and a work folder (cwd) with runs/ and the ledger."""

    def __init__(self, tmp_path: Path, emu, hub, key: Path):
        self.emu, self.hub, self.key, self.tmp = emu, hub, key, tmp_path
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.ledger_path = self.work / "runs" / "ledger.jsonl"
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        self.env = {**emu.sdk_env(home), "SSH_PRIVATE_KEY_PATH": str(key), "TRAINYARD_LEDGER": str(self.ledger_path),
                    "WANDB_API_KEY": CANARY, "COLUMNS": "200"}

    def config(self, run_id: str, steps: int, pace: float, mode: str = "ssh", save_freq: int = 10,
               store: str | None = None, command: str | None = None, **sections) -> Path:
        data = {
            "job": {"name": run_id},
            "framework": "command",
            "command": {"run": command or f"TOY_STEP_SECONDS={pace} {sys.executable} {TOY}"},
            "training": {"steps": steps, "save_freq": save_freq},
            "checkpoint": {"store": store or f"hf://{HUB_USER}/{run_id}-ckpt"},
            "resources": {"gpu": "RTX 4090"},
            "runpod": {"mode": mode, "python": sys.executable, "skip_setup": True, "poll_seconds": 0.3},
        }
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        path = self.work / f"{run_id}.yaml"
        path.write_text(json.dumps(data))  # JSON is YAML
        return path

    def job(self, config: Path, **overrides):
        from helpers.config import load_job

        return load_job(config, overrides)

    def launch(self, config: Path, job=None, the_plan=None, detach=False, recover=False) -> int:
        """The contract's plan and launch in this process (what `invoke runpod.train` calls after its checks)."""
        from helpers.backends.base import LaunchOptions, backend

        runpod = backend("runpod")
        job = job or self.job(config)
        job.limits.recover = recover
        options = LaunchOptions(detach=detach)
        return runpod.launch(job, the_plan or runpod.plan(job, options), options)

    def invoke(self, *args: str, program: list[str] | None = None) -> subprocess.Popen:
        return subprocess.Popen((program or [INVOKE, "-r", str(REPO)]) + list(args), cwd=self.work,
                                env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)

    def ledger(self) -> dict:
        from helpers.ledger import Ledger

        return {key[1]: entry for key, entry in Ledger(self.ledger_path).entries().items()}

    def wait_pod(self, timeout: float = 30) -> dict:
        """The first pod the ledger knows the id of, once it runs on the emulator."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.ledger().values():
                if entry.get("instance_id") and self.emu.pod(entry["instance_id"])["status"] == "RUNNING":
                    return self.emu.pod(entry["instance_id"])
            time.sleep(0.1)
        raise AssertionError(f"no running pod; ledger: {self.ledger()}")

    def remote_file(self, pod: dict, name: str) -> Path:
        return Path(pod["disk"]) / "workspace" / "trainyard" / name  # runpod.remote_dir /workspace/trainyard

    def wait_log(self, pod: dict, text: str, timeout: float = 60) -> str:
        log = self.remote_file(pod, "runtime.log")
        deadline = time.monotonic() + timeout
        content = ""
        while time.monotonic() < deadline:
            content = log.read_text(errors="replace") if log.exists() else ""
            if text in content:
                return content
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r} in {log}:\n{content[-2000:]}")

    def creates(self) -> list[dict]:
        return [c for c in self.emu.calls if c["field"] in ("createPod", "podRentInterruptable")]


@pytest.fixture
def world(tmp_path, runpod_emulator, hub_server, runpod_ssh_key, monkeypatch) -> World:
    w = World(tmp_path, runpod_emulator, hub_server, runpod_ssh_key[0])
    for key, value in w.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(w.work)
    return w


def hub_step(repo: str) -> int | None:
    from helpers.runtime.store import HubStore

    return HubStore(repo).latest_step()


def argv_of_everything(emu) -> str:
    """The command lines of every process on this machine, the pods' included (the emulator lists those too)."""
    out = [cmd for _pod, _pid, cmd in emu.processes()]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(out)


def watch_argv(emu, process: subprocess.Popen) -> str:
    seen = ""
    while process.poll() is None:
        seen += argv_of_everything(emu)
        time.sleep(0.2)
    return seen


# ------------------------------------------------------------------------------------------------ planning


def test_plan_live_offers_gpu_counts_gated_model_and_seed_004(world):
    from helpers.backends import runpod as runpod_pods
    from helpers.errors import ConfigError

    job = world.job(world.config("plan", 10, 0), **{"resources.gpu_count": 2, "resources.spot": True})
    p = runpod_pods.plan(job)
    assert p.gpu["provider_id"] == "NVIDIA GeForce RTX 4090" and p.gpu_count == 2 and p.spot
    assert p.bid_per_gpu == 0.29 and p.price_per_hour == 0.58  # RTX 4090 community spot: 0.85 x 0.34, per GPU
    # the REST catalog once per cloud tier (list prices, pod stock for 2 GPUs), GraphQL once for the spot prices
    assert [c["field"] for c in world.emu.calls] == ["listGpuTypes", "listGpuTypes", "gpuTypes"]
    assert [c["query"] for c in world.emu.calls[:2]] == [
        {"include": "AVAILABILITY", "product": "POD", "count": "2", "cloud": tier} for tier in ("SECURE", "COMMUNITY")]
    world.emu.reset_calls()
    on_demand = runpod_pods.plan(world.job(world.config("plan", 10, 0), **{"resources.cloud": "secure"}))
    assert not on_demand.spot and on_demand.price_per_hour == 0.59  # RTX 4090 secure list price
    assert [c["field"] for c in world.emu.calls] == ["listGpuTypes"]  # no spot asked: no GraphQL at all

    with pytest.raises(ConfigError, match="1, 2, 4, 6, 8"):
        runpod_pods.plan(world.job(world.config("plan", 10, 0), **{"resources.gpu_count": 3}))
    world.emu.set_stock("NVIDIA GeForce RTX 4090", None)
    with pytest.raises(ConfigError, match="no offer fits"):  # the only allowed GPU is out of stock
        runpod_pods.plan(world.job(world.config("plan", 10, 0)))

    # seed 004: the gated check comes first, then the GPU by estimated memory among L40S, A100 SXM, H100 SXM
    world.hub.create_repo("someone/gated-model")
    world.hub.set_gated("someone/gated-model")
    gated = world.job(REPO / "configs/open_r1_grpo.yaml", **{"open_r1.model": "someone/gated-model"})
    with pytest.raises(ConfigError, match="gated"):
        runpod_pods.plan(gated)
    grpo = runpod_pods.plan(world.job(REPO / "configs/open_r1_grpo.yaml"), LaunchOptions(check_hub=False))
    assert grpo.gpu["id"] in ("L40S", "A100-SXM-80GB", "H100-SXM")
    assert grpo.gpu["memory_gb"] >= grpo.vram_estimate_gb and grpo.gpu_count == 1
    assert "--skip-setup" in grpo.commands[-1] and "reeeon/thinnka:latest" in grpo.why


def test_gpus_lists_ids_memory_prices_and_stock(world):
    world.emu.set_stock("NVIDIA L40S", "Low")
    world.emu.set_stock("NVIDIA H200", None)
    process = world.invoke("runpod.gpus")
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    lines = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 5}
    assert "NVIDIA RTX 2000 Ada Generation" in lines and "AMD Instinct MI300X OAM" in lines and "unknown" not in lines
    assert "│ 16 " in lines["NVIDIA RTX 2000 Ada Generation"] and "0.24" in lines["NVIDIA RTX 2000 Ada Generation"]
    assert "Low" in lines["NVIDIA L40S"] and "None" in lines["NVIDIA H200"] and "High" in lines["NVIDIA A40"]


# ------------------------------------------------------------------------------------------------ ssh mode


def test_ssh_mode_on_demand_trains_streams_fetches_and_terminates_with_secrets_kept_out(world):
    hook = Webhook()
    config = world.config("first_run", steps=40, pace=0.08, notify={"webhook_url": hook.url})
    hf_token = os.environ["HF_TOKEN"]
    process = world.invoke("runpod.train", "-c", str(config), "--name", "my-pod", "--no-spot")
    pod = world.wait_pod()
    world.wait_log(pod, "step:5 ")
    seen = watch_argv(world.emu, process)
    output = process.stdout.read()
    hook.close()
    assert process.returncode == 0, output
    assert "trainyard_runtime.pyz job.json --mode auto --skip-setup" in seen  # we did look at the pod's processes
    assert CANARY not in seen and hf_token not in seen
    assert CANARY not in output and hf_token not in output
    assert "step:40 " in output and "train ━" in output and "cost so far $" in output  # streamed, progress, cost

    run = world.work / "runs" / "first_run"
    assert os.readlink(run / "outputs" / "checkpoints" / "last") == "000040"
    log = (run / "runtime.log").read_text()
    assert "synced checkpoint step 40" in log and CANARY not in log and hf_token not in log
    assert hub_step(f"{HUB_USER}/first_run-ckpt") == 40

    # the pod: on-demand, 22/tcp, only the SSH key in its env; named after --name with its ledger tag; terminated
    (create,) = world.creates()
    assert create["field"] == "createPod"
    view = world.emu.pod(pod["id"])
    assert view["status"] == "TERMINATED" and world.emu.live_pods() == []
    (entry,) = world.ledger().values()
    assert view["name"] == f"my-pod [{entry['id']}]" and entry["id"].startswith("ty-first-run-")
    assert set(view["env"]) == {"PUBLIC_KEY"} and view["dockerArgs"] == ""
    assert entry["state"] == "terminated" and entry["instance_id"] == pod["id"] and entry["access"] == "ssh" and entry["mode"] == "auto"
    spent = world.emu.spend()
    time.sleep(0.5)
    assert world.emu.spend() == spent

    dotenv = world.remote_file(pod, ".env")
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600 and CANARY in dotenv.read_text()
    assert all(CANARY not in p.read_text(errors="replace") for p in run.rglob("*") if p.is_file() and p.name != ".env")
    assert CANARY not in world.ledger_path.read_text()

    # seed 004's progress webhook: in order, with the step, nothing secret
    kinds = [e["event"] for e in hook.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "progress" in kinds and "checkpoint" in kinds
    assert all(CANARY not in json.dumps(e) and e["project"] == "first_run" for e in hook.events)


def test_time_limit_ends_the_pod_via_the_runtime_and_via_the_launcher_backstop(world, capsys):
    # 1. ssh mode: the runtime stops training at the limit and syncs; the flow fetches the logs and terminates
    config = world.config("limited", steps=100000, pace=0.05, limits={"time_limit": 6})
    started = time.monotonic()
    assert world.launch(config) == 3  # stopped early
    assert time.monotonic() - started < 30
    log = (world.work / "runs/limited/runtime.log").read_text()
    assert "stopping the trainer: time limit or budget reached" in log
    synced = hub_step(f"{HUB_USER}/limited-ckpt")
    assert synced and synced >= 10 and f"synced checkpoint step {synced}" in log
    assert world.emu.live_pods() == []

    # 2. the runtime never starts (an interpreter that hangs): the launcher ends the pod at limit + grace
    hang = world.tmp / "hanging-python"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    for mode in ("start_command", "ssh"):
        config = world.config(f"hung-{mode.replace('_', '-')}", steps=100, pace=0.05, mode=mode,
                              limits={"time_limit": 2}, runpod={"python": str(hang), "time_limit_grace_s": 1})
        capsys.readouterr()
        started = time.monotonic()
        assert world.launch(config) == 3, mode
        assert 3 <= time.monotonic() - started < 30
        assert "launcher backstop" in capsys.readouterr().out
        assert world.emu.live_pods() == []
    assert {e["state"] for e in world.ledger().values()} == {"terminated"}


def test_ctrl_c_without_a_terminal_terminates_the_pod(world):
    config = world.config("interrupted", steps=100000, pace=0.05)
    process = world.invoke("runpod.train", "--config", str(config))
    pod = world.wait_pod()
    world.wait_log(pod, "step:3 ")
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert world.emu.live_pods() == [] and world.emu.pod(pod["id"])["status"] == "TERMINATED"
    assert "terminated" in output
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated"


def test_ctrl_c_in_start_command_mode_terminates_the_pod(world):
    config = world.config("interrupted-sc", steps=100000, pace=0.05, mode="start_command")
    process = world.invoke("-c", str(config), program=[sys.executable, str(REPO / "runpod" / "train_in_runpod.py")])
    pod = world.wait_pod()
    world.wait_log(pod, "step:3 ")
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert world.emu.live_pods() == [] and "Ctrl-C: terminating the pod" in output
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated"


def test_an_attached_launcher_ends_a_pod_whose_own_key_is_refused_everywhere(world):
    """The other reading of the pod-scoped key, on both APIs: the pod cannot end itself. Its runtime says so in the
    pod's log (deadman_failed); the launcher, still attached in start_command mode, reads it there at its next check-in
    and terminates the pod with the account's key."""
    world.emu.pod_key_rest = world.emu.pod_key_graphql = False
    world.env["TRAINYARD_COST_EVERY_S"] = "0.5"  # the launcher's check-ins, every cost line
    config = world.config("stuck-sc", steps=20, pace=0.02, mode="start_command")
    process = world.invoke("-c", str(config), program=[sys.executable, str(REPO / "runpod" / "train_in_runpod.py")])
    output = process.communicate(timeout=180)[0]
    assert process.returncode == 0, output
    assert "its dead-man could not end it" in output and world.emu.live_pods() == []
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated" and not entry.get("by")  # the launcher, not the pod itself
    assert entry["warning"].startswith("deadman_failed: ")  # `invoke status` shows it with the run


def test_detached_run_then_status_logs_fetch_and_terminate(world, capsys):
    from helpers.backends import runpod as runpod_pods

    config = world.config("detached", steps=20, pace=0.02, limits={"end_when_done": False})
    assert world.launch(config, detach=True) == 0
    (entry,) = world.ledger().values()
    assert entry["state"] == "running"
    pod = world.emu.pod(entry["instance_id"])
    status_file = world.remote_file(pod, "status.json")
    deadline = time.monotonic() + 60
    while '"done"' not in (status_file.read_text() if status_file.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    status = world.invoke("runpod.status")
    table = status.communicate(timeout=60)[0]
    assert status.returncode == 0 and "done 20/20" in table and entry["instance_id"] in table, table
    capsys.readouterr()
    runpod_pods.logs(RunHandle("runpod", "detached"))
    assert "synced checkpoint step 20" in capsys.readouterr().out
    local = runpod_pods.fetch(RunHandle("runpod", "detached"))
    assert os.readlink(local / "checkpoints" / "last") == "000020"
    assert world.emu.live_pods() == [entry["instance_id"]]  # end_when_done false: the pod stays up
    runpod_pods.stop(RunHandle("runpod", "detached"))
    assert world.emu.live_pods() == [] and world.ledger()[entry["id"]]["state"] == "terminated"


def test_api_errors_are_retried_with_backoff(world, capsys):
    config = world.config("flaky", steps=10, pace=0.01)
    emu = world.emu
    emu.fail_next(1, 502, op="listGpuTypes", html=True)  # a gateway page instead of JSON (the plan)
    emu.fail_next(1, 500, op="createPod")  # the create fails before doing anything
    emu.fail_next(2, 429, op="getPod")  # the first status polls are rate limited (Retry-After: 1)
    emu.fail_next(1, 503, op="deletePod")  # the terminate fails once
    from helpers.backends import runpod as runpod_pods

    job = world.job(config)
    the_plan = runpod_pods.plan(job)
    assert world.launch(config, job=job, the_plan=the_plan) == 0
    out = capsys.readouterr().out
    assert len(emu.pods()) == 1 and emu.live_pods() == []
    statuses = [(c["field"], c["status"]) for c in emu.calls]
    for failed in (("listGpuTypes", 502), ("createPod", 500), ("getPod", 429), ("deletePod", 503)):
        assert failed in statuses
    assert ("listPods", 200) in statuses  # after the failed create: looked for the pod before creating again
    polls = [c["t"] for c in emu.calls if c["field"] == "getPod"]
    assert polls[2] - polls[0] >= 2.0  # two 429s, each waited out for at least its Retry-After
    assert "retrying" in out
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated"


def test_killed_orchestrator_then_cleanup_leaves_no_pod(world):
    config = world.config("killed", steps=100000, pace=0.05)
    process = world.invoke("runpod.train", "--config", str(config))
    pod = world.wait_pod()
    world.wait_log(pod, "step:2 ")
    process.send_signal(signal.SIGKILL)
    process.wait()
    # a Trainyard pod whose ledger line was lost, and a pod that is not Trainyard's

    api = client()
    spec = {"image": "runpod/pytorch", "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 1}}
    orphan = api.create({**spec, "name": "python-Nov 1 [ty-lost-abc123]"})["id"]
    other = api.create({**spec, "name": "someone-else"})["id"]
    assert set(world.emu.live_pods()) == {pod["id"], orphan, other}

    cleanup = world.invoke("cleanup", "--yes")
    output = cleanup.communicate(timeout=120)[0]
    assert cleanup.returncode == 0, output
    assert world.emu.live_pods() == [other], output
    assert "ty-lost-abc123" in output and "not in the ledger" in output
    states = {name: e["state"] for name, e in world.ledger().items()}
    assert set(states.values()) == {"terminated"} and "ty-lost-abc123" in states
    spent = world.emu.spend(pod["id"]) + world.emu.spend(orphan)
    time.sleep(0.5)
    assert world.emu.spend(pod["id"]) + world.emu.spend(orphan) == spent


# ------------------------------------------------------------------------------------------------ start_command mode


def test_spot_start_command_via_the_seed_script_runs_without_ssh_and_the_pod_ends_itself(world):
    config = world.config("seedy", steps=30, pace=0.05, mode="start_command")
    hf_token = os.environ["HF_TOKEN"]
    script = [sys.executable, str(REPO / "runpod" / "train_in_runpod.py")]
    process = world.invoke("-c", str(config), "--no-spot", "--spot", "--gpu", "NVIDIA GeForce RTX 4090",
                           "--time-limit", "600", "--no-timeout", "--timeout", "--no-terminate", "--terminate",
                           program=script)
    seen = watch_argv(world.emu, process)
    output = process.stdout.read()
    assert process.returncode == 0, output
    (create,) = world.creates()
    assert create["field"] == "podRentInterruptable"  # --no-spot --spot: the last one wins
    (entry,) = world.ledger().values()
    view = world.emu.pod(entry["instance_id"])
    assert view["podType"] == "INTERRUPTABLE" and view["gpuTypeId"] == "NVIDIA GeForce RTX 4090"
    assert view["status"] == "TERMINATED" and world.emu.live_pods() == []
    assert entry["state"] == "terminated" and entry["by"] == "the pod itself" and entry["access"] == "start_command" and entry["mode"] == "auto"

    # no SSH was used; secrets are pod env vars, never in the start command or any process's argv
    assert "Accepted" not in (Path(view["disk"]) / ".sshhost" / "sshd.log").read_text()  # nobody logged in
    assert CANARY not in view["dockerArgs"] and hf_token not in view["dockerArgs"]
    assert view["env"]["WANDB_API_KEY"] == CANARY and view["env"]["HF_TOKEN"] == hf_token
    assert "trainyard_runtime.pyz job.json --mode auto --skip-setup" in seen
    assert CANARY not in seen and hf_token not in seen and CANARY not in output and hf_token not in output

    # the bundle travelled in the env; the runtime trained, synced and ended its own pod (seed 000's !CMD STOP)
    pieces = "".join(view["env"][k] for k in sorted(view["env"]) if k.startswith("TRAINYARD_BUNDLE_"))
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(pieces))) as bundle:
        assert sorted(bundle.namelist()) == ["job.json", "trainyard_runtime.pyz"]
        assert json.loads(bundle.read("job.json"))["machine"] == {"kind": "runpod", "terminate": True}
    log = (Path(view["disk"]) / "workspace/trainyard/runtime.log").read_text()
    assert "synced checkpoint step 30" in log and CANARY not in log
    assert hub_step(f"{HUB_USER}/seedy-ckpt") == 30
    # one terminate, sent by the runtime through REST v2 with the pod's own key (it dies with its pod before it can
    # log it); the launcher only saw it gone
    ends = [c for c in world.emu.calls if c.get("rest") and c["request"] == {"action": "terminate"}]
    assert len(ends) == 1 and ends[0]["key"] == "pod" and "ended itself" in output
    assert [c["field"] for c in world.emu.calls].count("deletePod") == 0


def test_preempted_spot_pod_in_start_command_mode_is_terminated_and_reported_lost(world, capsys):
    config = world.config("preempted", steps=100000, pace=0.05, mode="start_command", resources={"spot": True})
    result: list = []
    launcher = threading.Thread(target=lambda: result.append(world.launch(config)), daemon=True)
    launcher.start()  # the launch works outside the main thread too (no signal handlers there)
    pod = world.wait_pod()
    world.wait_log(pod, "synced checkpoint step 10 ")
    world.emu.preempt(pod["id"])
    launcher.join(60)
    assert result == [4]  # lost: launch again to resume from the store
    assert world.emu.pod(pod["id"])["status"] == "TERMINATED" and world.emu.live_pods() == []
    assert hub_step(f"{HUB_USER}/preempted-ckpt") >= 10 and "was interrupted" in capsys.readouterr().out
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated" and entry["spot"] is True


def test_a_pod_that_stops_itself_is_terminated_or_kept_stopped_with_no_terminate(world, capsys):
    from helpers.cleanup import cleanup

    stop_me = world.tmp / "stop_me.py"
    stop_me.write_text(STOP_ME)
    command = f"TOY_STEP_SECONDS=0.02 {sys.executable} {TOY} && {sys.executable} {stop_me}"
    config = world.config("stopper", steps=20, pace=0, mode="start_command", command=command,
                          store=str(world.tmp / "store"), limits={"end_when_done": False, "time_limit": 60},
                          runpod={"time_limit_grace_s": 5})
    assert world.launch(config) == 0
    (entry,) = world.ledger().values()
    assert world.emu.pod(entry["instance_id"])["status"] == "TERMINATED" and entry["state"] == "terminated"
    assert "stopped itself: terminating it" in capsys.readouterr().out

    kept = world.job(config, **{"limits.terminate_on_stop": False, "job.run_id": "stopper-kept",
                                "checkpoint.store": str(world.tmp / "store-kept")})
    assert world.launch(config, job=kept) == 0
    entry = next(e for e in world.ledger().values() if e["run_id"] == "stopper-kept")
    assert entry["state"] == "stopped" and world.emu.pod(entry["instance_id"])["status"] == "EXITED"
    assert "is stopped and kept" in capsys.readouterr().out
    assert world.emu.billing_pods() == [entry["instance_id"]] and world.emu.live_pods() == []  # its volume bills
    ended = cleanup(assume_yes=True)  # a stopped pod still bills for its volume: cleanup ends it
    assert [e["instance_id"] for e in ended] == [entry["instance_id"]]
    assert world.emu.pod(entry["instance_id"])["status"] == "TERMINATED" and world.emu.billing_pods() == []
    assert world.ledger()[entry["id"]]["state"] == "terminated"


def test_spot_is_refused_in_one_line_once_graphql_is_gone_and_on_demand_still_runs(world):
    """REST v2 has no spot pods; GraphQL had them and answers 410 Gone once retired. A spot job is then refused by
    the plan and by the launch, in one line naming the key and what to do, before anything is created — never
    run on-demand instead. On-demand runs on REST alone."""
    world.emu.graphql_gone = True
    config = world.config("nospot", steps=10, pace=0.01, resources={"spot": True})
    for args in (["plan", "-c", str(config), "--backend", "runpod"], ["runpod.train", "-c", str(config)],
                 ["runpod.train", "-c", str(config), "--no-spot", "--spot"]):
        process = world.invoke(*args)
        output = process.communicate(timeout=120)[0]
        assert process.returncode == 2, output
        (line,) = [text for text in output.splitlines() if "offers no spot" in text]
        assert "resources.spot" in line and "410 Gone" in line and "--no-spot" in line and "Verda" in line, line
        assert "Traceback" not in output
    assert world.emu.pods() == [] and world.creates() == [] and world.ledger() == {}
    assert [c["status"] for c in world.emu.calls if not c.get("rest")] == [410, 410, 410]  # one GraphQL try each

    world.emu.reset_calls()
    process = world.invoke("runpod.train", "-c", str(config), "--no-spot")
    output = process.communicate(timeout=180)[0]
    assert process.returncode == 0, output
    assert [c["field"] for c in world.creates()] == ["createPod"] and world.emu.live_pods() == []
    assert all(c.get("rest") for c in world.emu.calls)  # no GraphQL at all for an on-demand run


def test_api_errors_a_user_can_act_on(world):
    """401: the key; 410 on REST v2: the API is retired and Trainyard needs updating; a pod RunPod no longer knows
    counts as ended (404)."""
    from helpers.errors import ConfigError, ProviderError

    bad = RunPodApi("rp_wrong_key", world.emu.url)
    with pytest.raises(ConfigError, match="RUNPOD_API_KEY: RunPod refused the API key .*401"):
        bad.pods()
    api = client()
    assert api.get("nosuchpod") is None and api.terminate("nosuchpod") is False
    world.emu.rest_gone = True
    with pytest.raises(ProviderError, match="410 Gone .*retired this API .*needs updating"):
        api.pods()
    world.emu.rest_gone = False
    world.emu.fail_next(1, 400, op="createPod", message="There are no longer any instances available")
    with pytest.raises(ProviderError, match="could not place it .*no capacity"):
        api.create({"name": "x [ty-x-abc123]", "image": "runpod/pytorch", "gpu": {"id": "NVIDIA L4"}})
    no_graphql = RunPodApi(world.emu.api_key, world.emu.url, "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(SpotUnavailable, match="resources.spot: .*offers no spot.*is unreachable"):
        no_graphql.spot_gpu_types()
    world.emu.fail_next(1, 402, op="createPod", message="insufficient balance")
    with pytest.raises(ProviderError, match="balance is too low"):
        api.create({"name": "x [ty-x-abc123]", "image": "runpod/pytorch", "gpu": {"id": "NVIDIA L4"}})
    assert world.emu.pods() == []


def test_logs_of_a_start_command_pod_come_through_the_rest_log_stream(world, capsys):
    """A start_command pod has no SSH: `invoke logs RUN` reads the container's output through getPodLogs (SSE)."""
    from helpers.backends import runpod as runpod_pods

    config = world.config("streamed", steps=20, pace=0.02, mode="start_command",
                          store=str(world.tmp / "store-streamed"), limits={"end_when_done": False})
    assert world.launch(config, detach=True) == 0
    (entry,) = world.ledger().values()
    pod = world.emu.pod(entry["instance_id"])
    world.wait_log(pod, "synced checkpoint step 20")
    capsys.readouterr()
    runpod_pods.logs(RunHandle("runpod", "streamed"))
    out = capsys.readouterr().out
    assert "step:20 " in out and "synced checkpoint step 20" in out
    assert CANARY not in out
    streams = [c for c in world.emu.calls if c["field"] == "getPodLogs"]
    assert streams and streams[0]["query"] == {"source": "container", "tail": "5000"}
    runpod_pods.stop(RunHandle("runpod", "streamed"))
    assert world.emu.live_pods() == []


# ------------------------------------------------------------------------------------------------ seed 000 and rehearsal


def test_seed000_config_unchanged_renders_the_seeds_pod_commands_and_runs(tmp_path, monkeypatch):
    """Seed 000's config.yaml as it is: the pod is the seed's (template o6u732ibrq, RTX 2000 Ada x1, spot, terminate on,
    no timeout), the start command ends with the runtime ending the pod (!CMD STOP), and each `!CMD TRAIN` is the
    seed's train-act.sh line: dataset eunjuri/<repo_id>, output outputs/train/ACT_<repo_id>, job ACT_<repo_id>,
    policy repo eunjuri/ACT_policy_<repo_id>, the given steps. Created (and terminated) on an emulator whose pods
    run nothing: LeRobot would need its environment and the Hub dataset."""
    from helpers.backends import runpod as runpod_pods
    from helpers.bundle import render_commands, stage_run
    from helpers.workspace import opened
    from helpers.config import load_job
    from emulators.runpod_api import RunPodEmulator

    job = load_job(SEED_CONFIG, environ={})
    assert job.runpod.mode == "start_command" and job.runpod.template_id == "o6u732ibrq" and job.runpod.image is None
    assert job.resources.spot and job.resources.gpu_count == 1 and job.time_limit_seconds is None
    assert job.limits.terminate_on_stop and job.limits.end_when_done and job.wandb.enable
    assert job.runpod.name == job.job.name and job.runpod.name.startswith("python-")
    expected = [
        f"'$TRAINER_ENV/bin/lerobot-train' --dataset.repo_id=eunjuri/soft_manip_data --policy.type=act "
        f"--policy.push_to_hub=false --output_dir=outputs/train/ACT_soft_manip_data --job_name=ACT_soft_manip_data "
        f"--steps={steps} --batch_size=8 --save_freq=20000 --save_checkpoint=true --log_freq=200 --wandb.enable=true"
        for steps in (1000, 3000)]
    assert render_commands(job, 1) == expected
    assert [r.policy_repo_id for r in job.runs] == ["eunjuri/ACT_policy_soft_manip_data"] * 2

    emu = RunPodEmulator(tmp_path / "runpod", ssh=False).start()
    try:
        for key, value in emu.sdk_env(tmp_path).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)  # spot: a Hub store is needed, so a token
        api = client()
        the_plan = runpod_pods.plan(job, LaunchOptions(check_hub=False))
        offer = the_plan.offer
        assert offer.gpu_type_id == "NVIDIA RTX 2000 Ada Generation" and offer.spot and the_plan.bid_per_gpu == 0.18
        with opened(env_file=None, runs_dir=tmp_path):
            run_dir = stage_run(job, {"kind": "runpod", "terminate": True}, {}, the_plan.price_per_hour)
        pieces = bundle_env(run_dir)
        command = start_command(job, len(pieces))
        # the runtime, then its dead-man once more, then a wait: the command never exits (RunPod would restart it)
        assert command.endswith("python3 trainyard_runtime.pyz job.json --mode auto || true; python3 "
                                "trainyard_runtime.pyz job.json --end-machine || true; exec sleep infinity'")
        env = {"HF_TOKEN": "hf_" + "x" * 34, "WANDB_API_KEY": CANARY, **pieces}
        spec = pod_spec(job, offer, "ty-seed-abc123", env=env, docker_args=command)
        assert spec["name"] == f"{job.runpod.name} [ty-seed-abc123]"
        assert (spec["templateId"], "image" in spec, spec["gpu"], spec["args"]) == \
            ("o6u732ibrq", False, {"id": "NVIDIA RTX 2000 Ada Generation", "count": 1}, command)
        pod = api.create_spot(spec, the_plan.bid_per_gpu)
        view = emu.pod(pod["id"])
        assert view["podType"] == "INTERRUPTABLE" and view["dockerArgs"] == command and CANARY not in command
        assert tag_of(view["name"]) == "ty-seed-abc123"
        document = json.loads((run_dir / "job.json").read_text())
        assert [r["steps"] for r in document["config"]["runs"]] == [1000, 3000]
        assert document["derived"]["deadline_epoch"] is None  # seed default: no timeout
        provider = RunPodProvider(api, mode="start_command")
        assert provider.find("ty-seed-abc123") == pod["id"]
        provider.terminate(pod["id"])
        assert emu.live_pods() == []
    finally:
        emu.stop()
    RUNPOD.check(runpod_exchanges(emu.calls))  # the REST part of it against RunPod's OpenAPI file


@pytest.mark.parametrize("mode", ["ssh", "start_command"])
def test_rehearse_runs_the_whole_launch_against_its_own_emulator_and_hub(tmp_path, monkeypatch, mode):
    for name in ("RUNPOD_API_KEY", "RUNPOD_API_BASE_URL", "RUNPOD_REST_URL", "HF_TOKEN", "HF_ENDPOINT", "SSH_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    config = work / "rehearsed.yaml"
    config.write_text(json.dumps({
        "job": {"name": "rehearsed"}, "framework": "command",
        "command": {"run": f"TOY_STEP_SECONDS=0.02 {sys.executable} {TOY}"},
        "training": {"steps": 20, "save_freq": 10}, "checkpoint": {"store": "hf://me/rehearsed-ckpt"},
        "resources": {"gpu": "RTX 4090"},
        "runpod": {"skip_setup": True, "poll_seconds": 0.3, "mode": mode},  # runpod.python: default
    }))
    calls = tmp_path / "rehearsal-calls.json"
    done = subprocess.run([INVOKE, "-r", str(REPO), "runpod.train", "-c", str(config), "--rehearse"], cwd=work,
                          env={**os.environ, "HOME": str(tmp_path), "TRAINYARD_LEDGER": str(work / "ledger.jsonl"),
                               "COLUMNS": "200", "TRAINYARD_REHEARSAL_CALLS": str(calls)},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    RUNPOD.check(runpod_exchanges(json.loads(calls.read_text())))  # the rehearsal's own emulator, checked too
    out = done.stdout
    assert "rehearsal: RunPod emulator at http://127.0.0.1:" in out and "local Hub at" in out
    assert "rehearsal over: no pod left" in out
    assert not (work / "ledger.jsonl").exists()  # a rehearsal keeps its own ledger
    if mode == "ssh":  # the log streamed, the outputs fetched
        assert "synced checkpoint step 20" in out
        assert os.readlink(work / "runs/rehearsed/outputs/checkpoints/last") == "000020"
    else:  # no SSH: the pod trained, synced and ended itself through REST v2
        assert "ended itself" in out


def _rehearsal_config(work: Path, name: str) -> Path:
    """A spot job that leaves checkpoint.store unset, as a new user does."""
    config = work / f"{name}.yaml"
    config.write_text(json.dumps({
        "job": {"name": name}, "framework": "command",
        "command": {"run": f"TOY_STEP_SECONDS=0.1 {sys.executable} {TOY}"},
        "training": {"steps": 40, "save_freq": 5}, "checkpoint": {"upload_poll_seconds": 0.2},
        "resources": {"gpu": "RTX 4090", "spot": True}, "runpod": {"skip_setup": True, "poll_seconds": 0.3},
    }))
    return config


def test_rehearsed_spot_run_with_the_default_store_resumes_at_the_synced_step_after_a_preemption(tmp_path, monkeypatch):
    """Issue: with checkpoint.store unset, a preempted spot pod was relaunched "resuming" and started at step 0.
    Now the default store of a spot run is a private Hub repo, so the relaunch resumes where the store is."""
    from emulators.runpod_api import EmulatorClient

    for name in ("RUNPOD_API_KEY", "RUNPOD_API_BASE_URL", "RUNPOD_REST_URL", "HF_TOKEN", "HF_ENDPOINT", "SSH_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    config = _rehearsal_config(work, "spot-dir")
    process = subprocess.Popen([INVOKE, "-r", str(REPO), "runpod.train", "-c", str(config), "--rehearse"], cwd=work,
                               env={**os.environ, "HOME": str(tmp_path), "COLUMNS": "200"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines, emulator, synced = [], None, None
    try:
        for line in process.stdout:
            lines.append(line)
            if emulator is None and (found := re.search(r"RunPod emulator at (http://127\.0\.0\.1:\d+)", line)):
                emulator = EmulatorClient(found[1])
            if found := re.search(r"synced checkpoint step (\d+)", line):
                synced = int(found[1])
            if synced is not None and synced >= 15 and emulator is not None:
                (pod,) = emulator.live_pods()
                emulator.preempt(pod["id"] if isinstance(pod, dict) else pod)
                break
        rest = process.communicate(timeout=240)[0]
    finally:
        if process.poll() is None:
            process.kill()
    out = "".join(lines) + rest
    assert process.returncode == 0, out[-4000:]
    assert "checkpoints: hf://rehearsal/spot-dir-checkpoints" in out  # the plan said where, and why
    relaunch = re.search(r"relaunch 1/\d+ on .*?; the new instance resumes from step (\d+) in "
                         r"hf://rehearsal/spot-dir-checkpoints", out)
    assert relaunch, out[-4000:]
    resumed = int(re.search(r"resuming from step (\d+)", out)[1])
    assert resumed == int(relaunch[1]) >= synced >= 15
    assert out.count("no checkpoint in") == 1 and "synced checkpoint step 40" in out  # only the first launch starts at 0


def test_rehearsed_spot_run_with_the_default_store_and_no_token_is_refused_up_front(tmp_path, monkeypatch):
    """Without the rehearsal's own Hub (a real launch with no HF_TOKEN) nothing is created: one line, exit 2."""
    for name in ("HF_TOKEN", "RUNPOD_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    config = _rehearsal_config(work, "spot-dir")
    done = subprocess.run([INVOKE, "-r", str(REPO), "runpod.train", "-c", str(config)], cwd=work,
                          env={**os.environ, "HOME": str(tmp_path), "RUNPOD_API_KEY": "rpa_" + "x" * 20,
                               "TRAINYARD_LEDGER": str(work / "ledger.jsonl")},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stdout + done.stderr
    assert "checkpoint.store: unset, and a spot runpod instance can vanish with its disk" in done.stderr
    assert "set HF_TOKEN in .env" in done.stderr and "checkpoint.store: hf://<org>/<repo>" in done.stderr
    assert not (work / "ledger.jsonl").exists()  # nothing was recorded, so nothing was created


def test_a_start_command_whose_runtime_dies_at_once_ends_its_pod_and_trains_once(world):
    """RunPod starts a container whose command exited again (dstack #1142; the emulator does too). Here the runtime
    dies right after it starts, before it could end the pod: the start command's own dead-man step ends the pod,
    and nothing is started a second time."""
    crash = world.tmp / "crashing-python"
    ran = world.tmp / "runtime-starts"
    crash.write_text(f"#!/bin/sh\ncase \"$*\" in *--mode*) echo started >> {ran}; exit 1;; esac\n"  # the runtime
                     f"exec {sys.executable} \"$@\"\n")  # unzipping the bundle, and the dead-man step
    crash.chmod(0o755)
    config = world.config("crashy", steps=30, pace=0.05, mode="start_command", runpod={"python": str(crash)})
    assert world.launch(config) == 0  # the launcher saw the pod end itself
    (entry,) = world.ledger().values()
    assert world.emu.pod(entry["instance_id"])["status"] == "TERMINATED" and entry["by"] == "the pod itself"
    ends = [c for c in world.emu.calls if c.get("rest") and c["request"] == {"action": "terminate"}]
    assert len(ends) == 1 and ends[0]["key"] == "pod"
    time.sleep(2 * world.emu.restart_delay_s)
    assert ran.read_text().splitlines() == ["started"]  # once, not again and again
    assert world.emu.pod(entry["instance_id"])["restarts"] == 0


def test_a_pod_that_never_opens_ssh_is_ended_within_the_deadline_in_one_line(world):
    """RunPod's ssh mode, a 45 s job whose pod boots (RUNNING, billing) but never answers on SSH: the launcher
    terminates it through REST v2 at the time limit + grace (5 s here), long before its SSH allowance
    (ssh_timeout_s, 600 s) — one line naming what failed, no traceback."""
    world.emu.ssh_answers = False
    config = world.config("nossh", steps=100, pace=0.05, limits={"time_limit": "45s", "grace_s": 5})
    started = time.monotonic()
    train = world.invoke("runpod.train", "--config", str(config))
    output = train.communicate(timeout=240)[0]
    took = time.monotonic() - started
    assert train.returncode != 0 and "Traceback" not in output, output
    assert re.search(r"never answered on SSH at 127\.0\.0\.1:\d+ \(the time limit passed\)", output), output
    assert 45 <= took < 50 + 30, took  # the deadline plus a bounded allowance: one more SSH try and the terminate
    assert world.emu.live_pods() == []
    assert {e["state"] for e in world.ledger().values()} == {"terminated"}
