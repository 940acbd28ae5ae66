"""Ending the machine the runtime runs on: the dead-man that works with the laptop closed.

Each backend says in the job document how its machine ends (`machine.kind`); the runtime calls that at the
end of the job (unless `limits.end_when_done` is false) and at the time limit or budget.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

USER_AGENT = "trainyard-runtime (dead-man)"


def end_runpod(machine: dict) -> str:
    """Terminate (or only stop, with terminate_on_stop false) this pod through RunPod's REST API v2
    (`POST /v2/pods/{RUNPOD_POD_ID}/action`), with the pod-scoped RUNPOD_API_KEY RunPod sets in every pod: no
    account key is shipped, and GraphQL (retired in 2027) is not needed. 429 waits its Retry-After, 5xx and a
    dropped answer back off; any other refusal is logged and tried again with backoff until `end_retry_s`
    (default 30 min) has passed — never dropped, or the pod would bill. A 404 means it is gone already."""
    pod_id, key = os.environ.get("RUNPOD_POD_ID"), os.environ.get("RUNPOD_API_KEY")
    if not pod_id or not key:
        return "not ended: RUNPOD_POD_ID / RUNPOD_API_KEY not in the pod's environment"
    wait_for_orchestrator(machine)  # an attached launcher (SSH mode) fetches the outputs and ends the pod itself
    base = (os.environ.get("RUNPOD_REST_URL") or "https://api.runpod.io").rstrip("/")
    action = "terminate" if machine.get("terminate", True) else "stop"
    deadline = time.time() + float(machine.get("end_retry_s", 1800))
    attempt, last = 0, ""
    while True:
        request = urllib.request.Request(f"{base}/v2/pods/{pod_id}/action", method="POST",
                                         data=json.dumps({"action": action}).encode(),
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}",
                                                  "User-Agent": USER_AGENT})
        pause = min(60.0, 2.0 ** attempt)
        try:
            with urllib.request.urlopen(request, timeout=30):
                return f"{action} sent for pod {pod_id} (REST v2)"
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return f"pod {pod_id} is gone already (404)"
            last = f"HTTP {exc.code} {exc.read()[:200]!r}"
            if exc.code == 429:
                pause = _retry_after(exc.headers.get("Retry-After"), pause)
        except (OSError, ValueError) as exc:  # no answer (terminating kills this very process), or a garbled one
            last = f"{type(exc).__name__}: {exc}"
        if time.time() > deadline:
            return f"could not {action} pod {pod_id}: {last}"
        print(f"[trainyard] ending this pod: {last} — retrying in {pause:.0f}s", flush=True)
        time.sleep(pause)
        attempt += 1


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, min(300.0, float(value))) if value else default
    except ValueError:
        return default


def wait_for_orchestrator(machine: dict) -> float:
    """While a launcher follows the run it touches `machine["heartbeat_file"]` on this host; a fresh heartbeat
    means it is fetching the outputs and will end the machine itself. Wait while the heartbeat is younger than
    `heartbeat_stale_s`, at most `orchestrator_grace_s`; returns the seconds waited (0: nobody attached)."""
    path = machine.get("heartbeat_file")
    if not path:
        return 0.0
    stale, grace = float(machine.get("heartbeat_stale_s", 60)), float(machine.get("orchestrator_grace_s", 900))
    started = time.time()
    while time.time() - started < grace:
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError:
            break  # never attached, or detached (the file is removed)
        if age > stale:
            break
        time.sleep(2)
    return time.time() - started


VERDA_CREDENTIALS = ("VERDA_CLIENT_ID", "VERDA_CLIENT_SECRET")
_held: dict[str, str] = {}  # the account credentials, out of os.environ so the trainer never inherits them


def hold_credentials(environ) -> None:
    """Take the Verda account credentials out of the environment (the trainer is started from it) and keep them
    for the ender. Called once at start-up, after the host's .env was read."""
    for name in VERDA_CREDENTIALS:
        if environ.get(name):
            _held[name] = environ.pop(name)


