"""RunPod pods: seed 000 (train_in_runpod.py) and seed 004 (Thinnka Podsmith) on RunPod's REST API v2.

    plan(job)                  live GPU offers (list prices per cloud, pod stock) -> helpers.planning.plan_gpu: the
                               Hub/gated check, the memory estimate and the cheapest GPU type that fits
    launch(job, secrets)       create the pod (ledger line first), run the job, watch it, end it; two modes:
    status / logs / fetch / stop / gpus / cleanup_provider   (`--rehearse`: emulators/rehearsal.py)

Every RunPod API call is in `RunPodApi`: REST v2 (RunPod's OpenAPI file is the contract; the tests check every
request and answer against it) at RUNPOD_REST_URL (default https://api.runpod.io) for the catalog, pods, actions and
logs; GraphQL (the runpod SDK, at RUNPOD_API_BASE_URL) only for spot, which v2 lacks, and only while GraphQL answers:
once it is retired (RunPod: early 2027) a spot job is refused in one line before anything is created, never run
on-demand instead. The key is RUNPOD_API_KEY (.env or the environment). Reads repeat on 429 (after Retry-After),
5xx and dropped connections (tenacity); a create is never repeated blindly: the shared flow first looks for the pod
by name (a create whose answer was lost rents no second pod).

Two ways to run the job (`runpod.mode`):

* `ssh` (seed 004). The pod publishes 22/tcp and gets PUBLIC_KEY (SSH_PUBLIC_KEY / RUNPOD_SSH_PUBLIC_KEY, else
  the public half of SSH_PRIVATE_KEY_PATH / runpod.ssh_private_key, default ~/.ssh/id_ed25519). The shared flow
  (helpers/backends/instance_flow.py) waits for the pod's `ssh.direct` address (its mapped 22/tcp), uploads runs/<run_id>/ (.env with
  the secrets, mode 0600), starts the runtime detached, streams its log with the progress bar and the cost so far,
  fetches the outputs to runs/<run_id>/outputs and terminates the pod.
* `start_command` (seed 000). No SSH at all: the runtime bundle and job.json travel zipped and base64-encoded in
  the pod's environment (TRAINYARD_BUNDLE_0, _1, ... in 32 KiB pieces), the secrets (HF_TOKEN, WANDB_API_KEY) as
  pod environment variables; the pod's start command (`args`) only decodes the bundle and runs it — it holds
  no secret, so none is ever in a process's argv. The launcher polls the pod's status (one call per
  runpod.poll_seconds) and prints the state and the cost so far; `invoke logs RUN` reads the container's output
  through REST v2's pod log stream (and progress goes to the webhook, notify.webhook_url). Pod env values have no documented size limit at RunPod [INF]; the bundle is
  about 90 KB of base64.

Names. The ledger key is the shared flow's `ty-<run_id>-<hex6>`; the pod at RunPod is called
`<runpod.name or python-<time>> [ty-<run_id>-<hex6>]`: seed 000's name stays readable in the console and the tag in
brackets is how `find`, `invoke cleanup` and `invoke runpod.status` recognise Trainyard's pods.

Ending (seed 000's options). `limits.end_when_done` (seed: `!CMD STOP`) makes the runtime end its own pod when the
job ends, with the pod-scoped RUNPOD_API_KEY RunPod injects (helpers/runtime/machine.py): REST v2's podAction terminate, or
stop with `limits.terminate_on_stop: false` (`--no-terminate`). A pod that stops (EXITED) is terminated by the
launcher when terminate_on_stop is on, else left stopped (its volume still bills; the ledger says `stopped`).
Past `limits.time_limit` (only with `limits.timeout`, seed `--timeout`) the runtime stops training, syncs the last
checkpoint and ends the pod; the launcher is the backstop `limits.grace_s` later (ssh mode through the
shared flow's deadline; start_command mode here), so the final sync is not cut short. In ssh mode the launcher
always terminates after fetching the outputs (terminate_on_stop only governs the runtime's own end there).
Spot: GraphQL's `podRentInterruptable` with `runpod.bid_per_gpu` (default: the spot price); a preempted pod (a spot
pod that is EXITED) is terminated and the run resumes from the store (by itself with limits.recover).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from helpers.backends.instance_flow import (
    COST_EVERY_S, ERROR, EXIT_DONE, EXIT_FAILED, EXIT_LOST, EXIT_STOPPED, GONE, PENDING, RUNNING, STOPPED, Flow, HostSpec,
    InstanceInfo, Transient, call, connect, cost_line, end_now, fetch_outputs, run_on_instance, show_log, status_rows,
)
from helpers import gpus as gpu_catalog, offers as offers_mod
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.bundle import BUNDLE_ENV, bundle_env
from helpers.config import RunpodSection
from helpers.console import say, table, warn
from helpers.errors import ConfigError, ProviderError

PROVIDER = "runpod"
DESCRIPTOR = Descriptor(
    PROVIDER, noun="pod", cloud=True, vanishes="if_spot_or_relaunched", gpus=lambda: gpu_catalog.having("runpod_id"),
    fallback_offers=offers_mod.runpod_fallback_offers, credentials={"RUNPOD_API_KEY": "to create and end RunPod pods"},
    cleanup=lambda: cleanup_provider())
REMOTE_DIR = RunpodSection.model_fields["remote_dir"].default  # where a run lives on its pod unless the ledger says
DEFAULT_BASE_URL = "https://api.runpod.io"
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"  # starts sshd when PUBLIC_KEY is set
DEFAULT_PRIVATE_KEY = "~/.ssh/id_ed25519"
VOLUME_MOUNT = "/workspace"
TAG = re.compile(r"(?:^|\[)(ty-[a-z0-9-]+-[0-9a-f]{6})\]?$")
STATES = {"PROVISIONING": PENDING, "STARTING": PENDING, "RUNNING": RUNNING, "EXITED": STOPPED, "ERROR": ERROR,
          "TERMINATED": GONE}  # REST v2 PodStatus
TRANSIENT = re.compile(r"\b(408|429|5\d\d)\b|too many requests|rate.?limit|internal server error|bad gateway|"
                       r"service unavailable|gateway time-?out|timed? ?out|temporarily", re.IGNORECASE)
NO_CAPACITY = "no longer any instances available"
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@:=-]+$")  # what may appear unquoted in the start command
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


# ============================================================================================== pods


def tag_of(pod_name: str | None) -> str | None:
    """The `ty-<run_id>-<hex6>` a Trainyard pod carries in its name, else None."""
    match = TAG.search((pod_name or "").strip())
    return match[1] if match else None


def default_display_name() -> str:
    """Seed 000's default pod name: python-<month day hh:mm:ss>."""
    return f"python-{' '.join(time.ctime().split()[1:-1])}"


