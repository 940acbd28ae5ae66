"""Checkpoint sync while training runs: newest complete checkpoint wins, uploads never block training.

A watcher thread looks for new complete checkpoints every `poll_seconds` (cheap: one directory listing),
and one uploader thread publishes the newest one to the store. A checkpoint that appears while an upload
runs replaces any still-waiting one, so a slow store never builds a queue.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable


class CheckpointSync:
    def __init__(self, list_checkpoints: Callable[[], list[tuple[int, Path]]], store, keep: int,
                 on_synced: Callable[[int, float], None], on_error: Callable[[int, Exception], None],
                 poll_seconds: float = 2.0, watch: bool = True):
        self.list_checkpoints, self.store, self.keep = list_checkpoints, store, keep
        self.on_synced, self.on_error, self.poll_seconds = on_synced, on_error, poll_seconds
        self.synced_step: int | None = None
        self._pending: tuple[int, Path] | None = None
        self._seen: int | None = None
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        # Without `watch` (upload_every_save: false) only finish() publishes: once, at the end.
        self._threads = [threading.Thread(target=self._upload, daemon=True)]
        if watch:
            self._threads.append(threading.Thread(target=self._watch, daemon=True))

    def start(self, already_synced: int | None = None) -> "CheckpointSync":
        self.synced_step = self._seen = already_synced
        for thread in self._threads:
            thread.start()
        return self

    def check_now(self) -> None:
        """Queue the newest complete checkpoint if it is newer than anything seen."""
        found = self.list_checkpoints()
        if found and (self._seen is None or found[-1][0] > self._seen):
            with self._wake:
                self._seen = found[-1][0]
                self._pending = found[-1]
                self._wake.notify_all()

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            self.check_now()

    def _upload(self) -> None:
        try:  # Linux threads have their own niceness: the trainer keeps the CPU when both want it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            with self._wake:
                while self._pending is None and not self._stopping.is_set():
                    self._wake.wait()
                if self._pending is None:
                    return
                step, path = self._pending
                self._pending = None
            started = time.monotonic()
            try:
                self.store.publish(path, step, keep=self.keep)
            except Exception as exc:  # a failed upload is retried with the next checkpoint or at the final sync
                self._seen = self.synced_step
                self.on_error(step, exc)
                continue
            self.synced_step = step
            self.on_synced(step, time.monotonic() - started)

    def finish(self, timeout: float | None = None) -> int | None:
        """Final sync: publish the newest checkpoint, wait for the uploader, stop the threads."""
        self.check_now()
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        found = self.list_checkpoints()
        if found and (self.synced_step is None or found[-1][0] > self.synced_step):
            step, path = found[-1]  # the last upload failed: one more, in the foreground
            self.store.publish(path, step, keep=self.keep)
            self.synced_step = step
            self.on_synced(step, 0.0)
        return self.synced_step
