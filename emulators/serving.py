"""The HTTP server the emulators share."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on loopback whose clients may vanish mid-request (a preempted instance dies with its
    uploads open): a dropped connection is normal here, not a traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