def pod_name(display: str | None, tag: str) -> str:
    shown = re.sub(r'["\\\n\r\[\]]+', "", display or default_display_name()).strip()
    return f"{shown} [{tag}]" if shown else tag


def gpu_type_id(offer) -> str:
    return offer.gpu_type_id or offer.gpu.runpod_id or offer.gpu.name


def pod_spec(job, offer, tag: str, *, env: dict[str, str], docker_args: str = "", display: str | None = None) -> dict:
    """The createPod body (REST v2 CreatePodRequest) for this job on this offer; spot sends the same pod through
    GraphQL (spot_mutation). SSH: our key as PUBLIC_KEY in the env (startSsh then adds none of the account's) and
    22/tcp published, so `ssh.direct` carries the address."""
    image, template = job.runpod.image, job.runpod.template_id
    body = {"name": pod_name(display if display is not None else job.runpod.name, tag),
            "gpu": {"id": gpu_type_id(offer), "count": offer.gpu_count},
            "cloud": "COMMUNITY" if offer.cloud == "community" else "SECURE",
            "disk": job.runpod.container_disk_gb, "env": dict(env), "args": docker_args}
    if image or not template:
        body["image"] = image or DEFAULT_IMAGE
    else:
        body["templateId"] = template
    if job.runpod.volume_gb:
        body["mounts"] = {"persistent": {"size": job.runpod.volume_gb, "path": VOLUME_MOUNT}}
    if job.runpod.mode == "ssh":
        body.update(ports=["22/tcp"], startSsh=True)
    return body


