"""The dead-man: with the orchestrator SIGKILLed (a closed laptop), the instance ends itself — at the time limit, at
the budget, and when the runtime finishes — through each provider's ender (helpers/runtime/machine.py): RunPod's
REST v2 `POST /v2/pods/{id}/action terminate` with the pod's own key, Verda's delete through the real API with the account's client
credentials the instance holds (verda.deadman: account). With `limits.end_when_done:
false` a finished instance stays up (as asked) and `invoke cleanup --yes` ends it.

All runs start at once (one world, seven orchestrators), so the whole test takes about as long as the slowest one.
The orchestrators run with TRAINYARD_HEARTBEAT_S=1: their heartbeat is stale 6 s after they die, and only then does
the runtime's ender stop waiting for them.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.reliability.harness import store_check, synced_of

pytestmark = pytest.mark.slow

LIMIT_S = 10.0
# the cheapest offer each provider's plan picks for these jobs (emulator catalogs): RTX 4090 community spot, 1H100 spot
PRICE = {"runpod": 0.29, "verda": 1.0}

CASES = {  # run id: (provider, how it ends, extra config sections)
    "rp-limit": ("runpod", "limit", {"training": {"steps": 100000}, "limits": {"time_limit": LIMIT_S}}),
    "rp-done": ("runpod", "done", {"training": {"steps": 60}}),
    "rp-budget": ("runpod", "budget", {"training": {"steps": 100000}, "runpod": {"mode": "start_command"},
                                       "limits": {"budget_usd": PRICE["runpod"] * LIMIT_S / 3600}}),
    "rp-keep": ("runpod", "keep", {"training": {"steps": 40}, "limits": {"end_when_done": False}}),
    "vd-limit": ("verda", "limit", {"training": {"steps": 100000}, "limits": {"time_limit": LIMIT_S}}),
    "vd-done": ("verda", "done", {"training": {"steps": 60}}),
    "vd-budget": ("verda", "budget", {"training": {"steps": 100000},
                                      "limits": {"budget_usd": PRICE["verda"] * LIMIT_S / 3600}}),
}


def test_instances_end_themselves_when_the_orchestrator_is_killed(world):
    orchestrators, entries = {}, {}
    for run_id, (provider, _how, sections) in CASES.items():
        steps = sections.pop("training")["steps"]
        config = world.config(run_id, provider, steps=steps, save_freq=10, pace=0.05, **sections)
        orchestrators[run_id] = world.train(provider, config)
    for run_id, (provider, how, _) in CASES.items():
        entries[run_id] = entry = world.wait_instance(run_id, provider, timeout=60)
        if how != "budget" or provider != "runpod":  # start_command: the launcher only polls; kill it right away
            assert world.wait_step(provider, entry, 3, 60), f"{run_id} never trained"
        orchestrators[run_id].kill()
        assert orchestrators[run_id].process.returncode == -9
    killed_at = time.time()

    deadline = time.monotonic() + 60
    pending = {r for r, (_p, how, _) in CASES.items() if how != "keep"}
    keep_status = world.remote_dir("runpod", entries["rp-keep"]) / "status.json"
    kept_done = lambda: keep_status.exists() and json.loads(keep_status.read_text())["state"] == "done"  # noqa: E731
    while (pending or not kept_done()) and time.monotonic() < deadline:
        pending = {r for r in pending if world.running(CASES[r][0], entries[r]["instance_id"])}
        time.sleep(0.2)
    assert not pending, f"still running with the orchestrator gone: {sorted(pending)}"

    for run_id, (provider, how, _) in CASES.items():
        iid = entries[run_id]["instance_id"]
        log = world.log(provider, entries[run_id])
        latest = store_check(run_id)
        assert latest["ok"], (run_id, latest)
        synced = max((s for s, _ in synced_of(log)), default=None)
        assert synced is not None and latest["latest"] == synced, (run_id, synced, latest)
        if how in ("limit", "budget"):
            assert "stopping the trainer: time limit or budget reached" in log, run_id
        else:
            assert latest["latest"] == (60 if how == "done" else 40), (run_id, latest)
        if how == "keep":
            continue
        if provider == "runpod":
            assert world.runpod.pod(iid)["status"] == "TERMINATED", run_id
            # the orchestrator was dead: the pod terminated itself through REST v2 with its pod-scoped key
            assert any(c.get("rest") and c["request"] == {"action": "terminate"} and c["key"] == "pod"
                       and c["path"] == f"/v2/pods/{iid}/action" and c["t"] > killed_at for c in world.runpod.calls), run_id
        else:
            assert world.verda.instance(iid)["status"] == "discontinued", run_id
            # deleted, not just shut down (an offline instance bills on), by the instance itself: the launcher was
            # dead, and the only credential there is is the account's (verda.deadman: account)
            mine = [c for c in world.verda.calls if c["method"] == "PUT" and c["t"] > killed_at
                    and c["user_agent"] == "trainyard-runtime (dead-man)" and c["body"]["id"] == [iid]]
            assert mine and mine[0]["body"]["action"] == "delete" and mine[0]["auth"] == "client", run_id

    # end_when_done: false — the runtime finished, the pod stays up past the heartbeat's staleness; cleanup ends it
    keep = entries["rp-keep"]
    status = json.loads((world.remote_dir("runpod", keep) / "status.json").read_text())
    assert status["state"] == "done"
    time.sleep(max(0.0, killed_at + 8 - time.time()))
    assert world.running("runpod", keep["instance_id"]), "end_when_done: false, yet the pod ended itself"
    assert world.live() == [f"runpod:{keep['instance_id']}"]

    code, output = world.cleanup()
    assert code == 0, output
    assert world.leaks() == [], output
    assert {e["state"] for e in world.ledger().values()} == {"terminated"}
