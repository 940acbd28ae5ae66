"""The pod's own dead-man speaks RunPod's REST API v2, checked against RunPod's own OpenAPI file
(tests/reference/runpod-rest-v2.openapi.json): every request it sends and every answer the emulator gives is
validated against the file's schemas (JSON Schema 2020-12 with the file's $refs), so a field the real API would
reject, or an answer shape it never sends, fails here — also against an independent server built from the file."""

from __future__ import annotations

import pytest

from helpers.runtime.machine import end_runpod
from tests.openapi_contract import operation, violations

GPU = "NVIDIA GeForce RTX 4090"

pytestmark = pytest.mark.slow  # the pods are sshd hosts


def check_call(call: dict) -> None:
    problems = violations({"http": "POST", **call})
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
        operation("POST", f"/v2/pods/{pod}/terminate")


def test_a_wrong_field_in_a_request_trainyard_sends_fails_the_check_every_runpod_test_runs(runpod_emulator, monkeypatch):
    """The launcher's own createPod, with one field injected that REST v2 does not define (GraphQL's name for the
    GPU), is flagged by the check tests/fixtures_runpod.py runs over every emulator's calls; so is an answer shape
    the real API never sends, and a query parameter it does not have."""
    from helpers.backends.runpod.api import RunPodApi
    from tests.openapi_contract import check

    api = RunPodApi(runpod_emulator.api_key, runpod_emulator.url)
    body = {"name": "x [ty-x-abc123]", "image": "runpod/pytorch", "gpu": {"id": GPU, "count": 1}, "disk": 20}
    api.create(body)
    api.create({**body, "gpuTypeId": GPU})
    listed = api.pods()
    good, wrong, answer = [c for c in runpod_emulator.calls if c["field"] in ("createPod", "listPods")]
    assert violations(good) == [] and violations(answer) == []
    (problem,) = violations(wrong)
    assert "'gpuTypeId' was unexpected" in problem
    with pytest.raises(AssertionError, match="gpuTypeId"):
        check(runpod_emulator.calls)
    assert violations({**answer, "response": {"pods": [{**listed[0], "status": "DEAD"}]}})  # not a PodStatus
    assert violations({**answer, "response": {"pods": [{k: v for k, v in listed[0].items() if k != "actions"}]}})
    assert violations({**answer, "query": {"includeClusterPods": "maybe"}})
    assert violations({**answer, "query": {"state": "RUNNING"}}) == [
        "GET /v2/pods: query parameter 'state' is not defined"]
    runpod_emulator.calls.remove(wrong)  # (what the fixture's own check would otherwise fail this test for)
