"""RunPod's API as Trainyard uses it: REST v2 (RunPod's OpenAPI file is the contract; the tests check every request
and answer against it) at RUNPOD_REST_URL (default https://api.runpod.io) for the catalog, pods, actions and logs;
GraphQL (the runpod SDK, at RUNPOD_API_BASE_URL) only for spot, which v2 lacks, and only while GraphQL answers: once
it is retired (RunPod: early 2027) a spot job is refused in one line before anything is created, never run on-demand
instead. The key is RUNPOD_API_KEY (.env or the environment). Reads repeat on 429 (after Retry-After), 5xx and dropped
connections (tenacity); a create is sent once (the lifecycle looks for the pod by name before it tries again)."""

from __future__ import annotations

import json
import os
import re
import sys

from helpers.backends.provider import Transient, call
from helpers.errors import ConfigError, ProviderError

DEFAULT_BASE_URL = "https://api.runpod.io"
VOLUME_MOUNT = "/workspace"
TRANSIENT = re.compile(r"\b(408|429|5\d\d)\b|too many requests|rate.?limit|internal server error|bad gateway|"
                       r"service unavailable|gateway time-?out|timed? ?out|temporarily", re.IGNORECASE)
NO_CAPACITY = "no longer any instances available"
GPU_TYPES_QUERY = """query GpuTypes {{
  gpuTypes {{
    id displayName memoryInGb maxGpuCount secureCloud communityCloud
    securePrice communityPrice secureSpotPrice communitySpotPrice
    lowestPrice(input: {{gpuCount: {count}{cloud}}}) {{
      minimumBidPrice uninterruptablePrice stockStatus availableGpuCounts
    }}
  }}
}}"""


# ============================================================================================== the API


