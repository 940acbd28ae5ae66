"""Verda's API as Trainyard uses it: the real `verda` SDK (VerdaClient), its errors classified (Transient: worth
repeating; ProviderError: one line), at https://api.verda.com/v1 unless VERDA_BASE_URL says otherwise (tests: the
emulator). Credentials: VERDA_CLIENT_ID / VERDA_CLIENT_SECRET (or the seed's DATACRUNCH_*), from the environment or
.env."""

from __future__ import annotations

import json

from helpers.backends.provider import Transient, call, translated
from helpers.errors import ProviderError
from helpers.workspace import current

DEFAULT_BASE_URL = "https://api.verda.com/v1"
TRANSIENT_CODES = ("server_error", "too_many_requests", "rate_limited")


def client():
    """The real VerdaClient (it authenticates at once)."""
    from verda import VerdaClient

    secrets = current().secrets
    client_id = secrets.require("VERDA_CLIENT_ID", "to talk to the Verda API")
    client_secret = secrets.require("VERDA_CLIENT_SECRET", "to talk to the Verda API")
    base = base_url()
    return call(api, VerdaClient, client_id, client_secret, base_url=base, what=f"connecting to {base}", attempts=3)


def base_url() -> str:
    return current().setting("VERDA_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def _classify(exc: BaseException, what: str) -> BaseException:
    """SDK error -> Transient (worth repeating) or ProviderError (one line, final)."""
    import requests
    from verda.exceptions import APIException

    if isinstance(exc, APIException):
        message = exc.message or ""
        if exc.code in TRANSIENT_CODES or (exc.code == "service_unavailable" and "capacity" not in message.lower()):
            return Transient(f"Verda: {message} ({exc.code})")
        return ProviderError(f"{what}: Verda says: {message} ({exc.code})")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, json.JSONDecodeError)):
        return Transient(f"Verda API unreachable or garbled ({type(exc).__name__}: {str(exc)[:200]})")
    return exc


def api(fn, *args, what: str = "Verda API call", **kwargs):
    with translated(_classify, what):
        return fn(*args, **kwargs)


def refusal_of(exc: BaseException) -> str:
    """The message of the Verda API error behind a classified one (lower case), or ''."""
    return str(getattr(exc.__cause__, "message", "") or "").lower()