def bid_for(job, offer) -> float:
    return float(job.runpod.bid_per_gpu or round(offer.price_per_gpu_hour, 4))


def _safe(value: str, key: str) -> str:
    if not SAFE_PATH.fullmatch(value):
        raise ConfigError(key, f"'{value}' must be a plain path for the pod's start command",
                          "use letters, digits and / . _ - + only")
    return value


def start_command(job, chunks: int, mode: str = "auto") -> str:
    """seed 000's start command, Trainyard's way: decode the bundle from the pod's env and run it. It contains no
    quote a GraphQL literal would choke on and no secret (those are env vars of the pod)."""
    python, remote = _safe(job.runpod.python, "runpod.python"), _safe(job.runpod.remote_dir, "runpod.remote_dir")
    names = " ".join(f"{BUNDLE_ENV}_{i}" for i in range(chunks))
    skip = " --skip-setup" if job.runpod.skip_setup else ""
    runtime = f"{python} trainyard_runtime.pyz job.json --mode {mode}{skip}"
    script = (f"set -e; mkdir -p {remote}; chmod 700 {remote}; cd {remote}; "
              f"printenv {names} | base64 -d > .bundle.zip; {python} -m zipfile -e .bundle.zip .; rm -f .bundle.zip; ")
    # A container whose command exits is started again by RunPod (dstack issue #1142): the command never exits.
    # The runtime ends the pod at the end of the job (seed 000: !CMD STOP); should it die before that, the same
    # dead-man runs again by itself, and then the container waits for the end instead of training once more.
    if job.limits.end_when_done:
        script += f"{runtime} || true; {python} trainyard_runtime.pyz job.json --end-machine || true; exec sleep infinity"
    else:  # no STOP: the pod stays up after the job
        script += f"{runtime} || true; exec sleep infinity"
    return f"bash -c '{script}'"


