"""RunPod pods as the cloud lifecycle rents them: the pod's spec and name, its start command, and the provider
(helpers/backends/provider.py) that creates, reads, stops, finds, relaunches and ends them.

Names. The ledger key is the lifecycle's `ty-<run_id>-<hex6>`; the pod at RunPod is called
`<runpod.name or python-<time>> [ty-<run_id>-<hex6>]`: seed 000's name stays readable in the console and the tag in
brackets is how `find`, `invoke cleanup` and `invoke runpod.status` recognise Trainyard's pods."""

from __future__ import annotations

import re
import time

from helpers.backends.provider import (
    ERROR, GONE, PENDING, RUNNING, STOPPED, Cleanable, FindsByName, InstanceInfo, Provider, Relaunches, Stops, Transient,
)
from helpers.backends.runpod.api import VOLUME_MOUNT, RunPodApi, client
from helpers.backends.runpod.catalog import offers as catalog_offers
from helpers.bundle import BUNDLE_ENV
from helpers.errors import ConfigError

PROVIDER = "runpod"
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"  # starts sshd when PUBLIC_KEY is set
TAG = re.compile(r"(?:^|\[)(ty-[a-z0-9-]+-[0-9a-f]{6})\]?$")
STATES = {"PROVISIONING": PENDING, "STARTING": PENDING, "RUNNING": RUNNING, "EXITED": STOPPED, "ERROR": ERROR,
          "TERMINATED": GONE}  # REST v2 PodStatus
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@:=-]+$")  # what may appear unquoted in the start command


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


class RunPodProvider(Provider, FindsByName, Stops, Relaunches, Cleanable):
    """The lifecycle's provider (helpers/backends/lifecycle.py) and `invoke cleanup`'s, for RunPod pods."""

    name, noun = PROVIDER, "pod"

    def __init__(self, api: RunPodApi, *, job=None, price_per_hour: float = 0.0, spot: bool = False,
                 bid_per_gpu: float | None = None, env: dict[str, str] | None = None, docker_args: str = "",
                 mode: str = "ssh", poll_seconds: float = 10.0, display: str | None = None):
        self.api, self.job, self.price_per_hour, self.spot, self.bid_per_gpu = api, job, price_per_hour, spot, bid_per_gpu
        self.env, self.docker_args, self.mode, self.poll_seconds = dict(env or {}), docker_args, mode, poll_seconds
        self.display = display
        self.last_pod: dict | None = None
        self.pod_names: dict[str, str] = {}  # tag -> the pod's full name, as created

    def with_pod_env(self, env: dict[str, str], docker_args: str) -> "RunPodProvider":
        """This provider creating pods with this environment and start command (start_command mode stages them)."""
        import copy

        other = copy.copy(self)
        other.env, other.docker_args, other.pod_names = dict(env), docker_args, {}
        return other

    # --- the lifecycle's -----------------------------------------------------------------------------
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

    # --- Relaunches (helpers/backends/recovery.py) -------------------------------------------------------
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
        return catalog_offers(self.api, self.job)[0]

    def find(self, name: str) -> str | None:
        for pod in self.api.pods():
            if tag_of(pod.get("name")) == name and pod.get("status") != "TERMINATED":
                return pod["id"]
        return None

    # --- Cleanable (`invoke cleanup`) ---------------------------------------------------------------------
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
