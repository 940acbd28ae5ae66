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


def _graphql(base: str, key: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base.rstrip('/')}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def end_runpod(machine: dict) -> str:
    """Terminate (or only stop, with terminate_on_stop false) this pod with the pod-scoped key RunPod injects."""
    pod_id, key = os.environ.get("RUNPOD_POD_ID"), os.environ.get("RUNPOD_API_KEY")
    if not pod_id or not key:
        return "not ended: RUNPOD_POD_ID / RUNPOD_API_KEY not in the pod's environment"
    wait_for_orchestrator(machine)  # an attached launcher (SSH mode) fetches the outputs and ends the pod itself
    base = os.environ.get("RUNPOD_API_BASE_URL", "https://api.runpod.io")
    verb = "podTerminate" if machine.get("terminate", True) else "podStop"
    fields = "" if verb == "podTerminate" else " { id desiredStatus }"
    last: object = None
    for attempt in range(5):  # 429/5xx (HTTP, or a GraphQL error saying so) are repeated; the pod must end
        try:
            answer = _graphql(base, key, f'mutation {{ {verb}(input: {{podId: "{pod_id}"}}){fields} }}')
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code not in (408, 429) and exc.code < 500:
                return f"RunPod refused {verb} for pod {pod_id}: {last}"
        except (OSError, ValueError) as exc:  # no answer (terminating kills this very process), or a garbled one
            last = exc
        else:
            errors = answer.get("errors") or []
            message = str((errors[0] or {}).get("message", "")) if errors else ""
            if not errors or "not found" in message.lower():
                return f"{verb} sent for pod {pod_id}"
            last = message
            if not any(word in message for word in ("429", "500", "502", "503", "504", "Too Many", "Unavailable")):
                return f"RunPod refused {verb} for pod {pod_id}: {message[:200]}"
        time.sleep(2 ** attempt)
    return f"could not {verb} pod {pod_id}: {last}"


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


def end_verda(machine: dict) -> str:
    """Delete this Verda instance (volumes per `machine["volume_ids"]`, default [] = all kept, detached).

    The emulator gives each instance VERDA_INSTANCE_ID, VERDA_API_BASE and VERDA_INSTANCE_TOKEN (a token that may
    only read or end that one instance) and this sends the real API's request with it. A real Verda VM has no
    such token, and Verda has no narrowly scoped keys, so Trainyard never ships credentials there: without the
    token the fallback is `shutdown -h now` (training stops; whether a shut-down instance still bills is not
    documented, so the launcher or `invoke cleanup` deletes it). See helpers/backends/verda_instances.py."""
    wait_for_orchestrator(machine)  # attached launcher: it fetches the outputs and ends the machine (or goes away)
    instance_id, base, token = (os.environ.get(n) for n in ("VERDA_INSTANCE_ID", "VERDA_API_BASE", "VERDA_INSTANCE_TOKEN"))
    if instance_id and base and token:
        volumes = machine.get("volume_ids", [])
        body = json.dumps({"id": [instance_id], "action": "delete", "volume_ids": volumes}).encode()
        last: Exception | None = None
        for attempt in range(5):
            request = urllib.request.Request(f"{base.rstrip('/')}/instances", data=body, method="PUT", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=30):
                    pass
                break
            except urllib.error.HTTPError as exc:
                last = exc
                if exc.code not in (408, 429) and exc.code < 500:
                    return f"Verda refused to delete instance {instance_id}: HTTP {exc.code} {exc.read()[:200]!r}"
            except OSError as exc:  # the answer may never come: deleting kills this very process
                last = exc
            time.sleep(2 ** attempt)
        else:
            return f"could not delete Verda instance {instance_id}: {last}"
        kept = "all volumes kept (detached)" if volumes == [] else f"volumes {volumes} deleted"
        return f"delete sent for Verda instance {instance_id} ({kept})"
    if machine.get("shutdown_fallback", True):
        import subprocess

        done = subprocess.run(["shutdown", "-h", "now"], capture_output=True, text=True)
        if done.returncode == 0:
            return "no instance token on this VM: `shutdown -h now` sent; the launcher or `invoke cleanup` deletes it"
        return f"could not shut down: {done.stderr.strip()[-200:]}"
    return "not ended: no VERDA_INSTANCE_TOKEN and shutdown_fallback is off"


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