def _verda(base: str, method: str, path: str, body: dict | None = None, token: str | None = None):
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base.rstrip('/')}{path}", method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read() or b"null")


def _delete_verda_instance(base: str, name: str, volume_ids: list) -> str | None:
    """One try with the real API (client credentials -> token -> find by name -> PUT /instances delete); None
    when the delete was accepted (or the instance is gone), else why not."""
    _, token = _verda(base, "POST", "/oauth2/token", {"grant_type": "client_credentials",
                                                        "client_id": _held["VERDA_CLIENT_ID"],
                                                        "client_secret": _held["VERDA_CLIENT_SECRET"]})
    token = token["access_token"]
    _, listed = _verda(base, "GET", "/instances", token=token)
    mine = [i for i in listed or [] if name in (i.get("hostname"), i.get("description"))
            and i.get("status") not in ("discontinued", "deleting", "deleted")]
    if not mine:
        return None
    status, results = _verda(base, "PUT", "/instances", {"id": [mine[0]["id"]], "action": "delete",
                                                         "volume_ids": volume_ids}, token)
    failed = [r for r in results or [] if isinstance(r, dict) and r.get("status") not in (None, "success")]
    if status == 207 or failed:  # a 2xx that failed for our id [DOC Go SDK]; the Python SDK would miss it
        return f"Verda answered {status}: {(failed or [{}])[0].get('error') or results}"
    return None


def end_verda(machine: dict) -> str:
    """Delete this Verda instance through Verda's real API, with the account's client credentials that the
    launcher put in this host's .env (`verda.deadman: account`; Verda has no narrower credential). Volumes per
    `machine["volume_ids"]` (default [] = all kept, detached). 429, 5xx, a dropped answer and any refusal are
    tried again with backoff for `machine["end_retry_s"]` (default 30 min): a Verda instance bills until deleted,
    also when it is only shut down, so shutdown is no way to end one. With `verda.deadman: launcher` no
    credential is here: the launcher (or `invoke cleanup`) deletes it."""
    wait_for_orchestrator(machine)  # attached launcher: it fetches the outputs and ends the machine (or goes away)
    name = machine.get("instance_name")
    if machine.get("deadman") == "launcher" or not all(_held.get(n) for n in VERDA_CREDENTIALS) or not name:
        return ("not ended: verda.deadman is launcher (no credentials on this instance) — it bills until the launcher "
                "or `invoke cleanup` deletes it")
    base = machine.get("api_base") or "https://api.verda.com/v1"
    deadline = time.time() + float(machine.get("end_retry_s", 1800))
    attempt, last = 0, ""
    while True:
        try:
            refused = _delete_verda_instance(base, name, machine.get("volume_ids", []))
            if refused is None:
                return f"delete sent for Verda instance {name} through the API (account credentials)"
            last = refused
        except urllib.error.HTTPError as exc:  # 4xx included: logged and tried again, never dropped
            last = f"HTTP {exc.code} {exc.read()[:200]!r}"
        except (OSError, ValueError, KeyError) as exc:  # the answer may never come: deleting kills this very process
            last = f"{type(exc).__name__}: {exc}"
        if time.time() > deadline:
            return f"could not delete Verda instance {name}: {last}"
        print(f"[trainyard] deleting this instance: {last} — retrying", flush=True)
        time.sleep(min(60.0, 2.0 ** attempt))
        attempt += 1


ENDERS = {"runpod": end_runpod, "verda": end_verda}


def end_machine(machine: dict) -> str:
    """End this machine if its backend can; returns what happened, for the log."""
    ender = ENDERS.get(machine.get("kind", "local"))
    if ender is None:
        return f"nothing to end on a {machine.get('kind', 'local')} machine"
    try:
        return ender(machine)
    except OSError as exc:
        return f"could not end the machine: {exc}"
