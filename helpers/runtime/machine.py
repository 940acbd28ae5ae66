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


RUNPOD_REST_TRIES = 2  # refusals of the REST action before GraphQL is asked too (401/403 go to GraphQL at once)
ALARM_EVERY_S = 300.0  # while every means refuses, the alarm is repeated this often
DEADMAN_FAILED = "cannot end itself"  # in the alarm, so a launcher reading the pod's log knows it


def _runpod_rest_url() -> str:
    return (os.environ.get("RUNPOD_REST_URL") or "https://api.runpod.io").rstrip("/")


def _runpod_graphql_url() -> str:
    """Where this pod's GraphQL is: RUNPOD_GRAPHQL_URL, else RUNPOD_API_BASE_URL + /graphql (the SDK's way)."""
    return os.environ.get("RUNPOD_GRAPHQL_URL") or \
        (os.environ.get("RUNPOD_API_BASE_URL") or "https://api.runpod.io").rstrip("/") + "/graphql"


def _send(request: urllib.request.Request) -> tuple[int, bytes, dict]:
    """(HTTP status, body, headers); an HTTP error is an answer too."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:500], dict(exc.headers or {})


def _runpod_rest(method: str, path: str, key: str, body: dict | None = None) -> tuple[int, bytes, dict]:
    return _send(urllib.request.Request(f"{_runpod_rest_url()}{path}", method=method,
                                        data=json.dumps(body).encode() if body is not None else None,
                                        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}",
                                                 "User-Agent": USER_AGENT}))


def _runpod_graphql(query: str, key: str) -> tuple[bool, str]:
    """(answered without errors, what it said), for one GraphQL request with the pod's key."""
    status, body, _ = _send(urllib.request.Request(_runpod_graphql_url(), method="POST",
                                                data=json.dumps({"query": query}).encode(),
                                                headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}))
    try:
        errors = json.loads(body or b"{}").get("errors")
    except ValueError:
        errors = [{"message": body[:120].decode(errors="replace")}]
    if status == 200 and not errors:
        return True, "ok"
    return False, f"GraphQL HTTP {status}" + (f" {errors[0].get('message', '')[:120]}" if errors else "")


def deadman_runpod(machine: dict) -> str:
    """Whether this pod's own key can reach its pod, asked at start, before anything is at stake: "armed (REST v2)",
    "armed (GraphQL)" or "not armed: ..." (then only the launcher or `invoke cleanup` can end it: said at once)."""
    pod_id, key = os.environ.get("RUNPOD_POD_ID"), os.environ.get("RUNPOD_API_KEY")
    if not pod_id or not key:
        return "not armed: RUNPOD_POD_ID / RUNPOD_API_KEY not in the pod's environment"
    try:
        status, _, _ = _runpod_rest("GET", f"/v2/pods/{pod_id}", key)
        if status == 200:
            return "armed (REST v2)"
        answered, said = _runpod_graphql(f'query {{ pod(input: {{podId: "{pod_id}"}}) {{ id }} }}', key)
    except OSError as exc:
        return f"not armed: RunPod's API did not answer ({type(exc).__name__}: {exc})"
    return "armed (GraphQL)" if answered else f"not armed: REST v2 HTTP {status}, {said}"


