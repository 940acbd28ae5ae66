"""Every instance Trainyard creates, recorded before the create call returns, until the provider confirms its end.

An append-only JSON-lines file (runs/ledger.jsonl): a crash leaves the last entry standing, so
`invoke cleanup` still finds the instance. The newest line per (provider, id) is its current state.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

LIVE_STATES = ("creating", "running", "stopped", "unknown")
DEFAULT_PATH = Path(os.environ.get("TRAINYARD_LEDGER", "runs/ledger.jsonl"))


class Ledger:
    def __init__(self, path: Path | None = None):
        self.path = Path(path or os.environ.get("TRAINYARD_LEDGER") or DEFAULT_PATH)

    @contextmanager
    def _locked(self, mode: str):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open(mode) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if "a" in mode else fcntl.LOCK_SH)
            yield handle

    def record(self, provider: str, key: str, state: str, **fields) -> dict:
        """Append one state change of instance `key` (Trainyard's name for it); on disk before returning."""
        entry = {"provider": provider, "id": key, "state": state, "time": time.time(), **fields}
        with self._locked("a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def entries(self) -> dict[tuple[str, str], dict]:
        """Current view: (provider, id) -> the merged fields of all its lines, newest state last."""
        if not self.path.exists():
            return {}
        merged: dict[tuple[str, str], dict] = {}
        with self._locked("r") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash mid-write
                key = (entry["provider"], entry["id"])
                merged[key] = {**merged.get(key, {}), **entry}
        return merged

    def live(self, provider: str | None = None) -> list[dict]:
        return [e for (p, _), e in self.entries().items() if e["state"] in LIVE_STATES and provider in (None, p)]

    def of_run(self, run_id: str, since: float = 0.0) -> list[dict]:
        """Every instance of one run (oldest first); `since`: only those created from then on."""
        found = [e for e in self.entries().values()
                 if e.get("run_id") == run_id and (e.get("created") or e["time"]) >= since]
        return sorted(found, key=lambda e: e.get("created") or e["time"])


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
