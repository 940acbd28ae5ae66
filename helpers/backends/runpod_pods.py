"""RunPod pods: seed 000 (train_in_runpod.py) and seed 004 (Thinnka Podsmith) through the real `runpod` SDK.

    plan(job)                  live GPU offers (prices, stock) -> helpers.planning.plan_gpu: the Hub/gated check,
                               the memory estimate and the cheapest GPU type that fits, on-demand or spot as asked
    launch(job, secrets)       create the pod (ledger line first), run the job, watch it, end it; two modes:
    status / logs / fetch / terminate / gpus / cleanup_provider / rehearsal

Every RunPod API call is in `RunPodApi` (GraphQL through the SDK today; the REST API can replace it there alone).
The key is RUNPOD_API_KEY (.env or the environment, helpers.secrets); the base URL RUNPOD_API_BASE_URL (the SDK
reads that variable on every call; default https://api.runpod.io). Idempotent calls are repeated on 429/5xx,
dropped connections and gateway pages with exponential backoff and jitter (tenacity); a create is never repeated
blindly: the shared flow first looks for the pod by name (a create whose answer was lost rents no second pod).

Two ways to run the job (`runpod.mode`):

* `ssh` (seed 004). The pod exposes 22/tcp and gets PUBLIC_KEY (SSH_PUBLIC_KEY / RUNPOD_SSH_PUBLIC_KEY, else the
  public half of SSH_PRIVATE_KEY_PATH / runpod.ssh_private_key, default ~/.ssh/id_ed25519). The shared flow
  (helpers/backends/instance_flow.py) waits for a public IP and a mapped 22/tcp, uploads runs/<run_id>/ (.env with
  the secrets, mode 0600), starts the runtime detached, streams its log with the progress bar and the cost so far,
  fetches the outputs to runs/<run_id>/outputs and terminates the pod.
* `start_command` (seed 000). No SSH at all: the runtime bundle and job.json travel zipped and base64-encoded in
  the pod's environment (TRAINYARD_BUNDLE_0, _1, ... in 32 KiB pieces), the secrets (HF_TOKEN, WANDB_API_KEY) as
  pod environment variables; the pod's start command (dockerArgs) only decodes the bundle and runs it — it holds
  no secret, so none is ever in a process's argv. The launcher polls the pod's status (one call per
  runpod.poll_seconds) and prints the state and the cost so far; logs are on the pod (and go to the progress
  webhook, notify.webhook_url). Pod env values have no documented size limit at RunPod [INF]; the bundle is
  about 90 KB of base64.

Names. The ledger key is the shared flow's `ty-<run_id>-<hex6>`; the pod at RunPod is called
`<runpod.name or python-<time>> [ty-<run_id>-<hex6>]`: seed 000's name stays readable in the console and the tag in
brackets is how `find`, `invoke cleanup` and `invoke runpod.status` recognise Trainyard's pods.

Ending (seed 000's options). `limits.end_when_done` (seed: `!CMD STOP`) makes the runtime end its own pod when the
job ends, with the pod-scoped RUNPOD_API_KEY RunPod injects (helpers/runtime/machine.py): podTerminate, or podStop
with `limits.terminate_on_stop: false` (`--no-terminate`). A pod that stops (EXITED) is terminated by the
launcher when terminate_on_stop is on, else left stopped (its volume still bills; the ledger says `stopped`).
Past `limits.time_limit` (only with `limits.timeout`, seed `--timeout`) the runtime stops training, syncs the last
checkpoint and ends the pod; the launcher is the backstop `limits.grace_s` later (ssh mode through the
shared flow's deadline; start_command mode here), so the final sync is not cut short. In ssh mode the launcher
always terminates after fetching the outputs (terminate_on_stop only governs the runtime's own end there).
Spot: `podRentInterruptable` with `runpod.bid_per_gpu` (default: the spot price); a preempted pod (EXITED,
INTERRUPTABLE) is terminated and the run resumes from the store on the next launch.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

from helpers.backends.instance_flow import (
    COST_EVERY_S, ERROR, EXIT_DONE, EXIT_FAILED, EXIT_LOST, EXIT_STOPPED, GONE, PENDING, RUNNING, STOPPED, Flow, HostSpec,
    InstanceInfo, Transient, call, connect, cost_line, end_now, fetch_outputs, run_on_instance, show_log, status_rows,
    translated,
)
from helpers.config import RunpodSection
from helpers.console import say, table, warn
from helpers.errors import ConfigError, ProviderError

PROVIDER = "runpod"
REMOTE_DIR = RunpodSection.model_fields["remote_dir"].default  # where a run lives on its pod unless the ledger says
DEFAULT_BASE_URL = "https://api.runpod.io"
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"  # starts sshd when PUBLIC_KEY is set
DEFAULT_PRIVATE_KEY = "~/.ssh/id_ed25519"
VOLUME_MOUNT = "/workspace"
BUNDLE_ENV = "TRAINYARD_BUNDLE"
BUNDLE_CHUNK = 32 * 1024  # characters of base64 per env var (Linux allows 128 KiB per environment string)
TAG = re.compile(r"(?:^|\[)(ty-[a-z0-9-]+-[0-9a-f]{6})\]?$")
STATES = {"CREATED": PENDING, "RESTARTING": PENDING, "RUNNING": RUNNING, "EXITED": STOPPED, "PAUSED": STOPPED,
          "DEAD": ERROR, "TERMINATED": GONE}
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
    (serverless/utils/rp_upload.py), after which every HTTP request of the process (the Hub check's, ...) prints a
    line on stderr. Every first import of the SDK goes through here (RunPodApi.__init__, _classify)."""
    import logging
    import sys

    if "runpod" in sys.modules:
        return sys.modules["runpod"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import runpod

    root.handlers[:] = handlers
    root.setLevel(level)
    return runpod


def _classify(exc: BaseException, what: str) -> BaseException:
    """An SDK error -> Transient (worth repeating), ProviderError / ConfigError (final, one line) or itself."""
    import requests

    _import_runpod()
    from runpod.error import AuthenticationError, QueryError

    if isinstance(exc, AuthenticationError):
        return ConfigError("RUNPOD_API_KEY", f"RunPod refused the API key ({exc})", "check RUNPOD_API_KEY in .env")
    if isinstance(exc, QueryError):
        message = str(exc.message or exc)
        if TRANSIENT.search(message):
            return Transient(f"RunPod: {message[:200]}")
        if NO_CAPACITY in message:
            return ProviderError(f"{what}: RunPod has no capacity for it right now ({message}) — retry later, "
                                 "or pick another GPU type or cloud (`invoke runpod.gpus` shows the stock)")
        return ProviderError(f"{what}: RunPod says: {message[:300]}")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, json.JSONDecodeError)):
        return Transient(f"RunPod API unreachable or garbled ({type(exc).__name__}: {str(exc)[:150]})")
    if isinstance(exc, KeyError) and exc.args == ("data",):  # e.g. a 429 whose JSON body is not GraphQL
        return Transient("RunPod answered without data")
    return exc


