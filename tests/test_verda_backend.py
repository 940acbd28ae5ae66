"""The Verda backend end to end: the REAL `verda` SDK against the emulator, whose instances are real sshd hosts
(their own PID namespace), the REAL runtime bundle started over SSH by the shared instance flow, checkpoints
to the local Hub server.

The trainer is tests/toy_trainer.py (framework `command`, LeRobot's checkpoint layout). The emulated instance
sees this machine's files outside /root, so the job sets `verda.python` to this venv's Python and
`verda.skip_setup: true`: the runtime runs with that interpreter (which has huggingface_hub) instead of building
a trainer venv with pip on every new instance — the same switch a prebuilt image uses on a real cloud.
"""

from __future__ import annotations

import json
import re
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.backends.base import RunHandle
from tests.fixtures_hub import HUB_USER

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toy_trainer.py"
INVOKE = str(Path(sys.executable).with_name("invoke"))
CANARY = "wandb" + "C4NARY" * 4

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------ helpers


class World:
    """The emulator, the Hub, an SSH key, and a work folder (cwd) with runs/ and the ledger."""

    def __init__(self, tmp_path: Path, emu, hub, key: Path):
        self.emu, self.hub, self.key = emu, hub, key
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.ledger_path = self.work / "runs" / "ledger.jsonl"
        self.env = {"VERDA_BASE_URL": emu.base_url, "VERDA_CLIENT_ID": emu.client_id,
                    "VERDA_CLIENT_SECRET": emu.client_secret, "VERDA_SSH_KEY_NAME": "trainyard-test",
                    "VERDA_SSH_PRIVATE_KEY": str(key), "TRAINYARD_LEDGER": str(self.ledger_path),
                    "WANDB_API_KEY": CANARY, "COLUMNS": "200"}

    def config(self, run_id: str, steps: int, pace: float, save_freq: int = 10, store: str | None = None,
               **sections) -> Path:
        data = {
            "job": {"name": run_id},
            "framework": "command",
            "command": {"run": f"TOY_STEP_SECONDS={pace} {sys.executable} {TOY}"},
            "training": {"steps": steps, "save_freq": save_freq},
            "checkpoint": {"store": store or f"hf://{HUB_USER}/{run_id}-ckpt"},
            "verda": {"python": sys.executable, "skip_setup": True, "poll_seconds": 0.3},
        }
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        path = self.work / f"{run_id}.yaml"
        path.write_text(json.dumps(data))  # JSON is YAML
        return path

    def job(self, config: Path, **overrides):
        from helpers.config import load_job

        keys = {"resources.gpu": "H100", "resources.gpu_count": 1, "resources.spot": True, **overrides}
        return load_job(config, keys)

    def launch(self, config: Path, mode: str = "auto", job=None, the_plan=None, detach=False, os_volume_id=None,
               recover=False) -> int:
        """The contract's plan and launch in this process (what `invoke verda.train` calls after its checks)."""
        from helpers.backends.base import LaunchOptions, backend

        verda = backend("verda")
        job = job or self.job(config)
        job.limits.recover = recover
        options = LaunchOptions(mode=mode, detach=detach, os_volume_id=os_volume_id, config_path=str(config))
        return verda.launch(job, the_plan or verda.plan(job, options), options)

    def invoke(self, *args: str, **popen) -> subprocess.Popen:
        return subprocess.Popen([INVOKE, "-r", str(REPO), *args], cwd=self.work, env={**os.environ, **self.env},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                **popen)

    def ledger(self) -> dict:
        from helpers.ledger import Ledger

        return {key[1]: entry for key, entry in Ledger(self.ledger_path).entries().items()}

    def wait_instance(self, timeout: float = 30) -> dict:
        """The first instance the ledger knows the provider id of, once it is running on the emulator."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.ledger().values():
                if entry.get("instance_id"):
                    view = self.emu.instance(entry["instance_id"])
                    if view["status"] == "running":
                        return view
            time.sleep(0.1)
        raise AssertionError(f"no running instance; ledger: {self.ledger()}")

    def remote_file(self, instance: dict, name: str) -> Path:
        return self.emu.disk_path(instance["os_volume_id"]) / "lerobot_run" / name

    def wait_log(self, instance: dict, text: str, timeout: float = 60) -> str:
        log = self.remote_file(instance, "runtime.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = log.read_text(errors="replace") if log.exists() else ""
            if text in content:
                return content
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r} in {log}:\n{content[-2000:]}")

    def wait_synced(self, instance: dict, step: int, timeout: float = 60) -> None:
        self.wait_log(instance, f"synced checkpoint step {step} ", timeout)


class Background(threading.Thread):
    """Run a launch in a thread (the flow works outside the main thread too: no signal handlers there)."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result = self.error = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised by value()
            self.error = exc

    def value(self, timeout: float = 120):
        self.join(timeout)
        assert not self.is_alive(), "the launch did not return"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def world(tmp_path, verda_emulator, hub_server, verda_ssh_key, monkeypatch) -> World:
    w = World(tmp_path, verda_emulator, hub_server, verda_ssh_key[0])
    for key, value in w.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(w.work)
    return w