class RunPodProvider:
    """The shared flow's provider (helpers/backends/instance_flow.py) and `invoke cleanup`'s, for RunPod pods."""

    noun = "pod"

    name = PROVIDER

    def __init__(self, api: RunPodApi, *, job=None, price_per_hour: float = 0.0, spot: bool = False,
                 bid_per_gpu: float | None = None, env: dict[str, str] | None = None, docker_args: str = "",
                 mode: str = "ssh", poll_seconds: float = 10.0, display: str | None = None):
        self.api, self.job, self.price_per_hour, self.spot, self.bid_per_gpu = api, job, price_per_hour, spot, bid_per_gpu
        self.env, self.docker_args, self.mode, self.poll_seconds = dict(env or {}), docker_args, mode, poll_seconds
        self.display = display
        self.last_pod: dict | None = None
        self.pod_names: dict[str, str] = {}  # tag -> the pod's full name, as created

    # --- instance_flow interface --------------------------------------------------------------------
    def create(self, job, offer, name: str) -> str:
        spec = pod_spec(job, offer, name, env=self.env, docker_args=self.docker_args, display=self.display)
        self.pod_names[name] = spec["name"]
        if self.spot:
            pod = self.api.create_spot(spec, self.bid_per_gpu or bid_for(job, offer))
        else:
            pod = self.api.create(spec)
        if not pod or not pod.get("id"):
            raise Transient("RunPod answered the create without a pod id")
        return pod["id"]

    def get(self, pod_id: str) -> InstanceInfo:
        pod = self.last_pod = self.api.get(pod_id)
        if pod is None:
            return InstanceInfo(GONE, None, None)
        state = STATES.get(str(pod.get("status")), PENDING)
        if state != RUNNING or self.mode != "ssh":
            return InstanceInfo(state, None, None)
        address = ssh_address(pod)
        return InstanceInfo(RUNNING, *address) if address else InstanceInfo(PENDING, None, None)

    def preempted(self) -> bool:
        """The last status read shows a spot pod taken away: REST v2 has no spot flag, so it is this provider's own
        knowledge (it rented spot) and the pod's EXITED."""
        return self.spot and (self.last_pod or {}).get("status") == "EXITED"

    def terminate(self, pod_id: str, keep_disk: bool = True) -> str | None:
        """deletePod, then confirm that RunPod no longer knows the pod (gone already counts as ended). RunPod has no
        detached disks: terminating deletes the pod's volume too (the checkpoints are in the store)."""
        sent = self.api.terminate(pod_id)
        for _ in range(60):
            pod = self.api.get(pod_id)
            if pod is None:
                return None if sent else f"pod {pod_id} was already gone"
            time.sleep(1)
        raise Transient(f"pod {pod_id} still {pod.get('status')} after deletePod")

    def stop(self, pod_id: str) -> None:
        self.api.stop(pod_id)

    # --- recovery hooks (instance_flow.supervise) ---------------------------------------------------
    def for_offer(self, offer) -> "RunPodProvider":
        """This provider for another offer of the plan: spot or not, its bid and price."""
        import copy

        other = copy.copy(self)
        other.env, other.pod_names, other.last_pod = dict(self.env), {}, None
        other.spot = offer.spot
        other.bid_per_gpu = bid_for(self.job, offer) if offer.spot else None
        other.price_per_hour = round(other.bid_per_gpu * offer.gpu_count, 4) if offer.spot else offer.price_per_hour
        return other

    def live_offers(self) -> list:
        return offers(self.api, self.job)[0]

    def find(self, name: str) -> str | None:
        for pod in self.api.pods():
            if tag_of(pod.get("name")) == name and pod.get("status") != "TERMINATED":
                return pod["id"]
        return None

    # --- cleanup interface --------------------------------------------------------------------------
    ENDED_STATES = ("TERMINATED",)

    def end(self, pod_ids: list[str]) -> dict[str, str | None]:
        """deletePod for each, END_WORKERS at a time (REST v2 deletes one pod per call); pod id -> None when RunPod
        took it (or no longer knows it), else why not. Confirmation is the caller's next list."""
        from concurrent.futures import ThreadPoolExecutor

        def one(pod_id: str) -> str | None:
            try:
                self.api.terminate(pod_id)
                return None
            except Exception as exc:  # noqa: BLE001 - reported per pod, asked again
                return str(exc)

        with ThreadPoolExecutor(max_workers=min(END_WORKERS, max(1, len(pod_ids)))) as pool:
            return dict(zip(pod_ids, pool.map(one, pod_ids)))

    def list_instances(self) -> list[dict]:
        """Every pod of the account tagged ty-* (running or stopped: a stopped pod's volume still bills)."""
        return [{"id": p["id"], "name": tag_of(p.get("name")), "state": p.get("status"), "price_per_hour": p.get("cost"),
                 "ssh": ssh_address(p) if p.get("status") == "RUNNING" else None}
                for p in self.api.pods() if tag_of(p.get("name")) and p.get("status") != "TERMINATED"]


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


END_WORKERS = 16  # concurrent deletePod calls in `invoke cleanup`


def ssh_address(pod: dict) -> tuple[str, int] | None:
    """(host, port) of a running pod's published 22/tcp: `ssh.direct`, else its `runtime.ports` entry (REST v2)."""
    direct = (pod.get("ssh") or {}).get("direct") or {}
    if direct.get("host") and direct.get("port"):
        return direct["host"], int(direct["port"])
    for port in (pod.get("runtime") or {}).get("ports") or []:
        if port.get("private") == 22 and port.get("ip") and port.get("public"):
            return port["ip"], int(port["public"])
    return None


def cleanup_provider() -> RunPodProvider | None:
    """For `invoke cleanup`: a provider when RUNPOD_API_KEY exists, else None."""
    from helpers.workspace import current

    if not current().secrets.get("RUNPOD_API_KEY"):
        return None
    return RunPodProvider(client())


# ============================================================================================== planning


def offers(api: RunPodApi | None, job, offline: bool = False):
    """(offers, source): live on-demand offers from REST v2's catalog (list prices per cloud, pod stock for the job's
    GPU count), plus spot offers from GraphQL when the job allows spot (SpotUnavailable once GraphQL is gone); or
    the dated table offline."""
    if api is None or offline:
        return offers_mod.runpod_fallback_offers(), "price table"
    count, cloud = job.resources.gpu_count, job.resources.cloud
    pool = offers_mod.from_runpod_catalog(api.gpu_catalog(count, cloud), count)
    if job.resources.spot:
        pool += [o for o in offers_mod.from_runpod_gpu_types(api.spot_gpu_types(count, cloud), count) if o.spot]
    return pool, "live"


