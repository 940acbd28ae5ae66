"""The control plane at lab scale: `invoke cleanup --yes`, the per-provider status and `invoke status`, against
the RunPod and Verda emulators with N live instances (API-only: no sshd each) and an injected API latency (real
APIs answer in ~100 ms; the emulators in ~2), calls counted from the emulators' own logs.

  cleanup   N instances of which a fifth have ledger lines without an instance id (the launcher died before the
            create answered): time and provider calls of `invoke cleanup --yes --provider P`, all of them ended.
  status    `invoke runpod.status` / `invoke verda.status` with N live instances, ten of which do not answer
            SSH (their address leads nowhere): time and calls.
  ledger    `invoke status` on a 10,000- and a 100,000-line ledger: the first call (which compacts it) and the next.

Targets (issue 20): at N=200 with 100 ms per call, cleanup <= 15 s and <= N + 3 calls per provider, per-provider
status <= 5 s with unreachable instances; `invoke status` <= 1 s on a 100k-line ledger.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table, write_section

REPO = Path(__file__).resolve().parents[1]
SIZES = (10, 50, 200)
LATENCY_S = 0.1
UNREACHABLE = 10
VERDA_TYPE, VERDA_IMAGE = "1H100.80S.30V", "ubuntu-24.04-cuda-12.8-open-docker"


def invoke(*args: str, env: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    return time.perf_counter() - start, done


class RunPodWorld:
    name = "runpod"

    def __init__(self, root: Path, n: int):
        from emulators.runpod_api import RunPodEmulator
        from helpers.backends.runpod.api import RunPodApi

        self.emu = RunPodEmulator(root / "runpod", ssh=False).start()
        self.env = self.emu.sdk_env(root / "home")
        api = RunPodApi(self.emu.api_key, self.emu.url)
        self.ids = {}
        for i in range(n):  # the first UNREACHABLE publish 22/tcp, where nothing listens (the emulator's API-only pods)
            name = f"ty-sweep{i:03d}-{i:06x}"
            self.ids[name] = api.create({"name": f"bench [{name}]", "image": "runpod/pytorch",
                                         "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 1},
                                         **({"ports": ["22/tcp"]} if i < UNREACHABLE else {})})["id"]
        self.unreachable = min(n, UNREACHABLE)

    def calls(self) -> int:
        return len(self.emu.calls)

    def reset(self) -> None:
        self.emu.reset_calls()

    def live(self) -> int:
        return len(self.emu.live_pods())

    def stop(self) -> None:
        self.emu.stop()


class VerdaWorld:
    name = "verda"

    def __init__(self, root: Path, n: int):
        from verda import VerdaClient

        from emulators.verda_api import VerdaEmulator

        self.emu = VerdaEmulator(root / "verda", ssh=False, boot_delay_s=0, order_delay_s=0,
                                 default_capacity=n + 10).start()
        self.env = {"VERDA_BASE_URL": self.emu.base_url, "VERDA_CLIENT_ID": self.emu.client_id,
                    "VERDA_CLIENT_SECRET": self.emu.client_secret, "HOME": str(root / "home")}
        client = VerdaClient(self.emu.client_id, self.emu.client_secret, base_url=self.emu.base_url)
        key = client.ssh_keys.create("bench", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBench bench")
        self.ids = {}
        for i in range(n):
            name = f"ty-sweep{i:03d}-{i:06x}"
            self.ids[name] = client.instances.create(VERDA_TYPE, VERDA_IMAGE, name, name, ssh_key_ids=[key.id],
                                                     location="FIN-03").id
        self.unreachable = n  # API-only instances have an ip and port 22, where nothing listens: none answers
        deadline = time.monotonic() + 60
        while self.emu.live_instances() and any(i.get("status") != "running" for i in self.emu.live_instances()):
            assert time.monotonic() < deadline, "the bench's instances did not come up"
            time.sleep(0.2)

    def calls(self) -> int:
        return len(self.emu.calls)

    def reset(self) -> None:
        self.emu.clear_calls()

    def live(self) -> int:
        return len(self.emu.live_instances())

    def stop(self) -> None:
        self.emu.stop()


def ledger_for(world, path: Path, missing_id_every: int = 5) -> None:
    from helpers.ledger import Ledger

    ledger = Ledger(path)
    for i, (name, instance_id) in enumerate(world.ids.items()):
        fields = {} if i % missing_id_every == 0 else {"instance_id": instance_id}
        ledger.record(world.name, name, "running", run_id=f"sweep-{i}", price_per_hour=1.0, created=time.time(),
                      **fields)


def measure_cleanup(kind, n: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = kind(root, n)
        try:
            ledger = root / "runs" / "ledger.jsonl"
            ledger_for(world, ledger)
            world.emu.latency_s = LATENCY_S
            world.reset()
            env = {**os.environ, **world.env, "TRAINYARD_LEDGER": str(ledger), "RUNPOD_API_KEY":
                   world.env.get("RUNPOD_API_KEY", ""), "VERDA_CLIENT_ID": world.env.get("VERDA_CLIENT_ID", "")}
            seconds, done = invoke("cleanup", "--yes", "--provider", world.name, env=env, cwd=root)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            calls, left = world.calls(), world.live()
        finally:
            world.stop()
    return [world.name, n, f"{seconds:.1f}", calls, f"N + {calls - n}", left,
            "meets" if n != 200 or (seconds <= 15 and calls <= n + 3 and left == 0) else ("MISSED" if n == 200 else "")]


def measure_status(kind, n: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = kind(root, n)
        try:
            ledger = root / "runs" / "ledger.jsonl"
            ledger_for(world, ledger, missing_id_every=10**9)  # every line has its id
            world.emu.latency_s = LATENCY_S
            world.reset()
            env = {**os.environ, **world.env, "TRAINYARD_LEDGER": str(ledger)}
            seconds, done = invoke(f"{world.name}.status", env=env, cwd=root)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            unreachable = done.stdout.count("unreacha")  # (rich may cut the word in a narrow table)
            calls = world.calls()
        finally:
            world.stop()
    return [world.name, n, world.unreachable, f"{seconds:.1f}", calls, unreachable,
            "meets" if n != 200 or seconds <= 5 else "MISSED"]


def measure_ledger(lines: int) -> list:
    from tests.test_ledger import long_ledger

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "runs" / "ledger.jsonl"
        path.parent.mkdir()
        long_ledger(path, lines // 3)
        env = {**os.environ, "HOME": str(root), "TRAINYARD_LEDGER": str(path), "RUNPOD_API_KEY": "", "VERDA_CLIENT_ID": ""}
        first, done = invoke("status", env=env, cwd=root)
        assert done.returncode == 0, done.stderr
        then, _ = invoke("status", env=env, cwd=root)
        idle, _ = invoke("--list", env=env, cwd=root)
    return [f"{lines:,}", f"{first:.2f}", f"{then:.2f}", f"{idle:.2f}", f"{then - idle:.2f}",
            "meets" if lines < 100_000 or then <= 1.0 else "MISSED"]


def measure(sizes=SIZES, status_sizes=SIZES, ledger_lines=(10_000, 100_000)) -> dict:
    return {"cleanup": [measure_cleanup(kind, n) for kind in (RunPodWorld, VerdaWorld) for n in sizes],
            "status": [measure_status(kind, n) for kind in (RunPodWorld, VerdaWorld) for n in status_sizes],
            "ledger": [measure_ledger(lines) for lines in ledger_lines]}


def before(ref: str) -> dict:
    """The same measurements on the code of `ref` (a git worktree with this bench copied in): the baseline of the
    same run. Its status is measured at N=10 only (serial SSH retries: minutes at N=200)."""
    import json
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=REPO, check=True, capture_output=True)
        try:
            for name in ("bench/scale.py", "tests/test_ledger.py", "emulators/runpod_api.py", "emulators/verda_api.py"):
                # the world (emulators with the latency knob) is this run's; the code under test is the ref's
                shutil.copyfile(REPO / name, tree / name)
            if (REPO / ".venv").exists():
                (tree / ".venv").symlink_to(REPO / ".venv")
            if not (tree.parent / "shared").exists() and (REPO.parent / "shared").exists():
                (tree.parent / "shared").symlink_to(REPO.parent / "shared")
            code = "import json, bench.scale as s; print('JSON' + json.dumps(s.measure(status_sizes=(10,), ledger_lines=(10_000,))))"
            done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=3600,
                                  env={**os.environ, "PYTHONPATH": str(tree)})
            line = next((x for x in done.stdout.splitlines() if x.startswith("JSON")), None)
            assert line, done.stdout[-2000:] + done.stderr[-3000:]
            return json.loads(line[4:])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[2:] if argv is None else argv  # `python -m bench scale [--before REF]`
    ref = argv[argv.index("--before") + 1] if "--before" in argv else None
    now = measure()
    base = before(ref) if ref else None
    cleanup_head = ["provider", "N", "seconds", "provider calls", "calls", "left alive", "target (N=200: <= 15 s, <= N + 3)"]
    status_head = ["provider", "N", "unreachable", "seconds", "provider calls", "said unreachable", "target (N=200: <= 5 s)"]
    ledger_head = ["ledger lines", "first call s (compacts)", "next call s", "invoke --list s", "next - --list",
                   "target (100k: <= 1 s)"]
    body = (f"API latency injected: {LATENCY_S * 1000:.0f} ms per call (both emulators); instances API-only.\n\n"
            "`invoke cleanup --yes --provider P` (a fifth of the ledger lines without an instance id):\n\n"
            + table(cleanup_head, now["cleanup"])
            + "\n\n`invoke <provider>.status` with N live instances, some publishing an SSH port nobody answers on "
              "(RunPod: 10; Verda's API-only instances: all, port 22 of 127.0.0.1):\n\n"
            + table(status_head, now["status"])
            + "\n\n`invoke status` on a long ledger (a year of sweeps: creating/running/terminated per instance, 2% live):\n\n"
            + table(ledger_head, now["ledger"]))
    if base:
        body += (f"\n\nBefore (the code of {ref}, same machine, same run, same latency; its targets column is "
                 "this bench's):\n\n" + table(cleanup_head, base["cleanup"]) + "\n\n" + table(status_head, base["status"])
                 + "\n\n" + table(ledger_head, base["ledger"]))
    write_section("scale", "python -m bench scale" + (f" --before {ref}" if ref else ""), body)
    print(body)
