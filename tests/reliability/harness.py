"""What the reliability suite shares.

A `World` is everything a cloud run touches, on this machine: the RunPod emulator (REST v2, GraphQL for spot) and the
Verda REST emulator (their instances are real sshd hosts in their own PID namespace, so a preemption kills every process of
the instance), the local Hub (the checkpoint store), an SSH key, and a work folder (the cwd of the orchestrator)
with runs/ and the ledger. Orchestrators are real `invoke` processes (`runpod.train`, `verda.train`, `cleanup`) with
the real SDKs; the runtime is the real bundle, the trainer tests/toy_trainer.py (LeRobot's checkpoint layout).

The emulators and the Hub live in the test process: an orchestrator can be SIGKILLed and its instances live on
(an emulated instance only dies with the process that started it, i.e. with the test).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.fixtures_hub import HUB_USER

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "toy_trainer.py"
INVOKE = str(Path(sys.executable).with_name("invoke"))
PROVIDERS = ("runpod", "verda")
REMOTE_DIR = {"runpod": "workspace/trainyard", "verda": "lerobot_run"}  # runpod.remote_dir / verda.remote_dir, under the disk
WATCH_S = 0.1  # checkpoint.upload_poll_seconds in these jobs: how long a new checkpoint may wait before its upload

STEP = re.compile(r"^step:(\d+) ", re.M)
SYNCED = re.compile(r"synced checkpoint step (\d+) in ([0-9.]+)s")
RESUMED = re.compile(r"resuming from step (\d+)")


class Orchestrator:
    """An `invoke` process; a thread reads its output so a test can wait for a line, then SIGKILL it."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]):
        self.argv = argv
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, errors="replace")
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> str | None:
        """The first output line matching `pattern` (a regex), or None when the process ended or time ran out."""
        regex, seen, deadline = re.compile(pattern), 0, time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        return line
                seen = len(self.lines)
                if self.process.poll() is not None and not self._reader.is_alive():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.2))

    def kill(self) -> None:
        """SIGKILL: the orchestrator dies mid-whatever, nothing of it cleans up."""
        try:
            self.process.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._reader.join(10)

    def wait(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


class World:
    """Emulators, Hub, key, work folder; everything a trial needs, and the checks it ends with."""

    def __init__(self, root: Path, hub, *, runpod_boot_s: float = 0.0, verda_boot_s: float = 0.3, verda_order_s: float = 0.1,
                 runpod_key: str = "rp_test_key", verda_secret: str = "verda_test_secret", hf_token: str | None = None,
                 extra_env: dict[str, str] | None = None, verda_boot_states: tuple[str, ...] | None = None):
        from emulators.runpod_api import RunPodEmulator
        from emulators.sshhost import generate_keypair
        from emulators.verda_api import VerdaEmulator

        self.root, self.hub = root, hub
        self.work = root / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        home = root / "home"
        home.mkdir(exist_ok=True)
        self.key, _ = generate_keypair(root / "keys")
        self.runpod = RunPodEmulator(root / "runpod", api_key=runpod_key, boot_delay_s=runpod_boot_s).start()
        self.verda = VerdaEmulator(root / "verda", client_secret=verda_secret, boot_delay_s=verda_boot_s,
                                   order_delay_s=verda_order_s,
                                   **({"boot_states": verda_boot_states} if verda_boot_states else {})).start()
        self.ledger_path = self.work / "runs" / "ledger.jsonl"
        self.env = {
            **os.environ, **self.runpod.sdk_env(home), **hub.client_env(hf_token or os.environ["HF_TOKEN"]),
            "SSH_PRIVATE_KEY_PATH": str(self.key),
            "VERDA_BASE_URL": self.verda.base_url, "VERDA_CLIENT_ID": self.verda.client_id,
            "VERDA_CLIENT_SECRET": self.verda.client_secret, "VERDA_SSH_KEY_NAME": "trainyard-test",
            "VERDA_SSH_PRIVATE_KEY": str(self.key), "TRAINYARD_LEDGER": str(self.ledger_path),
            "TRAINYARD_HEARTBEAT_S": "1", "TRAINYARD_RECONNECT_WAIT_S": "2", "COLUMNS": "200", **(extra_env or {}),
        }

    def stop(self) -> None:
        self.runpod.stop()
        self.verda.stop()

    # --- jobs and orchestrators ---------------------------------------------------------------------
    def config(self, run_id: str, provider: str, *, steps: int = 40, save_freq: int = 10, pace: float = 0.05,
               payload_kb: int = 4, **sections) -> Path:
        data = {
            "job": {"name": run_id},
            "framework": "command",
            "command": {"run": f"TOY_STEP_SECONDS={pace} TOY_PAYLOAD_KB={payload_kb} {sys.executable} {TOY}"},
            "training": {"steps": steps, "save_freq": save_freq},
            # checkpoint.store unset, as a new user leaves it: a spot run gets hf://<user>/<run_id>-checkpoints
            "checkpoint": {"upload_poll_seconds": WATCH_S},
            "resources": {"gpu": "RTX 4090" if provider == "runpod" else "H100", "gpu_count": 1, "spot": True},
            provider: {"python": sys.executable, "skip_setup": True, "poll_seconds": 0.3},
        }
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        path = self.work / f"{run_id}.yaml"
        path.write_text(json.dumps(data))  # JSON is YAML
        return path

    def invoke(self, *args: str, env: dict[str, str] | None = None) -> Orchestrator:
        return Orchestrator([INVOKE, "-r", str(REPO), *args], self.work, {**self.env, **(env or {})})

    def train(self, provider: str, config: Path, *extra: str) -> Orchestrator:
        if provider == "runpod":
            return self.invoke("runpod.train", "-c", str(config), *extra)
        return self.invoke("verda.train", "--config", str(config), "--gpu-model", "H100", "--gpus-per-instance", "1", *extra)

    def cleanup(self) -> tuple[int, str]:
        orchestrator = self.invoke("cleanup", "--yes")
        return orchestrator.wait(180), orchestrator.output

    # --- the ledger and the instances -----------------------------------------------------------------
    def ledger(self) -> dict[str, dict]:
        from helpers.ledger import Ledger

        return {key[1]: entry for key, entry in Ledger(self.ledger_path).entries().items()}

    def instances(self, run_id: str) -> list[dict]:
        return sorted((e for e in self.ledger().values() if e.get("run_id") == run_id),
                      key=lambda e: e.get("created") or e["time"])

    def status(self, provider: str, instance_id: str) -> str:
        if provider == "runpod":
            return self.runpod.pod(instance_id)["status"]
        return self.verda.instance(instance_id)["status"]

    def running(self, provider: str, instance_id: str) -> bool:
        return self.status(provider, instance_id) in ("RUNNING", "running")

    def wait_instance(self, run_id: str, provider: str, index: int = 0, timeout: float = 60) -> dict:
        """The run's `index`-th instance (0: the first launch, n: the n-th relaunch) once it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = [e for e in self.instances(run_id) if e.get("instance_id")]
            if len(entries) > index and self.running(provider, entries[index]["instance_id"]):
                return entries[index]
            time.sleep(0.05)
        raise AssertionError(f"instance {index} of {run_id} never ran; ledger: {self.instances(run_id)}")

    def remote_dir(self, provider: str, entry: dict) -> Path:
        if provider == "runpod":
            return Path(self.runpod.pod(entry["instance_id"])["disk"]) / REMOTE_DIR[provider]
        volume = self.verda.instance(entry["instance_id"])["os_volume_id"] or entry.get("os_volume_id")
        if volume is None:  # a preempted instance no longer shows its OS volume: find it by name
            volume = next(v["id"] for v in self.verda.volumes() if v["name"] == f"{entry['id']}-os")
        return self.verda.disk_path(volume) / REMOTE_DIR[provider]

    def log(self, provider: str, entry: dict) -> str:
        path = self.remote_dir(provider, entry) / "runtime.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, provider: str, entry: dict, pattern: str, timeout: float = 60) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log(provider, entry), re.M)
            if found:
                return found
            time.sleep(0.03)
        return None

    def wait_step(self, provider: str, entry: dict, step: int, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if max(map(int, STEP.findall(self.log(provider, entry))), default=0) >= step:
                return True
            time.sleep(0.02)
        return False

    def preempt(self, provider: str, entry: dict) -> None:
        (self.runpod if provider == "runpod" else self.verda).preempt(entry["instance_id"])

    def emulator(self, provider: str):
        return self.runpod if provider == "runpod" else self.verda

    def host(self, provider: str, entry: dict):
        return self.emulator(provider).host(entry["instance_id"])

    def kill_sshd(self, provider: str, entry: dict, connections_only: bool) -> int:
        """Kill the instance's SSH connections (their sshd processes), or its sshd itself (the instance's init then
        shuts the instance down: a dead host). Returns how many processes were killed."""
        host = self.host(provider, entry)
        killed = 0
        for pid, _inner, cmd in host.processes() if host else []:
            is_sshd = cmd.startswith(("sshd", "/usr/sbin/sshd"))
            main = " -D " in f" {cmd} "
            if is_sshd and (not main if connections_only else main):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        return killed

    # --- the checks every trial ends with --------------------------------------------------------------
    def live(self) -> list[str]:
        # a stopped pod with a volume bills its disk: a leak too
        return [f"runpod:{p}" for p in self.runpod.billing_pods()] + [f"verda:{i['id']}" for i in self.verda.live_instances()]

    def spend(self) -> float:
        return self.runpod.spend() + self.verda.spend()

    def contract_violations(self) -> list[str]:
        """Every REST exchange of both emulators against the provider's own OpenAPI file (tests/openapi_contract.py)."""
        from tests.openapi_contract import RUNPOD, VERDA, runpod_exchanges, verda_exchanges

        return ([v for c in runpod_exchanges(self.runpod.calls) for v in RUNPOD.violations(c)]
                + [v for c in verda_exchanges(self.verda.calls) for v in VERDA.violations(c)])

    def leaks(self) -> list[str]:
        """Instances still billing (emulators' live lists; spend still rising) and live ledger lines."""
        before = self.spend()
        time.sleep(0.3)
        leaked = self.live()
        if self.spend() > before + 1e-9:
            leaked.append(f"spend still rising (${self.spend() - before:.6f} in 0.3 s)")
        from helpers.ledger import LIVE_STATES

        leaked += [f"ledger:{k} {e['state']}" for k, e in self.ledger().items() if e["state"] in LIVE_STATES]
        return leaked


