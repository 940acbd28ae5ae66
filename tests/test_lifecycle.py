"""The cloud lifecycle (helpers/backends/lifecycle.py) and the recovery supervisor it runs under
(helpers/backends/recovery.py), fast: the REAL run_on_instance, Flow ending, ledger and supervise against an in-memory
provider (tests/memory_cloud.py), no root, sshd or network. Each test is one money or work promise:
the ledger line before the create, a retried create that finds the first machine instead of renting a second, the
end confirmed before the ledger says `terminated`, SIGTERM and Ctrl-C, the deadline backstop, and relaunch within
max_recoveries and the budget. The same promises hold on the emulated clouds (tests/test_*_backend.py, the fault
trials in tests/reliability), which are slower."""

from __future__ import annotations

import _thread
import itertools
import json
import os
import signal
import socket
import threading
import time

import pytest

from helpers.backends.base import EXIT_DONE, EXIT_INTERRUPTED, EXIT_LOST, EXIT_STOPPED
from helpers.backends.lifecycle import Flow, HostSpec, boot_poll_times, run_on_instance
from helpers.config import validate
from helpers.errors import ProviderError
from helpers.planning import Plan
from helpers.workspace import opened
from memory_cloud import MemoryCloud, MemoryFlow, MemoryProvider, offer


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRAINYARD_LEDGER", raising=False)
    monkeypatch.setattr("helpers.backends.lifecycle.ask_detach_or_terminate", lambda: "terminate")
    # the retries' backoff (tenacity, up to a minute between tries) is the library's; here the tries follow at once
    monkeypatch.setattr("tenacity.wait_exponential_jitter", lambda **_: (lambda state: 0.0))
    with opened(env_file=None, runs_dir=tmp_path / "runs") as opened_workspace:
        yield opened_workspace


def job_of(**limits):
    return validate({"job": {"name": "mem"}, "framework": "command", "command": {"run": "true"},
                     "training": {"steps": 100, "save_freq": 10}, "limits": {"grace_s": 0, **limits}})


def launch(cloud: MemoryCloud, job, first=None, *, recover=None, relaunch_to=(), flow_class=MemoryFlow) -> int:
    """run_on_instance as a cloud backend's launch calls it, with the plan's relaunch candidates."""
    first = first or offer()
    spec = HostSpec(remote_dir="/work", ssh_key=None, deadline_epoch=job.launcher_deadline(time.time()))
    plan = Plan("memcloud", offer=first, relaunch_keys=[o.key for o in (first, *relaunch_to)])
    return run_on_instance(MemoryProvider(cloud, first), job, first, {}, spec, recover=recover, the_plan=plan,
                           flow_class=flow_class)


def history(workspace) -> list[dict]:
    return [json.loads(line) for line in workspace.ledger.path.read_text().splitlines()]


def states_of(workspace, name: str) -> list[str]:
    return [e["state"] for e in history(workspace) if e["id"] == name]


def test_the_ledger_holds_the_machine_before_it_is_created_and_ends_it_as_confirmed(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger)
    assert launch(cloud, job_of()) == EXIT_DONE
    (name,) = [n for op, n in cloud.calls if op == "create"]
    assert cloud.ledger_at_create[0]["state"] == "creating"  # on disk before the create call
    assert states_of(workspace, name) == ["creating", "running", "terminated"]
    (entry,) = [e for e in history(workspace) if e["id"] == name and e["state"] == "creating"]
    assert entry["mode"] == "auto" and entry["run_id"] == "mem" and entry["price_per_hour"] == 1.0
    assert cloud.live() == []


def test_a_create_whose_answer_is_lost_finds_the_machine_instead_of_renting_a_second(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, lose_create_answers=1)
    assert launch(cloud, job_of()) == EXIT_DONE
    assert [op for op, _ in cloud.calls[:2]] == ["create", "find"]  # looked before trying again
    assert len(cloud.machines) == 1 and cloud.live() == []


def test_a_refused_create_leaves_a_settled_ledger_line_and_nothing_running(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, refuse_creates={"here"})
    with pytest.raises(ProviderError, match="no capacity"):
        launch(cloud, job_of(), recover=False)
    (name,) = {e["id"] for e in history(workspace)}
    assert states_of(workspace, name) == ["creating", "failed"] and cloud.machines == {}


def test_terminated_only_once_the_provider_confirmed_and_unknown_when_it_never_does(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, failing_terminates=2, endings={"here": "hang"})
    assert launch(cloud, job_of(time_limit=0.3)) == EXIT_STOPPED  # the backstop ends it, through two 503s
    (name,) = {e["id"] for e in history(workspace)}
    assert states_of(workspace, name)[-1] == "terminated" and cloud.live() == []
    assert [op for op, _ in cloud.calls].count("terminate") == 3

    stuck = MemoryCloud(ledger=workspace.ledger, failing_terminates=-1, endings={"here": "hang"})
    assert launch(stuck, job_of(time_limit=0.3)) == EXIT_STOPPED
    last = history(workspace)[-1]
    assert last["state"] == "unknown" and "terminate" in last["error"]  # `invoke cleanup` acts on it
    assert len(stuck.live()) == 1


