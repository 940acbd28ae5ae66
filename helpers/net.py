"""Is a provider's API reachable at all? A plan (and `--dry-run`) must not spend half a minute retrying a
network that is not there: one TCP connect with a short timeout says so, and the plan uses the dated price table."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the URL's host opens within `timeout`, else why not (one short phrase)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return f"no host in {url!r}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"cannot resolve {host} (no network?)"
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or type(exc).__name__})"
