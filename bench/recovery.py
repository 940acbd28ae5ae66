"""Spot recovery: how long a preempted run takes to train again, how many steps it loses, and how many provider
API calls an instance costs while the launcher waits.

Everything on this machine, as in tests/reliability: the RunPod and Verda emulators (instances are real sshd hosts,
booting in 0 s unless said), the local Hub as the store, `invoke <provider>.train --recover` as the orchestrator,
the real runtime and tests/toy_trainer.py. A preemption kills every process of the instance at once.

  latency      preemption -> the relaunched runtime printed "resumed from step N" (the trainer runs again), split
               into: noticing it and ending the lost instance / choosing the offer and creating the new one / boot,
               SSH, upload, start and restoring the checkpoint. With `<provider>.poll_seconds` 10 (the default) and 1.
  steps lost   per preemption at a random step: the steps the lost instance had done minus the step the relaunch
               resumed from, against save_freq (and the bound the reliability suite asserts).
  API calls    per instance-minute while waiting for a booting instance (emulator boot 60 s), while following a
               training run over SSH, and while polling a start_command pod, against one per poll interval.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import table, write_section

REPO = Path(__file__).resolve().parents[1]
SEED = 7
TARGET_S = 5.0  # preemption -> the trainer runs again, 0 s boot (issue 20)


def hub(root: Path):
    from huggingface_hub import constants

    from emulators.hub_server import HubServer
    from tests.fixtures_hub import HUB_TOKEN, HUB_USER

    server = HubServer(root / "hub").start()
    server.add_token(HUB_TOKEN, HUB_USER)
    os.environ.update({**server.client_env(HUB_TOKEN), "HF_HOME": str(root / "hf_home")})
    constants.ENDPOINT = server.url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    constants.HF_HUB_DISABLE_XET = True
    constants.HF_HUB_CACHE = str(root / "hf_home" / "hub")
    return server


def preempted_once(world, provider: str, run_id: str, *, save_freq: int, pace: float, poll: float, at: int | None,
                   steps: int) -> dict:
    """One run preempted once (at step `at`, or just after the checkpoint at 2 x save_freq is synced)."""
    from tests.reliability.harness import loss_bound, resumed_of, steps_of

    config = world.config(run_id, provider, steps=steps, save_freq=save_freq, pace=pace, **{provider: {"poll_seconds": poll}})
    orchestrator = world.train(provider, config)
    first = world.wait_instance(run_id, provider, timeout=120)
    if at is None:
        assert world.wait_log(provider, first, rf"synced checkpoint step {2 * save_freq} ", 120)
    else:
        assert world.wait_step(provider, first, at, 120)
    world.preempt(provider, first)
    preempted = time.time()
    second = world.wait_instance(run_id, provider, 1, timeout=180)
    deadline = time.monotonic() + 180
    while "resumed from step" not in world.log(provider, second) and "] starting: " not in world.log(provider, second):
        assert time.monotonic() < deadline, "the relaunch never trained"
        time.sleep(0.01)
    resumed_at = time.time()
    code = orchestrator.wait(300)
    assert code == 0, orchestrator.output[-2000:]
    lost_entry, new_entry = (e for e in world.instances(run_id) if e.get("instance_id"))
    before, after = world.log(provider, first), world.log(provider, second)
    return {"latency": resumed_at - preempted, "ended": (lost_entry.get("ended") or preempted) - preempted,
            "created": new_entry["created"] - (lost_entry.get("ended") or preempted),
            "lost": steps_of(before) - (resumed_of(after) or 0), "bound": loss_bound(save_freq, pace, [before, after])}


def latency_rows(world) -> list[list[object]]:
    rows = []
    for provider in ("runpod", "verda"):
        for poll in (10.0, 1.0):
            samples = [preempted_once(world, provider, f"lat-{provider}-{int(poll)}-{i}", save_freq=10, pace=0.05,
                                      poll=poll, at=None, steps=60) for i in range(3)]
            lat = [s["latency"] for s in samples]
            rows.append([provider, f"{poll:g}", len(samples), f"{statistics.median(lat):.1f}", f"{max(lat):.1f}",
                         f"{statistics.median(s['ended'] for s in samples):.1f}",
                         f"{statistics.median(s['created'] for s in samples):.1f}",
                         f"{statistics.median(s['latency'] - s['ended'] - s['created'] for s in samples):.1f}",
                         "meets" if max(lat) <= TARGET_S else "MISSES"])
    return rows


def loss_rows(world) -> list[list[object]]:
    rng = random.Random(SEED)
    rows = []
    for save_freq in (10, 25, 50):
        samples = []
        for i in range(4):
            provider = ("runpod", "verda")[i % 2]
            at = rng.randint(save_freq + 1, int(2.5 * save_freq))
            samples.append(preempted_once(world, provider, f"loss-{save_freq}-{i}", save_freq=save_freq, pace=0.02,
                                          poll=1.0, at=at, steps=3 * save_freq))
        lost = [s["lost"] for s in samples]
        rows.append([save_freq, len(samples), f"{statistics.mean(lost):.1f}", max(lost), max(s["bound"] for s in samples),
                     "meets" if all(s["lost"] <= s["bound"] for s in samples) else "MISSES"])
    return rows


def api_rows(root: Path, hub_server) -> list[list[object]]:
    """Calls per instance-minute: booting (60 s emulator boot), following over SSH, polling a start_command pod."""
    from tests.reliability.harness import World

    poll = 10.0
    booting = World(root / "api-boot", hub_server, runpod_boot_s=60, verda_boot_s=60)  # one emulator per provider
    followed = World(root / "api-ssh", hub_server)  # one run per RunPod emulator: its call log has no pod ids
    polled = World(root / "api-start", hub_server)
    try:
        runs = [
            ("runpod", "booting (ssh mode)", booting, booting.config("api-rp-boot", "runpod", steps=10, runpod={"poll_seconds": poll})),
            ("verda", "booting", booting, booting.config("api-vd-boot", "verda", steps=10, verda={"poll_seconds": poll})),
            ("runpod", "training, followed over SSH", followed,
             followed.config("api-rp-ssh", "runpod", steps=600, pace=0.1, runpod={"poll_seconds": poll})),
            ("runpod", "training, start_command mode", polled,
             polled.config("api-rp-start", "runpod", steps=600, pace=0.1, runpod={"poll_seconds": poll, "mode": "start_command"})),
        ]
        orchestrators = [(p, what, w, cfg, w.train(p, cfg)) for p, what, w, cfg in runs]
        rows = []
        for provider, what, world, config, orchestrator in orchestrators:
            assert orchestrator.wait(400) == 0, orchestrator.output[-2000:]
            run_id = config.stem
            (entry,) = [e for e in world.instances(run_id) if e.get("instance_id")]
            if provider == "runpod":
                calls = [c for c in world.runpod.calls if c["field"] == "getPod"]
            else:
                path = f"/v1/instances/{entry['instance_id']}"
                calls = [c for c in world.verda.calls if c["method"] == "GET" and c["path"].startswith(path)]
            if what.startswith("booting"):
                start, end = entry["created"], entry["created"] + 60  # the emulator's boot delay
            else:  # the middle of a 60 s training: after boot and start, before the end
                start, end = entry["created"] + 10, entry["ended"] - 5
            inside = [c for c in calls if start <= c["t"] <= end]
            minutes = (end - start) / 60
            target = 60 / poll
            rows.append([provider, what, f"{poll:g}", f"{end - start:.0f}", len(inside), f"{len(inside) / minutes:.1f}",
                         f"{target:.1f}", "meets" if len(inside) / minutes <= target + 60 / (end - start) else "MISSES"])
        return rows
    finally:
        for world in (booting, followed, polled):
            world.stop()


def main() -> None:
    from tests.reliability.harness import World

    os.environ["TRAINYARD_HEARTBEAT_S"] = os.environ.get("TRAINYARD_HEARTBEAT_S", "10")
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        root = Path(tmp)
        server = hub(root)
        world = World(root / "world", server, runpod_boot_s=0.0, verda_boot_s=0.0, verda_order_s=0.0)
        try:
            api: dict = {}

            def measure_api() -> None:
                try:
                    api["rows"] = api_rows(root, server)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
                    api["error"] = exc

            thread = threading.Thread(target=measure_api, daemon=True)
            thread.start()  # 60 s of booting instances, measured while the other runs go on
            latency = latency_rows(world)
            losses = loss_rows(world)
            thread.join(600)
            if "error" in api or "rows" not in api:
                raise RuntimeError("the API-calls measurement failed") from api.get("error")
        finally:
            world.stop()
            server.stop()
    worst = max(float(r[4]) for r in latency)
    body = (
        "Recovery latency: preemption -> the relaunched trainer runs again (\"resumed from step\"), emulators with 0 s "
        "boot, 3 preemptions per row (after the checkpoint at step 20 is synced):\n\n"
        + table(["provider", "poll_seconds", "preemptions", "median s", "max s", "notice + end s", "offer + create s",
                 "boot, SSH, upload, restore s", f"target <= {TARGET_S:g} s"], latency)
        + f"\n\nTarget <= {TARGET_S:g} s: {'meets' if worst <= TARGET_S else 'MISSES'} (worst {worst:.1f} s). A new instance is "
        "looked at 0, 1 and 3 s after its create, then every poll from 3 x poll (lifecycle.boot_poll_times: the burst "
        "is paid back, so the API-call budget below still holds), so the default poll of 10 s no longer delays a "
        "relaunch onto an instance that boots in seconds (before: 11.7 s worst at poll 10).\n\n"
        "Steps lost per preemption at a random step (pace 0.02 s/step, RunPod and Verda alternating, 4 per row) vs "
        "save_freq; the bound is save_freq + the steps done while the newest checkpoint waited 0.1 s for the watcher and "
        "went through its upload:\n\n"
        + table(["save_freq", "preemptions", "mean steps lost", "max steps lost", "bound", "within bound"], losses)
        + "\n\nProvider API calls per instance-minute (one instance; poll_seconds 10, target <= one call per poll interval "
        "= 6/min; a window also holds the first, immediate look):\n\n"
        + table(["provider", "while", "poll s", "window s", "calls", "calls/min", "target/min", ""], api["rows"])
        + "\n\nFollowing a run over SSH reads the log and status over SSH; the provider API is asked only when SSH "
        "drops (and around the boot: the one call counted in that window)."
    )
    write_section("Spot recovery", "python -m bench recovery", body)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