def _import_runpod():
    """`import runpod`, undoing what its import does to logging: runpod 1.12 runs logging.basicConfig(INFO, stderr)
    (serverless/utils/rp_upload.py), after which every HTTP request of the process prints a line on stderr. Only
    spot needs the SDK (GraphQL), so it is imported only then."""
    import logging

    if "runpod" in sys.modules:
        return sys.modules["runpod"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import runpod

    root.handlers[:] = handlers
    root.setLevel(level)
    return runpod


class SpotUnavailable(ConfigError):
    """RunPod's REST API v2 has no spot pods, and GraphQL (which has) is retired or refuses."""

    def __init__(self, why: str):
        super().__init__("resources.spot", f"RunPod's current API (REST v2) offers no spot pods, and its GraphQL API, "
                         f"the only one that did, {why}", "set resources.spot: false (--no-spot) for on-demand on RunPod, "
                         "or run spot on Verda (invoke verda.train --spot)")


def _problem(response) -> str:
    """The one-line text of a REST v2 error answer (ErrorResponse: title, status, detail, errors)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {(response.text or '')[:120].strip()}"
    detail = body.get("detail") or body.get("title") or "" if isinstance(body, dict) else str(body)[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    return f"{response.status_code} {detail}" + (f" ({'; '.join(map(str, errors))[:300]})" if errors else "")


def _retry_after(response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class RunPodApi:
    """Every RunPod API call Trainyard makes. REST API v2 (`requests`; RunPod's OpenAPI file is the contract) for
    everything it has: the GPU catalog (listGpuTypes), createPod, getPod, listPods, deletePod, podAction (stop), and
    getPodLogs. GraphQL through the runpod SDK only for spot, which v2 lacks: spot prices (gpuTypes) and
    podRentInterruptable, for as long as GraphQL answers (SpotUnavailable once it does not).

    Reads repeat on 429 (after its Retry-After), 5xx and dropped connections (the one retry helper, `call`); a create
    is sent once and raises Transient, for the shared flow to look for the pod by name before it creates again."""

    def __init__(self, api_key: str, rest_url: str | None = None, graphql_url: str | None = None, attempts: int = 6,
                 max_wait_s: float = 30.0, timeout_s: float = 30.0):
        import requests

        self.api_key, self.attempts, self.max_wait_s, self.timeout_s = api_key, attempts, max_wait_s, timeout_s
        self.base_url = (rest_url or os.environ.get("RUNPOD_REST_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.graphql_base = (graphql_url or os.environ.get("RUNPOD_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {api_key}", "Accept": "application/json"})

    # --- REST v2 -------------------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, what: str, params: dict | None = None, body: dict | None = None,
              missing_ok: bool = False, stream: bool = False, headers: dict | None = None,
              read_timeout_s: float | None = None):
        """One REST request -> the response (None for a 404 when `missing_ok`). Errors as Trainyard's: Transient
        (429 with its Retry-After, 5xx, no answer), ConfigError (401), ProviderError (the rest, in one line)."""
        import requests

        try:
            response = self.session.request(method, self.base_url + path, params=params, json=body, stream=stream,
                                            timeout=(10, read_timeout_s or self.timeout_s), headers=headers)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(f"RunPod API unreachable ({type(exc).__name__}: {str(exc)[:150]})") from None
        code = response.status_code
        if code < 300:
            return response
        if code == 404 and missing_ok:
            return None
        text = _problem(response)
        if code == 401:
            raise ConfigError("RUNPOD_API_KEY", f"RunPod refused the API key ({text})", "check RUNPOD_API_KEY in .env")
        if code == 410:
            raise ProviderError(f"{what}: RunPod answered 410 Gone at {self.base_url}{path}: RunPod has retired this "
                                "API (REST v2) and this Trainyard needs updating (git pull)")
        if code == 429 or code >= 500:
            raise Transient(f"RunPod: {text}", retry_after=_retry_after(response) if code == 429 else None)
        if code == 402:
            raise ProviderError(f"{what}: RunPod says the account's balance is too low ({text}) — add funds")
        if code == 422:
            raise ProviderError(f"{what}: RunPod rejected the request as not matching its API ({text}) — a Trainyard "
                                "bug: please report it")
        if code == 400 and method == "POST" and path == "/v2/pods":
            raise ProviderError(f"{what}: RunPod could not place it ({text}) — no capacity for it right now, most "
                                "likely: retry later, or pick another GPU type or cloud (`invoke runpod.gpus`)")
        raise ProviderError(f"{what}: RunPod says: {text}")

    def _json(self, method: str, path: str, *, what: str, **kwargs):
        """A repeated (idempotent) request's JSON answer; None for a 404 with missing_ok, or an empty answer (204)."""
        def once():
            response = self._send(method, path, what=what, **kwargs)
            if response is None or response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise Transient(f"RunPod answered {what} with no JSON ({response.text[:80]!r})") from None

        return call(once, what=what, attempts=self.attempts, max_wait_s=self.max_wait_s)

    def gpu_catalog(self, gpu_count: int = 1, cloud: str = "any") -> dict[str, list[dict]]:
        """listGpuTypes with pod stock for `gpu_count` GPUs, once per cloud tier asked: {"secure"|"community": GpuType}."""
        tiers = ["secure", "community"] if cloud not in ("secure", "community") else [cloud]
        return {tier: self._json("GET", "/v2/catalog/gpus", what="listing RunPod GPU types",
                                 params={"include": "AVAILABILITY", "product": "POD", "count": int(gpu_count),
                                         "cloud": tier.upper()})["gpus"]
                for tier in tiers}

    def get(self, pod_id: str) -> dict | None:
        """getPod: the pod (status, cost, ssh, runtime), None once RunPod no longer knows it."""
        pod = self._json("GET", f"/v2/pods/{pod_id}", what=f"reading pod {pod_id}", missing_ok=True)
        return None if pod is None or pod.get("status") == "TERMINATED" else pod

    def pods(self) -> list[dict]:
        return self._json("GET", "/v2/pods", what="listing pods")["pods"]

    def create(self, body: dict) -> dict:
        """createPod (CreatePodRequest). Sent once: see the class docstring."""
        response = self._send("POST", "/v2/pods", what=f"creating pod {body['name']}", body=body)
        try:
            return response.json()
        except ValueError:
            raise Transient(f"RunPod answered the create with no JSON ({response.text[:80]!r})") from None

    def stop(self, pod_id: str) -> None:
        self._json("POST", f"/v2/pods/{pod_id}/action", what=f"stopping pod {pod_id}", body={"action": "stop"})

    def terminate(self, pod_id: str) -> bool:
        """deletePod; False when RunPod no longer knows the pod (already gone counts as ended)."""
        what = f"terminating pod {pod_id}"
        return call(lambda: self._send("DELETE", f"/v2/pods/{pod_id}", what=what, missing_ok=True) is not None,
                    what=what, attempts=self.attempts, max_wait_s=self.max_wait_s)

    def log_lines(self, pod_id: str, tail: int = 5000, follow: bool = False, idle_s: float = 2.0):
        """getPodLogs (Server-Sent Events): the container's lines, the last `tail` first; without `follow` it stops
        after `idle_s` without a line, with it it reconnects from the last event id until the stream ends and the
        pod is gone."""
        import requests
        import urllib3

        last_id = None
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
            response = call(lambda: self._send("GET", f"/v2/pods/{pod_id}/logs", what=f"logs of pod {pod_id}",
                                               params={"source": "container", "tail": tail}, stream=True,
                                               headers=headers, read_timeout_s=None if follow else idle_s),
                            what=f"logs of pod {pod_id}", attempts=self.attempts, max_wait_s=self.max_wait_s)
            try:
                for raw in _lines_as_they_arrive(response):
                    if raw.startswith("id:"):
                        last_id = raw[3:].strip()
                    elif raw.startswith("data:"):
                        event = json.loads(raw[5:])
                        yield event.get("line", "")
            except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError, TimeoutError):
                if not follow:
                    return
            finally:
                response.close()
            if not follow or self.get(pod_id) is None:
                return

    # --- GraphQL: spot only ---------------------------------------------------------------------------
    def _graphql(self, query: str, what: str, *, once_only: bool = False) -> dict:
        """A GraphQL query through the SDK's run_graphql_query -> its `data`. SpotUnavailable when GraphQL is retired
        (410), refuses, or does not answer after the retries: the SDK hides HTTP statuses, so a 410 shows as a problem
        object in place of GraphQL's answer. `once_only` (a create): one try, a Transient left to the caller."""
        import requests

        runpod = _import_runpod()
        from runpod.api.graphql import run_graphql_query
        from runpod.error import AuthenticationError, QueryError

        def once():
            runpod.api_key = self.api_key  # the SDK never reads RUNPOD_API_KEY itself ...
            os.environ["RUNPOD_API_BASE_URL"] = self.graphql_base  # ... but reads this on every call
            try:
                answer = run_graphql_query(query)
            except AuthenticationError:
                raise ConfigError("RUNPOD_API_KEY", "RunPod's GraphQL API refused the API key",
                                  "check RUNPOD_API_KEY in .env") from None
            except QueryError as exc:  # never chained: it carries the query, pod env included
                message = str(exc.message or exc)
                if TRANSIENT.search(message):
                    raise Transient(f"RunPod GraphQL: {message[:200]}") from None
                if NO_CAPACITY in message:
                    raise ProviderError(f"{what}: RunPod has no capacity for it right now ({message[:200]}) — retry "
                                        "later, or pick another GPU type or cloud (`invoke runpod.gpus`)") from None
                raise SpotUnavailable(f"refused {what} ({message[:200]})") from None
            except (requests.ConnectionError, requests.Timeout, json.JSONDecodeError) as exc:
                raise Transient(f"RunPod GraphQL unreachable or garbled ({type(exc).__name__})") from None
            if isinstance(answer, dict) and answer.get("status") == 410:
                raise SpotUnavailable("answered 410 Gone (retired)")
            if not isinstance(answer, dict) or "data" not in answer:
                raise Transient("RunPod GraphQL answered without data")
            return answer["data"]

        if once_only:
            return once()
        try:
            return call(once, what=what, attempts=self.attempts, max_wait_s=self.max_wait_s)
        except ProviderError as exc:
            if isinstance(exc.__cause__, Transient):
                raise SpotUnavailable(f"did not answer ({exc.__cause__})") from None
            raise

    def spot_gpu_types(self, gpu_count: int = 1, cloud: str = "any") -> list[dict]:
        """GraphQL gpuTypes with spot prices and stock for `gpu_count` GPUs (lowestPrice). An endpoint that does not
        even take a connection is said at once, not after the retries."""
        from helpers.net import unreachable

        down = unreachable(self.graphql_base)
        if down:
            raise SpotUnavailable(f"is unreachable at {self.graphql_base} ({down})")
        secure = {"secure": ", secureCloud: true", "community": ", secureCloud: false"}.get(cloud, "")
        data = self._graphql(GPU_TYPES_QUERY.format(count=int(gpu_count), cloud=secure), "listing RunPod spot prices")
        return data["gpuTypes"] or []

    def create_spot(self, spec: dict, bid_per_gpu: float) -> dict:
        """An interruptible pod: podRentInterruptable with a bid (GraphQL only). Sent once, like create."""
        data = self._graphql(spot_mutation(spec, bid_per_gpu), f"creating spot pod {spec['name']}", once_only=True)
        return data["podRentInterruptable"]


def spot_mutation(spec: dict, bid_per_gpu: float) -> str:
    """podRentInterruptable (CLOUD_APIS.md §1.3.6) from a CreatePodRequest body: the same pod, as GraphQL names it.
    Strings go in as JSON literals (valid GraphQL string literals: quotes and newlines escaped)."""
    q = json.dumps
    gpu, persistent = spec["gpu"], (spec.get("mounts") or {}).get("persistent") or {}
    fields = [f"bidPerGpu: {bid_per_gpu:.4f}", f"name: {q(spec['name'])}", f"imageName: {q(spec.get('image') or '')}",
              f"cloudType: {spec.get('cloud', 'SECURE')}", "startSsh: true", f"gpuTypeId: {q(gpu['id'])}",
              "supportPublicIp: true", f"gpuCount: {int(gpu.get('count', 1))}",
              f"volumeInGb: {int(persistent.get('size') or 0)}", "minVcpuCount: 1", "minMemoryInGb: 1",
              f"dockerArgs: {q(spec.get('args') or '')}", f"volumeMountPath: {q(persistent.get('path') or VOLUME_MOUNT)}"]
    if spec.get("disk") is not None:
        fields.append(f"containerDiskInGb: {int(spec['disk'])}")
    if spec.get("ports"):
        fields.append(f"ports: {q(','.join(spec['ports']))}")
    if spec.get("env"):
        fields.append("env: [" + ", ".join(f"{{ key: {q(k)}, value: {q(v)} }}" for k, v in spec["env"].items()) + "]")
    if spec.get("templateId"):
        fields.append(f"templateId: {q(spec['templateId'])}")
    return ("mutation {\n  podRentInterruptable(input: { " + ", ".join(fields) + " }) {\n"
            "    id desiredStatus costPerHr machineId podType\n  }\n}")


def client() -> RunPodApi:
    """The API with RUNPOD_API_KEY (environment beats .env), RUNPOD_REST_URL and, for spot, RUNPOD_API_BASE_URL
    (GraphQL) — environment, .env, default https://api.runpod.io."""
    from helpers.workspace import current

    workspace = current()
    key = workspace.secrets.require("RUNPOD_API_KEY", "to talk to the RunPod API")
    return RunPodApi(key, workspace.setting("RUNPOD_REST_URL"), workspace.setting("RUNPOD_API_BASE_URL"))


def _lines_as_they_arrive(response):
    """The text lines of a streamed answer, each as soon as it is whole. requests' iter_lines reads fixed-size
    chunks and holds back the last lines of a stream that pauses (until the read times out, and drops them then);
    urllib3's read1 returns what has arrived."""
    pending = b""
    while chunk := response.raw.read1(65536):
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")