def plan(job, options: LaunchOptions = LaunchOptions()) -> dict:
    """The pod Trainyard would create: helpers.planning.plan_gpu (gated check, memory estimate, cheapest GPU type
    that fits, counts 1/2/4/6/8) on RunPod's live offers of the wanted kind (spot or on-demand), plus the pod."""
    from helpers.bundle import BUNDLE_NAME, render_commands
    from helpers.net import unreachable
    from helpers.planning import hf_token, plan_gpu

    note, api, offline = None, None, options.offline
    if not offline:
        try:
            api = client()
        except ConfigError as exc:  # no key: plan anyway (said with the plan, not before a possible error)
            note = f"planning from the dated price table: {exc}"
    read: dict[str, str] = {}

    def live() -> list:  # called by plan_gpu once the input is checked: a wrong config costs no API call
        # resources.spot allows spot: the cheapest of spot and on-demand wins (a GPU without spot offers rents on-demand)
        nonlocal note
        down = unreachable(api.base_url) if api is not None and not offline else None
        if down:
            note = f"planning from the dated price table: the RunPod API is unreachable ({down})"
        pool, read["source"] = offers(api, job, offline=offline or api is None or bool(down))
        return pool

    the_plan = plan_gpu(job, PROVIDER, live, token=hf_token(), offline=offline or not options.check_hub)
    source = read["source"]
    offer = the_plan["offer"]
    if offer.spot:
        bid = bid_for(job, offer)
        the_plan["bid_per_gpu"] = bid
        the_plan["price_per_hour"] = round(bid * offer.gpu_count, 4)
    what = f"image {job.runpod.image}" if job.runpod.image else (
        f"template {job.runpod.template_id}" if job.runpod.template_id else f"image {DEFAULT_IMAGE}")
    limit = job.time_limit_seconds
    ends = (("terminated" if job.limits.terminate_on_stop else "stopped") + " by its runtime when the job ends"
            if job.limits.end_when_done else "kept running after the job (limits.end_when_done false)")
    the_plan["why"] = (f"{the_plan['why']}; {'spot bid $%.4f/GPU/h' % the_plan['bid_per_gpu'] if offer.spot else 'on-demand'}, "
                       f"{what}, mode {job.runpod.mode} ({source}); pod {ends}"
                       + (f"; time limit {limit / 3600:g} h" if limit else "; no time limit"))
    commands = render_commands(job, the_plan["gpu_count"])
    runtime = f"{job.runpod.python} {BUNDLE_NAME} job.json --mode auto" + (" --skip-setup" if job.runpod.skip_setup else "")
    if job.runpod.mode == "start_command":
        commands.append(f"(pod start command) {start_command(job, 1).replace(f'{BUNDLE_ENV}_0', f'{BUNDLE_ENV}_*')}")
        files = [f"runs/{job.run_id}/{BUNDLE_NAME} + job.json (zipped, base64, in the pod's env {BUNDLE_ENV}_*)",
                 "secrets as pod environment variables (never in the start command)"]
    else:
        commands.append(f"(on the pod, in {job.runpod.remote_dir}, over SSH) {runtime}")
        files = [f"runs/{job.run_id}/{BUNDLE_NAME}", f"runs/{job.run_id}/job.json", f"runs/{job.run_id}/.env (0600)"]
    ends = ("the runtime terminates it through RunPod's API with the pod's own pod-scoped RUNPOD_API_KEY (RunPod "
            "sets it in every pod; no account key is shipped) at the end of the job, the time limit and the budget")
    the_plan.update(mode=job.runpod.mode, commands=commands, files=files, ends=ends)
    if note:
        the_plan["warnings"] = [note, *the_plan.get("warnings", [])]
    return the_plan


# ============================================================================================== SSH keys


