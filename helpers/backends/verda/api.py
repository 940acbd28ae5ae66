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


# The calls below go through the SDK's HTTP client, not its helpers: the verda SDK 1.25 sends what Verda's OpenAPI
# file does not allow (null `startup_script_id`, `coupon` and `os_volume` on a create; the deprecated `isSpot`
# parameter and `/sshkeys` routes). Trainyard sends only what the file defines.

TAG_KEY = "trainyard"  # every instance Trainyard creates carries the tag trainyard=<its name> (cleanup finds it by it)


def create_instance(verda_client, **fields) -> str:
    """POST /instances with the fields given (None ones left out) and Trainyard's tag; the new instance's id (plain
    text [SRC], or a JSON string as the file's example shows [DOC])."""
    body = {k: v for k, v in fields.items() if v is not None}
    body["tags"] = [{"key": TAG_KEY, "value": body["description"]}]
    return verda_client._http_client.post("/instances", json=body).text.strip().strip('"')


def instances_tagged(verda_client, name: str | None = None) -> list[dict]:
    """GET /instances?tag=trainyard[=<name>]: Trainyard's instances (or the one named so), as the API sends them."""
    tag = f"{TAG_KEY}={name}" if name else TAG_KEY
    return verda_client._http_client.get("/instances", params={"tag": tag}).json()


def availabilities(verda_client, is_spot: bool, location: str | None = None) -> list[dict]:
    """GET /instance-availability: [{location_code, availabilities: [instance type, ...]}]."""
    params = {"is_spot": "true" if is_spot else "false", **({"location_code": location} if location else {})}
    return verda_client._http_client.get("/instance-availability", params=params).json()


def ssh_keys(verda_client) -> list[dict]:
    return verda_client._http_client.get("/ssh-keys").json()


def add_ssh_key(verda_client, name: str, public_key: str) -> str:
    return verda_client._http_client.post("/ssh-keys", json={"name": name, "key": public_key}).text.strip().strip('"')


def volumes(verda_client, status: str | None = None) -> list[dict]:
    """GET /volumes[?status=]: the JSON (the SDK's Volume parses fields the file types differently, such as
    `instances`; Trainyard reads only id, name, size, location, status, is_os_volume, monthly_price, created_at)."""
    return verda_client._http_client.get("/volumes", params={"status": status} if status else None).json()


def volume(verda_client, volume_id: str) -> dict:
    return verda_client._http_client.get("/volumes/{id}", path_params={"id": volume_id}).json()