def test_the_deadline_backstop_ends_a_machine_that_runs_past_the_time_limit(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "hang"})
    started = time.monotonic()
    assert launch(cloud, job_of(time_limit=0.5, grace_s=0.3)) == EXIT_STOPPED
    assert 0.8 <= time.monotonic() - started < 5 and cloud.live() == []


def test_a_machine_whose_ssh_never_answers_is_ended_at_the_deadline_in_one_line(workspace):
    """The launcher's deadline holds while it connects: a machine that boots but never opens SSH (a broken image, a
    dead sshd) is ended at the time limit + grace, not after ssh_timeout_s (ten minutes), with one line."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "hang"}, ssh=("127.0.0.1", port))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"never answered on SSH at 127.0.0.1:\d+ \(the time limit passed\)"):
        launch(cloud, job_of(time_limit=1.0, grace_s=0.5), recover=False, flow_class=Flow)
    assert time.monotonic() - started < 1.5 + 5  # the deadline plus a bounded allowance (one more SSH try, the end)
    (name,) = {e["id"] for e in history(workspace)}
    assert states_of(workspace, name)[-1] == "terminated" and cloud.live() == []


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_sigterm_and_ctrl_c_end_the_machine(workspace, how):
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "hang"})
    hit = (lambda: os.kill(os.getpid(), signal.SIGTERM)) if how == "SIGTERM" else _thread.interrupt_main
    timer = threading.Timer(0.5, hit)
    timer.start()
    try:
        assert launch(cloud, job_of()) == EXIT_INTERRUPTED
    finally:
        timer.cancel()
    (name,) = {e["id"] for e in history(workspace)}
    assert states_of(workspace, name)[-1] == "terminated" and cloud.live() == []


def test_a_lost_machine_is_relaunched_on_the_next_offer_and_the_run_finishes(workspace):
    first, second = offer(price=1.0, location="here"), offer(price=1.5, location="there")
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "preempt", "there": "finish"},
                        offers=[offer(price=1.0, location="here", in_stock=False), second])
    assert launch(cloud, job_of(), first, relaunch_to=[second]) == EXIT_DONE
    entries = [e for e in history(workspace) if e["state"] == "creating"]
    assert [e.get("location") for e in entries] == [None, "there"] and entries[1]["recovery"] == 1
    assert entries[1]["replaces"] == entries[0]["id"] and cloud.live() == []
    events = [json.loads(line) for line in (workspace.runs_dir / "mem" / "launcher_events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["recovery"]


def test_relaunches_stop_at_max_recoveries(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "preempt"}, offers=[offer()])
    assert launch(cloud, job_of(max_recoveries=2)) == EXIT_LOST
    assert len(cloud.machines) == 3 and cloud.live() == []  # the first and two relaunches, each ended
    events = [json.loads(line)["event"] for line in
              (workspace.runs_dir / "mem" / "launcher_events.jsonl").read_text().splitlines()]
    assert events == ["recovery", "recovery", "recovery_failed"]


def test_no_relaunch_once_the_budget_is_spent(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "preempt"}, offers=[offer(price=36000.0)])
    # $36,000/h is $10/s: the first machine spends the $0.50 budget before it is lost
    assert launch(cloud, job_of(budget_usd=0.5), offer(price=36000.0)) == EXIT_STOPPED
    assert len(cloud.machines) == 1 and cloud.live() == []


def test_recover_false_gives_the_loss_back_to_the_user(workspace):
    cloud = MemoryCloud(ledger=workspace.ledger, endings={"here": "preempt"}, offers=[offer()])
    assert launch(cloud, job_of(), recover=False) == EXIT_LOST
    assert len(cloud.machines) == 1 and cloud.live() == []


def test_a_booting_instance_is_polled_fast_first_within_one_call_per_poll_interval():
    for poll in (10.0, 3.0, 0.3):
        times = list(itertools.takewhile(lambda t: t <= 600, boot_poll_times(poll)))
        assert times[:3] == [0.0, min(1.0, poll), min(3.0, 2 * poll)]  # seen within seconds of a 0 s boot
        assert times == sorted(times)
        for start in [t / 2 for t in range(0, 1080)]:  # every minute-long window: at most one call more than
            in_window = sum(1 for t in times if start <= t < start + 60)  # one per poll interval
            assert in_window <= 60 / poll + 1, (poll, start, in_window)
        for boot in (35.0, 45.0, 125.0):  # a boot longer than the paid-back burst is seen within one poll, as before
            assert next(t for t in times if t >= boot) - boot <= poll
