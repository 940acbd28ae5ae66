"""Ending the machine the runtime runs on: the dead-man that works with the laptop closed.

Each backend says in the job document how its machine ends (`machine.kind`); the runtime calls that at the
end of the job (unless `limits.end_when_done` is false) and at the time limit or budget.
"""

from __future__ import annotations

import json
import os
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
    base = os.environ.get("RUNPOD_API_BASE_URL", "https://api.runpod.io")
    verb = "podTerminate" if machine.get("terminate", True) else "podStop"
    fields = "" if verb == "podTerminate" else " { id desiredStatus }"
    _graphql(base, key, f'mutation {{ {verb}(input: {{podId: "{pod_id}"}}){fields} }}')
    return f"{verb} sent for pod {pod_id}"


ENDERS = {"runpod": end_runpod}


def end_machine(machine: dict) -> str:
    """End this machine if its backend can; returns what happened, for the log."""
    ender = ENDERS.get(machine.get("kind", "local"))
    if ender is None:
        return f"nothing to end on a {machine.get('kind', 'local')} machine"
    try:
        return ender(machine)
    except OSError as exc:
        return f"could not end the machine: {exc}"
