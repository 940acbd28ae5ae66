"""The control plane at lab scale, against the emulators with an injected API latency (bench/scale.py measures
the same at N = 10, 50, 200): cleanup decides from one list, ends everything at once and confirms from one more
list; the per-provider status reads one list and says "unreachable" for instances that do not answer, without
waiting for each. (How a booting instance is polled: tests/test_lifecycle.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.scale import RunPodWorld, VerdaWorld, invoke, ledger_for
from helpers.ledger import Ledger

N = 30
LATENCY_S = 0.05

pytestmark = pytest.mark.slow  # lab-scale lists with an API latency: seconds each


@pytest.mark.parametrize("kind", [RunPodWorld, VerdaWorld], ids=["runpod", "verda"])
def test_cleanup_asks_for_one_list_ends_all_at_once_and_confirms_from_one_more(tmp_path, kind):
    world = kind(tmp_path, N)
    try:
        ledger_path = tmp_path / "runs" / "ledger.jsonl"
        ledger_for(world, ledger_path)  # a fifth of the lines have no instance id: matched by their ty- name
        world.emu.latency_s = LATENCY_S
        world.reset()
        env = {**os.environ, **world.env, "TRAINYARD_LEDGER": str(ledger_path)}
        seconds, done = invoke("cleanup", "--yes", "--provider", world.name, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert world.live() == 0
        calls = world.calls()
        assert calls <= N + 3, f"{calls} provider calls for {N} instances"
        assert seconds < N * LATENCY_S * 2 + 10  # not N serial round trips per instance
        states = {e["id"]: e["state"] for e in Ledger(ledger_path).entries().values()}
        assert len(states) == N and set(states.values()) == {"terminated"}
    finally:
        world.stop()


@pytest.mark.parametrize("kind", [RunPodWorld, VerdaWorld], ids=["runpod", "verda"])
def test_status_lists_once_and_says_unreachable_without_waiting_for_each(tmp_path, kind):
    world = kind(tmp_path, N)
    try:
        ledger_path = tmp_path / "runs" / "ledger.jsonl"
        ledger_for(world, ledger_path)
        world.emu.latency_s = LATENCY_S
        world.reset()
        env = {**os.environ, **world.env, "TRAINYARD_LEDGER": str(ledger_path), "COLUMNS": "250"}
        seconds, done = invoke(f"{world.name}.status", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert done.stdout.count("unreachable") == world.unreachable
        assert world.calls() <= 2  # one list (Verda: and its token)
        assert seconds < 15  # one probe timeout for all of them, not ~10 s of SSH retries each
    finally:
        world.stop()


def test_scale_worlds_make_what_they_say(tmp_path):
    """The bench's own set-up: N live instances at the provider, each in the ledger."""
    world = RunPodWorld(tmp_path, 5)
    try:
        assert world.live() == 5 and world.unreachable == 5
        ledger_for(world, tmp_path / "l.jsonl")
        assert len(Ledger(Path(tmp_path / "l.jsonl")).live()) == 5
    finally:
        world.stop()


@pytest.mark.parametrize("kind", [RunPodWorld, VerdaWorld], ids=["runpod", "verda"])
def test_a_cleanup_killed_mid_way_is_finished_by_the_next(tmp_path, kind):
    """SIGKILL `invoke cleanup --yes` after its ends went out but before it confirmed them all; the next cleanup
    ends and settles everything (nothing is left alive or live in the ledger)."""
    import signal
    import subprocess
    import sys

    world = kind(tmp_path, N)
    try:
        ledger_path = tmp_path / "runs" / "ledger.jsonl"
        ledger_for(world, ledger_path)
        world.emu.latency_s = LATENCY_S
        env = {**os.environ, **world.env, "TRAINYARD_LEDGER": str(ledger_path)}
        first = subprocess.Popen([sys.executable, "-m", "invoke", "-r", str(Path(__file__).resolve().parents[1]),
                                  "cleanup", "--yes", "--provider", world.name], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in first.stdout:
            if "instances to end" in line:
                break
        time.sleep(N * LATENCY_S / 4)  # some ends out, none confirmed yet
        first.send_signal(signal.SIGKILL)
        first.wait()
        _seconds, done = invoke("cleanup", "--yes", "--provider", world.name, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert world.live() == 0 and Ledger(ledger_path).live() == []
    finally:
        world.stop()
