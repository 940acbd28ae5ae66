"""Every instance Trainyard creates, recorded before the create call returns, until the provider confirms its end.

An append-only JSON-lines file (runs/ledger.jsonl): a crash leaves the last entry standing, so
`invoke cleanup` still finds the instance. The newest line per (provider, id) is its current state.

A year of sweeps makes that file long. `compact()` folds the instances that have ended into the history file
(runs/ledger.history.jsonl, one merged line per instance) and rewrites the ledger with only the live and
uncertain ones. It never loses a line, whenever it is killed: the history is appended (and synced) before the
ledger is replaced, the ledger is replaced whole (os.replace of a synced copy), and a reader merges both, taking
the ledger's lines over the history's and skipping a history line cut by a crash. Every writer and the compaction
take one lock file (runs/ledger.lock), so no append can land in a file being replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

LIVE_STATES = ("creating", "running", "stopped", "unknown")
COMPACT_AT_BYTES = 256 * 1024  # `maybe_compact` folds ended instances away beyond this (~1,000 lines)


class Ledger:
    def __init__(self, path: str | Path):
        """`path`: the workspace's (helpers.workspace.current().ledger is the one a task uses)."""
        self.path = Path(path)
        self.history_path = self.path.with_name(self.path.stem + ".history.jsonl")
        self.lock_path = self.path.with_name(self.path.stem + ".lock")

    @contextmanager
    def _locked(self, exclusive: bool):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def record(self, provider: str, key: str, state: str, **fields) -> dict:
        """Append one state change of instance `key` (Trainyard's name for it); on disk before returning."""
        entry = {"provider": provider, "id": key, "state": state, "time": time.time(), **fields}
        with self._locked(exclusive=True), self.path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    @staticmethod
    def _merge(path: Path, into: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict]:
        if not path.exists():
            return into
        with path.open() as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash mid-write
                key = (entry["provider"], entry["id"])
                into[key] = {**into.get(key, {}), **entry}
        return into

    def entries(self, history: bool = True) -> dict[tuple[str, str], dict]:
        """Current view: (provider, id) -> the merged fields of all its lines, newest state last. `history=False`:
        only the ledger file (every live or uncertain instance is there; ended ones may have been folded away)."""
        with self._locked(exclusive=False):
            merged = self._merge(self.history_path, {}) if history else {}
            return self._merge(self.path, merged)

    def live(self, provider: str | None = None) -> list[dict]:
        return [e for (p, _), e in self.entries(history=False).items()
                if e["state"] in LIVE_STATES and provider in (None, p)]

    def of_run(self, run_id: str, since: float = 0.0) -> list[dict]:
        """Every instance of one run (oldest first); `since`: only those created from then on."""
        found = [e for e in self.entries().values()
                 if e.get("run_id") == run_id and (e.get("created") or e["time"]) >= since]
        return sorted(found, key=lambda e: e.get("created") or e["time"])

    def compact(self) -> int:
        """Fold every ended instance into the history; the ledger keeps the live and uncertain ones. Returns how many
        were folded. Safe to kill at any point (see the module docstring)."""
        with self._locked(exclusive=True):
            merged = self._merge(self.path, {})
            ended = [e for e in merged.values() if e["state"] not in LIVE_STATES]
            if not ended:
                return 0
            with self.history_path.open("a") as history:
                history.writelines(json.dumps(e) + "\n" for e in ended)
                history.flush()
                os.fsync(history.fileno())
            fresh = self.path.with_name(self.path.name + ".compacting")
            with fresh.open("w") as handle:
                handle.writelines(json.dumps(e) + "\n" for e in merged.values() if e["state"] in LIVE_STATES)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(fresh, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            return len(ended)

    def maybe_compact(self) -> int:
        """Compact when the ledger has grown past COMPACT_AT_BYTES (cheap to call: one stat)."""
        try:
            big = self.path.stat().st_size > COMPACT_AT_BYTES
        except FileNotFoundError:
            return 0
        return self.compact() if big else 0


def spend_of(entry: dict, now: float | None = None) -> float:
    """USD an instance has cost so far: its price x the time from its create call to its end (to now while it
    lives). A create that failed cost nothing; a stopped pod is counted until it stopped (its disk bills on, at a
    storage price the ledger does not know)."""
    now = time.time() if now is None else now
    price = float(entry.get("price_per_hour") or 0)
    start = entry.get("created") or entry.get("time")
    if entry.get("state") == "failed" or not price or not start:
        return 0.0
    live = entry.get("state") in LIVE_STATES and entry.get("state") != "stopped"
    end = now if live else (entry.get("ended") or entry.get("time") or now)
    return max(0.0, end - start) * price / 3600
