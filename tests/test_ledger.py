"""The ledger at lab scale: compaction folds ended instances into the history without ever losing a live or
uncertain line, whenever it is killed, and with writers appending meanwhile."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.ledger import LIVE_STATES, Ledger

REPO = Path(__file__).resolve().parents[1]


def long_ledger(path: Path, instances: int, live_every: int = 50, seed: int = 3) -> Ledger:
    """`instances` instances of a year of sweeps: creating -> running -> terminated (3 lines each), every
    `live_every`-th still running, some uncertain ('unknown')."""
    rng = random.Random(seed)
    t = 1.7e9
    with path.open("w") as f:
        for i in range(instances):
            key, provider = f"ty-run{i // 4}-{i:06d}", rng.choice(["runpod", "verda"])
            base = {"provider": provider, "id": key, "run_id": f"run{i // 4}"}
            f.write(json.dumps({**base, "state": "creating", "time": t, "created": t, "price_per_hour": 2.0}) + "\n")
            f.write(json.dumps({**base, "state": "running", "time": t + 5, "instance_id": f"i-{i}"}) + "\n")
            if i % live_every == 0:
                continue
            end = "unknown" if i % live_every == 1 else "terminated"
            f.write(json.dumps({**base, "state": end, "time": t + 600, "ended": t + 600}) + "\n")
            t += 30
    return Ledger(path)


def view(ledger: Ledger) -> dict:
    return {k: (e["state"], e.get("instance_id")) for k, e in ledger.entries().items()}


def test_compaction_folds_ended_instances_and_keeps_every_live_and_uncertain_one(tmp_path):
    ledger = long_ledger(tmp_path / "ledger.jsonl", 3000)
    before, live_before = view(ledger), sorted(e["id"] for e in ledger.live())
    lines_before = len(ledger.path.read_text().splitlines())
    folded = ledger.compact()
    assert folded == sum(1 for state, _ in before.values() if state not in LIVE_STATES)
    assert view(ledger) == before and sorted(e["id"] for e in ledger.live()) == live_before
    kept = ledger.path.read_text().splitlines()
    assert len(kept) == len(live_before) < lines_before / 10  # one merged line per live or uncertain instance
    assert {json.loads(line)["state"] for line in kept} <= set(LIVE_STATES)
    assert ledger.compact() == 0  # nothing more to fold
    ledger.record("runpod", "ty-new", "creating", run_id="new")
    assert view(ledger)[("runpod", "ty-new")] == ("creating", None)
    assert ledger.maybe_compact() == 0  # small again: not compacted


COMPACT = "import sys; from helpers.ledger import Ledger; Ledger(sys.argv[1]).compact()"


@pytest.mark.slow  # kills a compaction at every point: seconds
def test_a_compaction_killed_at_any_point_loses_nothing(tmp_path):
    """SIGKILL the compacting process after random delays (before, during and after each write); the view of
    every instance, live or ended, stays what it was, and the next compaction finishes the job."""
    rng = random.Random(11)
    original = long_ledger(tmp_path / "source.jsonl", 20000)
    before = view(original)
    killed_mid = 0
    for trial in range(12):
        work = tmp_path / f"t{trial}"
        work.mkdir()
        path = work / "ledger.jsonl"
        path.write_bytes(original.path.read_bytes())
        child = subprocess.Popen([sys.executable, "-c", COMPACT, str(path)], cwd=REPO)
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        ledger = Ledger(path)
        killed_mid += ledger.history_path.exists() and path.stat().st_size == original.path.stat().st_size
        assert view(ledger) == before, f"trial {trial}: the view changed after a kill"
        ledger.compact()
        assert view(ledger) == before
    print(f"\n12 kills; {killed_mid} landed after the history was written and before the ledger was replaced")


def test_writers_append_while_a_compaction_runs_and_no_line_is_lost(tmp_path):
    ledger = long_ledger(tmp_path / "ledger.jsonl", 20000)
    writer = subprocess.Popen([sys.executable, "-c",
                               "import sys; from helpers.ledger import Ledger\n"
                               "l = Ledger(sys.argv[1])\n"
                               "for i in range(300): l.record('verda', f'ty-w-{i}', 'creating', run_id='w')\n",
                               str(ledger.path)], cwd=REPO)
    compactions = 0
    while writer.poll() is None:
        ledger.compact()
        compactions += 1
    assert writer.returncode == 0
    written = {k for k in ledger.entries() if k[1].startswith("ty-w-")}
    assert len(written) == 300 and compactions >= 1
    assert {e["id"] for e in ledger.live() if e["id"].startswith("ty-w-")} == {k[1] for k in written}


def test_invoke_status_pages_a_long_ledger_and_compacts_it(tmp_path):
    path = tmp_path / "runs" / "ledger.jsonl"
    path.parent.mkdir()
    ledger = long_ledger(path, 4000)
    env = {**os.environ, "HOME": str(tmp_path), "TRAINYARD_LEDGER": str(path), "RUNPOD_API_KEY": "", "VERDA_CLIENT_ID": ""}
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "status"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "older runs" in done.stdout and "invoke status --all" in done.stdout
    assert "more live instances" in done.stdout and "/h together" in done.stdout  # money is never hidden: counted
    runs_table = done.stdout.split("live instances")[0]
    assert "run999" in runs_table and "run0 " not in runs_table  # the newest runs, not the oldest
    assert ledger.history_path.exists() and path.stat().st_size < 64 * 1024  # compacted
    everything = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "status", "--all"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=120)
    assert "run0 " in everything.stdout.split("live instances")[0] and "older runs" not in everything.stdout