def store_check(run_id: str, payload_kb: int = 4, repo: str | None = None) -> dict:
    """The store's newest checkpoint: complete (manifest step == training_state step, the model file whole) and
    loadable (restored into an empty folder the way the runtime does)."""
    from huggingface_hub.utils import disable_progress_bars

    from helpers.runtime.store import HubStore

    disable_progress_bars()  # one bar per check would bury the trials' table
    store = HubStore(repo or f"{HUB_USER}/{run_id}-checkpoints")  # the default store of a spot run
    latest = store.latest_step()
    if latest is None:
        return {"latest": None, "ok": True, "why": "no checkpoint yet"}
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "restored"
        step = store.restore(dest)
        try:
            saved = json.loads((dest / "training_state" / "training_step.json").read_text())["step"]
            size = (dest / "pretrained_model" / "model.safetensors").stat().st_size
        except (OSError, ValueError, KeyError) as exc:
            return {"latest": latest, "ok": False, "why": f"unloadable: {exc}"}
    # a commit may land between reading the manifest and the download (a run still syncing): then a newer one
    ok = step is not None and step >= latest and step == saved and size == payload_kb * 1024
    return {"latest": step if ok else latest, "ok": ok,
            "why": "" if ok else f"manifest {latest}, restored {step}, state {saved}, {size} B"}


def steps_of(log: str) -> int:
    return max(map(int, STEP.findall(log)), default=0)


def synced_of(log: str) -> list[tuple[int, float]]:
    return [(int(s), float(t)) for s, t in SYNCED.findall(log)]


def resumed_of(log: str) -> int | None:
    """The step a runtime resumed from (0: it started from scratch), None while it has not started training."""
    found = RESUMED.search(log)
    if found:
        return int(found[1])
    return 0 if "] starting: " in log else None


def loss_bound(save_freq: int, pace: float, logs: list[str]) -> int:
    """What a preemption may cost: one save interval, plus the steps the trainer did while the newest checkpoint
    waited for the watcher (WATCH_S) and was uploaded (the slowest upload seen), plus one step of slack."""
    slowest = max((t for log in logs for _s, t in synced_of(log)), default=0.0)
    return save_freq + math.ceil((WATCH_S + slowest) / pace) + 1