class RunPodApi:
    """Every RunPod API call Trainyard makes. GraphQL through runpod 1.12 today (`create_pod`, `get_pod`,
    `get_pods`, `stop_pod`, `terminate_pod`, and `run_graphql_query` for what the SDK lacks: prices with stock,
    spot pods); replacing it with the REST API touches only this class.

    Idempotent calls repeat on 429/5xx/dropped connections (exponential backoff with jitter, `attempts` tries,
    then ProviderError); creates raise Transient at once, for the caller to look before it creates again."""

    def __init__(self, api_key: str, base_url: str | None = None, attempts: int = 6, max_wait_s: float = 30.0):
        _import_runpod()
        self.api_key, self.attempts, self.max_wait_s = api_key, attempts, max_wait_s
        self.base_url = (base_url or os.environ.get("RUNPOD_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    def _sdk(self):
        runpod = _import_runpod()  # slow import (aiohttp, ...): only when a call is made

        runpod.api_key = self.api_key  # the SDK never reads RUNPOD_API_KEY itself
        os.environ["RUNPOD_API_BASE_URL"] = self.base_url  # ... but reads this on every call
        return runpod

    def _once(self, fn, *args, what: str, **kwargs):
        with translated(_classify, what, chain=False):  # never chain: a QueryError carries the pod env
            return fn(*args, **kwargs)

    def _retried(self, fn, *args, what: str, **kwargs):
        """The one retry helper (instance_flow.call, tenacity) around a classified call."""
        return call(lambda: self._once(fn, *args, what=what, **kwargs), what=what, attempts=self.attempts,
                    max_wait_s=self.max_wait_s)

    # --- reading ------------------------------------------------------------------------------------
    def gpu_types(self, gpu_count: int = 1, cloud: str = "any") -> list[dict]:
        """Every GPU type with list prices per GPU-hour, and stock for `gpu_count` GPUs (lowestPrice)."""
        from runpod.api.graphql import run_graphql_query

        self._sdk()
        secure = {"secure": ", secureCloud: true", "community": ", secureCloud: false"}.get(cloud, "")
        query = GPU_TYPES_QUERY.format(count=int(gpu_count), cloud=secure)
        answer = self._retried(run_graphql_query, query, what="listing RunPod GPU types")
        return answer["data"]["gpuTypes"] or []

    def get(self, pod_id: str) -> dict | None:
        """The pod (desiredStatus, runtime.ports, podType, costPerHr, ...), None once it is terminated."""
        sdk = self._sdk()
        return self._retried(sdk.get_pod, pod_id, what=f"reading pod {pod_id}")

    def pods(self) -> list[dict]:
        sdk = self._sdk()
        return self._retried(sdk.get_pods, what="listing pods") or []

    # --- changing -----------------------------------------------------------------------------------
    def create_on_demand(self, spec: dict) -> dict:
        """runpod.create_pod (podFindAndDeployOnDemand). Not repeated here: see the class docstring."""
        sdk = self._sdk()
        for key in ("name", "image_name", "docker_args", "template_id", "gpu_type_id"):
            _literal(spec.get(key), key)
        for key, value in (spec.get("env") or {}).items():
            _literal(key, "env")
            _literal(value, f"env {key}")
        return self._once(sdk.create_pod, **spec, what=f"creating pod {spec['name']}")

    def create_spot(self, spec: dict, bid_per_gpu: float) -> dict:
        """An interruptible pod: podRentInterruptable with a bid (the SDK has no spot call)."""
        from runpod.api.graphql import run_graphql_query

        self._sdk()
        answer = self._once(run_graphql_query, spot_mutation(spec, bid_per_gpu), what=f"creating spot pod {spec['name']}")
        return answer["data"]["podRentInterruptable"]

    def stop(self, pod_id: str) -> None:
        sdk = self._sdk()
        self._retried(sdk.stop_pod, pod_id, what=f"stopping pod {pod_id}")

    def terminate(self, pod_id: str) -> bool:
        """podTerminate; False when RunPod no longer knows the pod (already gone counts as ended)."""
        sdk = self._sdk()
        try:
            self._retried(sdk.terminate_pod, pod_id, what=f"terminating pod {pod_id}")
        except ProviderError as exc:
            if "not found" in str(exc).lower():
                return False
            raise
        return True


def _literal(value, key: str) -> None:
    """The SDK inlines strings into GraphQL without escaping: refuse what would break (or inject into) the query."""
    if isinstance(value, str) and re.search(r'["\\\n\r]', value):
        raise ConfigError(key, "contains a quote, backslash or newline, which RunPod's SDK cannot send",
                          "remove it from that value")


def spot_mutation(spec: dict, bid_per_gpu: float) -> str:
    """podRentInterruptable with the same input fields create_pod sends (CLOUD_APIS.md §1.3.6)."""
    q = json.dumps
    fields = [f"bidPerGpu: {bid_per_gpu:.4f}", f"name: {q(spec['name'])}", f"imageName: {q(spec.get('image_name') or '')}",
              f"cloudType: {spec.get('cloud_type', 'ALL')}", "startSsh: true", f"gpuTypeId: {q(spec['gpu_type_id'])}",
              "supportPublicIp: true", f"gpuCount: {int(spec.get('gpu_count', 1))}",
              f"volumeInGb: {int(spec.get('volume_in_gb') or 0)}", "minVcpuCount: 1", "minMemoryInGb: 1",
              f"dockerArgs: {q(spec.get('docker_args') or '')}", f"volumeMountPath: {q(spec.get('volume_mount_path') or VOLUME_MOUNT)}"]
    if spec.get("container_disk_in_gb") is not None:
        fields.append(f"containerDiskInGb: {int(spec['container_disk_in_gb'])}")
    if spec.get("ports"):
        fields.append(f"ports: {q(spec['ports'].replace(' ', ''))}")
    if spec.get("env"):
        fields.append("env: [" + ", ".join(f"{{ key: {q(k)}, value: {q(v)} }}" for k, v in spec["env"].items()) + "]")
    if spec.get("template_id"):
        fields.append(f"templateId: {q(spec['template_id'])}")
    return ("mutation {\n  podRentInterruptable(input: { " + ", ".join(fields) + " }) {\n"
            "    id desiredStatus costPerHr machineId podType\n  }\n}")


def client() -> RunPodApi:
    """The API with RUNPOD_API_KEY (environment beats .env) and RUNPOD_API_BASE_URL (environment, .env, default)."""
    from helpers.workspace import current

    key = current().secrets.require("RUNPOD_API_KEY", "to talk to the RunPod API")
    return RunPodApi(key, current().setting("RUNPOD_API_BASE_URL"))


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
    """The create_pod arguments for this job on this offer (the same fields go into podRentInterruptable)."""
    image, template = job.runpod.image, job.runpod.template_id
    if not image and not template:
        image = DEFAULT_IMAGE
    return {
        "name": pod_name(display if display is not None else job.runpod.name, tag),
        "image_name": image or "",
        "template_id": None if image else template,
        "gpu_type_id": gpu_type_id(offer),
        "cloud_type": {"secure": "SECURE", "community": "COMMUNITY"}.get(offer.cloud or "", "ALL"),
        "gpu_count": offer.gpu_count,
        "support_public_ip": True,
        "start_ssh": True,
        "volume_in_gb": job.runpod.volume_gb,
        "container_disk_in_gb": job.runpod.container_disk_gb,
        "volume_mount_path": VOLUME_MOUNT,
        "ports": "22/tcp" if job.runpod.mode == "ssh" else None,
        "env": env,
        "docker_args": docker_args,
    }


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


def bundle_env(run_dir: Path) -> dict[str, str]:
    """TRAINYARD_BUNDLE_<i>: trainyard_runtime.pyz + job.json, zipped, base64, in BUNDLE_CHUNK pieces."""
    from helpers.bundle import BUNDLE_NAME

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in (BUNDLE_NAME, "job.json"):
            bundle.write(run_dir / name, name)
    text = base64.b64encode(buffer.getvalue()).decode()
    return {f"{BUNDLE_ENV}_{i}": text[start:start + BUNDLE_CHUNK] for i, start in enumerate(range(0, len(text), BUNDLE_CHUNK))}


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
            pod = self.api.create_on_demand(spec)
        if not pod or not pod.get("id"):
            raise Transient("RunPod answered the create without a pod id")
        return pod["id"]

    def get(self, pod_id: str) -> InstanceInfo:
        pod = self.last_pod = self.api.get(pod_id)
        if pod is None:
            return InstanceInfo(GONE, None, None)
        state = STATES.get(str(pod.get("desiredStatus")), PENDING)
        if state != RUNNING:
            return InstanceInfo(state, None, None)
        if self.mode != "ssh":
            return InstanceInfo(RUNNING, None, None)
        for port in (pod.get("runtime") or {}).get("ports") or []:  # seed 004: a public IP and a mapped 22/tcp
            if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("ip") and port.get("publicPort"):
                return InstanceInfo(RUNNING, port["ip"], int(port["publicPort"]))
        return InstanceInfo(PENDING, None, None)  # desiredStatus RUNNING is immediate; the container may not be up

    def preempted(self) -> bool:
        """The last status read shows a spot pod taken away (EXITED and INTERRUPTABLE)."""
        pod = self.last_pod or {}
        return pod.get("desiredStatus") == "EXITED" and pod.get("podType") == "INTERRUPTABLE"

    def terminate(self, pod_id: str, keep_disk: bool = True) -> str | None:
        """podTerminate, then confirm that RunPod no longer lists the pod (gone already counts as ended).
        RunPod has no detached disks: terminating deletes the pod's volume too (the checkpoints are in the store)."""
        sent = self.api.terminate(pod_id)
        for _ in range(60):
            pod = self.api.get(pod_id)
            if pod is None or pod.get("desiredStatus") == "TERMINATED":
                return None if sent else f"pod {pod_id} was already gone"
            time.sleep(1)
        raise Transient(f"pod {pod_id} still {pod.get('desiredStatus')} after podTerminate")

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
            if tag_of(pod.get("name")) == name and pod.get("desiredStatus") != "TERMINATED":
                return pod["id"]
        return None

    # --- cleanup interface --------------------------------------------------------------------------
    def list_instances(self) -> list[dict]:
        """Every pod of the account tagged ty-* (running or stopped: a stopped pod's volume still bills)."""
        return [{"id": p["id"], "name": tag_of(p.get("name")), "state": p.get("desiredStatus"),
                 "price_per_hour": p.get("costPerHr")}
                for p in self.api.pods() if tag_of(p.get("name")) and p.get("desiredStatus") != "TERMINATED"]


def cleanup_provider() -> RunPodProvider | None:
    """For `invoke cleanup`: a provider when RUNPOD_API_KEY exists, else None."""
    from helpers.workspace import current

    if not current().secrets.get("RUNPOD_API_KEY"):
        return None
    return RunPodProvider(client())


# ============================================================================================== planning


def offers(api: RunPodApi | None, job, offline: bool = False):
    """(offers, source): live from gpuTypes (prices and stock for the job's GPU count), or the dated table."""
    from helpers import offers as offers_mod

    if api is not None and not offline:
        types = api.gpu_types(job.resources.gpu_count, job.resources.cloud)
        return offers_mod.from_runpod_gpu_types(types, job.resources.gpu_count), "live"
    return offers_mod.fallback_offers("runpod"), "price table"


def plan(job, offline: bool = False, *, api: RunPodApi | None = None, token: str | None = None,
         check_hub: bool = True) -> dict:
    """The pod Trainyard would create: helpers.planning.plan_gpu (gated check, memory estimate, cheapest GPU type
    that fits, counts 1/2/4/6/8) on RunPod's live offers of the wanted kind (spot or on-demand), plus the pod."""
    from helpers.bundle import BUNDLE_NAME, render_commands
    from helpers.planning import plan_gpu

    from helpers.net import unreachable

    note = None
    if api is None and not offline:
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

    the_plan = plan_gpu(job, PROVIDER, live, token=token, offline=offline or not check_hub)
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


def launch(job, host_secrets: dict[str, str], mode: str = "auto", *, the_plan: dict | None = None, api: RunPodApi | None = None, runs_dir: Path = Path("runs"), ledger=None,
           detach: bool = False, token: str | None = None, recover: bool | None = False) -> int:
    """Create the pod and run the job on it (runpod.mode ssh: the shared flow; start_command: below).
    Returns 0 done, 1 failed, 3 stopped early (time limit), 4 pod lost (spot), 130 interrupted.
    `recover` (None: on for spot): relaunch a lost pod and resume (instance_flow.supervise, both modes)."""
    api = api or client()
    the_plan = the_plan or plan(job, api=api, token=token)
    if the_plan["price_source"] != "live":  # no network, or no key: nothing can be created
        raise ProviderError(f"no live RunPod offers ({(the_plan['warnings'] or ['price table'])[0]}): nothing was created")
    offer = the_plan["offer"]
    price = float(the_plan["price_per_hour"])
    fields = {"mode": job.runpod.mode, "spot": offer.spot, "gpu": gpu_type_id(offer), "gpu_count": offer.gpu_count,
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
    return run_on_instance(provider, job, offer, host_secrets, spec, mode=mode, detach=detach, ledger=ledger,
                           runs_dir=runs_dir, recover=recover, the_plan=the_plan,
                           flow_class=Flow if job.runpod.mode == "ssh" else StartCommandFlow)


class StartCommandFlow(Flow):
    """runpod.mode start_command (seed 000): no SSH. The bundle travels in the pod's environment, the pod's start
    command runs it, and the launcher polls the pod until it ends. Create, the ledger, Ctrl-C, SIGTERM, recovery
    and ending are the one lifecycle's (instance_flow: run_on_instance, Flow)."""

    @staticmethod
    def stage(provider, job, machine: dict, host_env: dict[str, str], spec: HostSpec, mode: str, runs_dir: Path) -> Path:
        from helpers.bundle import stage_run

        # no secrets in it; no heartbeat either (nobody attaches over SSH): only how the pod ends itself
        run_dir = stage_run(job, spec.machine, {}, provider.price_per_hour, runs_dir=runs_dir)
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
                say(f"pod {pod_id}: {(provider.last_pod or {}).get('desiredStatus') or 'gone'} "
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
                warn(f"pod {pod_id} is {(provider.last_pod or {}).get('desiredStatus')}: terminating it")
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


def _connect(provider: RunPodProvider, entry: dict, wait_seconds: float = 30.0):
    if entry.get("mode") == "start_command":
        raise ConfigError("--run-id", f"run {entry.get('run_id')} runs in start_command mode: its pod has no SSH",
                          "follow it with `invoke runpod.status`, the progress webhook or the RunPod console")
    provider.mode = "ssh"  # get() reports the pod's SSH address only in ssh mode
    return connect(provider, entry, wait_seconds)


def status(handle=None) -> list[list]:
    """Live RunPod pods of the ledger (of one run, given its handle): RunPod's state, the run's step/loss/synced step
    (ssh mode), cost so far."""
    run_id = handle.run_id if handle else None
    provider = cleanup_provider()

    def look(entry: dict) -> tuple[str, bool]:
        pod = provider.api.get(entry["instance_id"])
        state = pod["desiredStatus"] if pod else "gone"
        provider.mode = "ssh"  # get() reports the pod's SSH address only in ssh mode
        return state, state == "RUNNING" and entry.get("mode") != "start_command"

    rows = [[entry.get("run_id"), entry["id"], entry.get("instance_id", ""), entry.get("mode", "ssh"),
             f"{entry.get('gpu_count', '')}x {entry.get('gpu', '')}" + (" spot" if entry.get("spot") else ""),
             state, progress, cost_line(entry.get("price_per_hour") or 0, entry.get("created", entry["time"]))]
            for entry, state, progress in status_rows(provider, PROVIDER, run_id, REMOTE_DIR, look)]
    table("RunPod pods", ["run", "name", "pod id", "mode", "gpu", "state", "run state", "cost"], rows)
    return rows


def logs(handle, follow_lines: bool = False) -> None:
    """The run's runtime.log from its pod over SSH (or the copy fetched when it ended)."""
    show_log(PROVIDER, "RunPod pod", handle.run_id, lambda entry: _connect(_provider(), entry), REMOTE_DIR, follow_lines)


def fetch(handle, dest: str | Path | None = None) -> Path:
    """Copy the run's output directory from its pod (ssh mode) to runs/<run_id>/outputs (or `dest`)."""
    return fetch_outputs(PROVIDER, "RunPod pod", handle.run_id, lambda entry: _connect(_provider(), entry), REMOTE_DIR,
                         dest)


def stop(handle) -> None:
    """Terminate the run's pod(s) now (or the one pod the handle names) and mark the ledger."""
    end_now(_provider(), PROVIDER, "pod", handle.run_id, handle.native_id)


def gpus(gpu_count: int = 1, spot: bool | None = None) -> list[list]:
    """GPU type ids (what --gpu takes) with memory, prices per GPU-hour and stock, live (seed 000's list)."""
    api = client()
    rows = []
    money = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) and v else "-"  # noqa: E731
    for t in sorted(api.gpu_types(gpu_count), key=lambda t: (t.get("memoryInGb") or 0, t["id"])):
        if t["id"] == "unknown":
            continue
        low = t.get("lowestPrice") or {}
        spot_prices = [p for p in (t.get("secureSpotPrice"), t.get("communitySpotPrice")) if p]
        if spot is True and not spot_prices or spot is False and not (t.get("securePrice") or t.get("communityPrice")):
            continue
        rows.append([t["id"], t.get("displayName"), t.get("memoryInGb"), money(t.get("securePrice")),
                     money(t.get("communityPrice")), money(min(spot_prices) if spot_prices else None),
                     low.get("stockStatus") or "-", ",".join(map(str, low.get("availableGpuCounts") or [])) or "-"])
    table(f"RunPod GPU types (USD per GPU-hour; stock for {gpu_count} GPU{'s' if gpu_count > 1 else ''})",
          ["id (--gpu)", "name", "GB", "secure", "community", "spot from", "stock", "counts"], rows)
    return rows


# ============================================================================================== rehearsal


@contextmanager
def rehearsal(job, root: Path | None = None):
    """`runpod.train --rehearse`: a RunPodEmulator (pods are real sshd hosts on this machine) in a temp folder,
    a local Hub server when the store is hf://, an SSH key, and the environment pointing at them, for the
    whole launch. Yields (job, ledger, emulator); the pods run this machine's Python (runpod.python -> this interpreter
    unless set), everything else is as configured. Needs root and openssh-server (see packages.apt)."""
    import tempfile

    from emulators.runpod_api import RunPodEmulator
    from emulators.sshhost import generate_keypair
    from helpers.ledger import Ledger
    from helpers.stores import can_vanish

    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        raise ConfigError("--rehearse", "the emulated pods are sshd hosts in their own namespaces: this needs root "
                          "and openssh-server", "run as root after `make setup-system` (or drop --rehearse)")
    with tempfile.TemporaryDirectory(prefix="trainyard-rehearsal-", dir=root) as tmp:
        tmp = Path(tmp)
        saved = dict(os.environ)
        emu = RunPodEmulator(tmp / "runpod", api_key="rp_rehearsal_key").start()
        hub = None
        try:
            key, _ = generate_keypair(tmp / "keys")
            os.environ.update(emu.sdk_env())
            os.environ["SSH_PRIVATE_KEY_PATH"] = str(key)
            for name in ("SSH_PUBLIC_KEY", "RUNPOD_SSH_PUBLIC_KEY"):
                os.environ.pop(name, None)
            job = job.model_copy(deep=True)
            job.runpod.ssh_private_key = None
            if job.runpod.python == "python3":
                job.runpod.python = sys.executable
            if job.store.startswith("hf://") or can_vanish(job, PROVIDER, job.limits.recover):
                from emulators.hub_server import HubServer

                hub = HubServer(tmp / "hub").start()
                token = "hf_rehearsal_" + "0" * 24
                hub.add_token(token, job.store[5:].split("/")[0] if job.store.startswith("hf://") else "rehearsal")
                os.environ.update({**hub.client_env(token), "HF_HOME": str(tmp / "hf_home")})
                _point_hub_client(hub.url, tmp / "hf_home")
            say(f"rehearsal: RunPod emulator at {emu.url} (pods are sshd hosts under {tmp}), "
                + (f"local Hub at {hub.url}, " if hub else "") + f"pods run {job.runpod.python}")
            yield job, Ledger(tmp / "ledger.jsonl"), emu
        finally:
            live = emu.live_pods()
            emu.stop()
            if hub is not None:
                hub.stop()
            os.environ.clear()
            os.environ.update(saved)
            say(f"rehearsal over: {len(live)} pod(s) were still live and are now terminated" if live else
                "rehearsal over: no pod left")


def _point_hub_client(url: str, hf_home: Path) -> None:
    """huggingface_hub reads its endpoint at import time: point an already imported client at the local Hub."""
    if "huggingface_hub" not in sys.modules:
        return
    from huggingface_hub import constants

    for name, value in {"ENDPOINT": url, "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
                        "HF_HUB_DISABLE_XET": True, "HF_HUB_CACHE": str(hf_home / "hub")}.items():
        setattr(constants, name, value)
