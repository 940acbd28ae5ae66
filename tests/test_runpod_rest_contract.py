"""The pod's own dead-man speaks RunPod's REST API v2, checked against RunPod's own OpenAPI file
(tests/reference/runpod-rest-v2.openapi.json): every request it sends and every answer the emulator gives is
validated against the file's schemas (JSON Schema 2020-12 with the file's $refs), so a field the real API would
reject, or an answer shape it never sends, fails here — also against an independent server built from the file."""

from __future__ import annotations

import threading
import time

import pytest

from helpers.runtime.machine import deadman_runpod, end_runpod
from tests.openapi_contract import RUNPOD, runpod_exchanges

GPU = "NVIDIA GeForce RTX 4090"

pytestmark = pytest.mark.slow  # the pods are sshd hosts


def check_call(call: dict) -> None:
    problems = RUNPOD.violations({"http": "POST", **call})
    assert not problems, problems


@pytest.fixture
def pod(runpod_emulator, runpod_sdk, monkeypatch):
    """A running pod (API-only host), and this process inside it: its RUNPOD_POD_ID, its pod-scoped key."""
    created = runpod_sdk.create_pod(name="ty-rest-abc123", image_name="runpod/pytorch", gpu_type_id=GPU)
    view = runpod_emulator.pod(created["id"])
    monkeypatch.setenv("RUNPOD_POD_ID", created["id"])
    monkeypatch.setenv("RUNPOD_API_KEY", view["podKey"])
    monkeypatch.setenv("RUNPOD_REST_URL", runpod_emulator.url)
    runpod_emulator.reset_calls()
    return created["id"]


def rest_calls(emu) -> list[dict]:
    return [c for c in emu.calls if c.get("rest")]


def test_the_dead_man_terminates_its_pod_through_rest_v2_with_its_own_key(runpod_emulator, pod):
    note = end_runpod({"terminate": True})
    assert note == f"terminate sent for pod {pod} (REST v2)"
    assert runpod_emulator.pod(pod)["status"] == "TERMINATED"
    (call,) = rest_calls(runpod_emulator)
    assert call["key"] == "pod" and call["status"] == 204 and call["path"] == f"/v2/pods/{pod}/action"
    check_call(call)
    assert [c for c in runpod_emulator.calls if not c.get("rest")] == []  # no GraphQL at all


def test_stop_answers_the_pod_and_rate_limits_are_waited_out(runpod_emulator, pod):
    runpod_emulator.fail_next(1, 429, op="podAction:stop")  # RateLimit: the answer says when to come back
    note = end_runpod({"terminate": False, "end_retry_s": 60})
    assert note == f"stop sent for pod {pod} (REST v2)"
    assert runpod_emulator.pod(pod)["status"] == "EXITED"
    calls = rest_calls(runpod_emulator)
    assert [c["status"] for c in calls] == [429, 200]
    for call in calls:
        check_call(call)  # the 429's RFC 7807 body and the 200's Pod, each against the file's schemas
    assert calls[1]["response"]["status"] == "EXITED" and "start" in calls[1]["response"]["actions"]
    # the pod's key acts on its own pod only; an action its status does not allow is a 409
    runpod_emulator.reset_calls()
    assert end_runpod({"terminate": False, "end_retry_s": 0}).startswith("could not stop")
    (conflict,) = rest_calls(runpod_emulator)
    assert conflict["status"] == 409
    check_call(conflict)


def test_a_gone_pod_counts_as_ended_and_a_5xx_is_tried_again(runpod_emulator, pod):
    runpod_emulator.fail_next(2, 503, op="podAction:terminate")
    assert end_runpod({"terminate": True, "end_retry_s": 60}).startswith("terminate sent")
    assert [c["status"] for c in rest_calls(runpod_emulator)] == [503, 503, 204]
    for call in rest_calls(runpod_emulator):
        check_call(call)
    assert end_runpod({"terminate": True}) == f"pod {pod} is gone already (404)"
    check_call(rest_calls(runpod_emulator)[-1])


def test_a_field_the_real_api_would_reject_fails_the_contract_check(runpod_emulator, pod):
    """The check is not a formality: a request with a field REST v2 does not define is caught."""
    bad = {"path": f"/v2/pods/{pod}/action", "request": {"action": "terminate", "force": True}, "status": 204,
           "response": None}
    with pytest.raises(AssertionError, match="Additional properties"):
        check_call(bad)
    with pytest.raises(AssertionError):
        check_call({**bad, "request": {"action": "terminate"}, "status": 202})  # not listed: only an error body fits
    with pytest.raises(AssertionError, match="not an operation"):
        RUNPOD.operation("POST", f"/v2/pods/{pod}/terminate")