def ssh_settings(job) -> tuple[Path, str]:
    """(private key file, public key text): seed 004's SSH_PRIVATE_KEY_PATH / SSH_PUBLIC_KEY / RUNPOD_SSH_PUBLIC_KEY,
    from the config, the environment or .env; the public key defaults to the private key's public half."""
    from helpers.backends.verda_instances import public_key
    from helpers.workspace import current

    setting = current().setting

    path = Path(job.runpod.ssh_private_key or setting("SSH_PRIVATE_KEY_PATH") or DEFAULT_PRIVATE_KEY).expanduser()
    if not path.is_file():
        raise ConfigError("runpod.ssh_private_key", f"no SSH private key at {path}",
                          "set SSH_PRIVATE_KEY_PATH (or runpod.ssh_private_key), or create one: ssh-keygen -t ed25519")
    pub = setting("SSH_PUBLIC_KEY") or setting("RUNPOD_SSH_PUBLIC_KEY") or public_key(path)
    return path, " ".join(pub.split()[:2])


# ============================================================================================== launch


def launch(job, plan: dict, options: LaunchOptions) -> int:
    """Create the pod and run the job on it (runpod.mode ssh: the shared flow; start_command: below).
    Returns 0 done, 1 failed, 3 stopped early (time limit), 4 pod lost (spot), 130 interrupted.
    limits.recover (None: on for spot): relaunch a lost pod and resume (instance_flow.supervise, both modes)."""
    api, the_plan = client(), plan
    offer = the_plan["offer"]
    price = float(the_plan["price_per_hour"])
    fields = {"access": job.runpod.mode, "spot": offer.spot, "gpu": gpu_type_id(offer), "gpu_count": offer.gpu_count,
              "cloud": offer.cloud, "display_name": job.runpod.name or default_display_name()}
    provider = RunPodProvider(api, job=job, price_per_hour=price, spot=offer.spot,
                              bid_per_gpu=the_plan.get("bid_per_gpu"), mode=job.runpod.mode,
                              poll_seconds=job.runpod.poll_seconds, display=fields["display_name"])
    machine = {"kind": PROVIDER, "terminate": job.limits.terminate_on_stop}
    spec = HostSpec(remote_dir=job.runpod.remote_dir, ssh_key=None, python=job.runpod.python,
                    skip_setup=job.runpod.skip_setup, machine=machine, ledger_fields=fields,
                    deadline_epoch=job.launcher_deadline(time.time()))
    if job.runpod.mode == "ssh":
        key_path, public = ssh_settings(job)
        provider.env = {"PUBLIC_KEY": public}
        spec.ssh_key = key_path
    return run_on_instance(provider, job, offer, host_secrets(job, PROVIDER), spec, mode=options.mode,
                           detach=options.detach, recover=job.limits.recover, the_plan=the_plan,
                           flow_class=Flow if job.runpod.mode == "ssh" else StartCommandFlow)


