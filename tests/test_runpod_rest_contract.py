"""The pod's own dead-man speaks RunPod's REST API v2, checked against RunPod's own OpenAPI file
(../shared/reference/runpod-rest-v2.openapi.json): every request it sends and every answer the emulator gives is
validated against the file's schemas (JSON Schema 2020-12 with the file's $refs), so a field the real API would
reject, or an answer shape it never sends, fails here — also against an independent server built from the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from helpers.runtime.machine import end_runpod

REPO = Path(__file__).resolve().parents[1]
SPEC = json.loads((REPO.parent / "shared" / "reference" / "runpod-rest-v2.openapi.json").read_text())
REGISTRY = Registry().with_resource("urn:runpod-v2", Resource.from_contents(SPEC, default_specification=DRAFT202012))
GPU = "NVIDIA GeForce RTX 4090"

pytestmark = pytest.mark.slow  # the pods are sshd hosts


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"urn:runpod-v2#/components/schemas/{name}"}, registry=REGISTRY)


def operation(method: str, path: str) -> tuple[str, dict]:
    """The OpenAPI operation a request is (the path template that matches it), or a failure."""
    for template, ops in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return template, ops[method.lower()]
    raise AssertionError(f"{method} {path} is not an operation of RunPod's REST v2")


def check_call(call: dict) -> None:
    """One recorded REST call: the request against the operation's body schema, the answer against its
    response schema for that status (a status the operation does not list fails too)."""
    template, op = operation("POST", call["path"])
    body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    errors = [e.message for e in schema(body).iter_errors(call["request"])]
    assert not errors, (call["request"], errors)
    answers = op["responses"]
    answer = answers.get(str(call["status"])) or answers.get("default")
    assert answer is not None, (template, call["status"])
    if "$ref" in answer:  # e.g. #/components/responses/TooManyRequestsError
        answer = SPEC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    content = answer.get("content")
    if content is None:
        assert call["response"] is None, call["response"]  # e.g. 204: no body
        return
    ref = next(iter(content.values()))["schema"]["$ref"].rsplit("/", 1)[1]
    errors = [e.message for e in schema(ref).iter_errors(call["response"])]
    assert not errors, (ref, errors)


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
    runpod_emulator.fail_next(1, 429, op="rest:stop")  # RateLimit: the answer says when to come back
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
    runpod_emulator.fail_next(2, 503, op="rest:terminate")
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