def test_a_wrong_field_in_a_request_trainyard_sends_fails_the_check_every_runpod_test_runs(runpod_emulator, monkeypatch):
    """The launcher's own createPod, with one field injected that REST v2 does not define (GraphQL's name for the
    GPU), is flagged by the check tests/fixtures_runpod.py runs over every emulator's calls; so is an answer shape
    the real API never sends, and a query parameter it does not have."""
    from helpers.backends.runpod.api import RunPodApi

    api = RunPodApi(runpod_emulator.api_key, runpod_emulator.url)
    body = {"name": "x [ty-x-abc123]", "image": "runpod/pytorch", "gpu": {"id": GPU, "count": 1}, "disk": 20}
    api.create(body)
    api.create({**body, "gpuTypeId": GPU})
    listed = api.pods()
    good, wrong, answer = [c for c in runpod_emulator.calls if c["field"] in ("createPod", "listPods")]
    assert RUNPOD.violations(good) == [] and RUNPOD.violations(answer) == []
    (problem,) = RUNPOD.violations(wrong)
    assert "'gpuTypeId' was unexpected" in problem
    with pytest.raises(AssertionError, match="gpuTypeId"):
        RUNPOD.check(runpod_exchanges(runpod_emulator.calls))
    assert RUNPOD.violations({**answer, "response": {"pods": [{**listed[0], "status": "DEAD"}]}})  # not a PodStatus
    assert RUNPOD.violations({**answer, "response": {"pods": [{k: v for k, v in listed[0].items() if k != "actions"}]}})
    assert RUNPOD.violations({**answer, "query": {"includeClusterPods": "maybe"}})
    assert RUNPOD.violations({**answer, "query": {"state": "RUNNING"}}) == [
        "GET /v2/pods: query parameter 'state' is not defined"]
    runpod_emulator.calls.remove(wrong)  # (what the fixture's own check would otherwise fail this test for)


# --- the dead-man in depth: what the pod's own key may do is documented nowhere, so every reading is tried --------


def test_a_pod_key_refused_on_rest_ends_its_pod_through_graphql(runpod_emulator, pod):
    """Reading B [3P]: RunPod answers the pod-scoped key 403 on REST v2. The ender then sends GraphQL podTerminate with
    the same key (what `runpodctl remove pod` sends), and the pod ends."""
    runpod_emulator.pod_key_rest = False
    assert deadman_runpod({}) == "armed (GraphQL)"
    note = end_runpod({"terminate": True, "end_retry_s": 60})
    assert note.startswith(f"terminate sent for pod {pod} (GraphQL podTerminate; REST v2 refused: REST v2 HTTP 403")
    assert runpod_emulator.pod(pod)["status"] == "TERMINATED"
    (refused,) = rest_calls(runpod_emulator)[-1:]
    assert refused["status"] == 403 and refused["key"] == "pod"


def test_refused_by_every_means_the_alarm_repeats_until_the_pod_is_gone(runpod_emulator, pod):
    """Both readings refused: no means is left to the pod. The ender raises the alarm (the runtime's deadman_failed)
    naming the pod and `invoke cleanup`, repeats it, and keeps trying (the pod bills meanwhile); once a means works
    again the pod ends."""
    runpod_emulator.pod_key_rest = runpod_emulator.pod_key_graphql = False
    assert deadman_runpod({}).startswith("not armed: REST v2 HTTP 403, GraphQL HTTP 403")
    alarms: list[str] = []
    result: list[str] = []
    ender = threading.Thread(target=lambda: result.append(end_runpod(
        {"terminate": True, "end_retry_s": 0, "alarm_every_s": 0.2}, alarm=alarms.append)), daemon=True)
    ender.start()
    deadline = time.monotonic() + 30
    while len(alarms) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(alarms) >= 2 and not result, (alarms, result)  # past end_retry_s: still trying, still alarming
    assert pod in alarms[0] and "invoke cleanup" in alarms[0] and "403" in alarms[0]
    assert runpod_emulator.pod(pod)["status"] == "RUNNING"
    runpod_emulator.pod_key_graphql = True  # e.g. GraphQL's refusal was passing
    ender.join(timeout=90)
    assert result and result[0].startswith(f"terminate sent for pod {pod} (GraphQL podTerminate")
    assert runpod_emulator.pod(pod)["status"] == "TERMINATED"


def test_the_default_reading_arms_the_dead_man_on_rest_alone(runpod_emulator, pod):
    assert deadman_runpod({}) == "armed (REST v2)"
    (read,) = rest_calls(runpod_emulator)
    assert read["status"] == 200 and read["key"] == "pod"
    check_call({**read, "http": "GET"})
    assert [c for c in runpod_emulator.calls if not c.get("rest")] == []