def hub_step(repo: str) -> int | None:
    from helpers.runtime.store import HubStore

    return HubStore(repo).latest_step()


def cmdlines() -> str:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ tests


def test_plan_picks_the_instance_type_for_gpu_model_and_count(world):
    from helpers.backends import verda as verda_instances

    job = world.job(world.config("plan", 10, 0), **{"resources.gpu_count": 4})
    the_plan = verda_instances.plan(job)
    assert the_plan.instance_type == "4H100.80S.176V" and the_plan.spot is True
    assert the_plan.price_per_hour == 4.0 and the_plan.location in ("FIN-01", "FIN-02", "FIN-03", "ICE-01")
    on_demand = verda_instances.plan(world.job(world.config("plan", 10, 0), **{"resources.spot": False}))
    assert on_demand.instance_type == "1H100.80S.30V" and not on_demand.spot and on_demand.price_per_hour == 1.99


def test_seed_001_command_line_prints_the_same_plan_as_the_task(world):
    """`python verda/verda_lerobot_manager.py train ...` (seed 001's own command line) is the same code as
    `invoke verda.train`: with the same inputs, --dry-run prints the same plan."""
    config = world.config("first_run", steps=40, pace=0.08)
    flags = ["--gpu-model", "H100", "--gpus-per-instance", "4", "--env-file", ".env", "--train-config", str(config),
             "--run-id", "first_run", "--dry-run"]
    env = {**os.environ, **world.env}
    seed = subprocess.run([sys.executable, str(REPO / "verda" / "verda_lerobot_manager.py"), "train", *flags],
                          cwd=world.work, env=env, capture_output=True, text=True, timeout=120)
    task = subprocess.run([INVOKE, "-r", str(REPO), "verda.train", *flags], cwd=world.work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert seed.returncode == 0 == task.returncode, seed.stderr + task.stderr
    assert "4H100.80S.176V" in seed.stdout and seed.stdout == task.stdout
    helped = subprocess.run([sys.executable, str(REPO / "verda" / "verda_lerobot_manager.py"), "--help"],
                            capture_output=True, text=True, timeout=60).stdout
    assert all(verb in helped for verb in ("train", "resume", "resume_local"))
    for verb in ("train", "resume", "resume_local"):
        text = subprocess.run([sys.executable, str(REPO / "verda" / "verda_lerobot_manager.py"), verb, "--help"],
                              capture_output=True, text=True, timeout=60).stdout
        for flag in ("--gpu-model", "--gpus-per-instance", "--env-file", "--train-config", "--run-id",
                     "--checkpoint-repo-id", *(["--os-volume-id"] if verb == "resume_local" else [])):
            assert flag in text, (verb, flag)
    assert not (REPO / "verda" / "__init__.py").exists()  # it must not shadow the verda SDK


def test_train_to_completion_fetches_outputs_deletes_the_instance_and_keeps_secrets_out_of_argv(world):
    config = world.config("first_run", steps=40, pace=0.08)
    hf_token = os.environ["HF_TOKEN"]
    process = world.invoke("verda.train", "--train-config", str(config), "--gpu-model", "H100",
                           "--gpus-per-instance", "1", "--run-id", "first_run")
    instance = world.wait_instance()
    world.wait_log(instance, "step:5 ")
    seen = ""
    while process.poll() is None:  # while the runtime and trainer run on the instance
        seen += cmdlines()
        time.sleep(0.3)
    output = process.stdout.read()
    assert process.returncode == 0, output
    assert "trainyard_runtime.pyz job.json --mode auto --skip-setup" in seen  # we did look at the instance's processes
    assert CANARY not in seen and hf_token not in seen
    assert CANARY not in output and hf_token not in output

    run = world.work / "runs" / "first_run"
    assert os.readlink(run / "outputs" / "checkpoints" / "last") == "000040"
    assert json.loads((run / "outputs/checkpoints/000040/training_state/training_step.json").read_text()) == {"step": 40}
    log = (run / "runtime.log").read_text()
    assert "synced checkpoint step 40" in log and CANARY not in log and hf_token not in log
    assert hub_step(f"{HUB_USER}/first_run-ckpt") == 40

    # the instance is deleted and billing stopped; its OS volume went to the trash (outputs are home)
    assert world.emu.live_instances() == []
    view = world.emu.instance(instance["id"])
    assert view["status"] == "discontinued" and view["hostname"].startswith("ty-first-run-")
    assert world.emu.volume(instance["os_volume_id"])["status"] == "deleted"
    assert "moved to Verda's trash" in output and 'volume_ids=["' in output
    spent = world.emu.spend()
    time.sleep(0.5)
    assert world.emu.spend() == spent
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated" and entry["instance_id"] == instance["id"] and entry["run_id"] == "first_run"

    # what went to the host: the bundle, job.json, the YAML as train.remote.yaml, .env with mode 0600
    dotenv = world.remote_file(instance, ".env")
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600 and CANARY in dotenv.read_text()
    assert world.remote_file(instance, "train.remote.yaml").read_text() == config.read_text()
    assert all(CANARY not in p.read_text(errors="replace") for p in run.rglob("*") if p.is_file() and p.name != ".env")


def test_spot_kill_then_resume_from_the_hub_on_a_new_instance(world):
    config = world.config("spotty", steps=120, pace=0.05)
    first = Background(world.launch, config)
    first.start()
    instance = world.wait_instance()
    world.wait_synced(instance, 20)
    world.emu.preempt(instance["id"])
    assert first.value() == 4  # instance lost
    synced = hub_step(f"{HUB_USER}/spotty-ckpt")
    assert synced is not None and 20 <= synced < 120
    assert world.emu.volume(instance["os_volume_id"])["status"] == "detached"  # keep_detached: there for resume_local
    assert world.ledger()[next(iter(world.ledger()))]["state"] == "terminated"

    job = world.job(config, **{"command.run": f"TOY_STEP_SECONDS=0 {sys.executable} {TOY}"})
    assert world.launch(config, "resume", job=job) == 0
    log = (world.work / "runs/spotty/runtime.log").read_text()
    assert f"restoring step {synced} from hf://{HUB_USER}/spotty-ckpt" in log
    assert f"resumed from step {synced}" in log and "step:1 " not in log
    assert hub_step(f"{HUB_USER}/spotty-ckpt") == 120
    assert world.emu.live_instances() == []
    assert len([e for e in world.ledger().values() if e["state"] == "terminated"]) == 2


def test_spot_kill_then_resume_local_boots_from_the_kept_os_volume(world, capsys):
    config = world.config("local_first", steps=100, pace=0.05)
    first = Background(world.launch, config)
    first.start()
    instance = world.wait_instance()
    world.wait_synced(instance, 20)
    world.emu.preempt(instance["id"])
    assert first.value() == 4
    on_disk = json.loads((world.emu.disk_path(instance["os_volume_id"]) / "lerobot_run/outputs/train/local_first/checkpoints/last"
                          / "training_state/training_step.json").read_text())["step"]
    capsys.readouterr()

    # seed 001: a new run id, the volume picked by id; the runtime finds the other run's checkpoints/last
    second = world.config("resume_local_1", steps=100, pace=0)
    job = world.job(second, **{"checkpoint.store": f"hf://{HUB_USER}/local_first-ckpt"})
    assert world.launch(second, "resume_local", job=job, os_volume_id=instance["os_volume_id"]) == 0
    out = capsys.readouterr().out
    new = [i for i in world.emu.state()["instances"] if i["id"] != instance["id"]]
    assert len(new) == 1 and new[0]["image"] == instance["os_volume_id"] and new[0]["location"] == instance["location"]
    log = (world.work / "runs/resume_local_1/runtime.log").read_text()
    assert f"resuming from step {on_disk}" in log and "restoring" not in log and "step:1 " not in log
    assert os.readlink(world.work / "runs/resume_local_1/outputs/train/local_first/checkpoints/last") == "000100"
    assert world.emu.live_instances() == [] and "moved to Verda's trash" in out


def test_api_failures_are_retried_and_a_lost_create_answer_rents_no_second_instance(world, capsys):
    config = world.config("flaky", steps=10, pace=0.01)
    emu = world.emu
    emu.fail_next(1, 500, path="/instances", method="POST", after_effect=True)  # created, but the answer is a 500
    emu.fail_next(2, 429, path="/instances/", method="GET")  # the first status polls are rate limited
    emu.fail_next(1, 503, path="/instances", method="PUT")  # the delete fails once
    assert world.launch(config) == 0
    out = capsys.readouterr().out
    assert len(emu.state()["instances"]) == 1 and emu.live_instances() == []
    statuses = [(c["method"], c["path"].split("/")[2], c["status"]) for c in emu.calls if c["path"].startswith("/v1/instances")]
    for failure in (("POST", "instances", 500), ("GET", "instances", 429), ("PUT", "instances", 503)):
        assert failure in statuses
    assert "exists" in out and "retrying" in out
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated"


def test_killed_orchestrator_then_cleanup_leaves_no_instance(world):
    config = world.config("killed", steps=100000, pace=0.05)
    process = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--gpus-per-instance", "1")
    instance = world.wait_instance()
    process.send_signal(signal.SIGKILL)
    process.wait()
    # instances whose ledger lines were lost: one with Trainyard's name but no tag (an older Trainyard made it),
    # one with Trainyard's tag whose name a user changed; and one that is not Trainyard's
    from helpers.backends import verda as verda_instances

    verda = verda_instances.client()

    def create(name: str, **extra) -> str:
        body = {"instance_type": "1A6000.10V", "image": "ubuntu-24.04", "hostname": name, "description": name,
                "location_code": "FIN-02", **extra}
        return verda._http_client.post("/instances", json=body).text.strip()

    untagged = create("ty-lost-abc123")
    tagged = create("renamed-by-a-user", tags=[{"key": "trainyard", "value": "ty-tagged-def456"}])
    other = create("someone-else", tags=[{"key": "team", "value": "vision"}])
    assert {i["id"] for i in world.emu.live_instances()} == {instance["id"], untagged, tagged, other}

    cleanup = world.invoke("cleanup", "--yes")
    output = cleanup.communicate(timeout=120)[0]
    assert cleanup.returncode == 0, output
    assert [i["id"] for i in world.emu.live_instances()] == [other], output
    assert "ty-lost-abc123" in output and "not in the ledger" in output
    states = {name: e["state"] for name, e in world.ledger().items()}
    assert set(states.values()) == {"terminated"} and "ty-lost-abc123" in states


def test_launcher_ends_the_instance_at_the_time_limit_when_the_runtime_does_not(world, capsys):
    """The launcher's backstop (limits.grace_s after limits.time_limit), as RunPod has: here the runtime never
    starts (an interpreter that hangs), so nothing on the instance would end it."""
    hang = world.work / "hanging-python"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    config = world.config("hung", steps=100, pace=0.05)
    job = world.job(config, **{"verda.python": str(hang), "limits.time_limit": 2, "limits.grace_s": 1})
    started = time.monotonic()
    assert world.launch(config, job=job) == 3  # stopped early
    assert 3 <= time.monotonic() - started < 60
    assert "launcher backstop" in capsys.readouterr().out
    assert world.emu.live_instances() == []
    assert {e["state"] for e in world.ledger().values()} == {"terminated"}


def test_ctrl_c_without_a_terminal_terminates_and_keeps_the_disk(world):
    config = world.config("interrupted", steps=100000, pace=0.05)
    process = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--gpus-per-instance", "1")
    instance = world.wait_instance()
    world.wait_log(instance, "step:3 ")
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert world.emu.live_instances() == []
    assert world.emu.volume(instance["os_volume_id"])["status"] == "detached"
    assert "volume_ids=[]" in output and "resume-local --os-volume-id" in output
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated"


def test_detached_run_ends_its_own_instance_and_cleanup_settles_the_ledger(world):
    from helpers.cleanup import cleanup

    config = world.config("deadman", steps=20, pace=0.02)
    assert world.launch(config, detach=True) == 0
    (entry,) = world.ledger().values()
    assert entry["state"] == "running"  # the launcher is gone: only the host can end it now
    deadline = time.monotonic() + 60
    while world.emu.live_instances() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert world.emu.live_instances() == [], "the runtime did not end its instance"
    view = world.emu.instance(entry["instance_id"])
    assert view["status"] == "discontinued"
    assert world.emu.volume(view["os_volume_id"])["status"] == "detached"  # volume_ids: [] from the host
    # the host deleted itself with the account's client credentials (verda.deadman: account), as the real API allows
    self_calls = [c for c in world.emu.calls if c["user_agent"] == "trainyard-runtime (dead-man)" and c["method"] == "PUT"]
    assert all(c["auth"] == "client" for c in self_calls)
    assert self_calls and self_calls[0]["body"] == {"id": [view["id"]], "action": "delete", "volume_ids": []}
    assert hub_step(f"{HUB_USER}/deadman-ckpt") == 20

    ended = cleanup(assume_yes=True)
    assert ended == [] or all(e["instance_id"] == view["id"] for e in ended)
    assert world.ledger()[entry["id"]]["state"] == "terminated"


def test_status_logs_fetch_terminate_and_gpus_on_a_detached_run(world, capsys):
    from helpers.backends import verda

    config = world.config("verbs", steps=100000, pace=0.05)
    assert world.launch(config, detach=True) == 0
    instance = world.wait_instance()
    world.wait_synced(instance, 20)
    capsys.readouterr()

    rows = verda.status(RunHandle("verda", "verbs"))
    assert rows and rows[0][0] == "verbs" and rows[0][4] == "running" and rows[0][5].startswith("training ")
    verda.logs(RunHandle("verda", "verbs"))
    assert "synced checkpoint step 20" in capsys.readouterr().out
    local = verda.fetch(RunHandle("verda", "verbs"))
    assert (local / "checkpoints" / "last" / "training_state" / "training_step.json").is_file()
    verda.gpus()
    assert "4H100.80S.176V" in capsys.readouterr().out

    verda.stop(RunHandle("verda", "verbs"))
    out = capsys.readouterr().out
    assert world.emu.live_instances() == [] and "volume_ids=[]" in out
    assert world.emu.volume(instance["os_volume_id"])["status"] == "detached"
    assert [e["state"] for e in world.ledger().values()] == ["terminated"]


def test_a_refused_create_costs_nothing_and_says_why(world):
    from helpers.errors import ProviderError

    from helpers.backends import verda as verda_instances

    config = world.config("full", steps=10, pace=0)
    job = world.job(config)
    the_plan = verda_instances.plan(job)
    world.emu.set_capacity("1H100.80S.30V", 0, is_spot=True)  # gone between the plan and the create
    with pytest.raises(ProviderError, match="Not enough capacity"):
        world.launch(config, job=job, the_plan=the_plan)
    assert world.emu.state()["instances"] == []
    (entry,) = world.ledger().values()
    assert entry["state"] == "failed" and "capacity" in entry["error"]


def test_an_instance_that_only_shut_down_still_bills_is_listed_and_cleanup_deletes_it(world):
    """`offline` is not ended (Verda bills a shut-down instance until it is deleted): status lists it with its
    growing cost, and `invoke cleanup` deletes it."""
    from helpers.backends import verda

    config = world.config("shutdown", steps=100000, pace=0.05)
    assert world.launch(config, detach=True) == 0
    instance = world.wait_instance()
    client = verda.client()
    client._http_client.put("/instances", json={"id": instance["id"], "action": "shutdown"})  # e.g. `shutdown -h now` on the VM, or the console
    world.emu.wait_for_status(instance["id"], "offline")
    billed = world.emu.spend(instance["id"])
    time.sleep(1.2)
    assert world.emu.spend(instance["id"]) > billed  # the meter runs on

    rows = verda.status(RunHandle("verda", "shutdown"))
    assert [(r[2], r[4]) for r in rows] == [(instance["id"], "offline")]
    first = float(re.search(r"cost so far \$([\d.]+)", rows[0][6])[1])
    status = world.invoke("status")
    out = status.communicate(timeout=60)[0]
    assert status.returncode == 0 and instance["id"] in out and "live instances" in out, out

    cleanup = world.invoke("cleanup", "--yes")
    out = cleanup.communicate(timeout=120)[0]
    assert cleanup.returncode == 0, out
    assert world.emu.instance(instance["id"])["status"] == "discontinued" and world.emu.live_instances() == []
    ended = world.emu.spend(instance["id"])
    time.sleep(0.5)
    assert world.emu.spend(instance["id"]) == ended >= first
    assert {e["state"] for e in world.ledger().values()} == {"terminated"}


def test_detach_with_the_launcher_dead_man_is_refused_before_any_api_call(world):
    config = world.config("nodetach", steps=10, pace=0.05)
    data = json.loads(config.read_text())
    data["verda"]["deadman"] = "launcher"
    config.write_text(json.dumps(data))
    world.emu.clear_calls()
    done = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--detach")
    out = done.communicate(timeout=60)[0]
    assert done.returncode == 2, out
    assert out.strip() == (f"error: {config}: verda.deadman: launcher: only the launcher deletes the instance, and "
                           "--detach leaves nobody to do it (it would bill until `invoke cleanup`) — set "
                           "verda.deadman: account (the instance deletes itself), or drop --detach")
    assert world.emu.calls == []  # not even a token
    # without --detach the plan says what that choice costs, and the instance gets no credential
    plan = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--dry-run")
    out = plan.communicate(timeout=60)[0]
    assert plan.returncode == 0, out
    assert "without the laptop: only the launcher deletes it (verda.deadman: launcher): if the launcher dies, it " \
           "bills until `invoke cleanup`" in out
    assert "with VERDA_CLIENT_ID/SECRET" not in out


def test_the_account_dead_man_ships_the_credentials_only_to_the_instance_env(world):
    """verda.deadman: account — the instance's .env (0600) holds the client credentials, the plan says so, and the
    trainer's environment does not have them."""
    from helpers.backends.base import descriptor
    from helpers.config import load_job
    from helpers.secrets import check_secrets
    from helpers.workspace import current

    config = world.config("creds", steps=5, pace=0.01)
    host = check_secrets(load_job(config), descriptor("verda"), current().secrets)
    assert host["VERDA_CLIENT_SECRET"] == world.emu.client_secret
    plan = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--dry-run")
    out = plan.communicate(timeout=60)[0]
    assert "without the laptop: it deletes itself through the Verda API" in out and "account-wide" in out
    assert world.emu.client_secret not in out
    data = json.loads(config.read_text())
    data["command"]["run"] = f"{sys.executable} -c \"import os; print('env-has-secret', 'VERDA_CLIENT_SECRET' in os.environ)\""
    config.write_text(json.dumps(data))
    assert world.launch(config) == 0
    log = (world.work / "runs/creds/runtime.log").read_text()
    assert "env-has-secret False" in log and world.emu.client_secret not in log


def test_a_207_is_read_per_instance(world):
    """PUT /instances answers 207 when some of its ids failed: the one still booting is reported refused, not taken
    for deleted (the Python SDK would say nothing)."""
    from helpers.backends import verda
    from helpers.backends.verda.api import create_instance

    client = verda.client()
    running = create_instance(client, instance_type="1A6000.10V", image="ubuntu-24.04", hostname="ty-a-aaaaaa",
                                        description="ty-a-aaaaaa", location_code="FIN-02")
    world.emu.wait_for_status(running, "running")
    world.emu.order_delay_s = 30.0  # the next one stays in `ordered`
    booting = create_instance(client, instance_type="1A6000.10V", image="ubuntu-24.04", hostname="ty-b-bbbbbb",
                                        description="ty-b-bbbbbb", location_code="FIN-02")
    answers = verda.VerdaProvider(client).delete_each([running, booting], [])
    assert answers[running] is None and answers[booting] == "Can't discontinue a ordered instance"
    assert world.emu.instance(running)["status"] == "discontinued" and world.emu.instance(booting)["status"] == "ordered"
    assert [c["status"] for c in world.emu.calls if c["method"] == "PUT"] == [207]
    world.emu.order_delay_s = 0.1


def test_a_machine_that_never_opens_ssh_is_ended_within_the_deadline_in_one_line(world):
    """A 45 s job whose instance boots (running, billing) but never answers on SSH (a broken image, a dead sshd):
    the launcher ends it through the API at the time limit + grace (5 s here), long before its SSH allowance
    (ssh_timeout_s, 600 s) — one line naming what failed, no traceback."""
    world.emu.ssh_answers = False
    config = world.config("nossh", steps=100, pace=0.05, limits={"time_limit": "45s", "grace_s": 5})
    started = time.monotonic()
    train = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--gpus-per-instance", "1")
    output = train.communicate(timeout=240)[0]
    took = time.monotonic() - started
    assert train.returncode != 0 and "Traceback" not in output, output
    assert re.search(r"never answered on SSH at 127\.0\.0\.1:\d+ \(the time limit passed\)", output), output
    assert 45 <= took < 50 + 30, took  # the deadline plus a bounded allowance: one more SSH try and the delete
    assert world.emu.live_instances() == []
    (entry,) = world.ledger().values()
    assert entry["state"] == "terminated"


def test_ssh_that_dies_while_the_machine_runs_on_ends_the_machine_through_the_api(world):
    """sshd dies mid-run and the instance keeps running (and billing): the launcher's reconnects fail, it asks the
    API (still running), deletes the instance through the API, and (a spot run recovers by default) goes on on a new
    one from the store; Ctrl-C then ends that one. No machine is left billing."""
    config = world.config("sshdead", steps=100000, pace=0.05)
    world.env["TRAINYARD_RECONNECT_WAIT_S"] = "2"  # seven reconnects in ~10 s instead of ~100 s
    train = world.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--gpus-per-instance", "1")
    first = world.wait_instance()
    world.wait_log(first, "synced checkpoint step 10 ")
    world.emu.host(first["id"]).kill_sshd()
    assert world.emu.instance(first["id"])["status"] == "running"  # the machine runs on: only the API ends it
    deadline = time.monotonic() + 90
    while world.emu.instance(first["id"])["status"] != "discontinued" or len(world.emu.live_instances()) != 1:
        assert time.monotonic() < deadline and train.poll() is None, world.ledger()
        time.sleep(0.2)
    (second,) = world.emu.live_instances()
    world.emu.wait_for_status(second["id"], "running")
    world.wait_log(world.emu.instance(second["id"]), "resuming from step")
    train.send_signal(signal.SIGINT)
    output = train.communicate(timeout=60)[0]
    assert "running but SSH keeps failing" in output and "Traceback" not in output, output
    assert world.emu.live_instances() == []
    assert {e["state"] for e in world.ledger().values()} == {"terminated"}