class StartCommandFlow(Flow):
    """runpod.mode start_command (seed 000): no SSH. The bundle travels in the pod's environment, the pod's start
    command runs it, and the launcher polls the pod until it ends. Create, the ledger, Ctrl-C, SIGTERM, recovery
    and ending are the one lifecycle's (instance_flow: run_on_instance, Flow)."""

    @staticmethod
    def stage(provider, job, machine: dict, host_env: dict[str, str], spec: HostSpec, mode: str) -> Path:
        from helpers.bundle import stage_run

        # no secrets in it; no heartbeat either (nobody attaches over SSH): only how the pod ends itself
        run_dir = stage_run(job, spec.machine, {}, provider.price_per_hour)
        pieces = bundle_env(run_dir)
        provider.env = {**host_env, **pieces}  # secrets as pod env vars, never in the start command
        provider.docker_args = start_command(job, len(pieces), mode)
        say(f"the pod's start command runs the bundle ({len(pieces)} x {BUNDLE_ENV}_* in its env; no SSH)")
        return run_dir

    def run(self, mode: str, detach: bool) -> int:
        self.started = True  # the start command runs the job: from now on the pod can end itself
        if detach:
            self.detach()
            return EXIT_DONE
        return self.watch()

    def watch(self) -> int:
        """One status call per poll interval (429/5xx: backoff inside RunPodApi) until the pod ends."""
        job, provider, pod_id = self.job, self.provider, self.instance_id
        last_state, last_cost = None, time.monotonic()
        while True:
            state, _, _ = call(provider.get, pod_id, what="pod status")
            if state != last_state:
                say(f"pod {pod_id}: {(provider.last_pod or {}).get('status') or 'gone'} "
                    f"({cost_line(provider.price_per_hour, self.created)})")
                last_state = state
            if state == GONE:  # the runtime ended its pod (seed 000: !CMD STOP), or someone else did
                self.ledger.record(PROVIDER, self.name, "terminated", instance_id=pod_id, ended=time.time(),
                                   by="the pod itself")
                self.ended = True
                say(f"pod {pod_id} ended itself (or was terminated elsewhere); checkpoints are in {job.store} "
                    f"({cost_line(provider.price_per_hour, self.created)})")
                return EXIT_DONE
            if state == STOPPED:
                return self.stopped()
            if state == ERROR:
                warn(f"pod {pod_id} is {(provider.last_pod or {}).get('status')}: terminating it")
                self.end(keep_disk=True)
                return EXIT_FAILED
            if self.spec.deadline_epoch and time.time() > self.spec.deadline_epoch:
                verb = "terminating" if job.limits.terminate_on_stop else "stopping"
                warn(f"time limit ({job.time_limit_seconds:.0f}s + {job.grace_seconds:.0f}s grace) passed and the pod "
                     f"still runs: {verb} it (launcher backstop)")
                self.end(keep_disk=True, stop_only=not job.limits.terminate_on_stop)
                return EXIT_STOPPED
            if time.monotonic() - last_cost >= COST_EVERY_S:
                last_cost = time.monotonic()
                say(f"[trainyard] pod {pod_id} {state}; {cost_line(provider.price_per_hour, self.created)}")
            time.sleep(provider.poll_seconds)

    def stopped(self) -> int:
        """The pod stopped: a spot interruption (lost), or it stopped itself (terminated, or kept with
        --no-terminate)."""
        job, pod_id = self.job, self.instance_id
        if self.provider.preempted():
            warn(f"spot pod {pod_id} was interrupted; checkpoints synced so far are in {job.store}. "
                 "Launch again to resume from there.")
            self.end(keep_disk=True)
            return EXIT_LOST
        if job.limits.terminate_on_stop:  # seed 000 --terminate
            say(f"pod {pod_id} stopped itself: terminating it (limits.terminate_on_stop)")
            self.end(keep_disk=True)
            return EXIT_DONE
        self.ledger.record(PROVIDER, self.name, "stopped", instance_id=pod_id)
        self.ended = True
        warn(f"pod {pod_id} is stopped and kept (--no-terminate): its volume bills until "
             f"`invoke runpod.stop --run-id {job.run_id}`")
        return EXIT_DONE

    def detach(self) -> None:
        self.ended = True  # on purpose: it keeps running
        ends = "ends itself when the job ends" if self.job.limits.end_when_done else \
            "keeps running after the job (limits.end_when_done is false)"
        say(f"detached: pod {self.instance_id} runs at ${self.provider.price_per_hour:.2f}/h and {ends}. "
            f"Status: invoke runpod.status; end now: invoke runpod.stop --run-id {self.job.run_id}")


# ============================================================================================== other verbs


def _provider() -> RunPodProvider:
    return RunPodProvider(client())


def access_of(entry: dict) -> str:
    """How the launcher reaches a pod of the ledger: "ssh" or "start_command" (runpod.mode). Ledgers written before
    the key was `access` said it as `mode`, which now is the launch mode of every backend."""
    return entry.get("access") or ("start_command" if entry.get("mode") == "start_command" else "ssh")


def _connect(entry: dict, wait_seconds: float = 30.0):
    if access_of(entry) == "start_command":
        raise ConfigError("--run-id", f"run {entry.get('run_id')} runs in start_command mode: its pod has no SSH",
                          "follow it with `invoke runpod.status`, the progress webhook or the RunPod console")
    return connect(RunPodProvider(client(), mode="ssh"), entry, wait_seconds)


