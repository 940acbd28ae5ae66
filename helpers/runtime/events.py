"""Progress events: one JSON line each in events.jsonl and, when configured, a POST to the webhook.

The payload is seed 004's: event, message, timestamp, stage, project, repo_id. Secrets are masked first.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from pathlib import Path

from helpers.secrets import redact


class Events:
    def __init__(self, log_path: Path, webhook_url: str | None, project: str, repo_id: str | None):
        self.log_path, self.webhook_url, self.project, self.repo_id = log_path, webhook_url, project, repo_id
        self._lock = threading.Lock()
        self._outbox: queue.Queue[str | None] = queue.Queue()
        self._sender: threading.Thread | None = None

    def emit(self, event: str, message: str, stage: str = "train", **extra) -> dict:
        payload = {
            "event": event,
            "message": redact(message),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "stage": stage,
            "project": self.project,
            "repo_id": self.repo_id,
            **extra,
        }
        body = redact(json.dumps(payload))
        with self._lock:
            with self.log_path.open("a") as log:
                log.write(body + "\n")
            if self.webhook_url:
                if self._sender is None or not self._sender.is_alive():  # the first event, or one after close()
                    self._sender = threading.Thread(target=self._send_all, daemon=True)
                    self._sender.start()
                self._outbox.put(body)
        return payload

    def _send_all(self) -> None:
        """One sender, so the receiver sees events in order; training never waits for it."""
        while (body := self._outbox.get()) is not None:
            request = urllib.request.Request(self.webhook_url, data=body.encode(), headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except OSError:
                pass  # a webhook that is down must never stop training

    def close(self, timeout: float = 15) -> None:
        """Deliver what is queued (the final event matters most), for at most `timeout` seconds."""
        if self._sender is not None and self._sender.is_alive():
            self._outbox.put(None)
            self._sender.join(timeout)
