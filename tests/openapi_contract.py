"""RunPod's REST API v2 as its own OpenAPI file describes it (tests/reference/runpod-rest-v2.openapi.json, taken
unchanged from RunPod's docs repository): every REST exchange the emulator records — the request Trainyard sent
(operation, query parameters, body) and the answer the emulator gave (status, body) — is checked against the file's
schemas (JSON Schema 2020-12, the file's $refs resolved). A field, a parameter or an operation the real API does not
define fails, and so does an answer shape it never sends. tests/fixtures_runpod.py runs `violations` over every
emulator's calls when a test ends, so every RunPod test is also a contract test."""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests import reference

SPEC_PATH = reference.path("runpod-rest-v2.openapi.json")
SPEC = json.loads(SPEC_PATH.read_text())
REGISTRY = Registry().with_resource("urn:runpod-v2", Resource.from_contents(SPEC, default_specification=DRAFT202012))


def validator(fragment: dict) -> Draft202012Validator:
    """A validator for a schema fragment of the file (its $refs point into the file)."""
    return Draft202012Validator(_absolute(fragment), registry=REGISTRY)


def _absolute(node):
    if isinstance(node, dict):
        return {k: ("urn:runpod-v2" + v if k == "$ref" and v.startswith("#") else _absolute(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute(v) for v in node]
    return node


def _resolve(node: dict, section: str) -> dict:
    while "$ref" in node:
        node = SPEC["components"][section][node["$ref"].rsplit("/", 1)[1]]
    return node


def operation(method: str, path: str) -> tuple[str, dict, dict]:
    """(path template, operation, path item) of a request, or an AssertionError naming it."""
    for template, item in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()], item
    raise AssertionError(f"{method} {path} is not an operation of RunPod's REST v2")


def _query_value(value: str, schema: dict):
    schema = _resolve(schema, "schemas")
    kind = schema.get("type")
    if kind == "array":
        return [_query_value(v, schema.get("items", {})) for v in value.split(",")]
    if kind == "integer":
        return int(value) if re.fullmatch(r"-?\d+", value) else value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def violations(call: dict) -> list[str]:
    """What in one recorded exchange ({http, path, query, request, status, response}) the file does not allow."""
    method, path = call.get("http", "POST"), call["path"]
    try:
        template, op, item = operation(method, path)
    except AssertionError as exc:
        return [str(exc)]
    where = f"{method} {template}"
    problems: list[str] = []
    params = {p["name"]: p for p in (_resolve(p, "parameters") for p in item.get("parameters", []) + op.get("parameters", []))
              if p["in"] == "query"}
    for name, value in (call.get("query") or {}).items():
        if name not in params:
            problems.append(f"{where}: query parameter {name!r} is not defined")
            continue
        problems += [f"{where}: ?{name}={value}: {e.message}"
                     for e in validator(params[name]["schema"]).iter_errors(_query_value(str(value), params[name]["schema"]))]
    body = op.get("requestBody")
    if body is None:
        if call.get("request") is not None:
            problems.append(f"{where} takes no body, was sent {call['request']!r}")
    else:
        schema = body["content"]["application/json"]["schema"]
        problems += [f"{where} body: {e.message}" for e in validator(schema).iter_errors(call.get("request"))]
    answers = op["responses"]
    answer = answers.get(str(call["status"])) or answers.get("default")
    if answer is None:
        return problems + [f"{where}: status {call['status']} is not an answer the operation has"]
    answer = _resolve(answer, "responses")
    content = answer.get("content") or {}
    if "text/event-stream" in content:
        return problems
    if not content:
        if call.get("response") is not None:
            problems.append(f"{where} {call['status']}: answers without a body, got {call['response']!r}")
        return problems
    schema = next(iter(content.values()))["schema"]
    problems += [f"{where} {call['status']} answer: {e.message}"
                 for e in validator(schema).iter_errors(call.get("response"))]
    return problems


def check(calls: list[dict]) -> None:
    """Every REST exchange of an emulator's call log, checked; an injected gateway page (HTML: a proxy's, not the
    API's) is not an answer of the API and is left out."""
    found = [f"{c['field']}: {v}" for c in calls if c.get("rest") and not (c.get("injected") and c.get("response") is None)
             for v in violations(c)]
    assert not found, "\n".join(found)
