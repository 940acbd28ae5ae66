"""The recovery supervisor (helpers/backends/recovery.py `supervise`) keeps its promises, with the real SDKs
against the emulators and `invoke <provider>.train` as the orchestrator:

  * a relaunch goes to the same offer if it is in stock, else to the next-cheapest offer of the plan that fits
    (RunPod: creates of the GPU type refused -> the other allowed GPU; Verda: the location full -> another one);
  * every relaunch is a webhook event with the runtime's payload and a ledger line (`recovery`, `replaces`);
  * bounds: `limits.max_recoveries`, `--no-recover`, the time limit counted from the first launch, the budget
    summed over every instance of the run — each relaunch's job document gets only what is left.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.reliability.harness import store_check
from tests.webhook import Webhook

pytestmark = pytest.mark.slow

A5000, RTX4090 = "NVIDIA RTX A5000", "NVIDIA GeForce RTX 4090"


def job_json(world, provider: str, entry: dict) -> dict:
    return json.loads((world.remote_dir(provider, entry) / "job.json").read_text())


def test_relaunch_goes_to_the_next_cheapest_offer_with_an_event_and_a_ledger_line(world):
    hook = Webhook()
    notify = {"notify": {"webhook_url": hook.url, "project": "recovery-test"}}
    rp = world.config("next-rp", "runpod", steps=50, resources={"gpu": ["RTX A5000", "RTX 4090"]}, **notify)
    vd = world.config("next-vd", "verda", steps=50, **notify)
    runs = {"runpod": ("next-rp", world.train("runpod", rp)), "verda": ("next-vd", world.train("verda", vd))}
    first = {p: world.wait_instance(run_id, p) for p, (run_id, _) in runs.items()}
    assert first["runpod"]["gpu"] == A5000  # the cheapest that fits: A5000 community spot
    for provider, (run_id, _) in runs.items():
        assert world.wait_log(provider, first[provider], r"synced checkpoint step 10 ")
    # RunPod: the A5000 is listed in stock but every create is refused (no capacity): the relaunch tries the plan's
    # offers in order and takes the next-cheapest GPU, an RTX 4090. Verda: the place is full and says so in its
    # availability: the relaunch goes to the same instance type elsewhere.
    world.runpod.refuse_capacity(A5000)
    location = first["verda"]["location"]
    world.verda.set_capacity(first["verda"]["instance_type"], 0, location=location, is_spot=True)  # that place is full
    for provider in runs:
        world.preempt(provider, first[provider])
    for provider, (run_id, orchestrator) in runs.items():
        assert orchestrator.wait(180) == 0, orchestrator.output[-3000:]
        assert store_check(run_id)["latest"] == 50
    hook.close()
    assert world.leaks() == []

    second = {p: [e for e in world.instances(run_id) if e.get("instance_id")][1] for p, (run_id, _) in runs.items()}
    assert second["runpod"]["gpu"] == RTX4090 and second["runpod"]["price_per_hour"] == 0.29
    assert world.runpod.pod(second["runpod"]["instance_id"])["gpuTypeId"] == RTX4090
    assert second["verda"]["location"] != location
    assert world.verda.instance(second["verda"]["instance_id"])["location"] == second["verda"]["location"]
    for provider, (run_id, _) in runs.items():
        entry = second[provider]
        assert entry["recovery"] == 1 and entry["replaces"] == first[provider]["id"] and entry["state"] == "terminated"
        assert job_json(world, provider, entry)["derived"]["run_id"] == run_id
        assert "restoring step" in world.log(provider, entry)
        recovery = [e for e in hook.events if e["event"] == "recovery" and e["lost_instance"] == first[provider]["id"]]
        assert len(recovery) == 1
        event = recovery[0]
        assert {"event", "message", "timestamp", "stage", "project", "repo_id"} <= set(event)  # the runtime's payload
        assert event["project"] == "recovery-test" and event["stage"] == "recovery" and event["recovery"] == 1
        assert event["repo_id"] == f"hf://trainyard-tests/{run_id}-checkpoints"  # the default store of a spot run
        local = [json.loads(line) for line in (world.work / "runs" / run_id / "launcher_events.jsonl").read_text().splitlines()]
        assert [e["event"] for e in local] == ["recovery"]


def test_bounds_max_recoveries_no_recover_time_limit_and_budget(world):
    price = {"runpod": 0.29, "verda": 1.0}
    cases = {
        "max-rp": ("runpod", world.config("max-rp", "runpod", steps=400, limits={"max_recoveries": 1}), ()),
        "norec-vd": ("verda", world.config("norec-vd", "verda", steps=400), ("--no-recover",)),
        "limit-rp": ("runpod", world.config("limit-rp", "runpod", steps=10000, limits={"time_limit": 14}), ()),
        "budget-vd": ("verda", world.config("budget-vd", "verda", steps=10000,
                                            limits={"budget_usd": round(price["verda"] * 14 / 3600, 6)}), ()),
    }
    orchestrators = {run_id: world.train(provider, config, *extra) for run_id, (provider, config, extra) in cases.items()}
    first = {}
    for run_id, (provider, _, _) in cases.items():
        first[run_id] = world.wait_instance(run_id, provider)
        assert world.wait_step(provider, first[run_id], 12)
        # a checkpoint in the store first: a relaunch with none is an error event of its own (recovery_no_checkpoint)
        assert world.wait_log(provider, first[run_id], r"synced checkpoint step \d+")
        world.preempt(provider, first[run_id])
    again = world.wait_instance("max-rp", "runpod", 1)  # the one relaunch allowed: lost again, no third instance
    assert world.wait_step("runpod", again, 5), world.log("runpod", again)[-3000:]
    world.preempt("runpod", again)

    codes = {run_id: orchestrator.wait(180) for run_id, orchestrator in orchestrators.items()}
    assert codes == {"max-rp": 4, "norec-vd": 4, "limit-rp": 3, "budget-vd": 3}, {
        r: o.output[-1500:] for r, o in orchestrators.items()}
    assert world.leaks() == []
    launched = {run_id: [e for e in world.instances(run_id) if e.get("instance_id")] for run_id in cases}
    assert {r: len(v) for r, v in launched.items()} == {"max-rp": 2, "norec-vd": 1, "limit-rp": 2, "budget-vd": 2}
    events = [json.loads(line) for line in (world.work / "runs/max-rp/launcher_events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["recovery", "recovery_failed"]
    assert "limits.max_recoveries" in orchestrators["max-rp"].output
    assert not (world.work / "runs/norec-vd/launcher_events.jsonl").exists()

    # the relaunch got what was left: same deadline as the first launch, the budget minus what the first instance cost
    one, two = (job_json(world, "runpod", e) for e in launched["limit-rp"])
    assert abs(two["derived"]["deadline_epoch"] - one["derived"]["deadline_epoch"]) < 3
    assert two["config"]["limits"]["time_limit"] < 14
    one, two = (job_json(world, "verda", e) for e in launched["budget-vd"])
    assert two["config"]["limits"]["budget_usd"] < one["config"]["limits"]["budget_usd"]
    assert abs(two["derived"]["deadline_epoch"] - one["derived"]["deadline_epoch"]) < 3
    for run_id in ("limit-rp", "budget-vd"):
        assert "stopping the trainer: time limit or budget reached" in world.log(cases[run_id][0], launched[run_id][1])
    from helpers.ledger import spend_of

    spent = sum(spend_of(e) for e in launched["budget-vd"])
    assert spent <= price["verda"] * (14 + 10) / 3600, spent  # the budget, plus the final sync and the end

    # `invoke status`: each run with its instances, relaunches and the spend of all of them
    status = world.invoke("status")
    assert status.wait(60) == 0, status.output
    row = next(line for line in status.output.splitlines() if "│ max-rp " in line)
    cells = [c.strip() for c in row.split("│")]
    assert cells[4] == "0 live / 2" and cells[5] == "1" and cells[7].startswith("$"), row


def test_a_relaunch_that_finds_no_checkpoint_is_an_error_event_naming_the_steps_lost(world):
    """Preempted before the first checkpoint reached the store: the launcher says so (webhook, launcher_events.jsonl,
    `invoke status`) instead of claiming a resume, and the relaunch says it starts at step 0."""
    hook = Webhook()
    config = world.config("nockpt-vd", "verda", steps=150, save_freq=1000,  # no checkpoint before the end
                          notify={"webhook_url": hook.url, "project": "nockpt"})
    orchestrator = world.train("verda", config)
    first = world.wait_instance("nockpt-vd", "verda")
    assert world.wait_step("verda", first, 8)
    time.sleep(2.5)  # two polls of the launcher's log tail: it has seen those steps too
    world.preempt("verda", first)
    assert orchestrator.wait(180) == 0, orchestrator.output[-3000:]
    hook.close()
    assert world.leaks() == []
    local = [json.loads(line) for line in (world.work / "runs/nockpt-vd/launcher_events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in local] == ["recovery_no_checkpoint", "recovery"]
    error = local[0]
    assert error["level"] == "error" and error["steps_lost"] >= 8 and error["lost_instance"] == first["id"]
    assert error["message"].startswith("no checkpoint in hf://trainyard-tests/nockpt-vd-checkpoints: relaunch 1 starts "
                                       f"at step 0 — the {error['steps_lost']} steps trained on instance {first['id']} are lost")
    assert "resumes from" not in local[1]["message"] and "it starts at step 0" in local[1]["message"]
    assert [e["event"] for e in hook.events if e["stage"] == "recovery"] == ["recovery_no_checkpoint", "recovery"]
    second = [e for e in world.instances("nockpt-vd") if e.get("instance_id")][1]
    assert "no checkpoint in hf://trainyard-tests/nockpt-vd-checkpoints: starting at step 0" in world.log("verda", second)
    status = world.invoke("status")
    assert status.wait(60) == 0, status.output
    row = next(line for line in status.output.splitlines() if "│ nockpt-vd " in line)
    assert "no checkpoint in" in row