def status(handle: RunHandle | None = None) -> list[list]:
    """Live RunPod pods of the ledger (of one run, given its handle): RunPod's state, the run's step/loss/synced step
    (ssh mode), cost so far."""
    run_id = handle.run_id if handle else None
    provider = cleanup_provider()
    readable = lambda entry, listed: access_of(entry) != "start_command"  # noqa: E731 - a start_command pod has no sshd

    rows = [[entry.get("run_id"), entry["id"], entry.get("instance_id", ""), access_of(entry),
             f"{entry.get('gpu_count', '')}x {entry.get('gpu', '')}" + (" spot" if entry.get("spot") else ""),
             state, progress, cost_line(entry.get("price_per_hour") or 0, entry.get("created", entry["time"]))]
            for entry, state, progress in status_rows(provider, PROVIDER, run_id, REMOTE_DIR, readable)]
    table("RunPod pods", ["run", "name", "pod id", "access", "gpu", "state", "run state", "cost"], rows)
    return rows


def logs(handle: RunHandle, follow: bool = False) -> None:
    """The run's runtime.log from its pod over SSH (or the copy fetched when it ended); a start_command pod, which
    has no SSH, through REST v2's pod log stream (getPodLogs: the container's output)."""
    from helpers.backends.instance_flow import ledger_entries

    entries = [e for e in ledger_entries(PROVIDER, handle.run_id) if access_of(e) == "start_command"
               and e.get("instance_id")]
    if entries:
        api = client()
        for line in api.log_lines(entries[-1]["instance_id"], follow=follow):
            print(line, flush=True)
        return
    show_log(PROVIDER, "RunPod pod", handle.run_id, _connect, REMOTE_DIR, follow)


def fetch(handle: RunHandle, dest: str | Path | None = None) -> Path:
    """Copy the run's output directory from its pod (ssh mode) to runs/<run_id>/outputs (or `dest`)."""
    return fetch_outputs(PROVIDER, "RunPod pod", handle.run_id, _connect, REMOTE_DIR, dest)


def stop(handle: RunHandle) -> None:
    """Terminate the run's pod(s) now (or the one pod the handle names) and mark the ledger."""
    end_now(_provider(), PROVIDER, "pod", handle.run_id, handle.native_id)


def gpus(gpu_count: int = 1, spot: bool | None = None) -> list[list]:
    """GPU type ids (what --gpu takes) with memory, list prices per GPU-hour and pod stock per cloud, live from REST
    v2's catalog (seed 000's list); `spot` True adds GraphQL's spot prices (refused in one line once it is gone)."""
    api = client()
    catalog = api.gpu_catalog(gpu_count)
    spot_from = {}
    if spot:
        for t in api.spot_gpu_types(gpu_count):
            prices = [p for p in (t.get("secureSpotPrice"), t.get("communitySpotPrice")) if p]
            spot_from[t["id"]] = min(prices) if prices else None
    stock = {tier: {t["id"]: t for t in types} for tier, types in catalog.items()}
    money = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) and v else "-"  # noqa: E731
    rows = []
    for t in sorted(catalog["secure"], key=lambda t: (t.get("memory") or 0, t["id"])):
        offered = {tier: stock[tier].get(t["id"], {}) for tier in stock}
        if spot is False and not any(o.get(tier) for tier, o in offered.items()):
            continue
        if spot and not spot_from.get(t["id"]):
            continue
        rows.append([t["id"], t.get("name"), t.get("memory"),
                     money(t["price"]["secure"] if t.get("secure") else None),
                     money(t["price"]["community"] if t.get("community") else None),
                     *([money(spot_from.get(t["id"]))] if spot else []),
                     " / ".join(str(o.get("availability", "-")).capitalize() if o.get(tier) else "-"
                                for tier, o in offered.items()),
                     max(t["maxCount"]["secure"], t["maxCount"]["community"])])
    table(f"RunPod GPU types (USD per GPU-hour; pod stock for {gpu_count} GPU{'s' if gpu_count > 1 else ''}, "
          "secure / community)", ["id (--gpu)", "name", "GB", "secure", "community", *(["spot from"] if spot else []),
                                  "stock", "max per pod"], rows)
    return rows
