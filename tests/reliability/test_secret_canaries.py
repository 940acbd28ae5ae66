"""Secret canaries: every backend's launch and render with canary secret values, then a search for them everywhere.

The canaries are the real credentials of this world: the RunPod emulator's API key, the Verda emulator's client
secret and the Hub token are the canary strings, so a launch only works if they are used — and they must then appear
nowhere but in the intended `.env` files (mode 0600):

  runs      local.train (the runtime here), runpod.train in ssh mode (preempted once: the relaunch's webhook event and
            ledger line too), runpod.train in start_command mode, runpod.train --rehearse, verda.train, hfjobs.train
            (the local Hub's Jobs: the secrets must be the job's `secrets` only) — all at once
  renders   slurm.submit --dry-run, slurm.render --output, chtc.submit --dry-run, chtc.render, `invoke plan` for
            every backend (tables and --json)
  searched  every file under the work folder (runs/, outputs, ledger, the rendered sbatch script and submit file),
            every file on the emulated instances' disks (the emulators' own bookkeeping excepted: .sshhost/, the
            instance env the provider injects), the Hub's storage, the orchestrators' output, the argv of every
            process on this machine sampled every 50 ms during the runs (/proc/*/cmdline: the instances' processes
            are in there too), and every webhook payload.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures_hub import HUB_USER
from tests.openapi_contract import RUNPOD, runpod_exchanges
from tests.reliability.harness import World
from tests.webhook import Webhook

pytestmark = pytest.mark.slow

CANARIES = {
    "HF_TOKEN": "hfcanary-H7Q2Z9-token",
    "WANDB_API_KEY": "wandbcanary-W4K8P1",
    "RUNPOD_API_KEY": "rpcanary-R3P5-key",
    "VERDA_CLIENT_SECRET": "verdacanary-V6S1-secret",
}
EMULATOR_OWN = (".sshhost", ".ssh", ".verda")  # what the emulators write for themselves (the injected instance env)


class ArgvSampler(threading.Thread):
    """Every distinct command line on this machine, sampled every 50 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.samples = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        self.seen.add(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        pass
            self.samples += 1
            self._halt.wait(0.05)

    def stop(self):
        self._halt.set()
        self.join(5)


@pytest.fixture
def canary_world(tmp_path, hub_server, monkeypatch):
    hub_server.add_token(CANARIES["HF_TOKEN"], HUB_USER)
    hub_server.jobs.job_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # the job image's python: this one
    env_dir = local_env_stub(tmp_path / "trainer-env")
    w = World(tmp_path / "world", hub_server, runpod_key=CANARIES["RUNPOD_API_KEY"],
              verda_secret=CANARIES["VERDA_CLIENT_SECRET"], hf_token=CANARIES["HF_TOKEN"],
              extra_env={"WANDB_API_KEY": CANARIES["WANDB_API_KEY"], "RUNPOD_API_KEY": CANARIES["RUNPOD_API_KEY"],
                         "TRAINYARD_ENV_DIR": str(env_dir), "HF_HOME": str(tmp_path / "hf_home")})
    monkeypatch.chdir(w.work)
    try:
        yield w
    finally:
        w.stop()
    off_spec = w.contract_violations()
    assert not off_spec, "\n".join(off_spec)


def local_env_stub(target: Path) -> Path:
    """The local backend builds the trainer's venv (pip: no network here); for a `command` job that venv only needs
    huggingface_hub, which this venv has: a stub whose python is this one, marked as built."""
    from helpers.runtime.environment import install_spec

    (target / "bin").mkdir(parents=True)
    python = target / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    spec = install_spec({"framework": "command"})
    (target / ".trainyard-spec").write_text(hashlib.sha256(repr(spec).encode()).hexdigest()[:16])
    return target


def test_no_canary_anywhere(canary_world):
    world = canary_world
    hook = Webhook()
    sampler = ArgvSampler()
    sampler.start()
    notify = {"notify": {"webhook_url": hook.url}}
    configs = {
        "local": world.config("c-local", "runpod", steps=20, pace=0.05, **notify),
        "runpod-ssh": world.config("c-rp-ssh", "runpod", steps=60, pace=0.05, **notify),
        "runpod-start": world.config("c-rp-start", "runpod", steps=20, pace=0.05, runpod={"mode": "start_command"}, **notify),
        "runpod-rehearse": world.config("c-rp-rehearse", "runpod", steps=20, pace=0.05, **notify),
        "verda": world.config("c-verda", "verda", steps=20, pace=0.05, **notify),
        "render": world.config("c-render", "verda", steps=20, **notify),  # an H100: every backend but HF Jobs has one
        "hfjobs": world.config("c-hfjobs", "hfjobs", steps=20, pace=0.05, resources={"gpu": "L4", "spot": False},
                               limits={"time_limit": 300}, **notify),
    }
    orchestrators = {
        "local": world.invoke("local.train", "--config", str(configs["local"])),
        "runpod-ssh": world.train("runpod", configs["runpod-ssh"]),
        "runpod-start": world.train("runpod", configs["runpod-start"]),
        # the rehearsal's emulator log goes outside the work folder: the provider's own records are not searched
        "runpod-rehearse": world.invoke("runpod.train", "-c", str(configs["runpod-rehearse"]), "--rehearse",
                                        env={"TRAINYARD_REHEARSAL_CALLS": str(world.root / "rehearsal-calls.json")}),
        "verda": world.train("verda", configs["verda"]),
        "hfjobs": world.invoke("hfjobs.train", "--config", str(configs["hfjobs"])),
    }
    # the ssh-mode run is preempted once: its relaunch's webhook event and ledger line are searched too
    first = world.wait_instance("c-rp-ssh", "runpod")
    assert world.wait_step("runpod", first, 15, 60)
    world.preempt("runpod", first)
    plans = [world.invoke("plan", "--config", str(configs["render"]), "--backend", backend, *json_flag)
             for backend in ("local", "runpod", "verda", "slurm", "chtc") for json_flag in ((), ("--json",))]
    plans += [world.invoke("plan", "--config", str(configs["hfjobs"]), "--backend", "hfjobs", *json_flag)
              for json_flag in ((), ("--json",))]
    renders = {
        "slurm.submit": world.invoke("slurm.submit", "--config", str(configs["render"]), "--dry-run"),
        "slurm.render": world.invoke("slurm.render", "--config", str(configs["render"]), "--output",
                                     str(world.work / "rendered" / "train.sbatch")),
        "chtc.submit": world.invoke("chtc.submit", "--config", str(configs["render"]), "--dry-run"),
        "chtc.render": world.invoke("chtc.render", "--config", str(configs["render"])),
    }
    outputs = {}
    for name, orchestrator in [*orchestrators.items(), *renders.items(), *((f"plan {p.argv[5:]}", p) for p in plans)]:
        code = orchestrator.wait(240)
        outputs[name] = orchestrator.output
        assert code == 0, f"{name}: {orchestrator.output[-3000:]}"
    time.sleep(0.5)
    sampler.stop()
    hook.close()
    assert world.leaks() == []
    assert any(e.get("recovery") == 1 for e in world.instances("c-rp-ssh")), "the preempted run was not relaunched"
    rehearsed = json.loads((world.root / "rehearsal-calls.json").read_text())
    RUNPOD.check(runpod_exchanges(rehearsed))  # the rehearsal's own emulator, against RunPod's OpenAPI file
    events = hook.events
    assert {"start", "progress", "checkpoint", "end", "recovery"} <= {e["event"] for e in events}
    assert (world.work / "rendered" / "train.sbatch").is_file() and list(world.work.glob("runs/chtc/**/train.sub"))
    assert sampler.samples > 50 and any("trainyard_runtime.pyz" in a for a in sampler.seen)

    hits, dotenvs = [], []
    searched = 0

    def search(label: str, text: str) -> None:
        nonlocal searched
        searched += 1
        for name, value in CANARIES.items():
            if value in text:
                hits.append(f"{name} in {label}")

    search("the search itself", f"x{CANARIES['VERDA_CLIENT_SECRET']}y")  # it does find what is there
    assert hits == ["VERDA_CLIENT_SECRET in the search itself"]
    hits.clear()

    roots = [world.work, world.root / "runpod" / "pods", world.root / "verda" / "volumes", world.hub.root]
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(root)
            if root != world.work and rel.parts and any(part in EMULATOR_OWN for part in rel.parts):
                continue
            if path.name == ".env":
                dotenvs.append(path)
                continue
            search(str(path), path.read_bytes().decode(errors="replace"))
    for name, text in outputs.items():
        search(f"output of {name}", text)
    for argv in sampler.seen:
        search(f"argv `{argv[:120]}`", argv)
    for body in hook.bodies:
        search(f"webhook payload {body[:80]!r}", body.decode(errors="replace"))
    assert world.hub.jobs.requests, "no HF Job was created"
    for spec in world.hub.jobs.requests:  # what the Jobs API received: secrets only as `secrets`
        search(f"HF Job spec {spec['labels']}", json.dumps({k: v for k, v in spec.items() if k != "secrets"}))
        assert set(spec["secrets"]) <= {"HF_TOKEN", "WANDB_API_KEY"}

    assert not hits, "\n".join(sorted(set(hits)))
    assert searched > 200, searched
    assert dotenvs, "no .env was shipped anywhere"
    for path in dotenvs:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {oct(path.stat().st_mode)}"
    shipped = [p for p in dotenvs if CANARIES["HF_TOKEN"] in p.read_text()]
    assert shipped, "the secrets never reached a host's .env"
