"""A provider's API as its own OpenAPI file describes it (tests/reference/, taken unchanged from the provider):
every exchange an emulator records — the request Trainyard sent (operation, query parameters, body) and the answer
the emulator gave (status, body) — is checked against the file's schemas (JSON Schema 2020-12, the file's $refs
resolved). A field, a parameter or an operation the real API does not define fails, and so does an answer shape it
never sends, and a deprecated operation or parameter. tests/fixtures_runpod.py and tests/fixtures_verda.py check every
emulator's exchanges when a test ends, so every RunPod and Verda test is also a contract test.

An exchange: {http, path, query, request, status, response}."""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests import reference


class Contract:
    """One provider's OpenAPI file. `error_body`: the shape of an error answer the file does not list for an
    operation (Verda's file lists almost none; its API answers every error as {code, message}), or None: such an
    answer is a violation."""

    def __init__(self, file: str, name: str, error_body: dict | None = None, corrections=None):
        self.name, self.urn, self.error_body = name, f"urn:{file}", error_body
        self.spec = _nullable(json.loads(reference.path(file).read_text()))
        if corrections:  # the file's known bugs (tests/reference/SOURCES.md), fixed before any check
            corrections(self.spec)
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(self.urn, resource)

    def validator(self, fragment: dict) -> Draft202012Validator:
        """A validator for a schema fragment of the file (its $refs point into the file)."""
        return Draft202012Validator(self._absolute(fragment), registry=self.registry)

    def _absolute(self, node):
        if isinstance(node, dict):
            return {k: (self.urn + v if k == "$ref" and v.startswith("#") else self._absolute(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [self._absolute(v) for v in node]
        return node

    def _resolve(self, node: dict, section: str) -> dict:
        while "$ref" in node:
            node = self.spec["components"][section][node["$ref"].rsplit("/", 1)[1]]
        return node

    def operation(self, method: str, path: str) -> tuple[str, dict, dict]:
        """(path template, operation, path item) of a request, or an AssertionError naming it. A literal segment
        wins over a template one (`/instances/types` before `/instances/{id}`)."""
        matches = []
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, path) and method.lower() in item:
                matches.append((template.count("{"), template, item))
        if not matches:
            raise AssertionError(f"{method} {path} is not an operation of {self.name}")
        _, template, item = min(matches, key=lambda m: m[0])
        return template, item[method.lower()], item

    def _query_value(self, value: str, schema: dict):
        schema = self._resolve(schema, "schemas")
        kind = schema.get("type")
        if kind == "array":
            return [self._query_value(v, schema.get("items", {})) for v in value.split(",")]
        if kind == "integer":
            return int(value) if re.fullmatch(r"-?\d+", value) else value
        if kind == "boolean":
            return {"true": True, "false": False}.get(value, value)
        return value

    def violations(self, call: dict) -> list[str]:
        """What in one recorded exchange the file does not allow."""
        method, path = call.get("http", "POST"), call["path"]
        try:
            template, op, item = self.operation(method, path)
        except AssertionError as exc:
            return [str(exc)]
        where = f"{method} {template}"
        refused = int(call["status"]) >= 400  # a request the API refused (the emulator enforcing the file, or a
        # test of that) is not one the API took: only its answer counts
        problems: list[str] = [f"{where} is deprecated"] if op.get("deprecated") and not refused else []
        params = {p["name"]: p for p in (self._resolve(p, "parameters")
                                         for p in item.get("parameters", []) + op.get("parameters", []))
                  if p["in"] == "query"}
        for name, value in (call.get("query") or {}).items():
            if name not in params:
                problems.append(f"{where}: query parameter {name!r} is not defined")
                continue
            if params[name].get("deprecated") and not refused:
                problems.append(f"{where}: query parameter {name!r} is deprecated")
            schema = params[name]["schema"]
            problems += [f"{where}: ?{name}={value}: {e.message}"
                         for e in self.validator(schema).iter_errors(self._query_value(str(value), schema))]
        body = op.get("requestBody")
        if refused:
            pass
        elif body is None:
            if call.get("request") is not None:
                problems.append(f"{where} takes no body, was sent {call['request']!r}")
        else:
            content = self._resolve(body, "requestBodies")["content"]
            schema = (content.get("application/json") or next(iter(content.values())))["schema"]
            problems += [f"{where} body: {e.message}" for e in self.validator(schema).iter_errors(call.get("request"))]
        answers = op["responses"]
        answer = answers.get(str(call["status"])) or answers.get(f"{str(call['status'])[0]}XX") or answers.get("default")
        if answer is None and self.error_body and int(call["status"]) >= 400:
            return problems + [f"{where} {call['status']} error: {e.message}"
                               for e in self.validator(self.error_body).iter_errors(call.get("response"))]
        if answer is None:
            return problems + [f"{where}: status {call['status']} is not an answer the operation has"]
        answer = self._resolve(answer, "responses")
        content = answer.get("content") or {}
        if "text/event-stream" in content:
            return problems
        if not content and self.error_body and refused:  # an error the file names without its body
            return problems + [f"{where} {call['status']} error: {e.message}"
                               for e in self.validator(self.error_body).iter_errors(call.get("response"))]
        if not content:
            if call.get("response") is not None:
                problems.append(f"{where} {call['status']}: answers without a body, got {call['response']!r}")
            return problems
        schema = next(iter(content.values())).get("schema")
        if schema is None:  # the file shows an example only
            return problems
        problems += [f"{where} {call['status']} answer: {e.message}"
                     for e in self.validator(schema).iter_errors(call.get("response"))]
        return problems

    def check(self, exchanges: list[dict]) -> None:
        found = [f"{c.get('field') or c['path']}: {v}" for c in exchanges for v in self.violations(c)]
        assert not found, "\n".join(found)


def _nullable(node):
    """OpenAPI 3.0's `nullable: true` (Verda's 3.1 file still uses it) as JSON Schema 2020-12 says it."""
    if isinstance(node, dict):
        if node.get("nullable") and isinstance(node.get("type"), str):
            node = {**node, "type": [node["type"], "null"]}
        return {k: _nullable(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


RUNPOD = Contract("runpod-rest-v2.openapi.json", "RunPod's REST v2")
def _verda_corrections(spec: dict) -> None:
    """A volume's `instances`: the schema says strings, the file's own example and the SDK (1.25, `list[dict]`)
    say objects: the schema is the bug."""
    for dto in ("GetVolumePublicResponseDto", "GetVolumeInTrashPublicResponseDto"):
        spec["components"]["schemas"][dto]["properties"]["instances"]["items"] = {"type": "object"}


VERDA = Contract("verda-public-api.openapi.json", "Verda's public API", error_body={
    "type": "object", "required": ["code", "message"], "additionalProperties": False,
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}, corrections=_verda_corrections)


def runpod_exchanges(calls: list[dict]) -> list[dict]:
    """The REST exchanges of the RunPod emulator's log; an injected gateway page (HTML: a proxy's, not the API's)
    is not an answer of the API and is left out."""
    return [c for c in calls if c.get("rest") and not (c.get("injected") and c.get("response") is None)]


def verda_exchanges(calls: list[dict]) -> list[dict]:
    """The Verda emulator's log as exchanges."""
    return [{"http": c["method"], "path": c["path"], "query": c["query"], "request": c["body"], "status": c["status"],
             "response": c["response"]} for c in calls]