def end_runpod(machine: dict, alarm=None) -> str:
    """Terminate (or only stop, with terminate_on_stop false) this pod with the pod-scoped RUNPOD_API_KEY RunPod sets
    in every pod (no account key is shipped), by every means RunPod offers it, in turn:
    1. REST v2 `POST /v2/pods/{RUNPOD_POD_ID}/action`; 429 waits its Retry-After, 5xx and a dropped answer back off;
    2. on 401/403 (nothing documents that the pod's key may use REST v2) or any other refusal past
       RUNPOD_REST_TRIES, GraphQL `podTerminate`/`podStop` with the same key, what `runpodctl remove pod` sends, while
       GraphQL answers.
    A 404 means it is gone already. When every means refuses, `alarm(message)` (the runtime's `deadman_failed`) names
    the pod, its price and the fix, and is repeated every `alarm_every_s` while both are asked again: the pod bills
    meanwhile, so the ender never gives up then. Otherwise it stops trying after `end_retry_s` (default 30 min)."""
    pod_id, key = os.environ.get("RUNPOD_POD_ID"), os.environ.get("RUNPOD_API_KEY")
    if not pod_id or not key:
        return "not ended: RUNPOD_POD_ID / RUNPOD_API_KEY not in the pod's environment"
    wait_for_orchestrator(machine)  # an attached launcher (SSH mode) fetches the outputs and ends the pod itself
    action = "terminate" if machine.get("terminate", True) else "stop"
    mutation = {"terminate": "podTerminate", "stop": "podStop"}[action]
    deadline = time.time() + float(machine.get("end_retry_s", 1800))
    every = float(machine.get("alarm_every_s", ALARM_EVERY_S))
    attempt, refusals, alarmed = 0, 0, None
    while True:
        pause = min(60.0, 2.0 ** attempt)
        try:
            status, body, headers = _runpod_rest("POST", f"/v2/pods/{pod_id}/action", key, {"action": action})
        except (OSError, ValueError) as exc:  # no answer (terminating kills this very process), or a garbled one
            status, body, headers = None, f"{type(exc).__name__}: {exc}".encode(), {}
        if status is not None and 200 <= status < 300:
            return f"{action} sent for pod {pod_id} (REST v2)"
        if status == 404:
            return f"pod {pod_id} is gone already (404)"
        last = f"REST v2 HTTP {status} {body[:200]!r}" if status else body.decode(errors="replace")
        if status == 429:
            pause = _retry_after(headers.get("Retry-After"), pause)
        refused = status in (401, 403) or (status is not None and 400 <= status < 500 and status != 429)
        refusals += refused
        if status in (401, 403) or refusals >= RUNPOD_REST_TRIES:
            try:
                answered, said = _runpod_graphql(f'mutation {{ {mutation}(input: {{podId: "{pod_id}"}}) }}', key)
            except OSError as exc:
                answered, said = False, f"GraphQL unreachable ({type(exc).__name__})"
            if answered:
                return f"{action} sent for pod {pod_id} (GraphQL {mutation}; REST v2 refused: {last[:120]})"
            last = f"{last}; {said}"
            if alarm is not None and (alarmed is None or time.time() - alarmed >= every):
                alarm(f"pod {pod_id} {DEADMAN_FAILED}: its own key was refused by every means ({last[:300]}); it "
                      f"bills until someone ends it: run `invoke cleanup` (or `invoke runpod.stop --pod-id {pod_id}`)")
                alarmed = time.time()
        if time.time() > deadline and alarmed is None:
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


def end_verda(machine: dict, alarm=None) -> str:
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
            if alarm is not None:
                alarm(f"Verda instance {name} could not delete itself ({last[:300]}); it bills until someone deletes "
                      "it: run `invoke cleanup`")
            return f"could not delete Verda instance {name}: {last}"
        print(f"[trainyard] deleting this instance: {last} — retrying", flush=True)
        time.sleep(min(60.0, 2.0 ** attempt))
        attempt += 1


ENDERS = {"runpod": end_runpod, "verda": end_verda}
ARMING = {"runpod": deadman_runpod}


def end_machine(machine: dict, alarm=None) -> str:
    """End this machine if its backend can; returns what happened, for the log. `alarm(message)`: called when
    every means of ending it refuses (and again while that lasts), where the backend has several."""
    ender = ENDERS.get(machine.get("kind", "local"))
    if ender is None:
        return f"nothing to end on a {machine.get('kind', 'local')} machine"
    try:
        return ender(machine, alarm)
    except OSError as exc:
        return f"could not end the machine: {exc}"


def deadman(machine: dict) -> str | None:
    """Whether the machine can end itself, asked at start where the backend can say ("armed ..."/"not armed: ...")."""
    check = ARMING.get(machine.get("kind", "local"))
    return check(machine) if check else None
