"""A local stand-in for the Verda (formerly DataCrunch) public REST API, for tests and `--rehearse`.

The real `verda` SDK (1.25) talks to it unchanged::

    emu = VerdaEmulator(root=tmp_path / "verda").start()
    client = VerdaClient(emu.client_id, emu.client_secret, base_url=emu.base_url)   # base_url ends in /v1

What it serves (paths under `/v1`, each an operation of Verda's OpenAPI file, tests/reference/; the tests check
every answer against that file's schemas, tests/openapi_contract.py):
  POST /oauth2/token (client_credentials + refresh_token), /balance, /instance-types (prices as strings),
  /instance-availability[/{type}] (`is_spot`, `location_code`; the deprecated `isSpot` too, which the SDK sends),
  /locations, /images, POST /instances (answers the new id as PLAIN TEXT; `tags` kept, keys lowercased),
  GET /instances[/{id}] (`?tag=key` or `?tag=key=value`, repeated: every one must match [DOC]), PUT /instances
  (actions), /ssh-keys (+ the deprecated /sshkeys), /scripts, /volumes (+ /trash, PUT actions, DELETE /{id}),
  /volume-types, /long-term/periods/instances.  Fields the file requires as strings are "" when there is nothing
  to say (`startup_script_id`, `os_volume_id` before it exists, a detached volume's `instance_id` and `target`)
  [INF: the file does not say what the API sends then]; `ip` is null until there is one (nullable in the file).
  Errors are JSON `{"code", "message"}` with a 4xx/5xx status, so the SDK raises
  `verda.exceptions.APIException(code, message)`.

It does only what the real API does; each behaviour carries its provenance (CLOUD_APIS.md Part 2): [SRC] the SDK's
source, [DOC] Verda's docs, Go SDK and CLI, [3P] others' recorded use, [INF] inferred.

Instances.  Create answers the id as plain text [SRC].  The states before `running` are `boot_states`: by default
`ordered` -> `provisioning` (the SDK's create waits while `ordered` [SRC]; Verda's own integration test then sees
`provisioning` [DOC]); `boot_states=LONG_BOOT` walks `new` -> `ordered` -> `validating` -> `pending` ("waiting
for capacity") -> `provisioning` (the Go SDK's and CLI's status constants [DOC]; their order [INF]), each state
order_delay_s / (len - 1) long [INF] --(sshd up, at least boot_delay_s)--> `running` (ip 127.0.0.1, os_volume_id
set [SRC]).  A delete or shutdown before `running` is refused: "Can't discontinue a provisioning
instance" [3P dstack], the same words for new/ordered/validating/pending [INF].  `shutdown` -> `offline` (processes
stopped, disk kept) [SRC]; an offline instance KEEPS BILLING until it is deleted [DOC verda-cli cmd/vm/action.go:
"Shutdown instances continue to charge your account"].  `start`/`boot` -> provisioning -> running again (a NEW
ssh port) [INF].  `delete`/`discontinue` -> `discontinued` and hidden from `GET /instances`, still answered by
`GET /instances/{id}` [INF].  A spot preemption (`preempt(id)`, a test control) kills every process at once and
leaves the instance listed as `discontinued`, `ip: null` [3P].  `PUT /instances` answers 202 with one result per
id, 207 when some of several ids failed (items with "error" and "statusCode") [DOC Go SDK], a 4xx error body when
every id failed [INF].  Availability takes `isSpot` (Python SDK) and `is_spot` (Go SDK, CLI) [SRC].  Refusals use
the messages the real API is known to send [3P]: "Can't discontinue a provisioning instance", "Can't discontinue a
discontinued instance", "Invalid instance id", "Operating system is not valid for this instance type".
Credentials: only the account's client id and secret, exchanged at `POST /oauth2/token` [SRC]; an instance gets no
credential and no environment from the API (a test checks that the emulator never grows one).

Each instance is a real SSH host (`emulators.sshhost.SshHost`): its /root is the directory of its
OS volume, `<root>/volumes/<volume id>/`.  Booting a new instance from a detached OS volume
(`image=<volume id>`, or an OS volume among `existing_volumes`) reuses that directory, so the files the
previous instance wrote are there (how `resume_local` works).  The authorized keys are the public keys of
the `ssh_key_ids` given at create; the startup script, if any, is written to /root/.verda/startup-script
(on the OS volume) and runs as the host's start command on the instance's first boot only (its output is in
/root/.sshhost/command.log).  Debian's sshd, so `apt-get install openssh-server` and root are needed;
`VerdaEmulator(..., ssh=False)` gives API-only instances.

EMULATOR-ONLY differences (not in the real API):
  * The instance's IP is 127.0.0.1 and sshd listens on a random port.  A real Verda instance is reached
    on port 22.  The port is in the instance object as `emulator_ssh_port` (raw JSON only; the SDK's
    `Instance` drops unknown keys - read it with `client._http_client.get("/instances/{id}",
    path_params={"id": id}).json()`), from `VerdaEmulator.ssh_port(id)`, and from
    `GET /_emulator/instances/{id}/ssh-port`.  Volumes carry `emulator_disk_path`; an instance whose sshd
    could not start goes to status `error` with the reason in `emulator_error`.
  * Test controls: the Python methods below, and the same over HTTP under `/_emulator/...` (outside `/v1`,
    unauthenticated, loopback only).
  * Catalog prices are an illustrative snapshot (GPU_FACTS.md 3.2 "snapshot A" where known); spot uses
    `spot_price`, `pricing: DYNAMIC_PRICE` uses `dynamic_price`, LONG_TERM uses the on-demand price.
    Billing (`spend()`) is price x seconds from `running` until deleted (offline included [DOC]), not rounded
    to the real 10-minute steps [INF].
  * Capacity is a count of instance slots per (instance type, location, spot or not); instances that are
    new/ordered/validating/pending/provisioning/running/offline/error hold a slot.  Spot and on-demand pools
    are separate [INF].
  * `on_spot_discontinue` is accepted (and ignored) on on-demand instances; a third-party note says the
    real API rejects it.

Run it alone: `python -m emulators.verda_api --root DIR [--port N]` (client id/secret from
VERDA_CLIENT_ID / VERDA_CLIENT_SECRET, else the test defaults).  It prints one JSON line with the URLs.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from emulators.serving import EmulatorHTTPServer

__all__ = [
    "DEFAULT_INSTANCE_TYPES",
    "IMAGES",
    "LOCATIONS",
    "ApiError",
    "VerdaEmulator",
    "main",
]

# ----------------------------------------------------------------------------------------------------
# Catalog (illustrative; prices are per instance per hour, USD, sent as STRINGS like the real API)
# ----------------------------------------------------------------------------------------------------

LOCATIONS: list[dict[str, Any]] = [
    {"code": "FIN-01", "name": "Finland 1", "country_code": "FI", "country": "Finland", "city": "Helsinki"},
    {"code": "FIN-02", "name": "Finland 2", "country_code": "FI", "country": "Finland", "city": "Helsinki"},
    {"code": "FIN-03", "name": "Finland 3", "country_code": "FI", "country": "Finland", "city": "Helsinki"},
    {"code": "ICE-01", "name": "Iceland 1", "country_code": "IS", "country": "Iceland", "city": "Keflavik"},
]
_LOCATION_CODES = [loc["code"] for loc in LOCATIONS]

_GPU_OS = [
    "ubuntu-24.04-cuda-12.8-open-docker",
    "ubuntu-22.04-cuda-12.4-docker",
    "ubuntu-24.04",
    "ubuntu-22.04",
]
_CPU_OS = ["ubuntu-24.04", "ubuntu-22.04"]


def _stable_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"verda-emulator/{kind}/{name}"))


IMAGES: list[dict[str, Any]] = [
    {
        "id": _stable_id("image", image_type),
        "image_type": image_type,
        "name": name,
        "details": details,
        "category": "ubuntu",
        "is_default": image_type == "ubuntu-24.04-cuda-12.8-open-docker",
        "is_cluster": False,
    }
    for image_type, name, details in [
        ("ubuntu-24.04-cuda-12.8-open-docker", "Ubuntu 24.04 + CUDA 12.8 Open + Docker",
         ["Ubuntu 24.04", "CUDA 12.8", "Docker"]),
        ("ubuntu-22.04-cuda-12.4-docker", "Ubuntu 22.04 + CUDA 12.4 + Docker",
         ["Ubuntu 22.04", "CUDA 12.4", "Docker"]),
        ("ubuntu-24.04", "Ubuntu 24.04", ["Ubuntu 24.04"]),
        ("ubuntu-22.04", "Ubuntu 22.04", ["Ubuntu 22.04"]),
    ]
]
_IMAGE_BY_ID = {img["id"]: img["image_type"] for img in IMAGES}
_OS_NAME = {
    "ubuntu-24.04-cuda-12.8-open-docker": "Ubuntu 24.04",
    "ubuntu-22.04-cuda-12.4-docker": "Ubuntu 22.04",
    "ubuntu-24.04": "Ubuntu 24.04",
    "ubuntu-22.04": "Ubuntu 22.04",
}


def _itype(name: str, model: str, gpu_desc: str, display: str, gpus: int, gpu_mem: int, cpus: int,
           ram: int, price: str, spot: str) -> dict[str, Any]:
    is_cpu = gpus == 0
    return {
        "id": _stable_id("instance-type", name),
        "instance_type": name,
        "model": model,
        "name": gpu_desc if not is_cpu else f"CPU Node {cpus}V",
        "display_name": display,
        "manufacturer": "AMD" if is_cpu else "NVIDIA",
        "description": "Dedicated Hardware Instance",
        "best_for": ["CPU workloads"] if is_cpu else ["Large model inference", "Multi-GPU training"],
        "cpu": {"description": f"{cpus} CPU", "number_of_cores": cpus},
        "gpu": {"description": f"{gpus}x {gpu_desc}" if gpus else "", "number_of_gpus": gpus},
        "memory": {"description": f"{ram}GB RAM", "size_in_gigabytes": ram},
        "gpu_memory": {"description": f"{gpu_mem * gpus}GB GPU RAM" if gpus else "",
                       "size_in_gigabytes": gpu_mem * gpus},
        "storage": {"description": "dynamic"},
        "p2p": "" if gpus < 2 else "NVLink",
        "currency": "usd",
        "price_per_hour": price,
        "spot_price": spot,
        "dynamic_price": f"{float(price) * 0.85:.2f}",
        "max_dynamic_price": price,
        "supported_os": list(_CPU_OS if is_cpu else _GPU_OS),
    }  # serverless prices and deploy_warning: optional strings in the file, left out


DEFAULT_INSTANCE_TYPES: list[dict[str, Any]] = [
    _itype("CPU.4V.16G", "CPU Node", "CPU", "CPU Node 4 vCPU 16GB", 0, 0, 4, 16, "0.05", "0.02"),
    _itype("1A6000.10V", "A6000", "RTX A6000 48GB", "NVIDIA RTX A6000 48GB", 1, 48, 10, 60, "0.49", "0.1475"),
    _itype("1RTX6000ADA.10V", "RTX6000Ada", "RTX 6000 Ada 48GB", "NVIDIA RTX 6000 Ada 48GB",
           1, 48, 10, 60, "0.83", "0.25"),
    _itype("1L40S.20V", "L40S", "L40S 48GB", "NVIDIA L40S 48GB", 1, 48, 20, 60, "0.91", "0.275"),
    _itype("1A100.40S.22V", "A100", "A100 SXM4 40GB", "NVIDIA A100 SXM4 40GB", 1, 40, 22, 120, "0.72", "0.22"),
    _itype("1A100.22V", "A100", "A100 SXM4 80GB", "NVIDIA A100 SXM4 80GB", 1, 80, 22, 120, "1.16", "0.58"),
    _itype("1H100.80S.30V", "H100", "H100 SXM5 80GB", "NVIDIA H100 SXM5 80GB", 1, 80, 30, 120, "1.99", "1.00"),
    _itype("2H100.80S.80V", "H100", "H100 SXM5 80GB", "NVIDIA H100 SXM5 80GB", 2, 80, 80, 370, "3.98", "2.00"),
    _itype("4H100.80S.176V", "H100", "H100 SXM5 80GB", "NVIDIA H100 SXM5 80GB", 4, 80, 176, 740, "7.96", "4.00"),
    _itype("8H100.80S.176V", "H100", "H100 SXM5 80GB", "NVIDIA H100 SXM5 80GB", 8, 80, 176, 1480, "15.92", "8.00"),
    _itype("1H200.141S.44V", "H200", "H200 SXM5 141GB", "NVIDIA H200 SXM5 141GB",
           1, 141, 44, 185, "2.59", "1.295"),
    _itype("1B200.30V", "B200", "B200 SXM6 180GB", "NVIDIA B200 SXM6 180GB", 1, 180, 30, 184, "3.79", "0.95"),
]

_VOLUME_SPEEDS = {"burst_bandwidth": 2500, "continuous_bandwidth": 2000, "internal_network_speed": 50,
                  "iops": "100000", "throughput_gbps": 2}  # required by the file; these values are its examples [INF]
VOLUME_TYPES: list[dict[str, Any]] = [
    {"type": "NVMe", "price": {"price_per_month_per_gb": 0.2, "cps_per_gb": 0.0000000763, "currency": "usd"},
     "is_shared_fs": False, **_VOLUME_SPEEDS},
    {"type": "HDD", "price": {"price_per_month_per_gb": 0.05, "cps_per_gb": 0.0000000191, "currency": "usd"},
     "is_shared_fs": False, **_VOLUME_SPEEDS},
    {"type": "NVMe_Shared", "price": {"price_per_month_per_gb": 0.2, "cps_per_gb": 0.0000000763,
                                      "currency": "usd"}, "is_shared_fs": True, **_VOLUME_SPEEDS},
]
_VOLUME_PRICE = {v["type"]: v["price"]["price_per_month_per_gb"] for v in VOLUME_TYPES}

LONG_TERM_PERIODS: list[dict[str, Any]] = [
    {"code": "3_MONTHS", "name": "3 months", "is_enabled": True, "unit_name": "month", "unit_value": 3,
     "discount_percentage": 14},
    {"code": "6_MONTHS", "name": "6 months", "is_enabled": True, "unit_name": "month", "unit_value": 6,
     "discount_percentage": 20},
    {"code": "12_MONTHS", "name": "12 months", "is_enabled": True, "unit_name": "month", "unit_value": 12,
     "discount_percentage": 30},
]

# Live states hold a capacity slot and count as "live" for `live_instances()`.
_BOOTING = ("new", "ordered", "validating", "pending", "provisioning")  # before `running` [DOC Go SDK constants]
SHORT_BOOT = ("ordered", "provisioning")  # what the SDK and Verda's integration test see [SRC][DOC]
LONG_BOOT = _BOOTING  # every state the Go SDK and CLI name before running; the order is [INF]
_LIVE = (*_BOOTING, "running", "offline", "error")
_DEFAULT_OS_VOLUME_GB = 50
_MAX_CALLS = 50_000  # the calls log drops its oldest tenth beyond this (long --rehearse runs)


class ApiError(Exception):
    """An error answered as `{"code", "message"}` with an HTTP status (what the SDK turns into APIException)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class _Volume:
    id: str
    name: str
    size: int
    type: str
    location: str
    is_os_volume: bool
    disk: Path
    created_at: str
    status: str = "detached"
    instance_id: str | None = None
    deleted_at: str | None = None


@dataclass
class _Instance:
    id: str
    instance_type: str
    hostname: str
    description: str
    image: str
    location: str
    is_spot: bool
    contract: str
    pricing: str
    price_per_hour: float
    ssh_key_ids: list[str]
    startup_script_id: str | None
    tags: list[dict[str, str]]  # {id, key, value}; value "" for a freeform tag [DOC]
    os_volume: str  # id of its OS volume (always known internally; shown only once provisioned)
    on_spot_discontinue: str
    created_at: str
    jupyter_token: str
    status: str = "ordered"
    deleted: bool = False  # deleted via the API: hidden from GET /instances
    provisioned: bool = False
    first_boot: bool = True
    boot_gen: int = 0
    host: Any = None
    port: int | None = None
    error: str | None = None
    running_intervals: list[list[float | None]] = field(default_factory=list)
    preempted_at: float | None = None
    threads: list[threading.Thread] = field(default_factory=list)


class VerdaEmulator:
    """Verda REST API emulator on 127.0.0.1 (stdlib ThreadingHTTPServer). See the module docstring.

    Settable attributes (also via `POST /_emulator/settings`): `boot_delay_s` (minimum time in
    `provisioning`), `order_delay_s` (time in `ordered`), `token_ttl_s` (`expires_in` of new tokens),
    `rate_limit_per_s` (None = unlimited; above it `/v1` answers 429), `balance_usd` (funds before spend),
    `default_capacity` (slots per type/location/pool unless `set_capacity` said otherwise).
    """

    def __init__(self, root: Path, client_id: str = "verda_test_id", client_secret: str = "verda_test_secret",
                 port: int = 0, *, boot_delay_s: float = 0.5, order_delay_s: float = 0.2,
                 boot_states: tuple[str, ...] = SHORT_BOOT,
                 token_ttl_s: float = 3600.0, default_capacity: int = 4, balance_usd: float = 1000.0,
                 rate_limit_per_s: float | None = None, instance_types: list[dict[str, Any]] | None = None,
                 ssh: bool = True) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must be non-empty")
        self.root = Path(root)
        self.client_id, self.client_secret = client_id, client_secret
        self._port_wanted = port
        self.latency_s = 0.0  # added to every API request (bench: real APIs answer in ~100 ms, this one in ~2)
        self.boot_delay_s = boot_delay_s
        self.order_delay_s = order_delay_s
        self.boot_states = tuple(boot_states)
        # a delete refused while booting, in these words: [3P] for provisioning; the others' words [INF], so a test
        # can give other words (the money promise may rest on the state, never on the message)
        self.booting_refusal = "Can't discontinue a {status} instance"
        # False: a machine boots (running, an ip, billing) but its SSH never answers (a broken image, a dead sshd);
        # `host(id).kill_sshd()` makes SSH die later on a running one. Test controls, not API behaviours.
        self.ssh_answers = True
        self.token_ttl_s = token_ttl_s
        self.default_capacity = default_capacity
        self.balance_usd = balance_usd
        self.rate_limit_per_s = rate_limit_per_s
        self.ssh = ssh
        self._types = {t["instance_type"]: copy.deepcopy(t)
                       for t in (instance_types if instance_types is not None else DEFAULT_INSTANCE_TYPES)}
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._server: EmulatorHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self._instances: dict[str, _Instance] = {}
        self._volumes: dict[str, _Volume] = {}
        self._ssh_keys: dict[str, dict[str, Any]] = {}
        self._scripts: dict[str, dict[str, Any]] = {}
        self._capacity: dict[tuple[str, str, bool], int] = {}
        self._access: dict[str, float] = {}  # access token -> expires (monotonic) [SRC oauth2 client credentials]
        self._refresh: dict[str, float] = {}  # refresh token -> expires monotonic
        self._failures: list[dict[str, Any]] = []
        self._calls: list[dict[str, Any]] = []
        self._recent: collections.deque[float] = collections.deque()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> VerdaEmulator:
        """Start serving; returns self. `.url` / `.base_url` are valid afterwards."""
        if self._server is not None:
            return self
        (self.root / "volumes").mkdir(parents=True, exist_ok=True)
        self._stop_event.clear()
        server = EmulatorHTTPServer(("127.0.0.1", self._port_wanted), _Handler)
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        self._bound_port = server.server_address[1]
        self._serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                              name="verda-emulator-http", daemon=True)
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Delete every instance (all their processes die), then stop serving. Volumes stay on disk."""
        self._stop_event.set()
        hosts: list[Any] = []
        threads: list[threading.Thread] = []
        with self._lock:
            now = time.monotonic()
            for inst in self._instances.values():
                threads.extend(inst.threads)
                if inst.status in _LIVE:
                    inst.boot_gen += 1
                    self._end_running(inst, now)
                    if inst.host is not None:
                        hosts.append(inst.host)
                        inst.host, inst.port = None, None
                    inst.status, inst.deleted = "discontinued", True
                    for vol in self._volumes.values():
                        if vol.instance_id == inst.id:
                            vol.status, vol.instance_id = "detached", None
        for host in hosts:
            _kill_host(host)
        for thread in threads:  # boot threads kill any host they started once they see the stop
            if thread is not threading.current_thread():
                thread.join(timeout=60)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=10)
            self._serve_thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (kept after stop(), so URLs taken earlier still compare equal)."""
        if self._bound_port is None:
            raise RuntimeError("emulator not started")
        return self._bound_port

    @property
    def url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:40123 (controls live under /_emulator)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass to `VerdaClient(..., base_url=...)`: `<url>/v1`, no trailing slash."""
        return self.url + "/v1"

    # ------------------------------------------------------------------ test controls (Python)

    def fail_next(self, n: int = 1, status: int = 500, *, path: str | None = None, method: str | None = None,
                  code: str | None = None, message: str | None = None, after_effect: bool = False) -> None:
        """Make the next `n` matching `/v1` requests fail with `status` (500, 429, 503, ...).

        `path`: only requests whose path (relative to /v1, e.g. "/instances") starts with it; by default every
        path except the token endpoint. `method`: only that HTTP method. `after_effect=True` performs the
        request first and then answers the error (the client never learns that e.g. the create happened).
        A 429 carries `Retry-After: 1`.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        if status < 400:
            raise ValueError("status must be an error status (>= 400)")
        default = {429: ("too_many_requests", "Too many requests, retry later"),
                   500: ("server_error", "Internal server error"),
                   502: ("server_error", "Bad gateway"),
                   503: ("service_unavailable", "Service unavailable")}.get(status, ("server_error", "Injected error"))
        if path is not None and (path == "/v1" or path.startswith("/v1/")):
            path = path[3:]
        with self._lock:
            self._failures.append({"remaining": n, "status": status, "path": path,
                                   "method": method.upper() if method else None,
                                   "code": code or default[0], "message": message or default[1],
                                   "after_effect": after_effect})

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def preempt(self, instance_id: str) -> None:
        """Spot kill: every process of the instance dies at once, status `discontinued`, `ip` null; the OS
        volume follows `on_spot_discontinue` (default keep_detached -> `detached`, reusable); data volumes
        detach. Raises KeyError for an unknown id, ValueError if not spot or not live."""
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise KeyError(instance_id)
            if not inst.is_spot:
                raise ValueError(f"instance {instance_id} is not a spot instance")
            if inst.status not in _LIVE:
                raise ValueError(f"instance {instance_id} is {inst.status}, not live")
            host = self._take_down(inst, "discontinued")
            inst.preempted_at = time.time()
            remove_dirs: list[Path] = []
            for vol in self._volumes_of(inst):
                if vol.id == inst.os_volume:
                    policy = inst.on_spot_discontinue
                    if policy == "move_to_trash":
                        self._trash_volume(vol)
                    elif policy == "delete_permanently":
                        remove_dirs.append(self._remove_volume(vol))
                    else:
                        vol.status, vol.instance_id = "detached", None
                else:
                    vol.status, vol.instance_id = "detached", None
        _kill_host(host)
        for path in remove_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def ssh_port(self, instance_id: str) -> int:
        """The sshd port of a running instance (host 127.0.0.1, user root). A real Verda instance uses 22."""
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise KeyError(instance_id)
            if inst.status != "running" or inst.port is None:
                raise RuntimeError(f"instance {instance_id} is {inst.status}, no ssh port")
            return inst.port

    def host(self, instance_id: str) -> Any:
        """The SshHost currently backing an instance (None while it is not running), e.g. to kill its sshd."""
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise KeyError(instance_id)
            return inst.host

    def live_instances(self) -> list[dict[str, Any]]:
        """Instances that are ordered/provisioning/running/offline/error (what still costs or holds a slot)."""
        with self._lock:
            return [self._instance_view(i) for i in self._instances.values() if i.status in _LIVE]

    def instance(self, instance_id: str) -> dict[str, Any]:
        """The instance object as the API shows it (also for deleted ones)."""
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise KeyError(instance_id)
            return self._instance_view(inst)

    def volume(self, volume_id: str) -> dict[str, Any]:
        with self._lock:
            vol = self._volumes.get(volume_id)
            if vol is None:
                raise KeyError(volume_id)
            return self._volume_view(vol)

    def volumes(self) -> list[dict[str, Any]]:
        """Every volume the emulator still knows, including trashed ones."""
        with self._lock:
            return [self._volume_view(v) for v in self._volumes.values()]

    def disk_path(self, volume_id: str) -> Path:
        """Directory backing a volume (the /root of an instance booted from it)."""
        with self._lock:
            return self._volumes[volume_id].disk

    def spend(self, instance_id: str | None = None) -> float:
        """USD billed so far: price_per_hour x hours spent `running` (one instance, or all)."""
        with self._lock:
            now = time.monotonic()
            insts = [self._instances[instance_id]] if instance_id else list(self._instances.values())
            return sum(i.price_per_hour * _running_seconds(i, now) / 3600.0 for i in insts)

    def set_capacity(self, instance_type: str, count: int, *, location: str | None = None,
                     is_spot: bool | None = None) -> None:
        """Slots for a type; `location=None` means every location, `is_spot=None` both pools."""
        if instance_type not in self._types:
            raise KeyError(instance_type)
        with self._lock:
            for loc in [location] if location else _LOCATION_CODES:
                for spot in [is_spot] if is_spot is not None else [False, True]:
                    self._capacity[(instance_type, loc, spot)] = int(count)

    def capacity(self, instance_type: str, location: str, is_spot: bool) -> int:
        with self._lock:
            return self._capacity.get((instance_type, location, is_spot), self.default_capacity)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every request seen: {t, method, path, query, body, status, auth, user_agent}; secrets redacted."""
        with self._lock:
            return copy.deepcopy(self._calls)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def expire_tokens(self) -> None:
        """Invalidate every client access token (the next SDK call gets 401 unauthorized_request)."""
        with self._lock:
            self._access = {}

    def wait_for_status(self, instance_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the instance has `status`; returns its view. TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.instance(instance_id)
            if view["status"] == status:
                return view
            if view["status"] == "error":
                raise RuntimeError(f"instance {instance_id} failed to boot: {self._instances[instance_id].error}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"instance {instance_id} is {view['status']}, not {status}, after {timeout}s")
            time.sleep(0.05)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "instances": [self._instance_view(i) for i in self._instances.values()],
                "volumes": [self._volume_view(v) for v in self._volumes.values()],
                "ssh_keys": list(copy.deepcopy(self._ssh_keys).values()),
                "scripts": [{k: v for k, v in s.items() if k != "script"} for s in self._scripts.values()],
                "spend": self.spend(),
                "settings": self._settings(),
            }

    # ------------------------------------------------------------------ internals: bookkeeping

    def _settings(self) -> dict[str, Any]:
        return {"boot_delay_s": self.boot_delay_s, "order_delay_s": self.order_delay_s, "boot_states": list(self.boot_states),
                "token_ttl_s": self.token_ttl_s, "rate_limit_per_s": self.rate_limit_per_s,
                "balance_usd": self.balance_usd, "default_capacity": self.default_capacity, "ssh": self.ssh, "ssh_answers": self.ssh_answers}

    def _volumes_of(self, inst: _Instance) -> list[_Volume]:
        return [v for v in self._volumes.values() if v.instance_id == inst.id]

    def _end_running(self, inst: _Instance, now: float) -> None:
        if inst.running_intervals and inst.running_intervals[-1][1] is None:
            inst.running_intervals[-1][1] = now

    def _take_down(self, inst: _Instance, status: str) -> Any:
        """Under the lock: leave the running state; returns the host to kill (outside the lock). Billing ends
        only when the instance is gone: an `offline` one keeps billing [DOC verda-cli]."""
        inst.boot_gen += 1
        if status != "offline":
            self._end_running(inst, time.monotonic())
        host, inst.host, inst.port = inst.host, None, None
        inst.status = status
        return host

    def _trash_volume(self, vol: _Volume) -> None:
        vol.status, vol.instance_id, vol.deleted_at = "deleted", None, _now_iso()

    def _remove_volume(self, vol: _Volume) -> Path:
        self._volumes.pop(vol.id, None)
        return vol.disk

    def _used(self, instance_type: str, location: str, is_spot: bool) -> int:
        return sum(1 for i in self._instances.values()
                   if i.instance_type == instance_type and i.location == location and i.is_spot == is_spot
                   and i.status in _LIVE)

    def _free(self, instance_type: str, location: str, is_spot: bool) -> bool:
        return self._used(instance_type, location, is_spot) < self.capacity(instance_type, location, is_spot)

    def _instance_view(self, inst: _Instance) -> dict[str, Any]:
        t = self._types[inst.instance_type]
        os_vol = self._volumes.get(inst.os_volume)
        shown_ip = "127.0.0.1" if inst.status in ("running", "offline") and inst.provisioned else None
        return {
            "id": inst.id,
            "instance_type": inst.instance_type,
            "price_per_hour": inst.price_per_hour,
            "hostname": inst.hostname,
            "description": inst.description,
            "status": inst.status,
            "created_at": inst.created_at,
            "ssh_key_ids": list(inst.ssh_key_ids),
            "cpu": copy.deepcopy(t["cpu"]),
            "gpu": copy.deepcopy(t["gpu"]),
            "memory": copy.deepcopy(t["memory"]),
            "gpu_memory": copy.deepcopy(t["gpu_memory"]),
            "storage": {"description": f"{os_vol.size if os_vol else _DEFAULT_OS_VOLUME_GB}GB NVMe"},
            "ip": shown_ip,
            "os_volume_id": inst.os_volume if inst.provisioned else "",  # required string: "" until it exists [INF]
            "location": inst.location,
            "image": inst.image,
            "startup_script_id": inst.startup_script_id or "",  # required string: "" for none [INF]
            "is_spot": inst.is_spot,
            "contract": inst.contract,
            "pricing": inst.pricing,
            "os_name": _OS_NAME.get(inst.image, "Ubuntu 24.04"),
            "jupyter_token": inst.jupyter_token,
            "volume_ids": [v.id for v in self._volumes_of(inst)],
            "tags": copy.deepcopy(inst.tags),
            "emulator_ssh_port": inst.port if inst.status == "running" else None,
            "emulator_error": inst.error,
        }

    def _volume_view(self, vol: _Volume) -> dict[str, Any]:
        inst = self._instances.get(vol.instance_id) if vol.instance_id else None
        per_gb = _VOLUME_PRICE.get(vol.type, 0.2)
        share = f"nfs.{vol.location.lower()}.datacrunch.io:volume-{vol.id[:8]}"
        view = {
            "id": vol.id,
            "status": vol.status,
            "instance_id": vol.instance_id or "",  # required strings: "" when there is none [INF]
            "name": vol.name,
            "size": vol.size,
            "type": vol.type,
            "location": vol.location,
            "is_os_volume": vol.is_os_volume,
            "created_at": vol.created_at,
            "target": ("vda" if vol.is_os_volume else "vdb") if inst else "",
            "ssh_key_ids": list(inst.ssh_key_ids) if inst else [],
            # objects, as the file's example shows and the SDK reads them [SRC] (its schema says strings: a bug of
            # the file, corrected in tests/openapi_contract.py; Trainyard reads neither)
            "instances": ([{"id": inst.id, "ip": "127.0.0.1" if inst.status == "running" else None,
                            "instance_type": inst.instance_type, "status": inst.status,
                            "hostname": inst.hostname}] if inst else []),
            "pseudo_path": f"volume-{vol.id[:8]}",
            "create_directory_command": "mkdir -p /mnt/volume",
            "mount_command": f"mount -t nfs -o nconnect=16 {share} /mnt/volume",
            "filesystem_to_fstab_command": f"grep -qxF '{share} /mnt/volume nfs defaults 0 0' /etc/fstab || "
                                           f"echo '{share} /mnt/volume nfs defaults 0 0' | sudo tee -a /etc/fstab",
            "contract": "PAY_AS_YOU_GO",
            "base_hourly_cost": round(vol.size * per_gb / 730.0, 6),
            "monthly_price": round(vol.size * per_gb, 2),
            "currency": "usd",
            "long_term": {},  # a required object; no long-term contract here [INF]
            "tags": [],
            "emulator_disk_path": str(vol.disk),
        }
        if vol.status == "deleted":  # the trash's own shape: its fields, not the mount commands [DOC]
            for key in ("pseudo_path", "create_directory_command", "mount_command", "filesystem_to_fstab_command",
                        "long_term"):
                del view[key]
            view.update(deleted_at=vol.deleted_at, is_permanently_deleted=False)
        return view

    def _new_volume(self, name: str, size: int, vtype: str, location: str, is_os: bool) -> _Volume:
        vid = str(uuid.uuid4())
        disk = self.root / "volumes" / vid
        disk.mkdir(parents=True, exist_ok=True)
        vol = _Volume(id=vid, name=name, size=int(size), type=vtype, location=location, is_os_volume=is_os,
                      disk=disk, created_at=_now_iso())
        self._volumes[vid] = vol
        return vol

    # ------------------------------------------------------------------ internals: boot

    def _launch_boot(self, inst: _Instance) -> None:
        """Under the lock: start the thread that takes the instance from ordered/provisioning to running."""
        gen = inst.boot_gen
        thread = threading.Thread(target=self._boot, args=(inst, gen), name=f"verda-boot-{inst.id[:8]}",
                                  daemon=True)
        inst.threads = [t for t in inst.threads if t.is_alive()] + [thread]
        thread.start()

    def _boot(self, inst: _Instance, gen: int) -> None:
        states = self.boot_states
        while inst.status in states[:-1]:  # walk the states before provisioning [DOC] states, [INF] order and pace
            if self._stop_event.wait(self.order_delay_s / max(1, len(states) - 1)):
                return
            with self._lock:
                if inst.boot_gen != gen or self._stop_event.is_set():
                    return
                if inst.status in states[:-1]:
                    inst.status = states[states.index(inst.status) + 1]
        with self._lock:
            if inst.boot_gen != gen or self._stop_event.is_set():
                return
            if inst.status != "provisioning":
                return
            began = time.monotonic()
            keys = "\n".join(self._ssh_keys[k]["key"] for k in inst.ssh_key_ids if k in self._ssh_keys)
            disk = self._volumes[inst.os_volume].disk
            start_command = None
            if inst.first_boot and inst.startup_script_id and inst.startup_script_id in self._scripts:
                # Written on the OS volume, so it is reachable inside wherever the emulator root lives.
                script_file = disk / ".verda" / "startup-script"
                script_file.parent.mkdir(parents=True, exist_ok=True)
                script_file.write_text(self._scripts[inst.startup_script_id]["script"])
                script_file.chmod(0o700)
                start_command = "/root/.verda/startup-script"
            env: dict[str, str] = {}  # the API puts nothing into an instance's environment [DOC: no such feature]
        host, port = None, None
        if self.ssh:
            try:
                from emulators.sshhost import SshHost

                host = SshHost(disk, keys + "\n" if keys else "", env=env, start_command=start_command,
                               on_exit=lambda h, inst=inst: self._host_exited(inst, h))
                port = host.start()
                if not self.ssh_answers:
                    host.kill_sshd()
            except Exception as exc:  # noqa: BLE001 - the instance goes to `error`, reason kept for tests
                _kill_host(host)
                with self._lock:
                    if inst.boot_gen == gen and inst.status == "provisioning":
                        inst.status, inst.error = "error", f"{type(exc).__name__}: {exc}"
                return
        remaining = self.boot_delay_s - (time.monotonic() - began)
        stale = remaining > 0 and self._stop_event.wait(remaining)
        with self._lock:
            if stale or self._stop_event.is_set() or inst.boot_gen != gen or inst.status != "provisioning":
                stale = True
            else:
                inst.host, inst.port = host, port
                inst.status, inst.provisioned, inst.first_boot = "running", True, False
                if not inst.running_intervals or inst.running_intervals[-1][1] is not None:
                    inst.running_intervals.append([time.monotonic(), None])  # (offline kept the meter running)
                for vol in self._volumes_of(inst):
                    vol.status = "attached"
        if stale:
            _kill_host(host)

    def _host_exited(self, inst: _Instance, host: Any) -> None:
        """An instance's host ended without the API asking (its init died): the VM is `offline`."""
        with self._lock:
            if inst.host is host and inst.status == "running":
                self._take_down(inst, "offline")

    # ------------------------------------------------------------------ HTTP entry

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, str, bytes, dict[str, str]]:
        """Answer one request: (status, content type, body, extra headers). Used by the HTTP handler."""
        split = urlsplit(raw_path)
        path = split.path.rstrip("/") or "/"
        if self.latency_s and not path.startswith("/_emulator"):
            time.sleep(self.latency_s)  # a real API's round trip (bench scale): not a behaviour of the API
        # a repeated `tag` is a list (kept comma-joined, as the log shows an array parameter); others: the last value
        query = {k: ",".join(v) if k == "tag" else v[-1]
                 for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                if path.endswith("/oauth2/token"):
                    parsed = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                else:
                    parsed = body.decode("utf-8", "replace")
        # an API call is logged before it takes effect (status 0 until answered, auth once known): whoever sees
        # its effect finds the call in the log
        call: dict[str, Any] = {"t": time.time(), "method": method, "path": path, "query": query,
                                "body": _redact(parsed), "status": 0, "auth": None,
                                "user_agent": headers.get("user-agent")}
        if not path.startswith("/_emulator"):
            with self._lock:
                if len(self._calls) >= _MAX_CALLS:
                    del self._calls[: _MAX_CALLS // 10]
                self._calls.append(call)
        try:
            if path.startswith("/_emulator"):
                result = self._control(method, path[len("/_emulator"):] or "/", parsed)
            elif path == "/v1" or path.startswith("/v1/"):
                result = self._api(method, path[3:] or "/", query, parsed, headers, call)
            else:
                raise ApiError(404, "not_found", f"No route for {method} {path}")
            status, ctype, payload, extra = result
        except ApiError as err:
            status, ctype = err.status, "application/json"
            payload = json.dumps({"code": err.code, "message": err.message}).encode()
            extra = err.headers
        except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer JSON, never hang the SDK
            status, ctype = 500, "application/json"
            payload = json.dumps({"code": "server_error", "message": f"emulator error: {exc!r}"}).encode()
            extra = {}
        call["status"] = status
        call["response"] = _redact(json.loads(payload)) if ctype == "application/json" and payload else None
        return status, ctype, payload, extra

    # ------------------------------------------------------------------ /v1

    def _api(self, method: str, rel: str, query: dict[str, str], body: Any, headers: dict[str, str],
             call: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
        if self._stop_event.is_set():
            raise ApiError(503, "service_unavailable", "The emulator is shutting down")
        self._rate_limit()
        failure = self._take_failure(method, rel)
        if failure is not None and not failure["after_effect"]:
            raise self._failure_error(failure)
        if rel == "/oauth2/token":
            if method != "POST":
                raise ApiError(405, "invalid_request", "Use POST")
            result = self._token(body)
        else:
            self._authenticate(headers)
            call["auth"] = "client"
            result = self._route(method, rel, query, body)
        if failure is not None:
            raise self._failure_error(failure)
        return result

    def _rate_limit(self) -> None:
        limit = self.rate_limit_per_s
        if not limit:
            return
        with self._lock:
            now = time.monotonic()
            while self._recent and now - self._recent[0] > 1.0:
                self._recent.popleft()
            if len(self._recent) >= limit:
                raise ApiError(429, "too_many_requests", "Too many requests, retry later", {"Retry-After": "1"})
            self._recent.append(now)

    def _take_failure(self, method: str, rel: str) -> dict[str, Any] | None:
        with self._lock:
            for rule in self._failures:
                if rule["method"] and rule["method"] != method:
                    continue
                if rule["path"] is None:
                    if rel == "/oauth2/token":
                        continue
                elif not rel.startswith(rule["path"]):
                    continue
                rule["remaining"] -= 1
                if rule["remaining"] <= 0:
                    self._failures.remove(rule)
                return dict(rule)
        return None

    @staticmethod
    def _failure_error(rule: dict[str, Any]) -> ApiError:
        extra = {"Retry-After": "1"} if rule["status"] == 429 else {}
        return ApiError(rule["status"], rule["code"], rule["message"], extra)

    def _token(self, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        if not isinstance(body, dict):
            raise _bad("Expected a JSON body")
        grant = body.get("grant_type")
        with self._lock:
            now = time.monotonic()
            if grant == "client_credentials":
                if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
                    raise ApiError(401, "unauthorized_request", "Invalid client credentials")
            elif grant == "refresh_token":
                expires = self._refresh.pop(str(body.get("refresh_token")), None)
                if expires is None or expires < now:
                    raise ApiError(401, "unauthorized_request", "Invalid or expired refresh token")
            else:
                raise _bad("Unsupported grant_type")
            access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(24)
            ttl = self.token_ttl_s
            self._access[access] = now + ttl
            self._refresh[refresh] = now + max(ttl * 10, 3600.0)
        return _json(200, {"access_token": access, "refresh_token": refresh, "scope": "cloud-api-v1",
                           "token_type": "Bearer", "expires_in": ttl})

    def _authenticate(self, headers: dict[str, str]) -> None:
        """A bearer access token from /oauth2/token, not expired [SRC]; the only kind of credential there is."""
        value = headers.get("authorization", "")
        token = value[7:].strip() if value[:7].lower() == "bearer " else ""
        with self._lock:
            expires = self._access.get(token)
            if expires is None or expires < time.monotonic():
                raise ApiError(401, "unauthorized_request", "Invalid or expired access token")

    def _route(self, method: str, rel: str, query: dict[str, str], body: Any
               ) -> tuple[int, str, bytes, dict[str, str]]:
        parts = [p for p in rel.split("/") if p]
        head = parts[0] if parts else ""
        n = len(parts)
        if head == "balance" and n == 1 and method == "GET":
            return _json(200, {"amount": round(self.balance_usd - self.spend(), 4), "currency": "usd"})
        if head == "instance-types" and n == 1 and method == "GET":
            return _json(200, list(copy.deepcopy(self._types).values()))
        if head == "instance-availability" and method == "GET":
            return self._availability(parts[1] if n == 2 else None, query)
        if head == "locations" and n == 1 and method == "GET":
            return _json(200, copy.deepcopy(LOCATIONS))
        if head == "images" and n == 1 and method == "GET":
            wanted = query.get("instance_type")
            if wanted and wanted in self._types:
                supported = set(self._types[wanted]["supported_os"])
                return _json(200, [i for i in copy.deepcopy(IMAGES) if i["image_type"] in supported])
            return _json(200, copy.deepcopy(IMAGES))
        if head == "volume-types" and n == 1 and method == "GET":
            return _json(200, copy.deepcopy(VOLUME_TYPES))
        if head == "long-term" and parts[1:] == ["periods", "instances"] and method == "GET":
            return _json(200, copy.deepcopy(LONG_TERM_PERIODS))
        if head == "long-term" and parts[1:] == ["periods", "clusters"] and method == "GET":
            return _json(200, [])
        if head == "instances":
            if n == 1 and method == "GET":
                return self._list_instances(query, [t for t in query.get("tag", "").split(",") if t])
            if n == 1 and method == "POST":
                return self._create_instance(body)
            if n == 1 and method == "PUT":
                return self._instance_action(body)
            if n == 2 and method == "GET":
                with self._lock:
                    inst = self._instances.get(parts[1])
                    if inst is None:
                        raise ApiError(404, "not_found", "Invalid instance id")
                    return _json(200, self._instance_view(inst))
        if head in ("sshkeys", "ssh-keys"):
            return self._named_items(method, parts, body, self._ssh_keys, "key", "keys", "ssh key")
        if head == "scripts":
            return self._named_items(method, parts, body, self._scripts, "script", "scripts", "startup script")
        if head == "volumes":
            if n == 1 and method == "GET":
                with self._lock:
                    status = query.get("status")
                    vols = [self._volume_view(v) for v in self._volumes.values()
                            if (v.status == status if status else v.status != "deleted")]
                return _json(200, vols)
            if n == 2 and parts[1] == "trash" and method == "GET":
                with self._lock:
                    return _json(200, [self._volume_view(v) for v in self._volumes.values()
                                       if v.status == "deleted"])
            if n == 1 and method == "POST":
                return self._create_volume(body)
            if n == 1 and method == "PUT":
                return self._volume_action(body)
            if n == 2 and method == "GET":
                with self._lock:
                    vol = self._volumes.get(parts[1])
                    if vol is None:
                        raise ApiError(404, "not_found", "Invalid volume id")
                    return _json(200, self._volume_view(vol))
            if n == 2 and method == "DELETE":
                permanent = bool(body.get("is_permanent")) if isinstance(body, dict) else False
                return self._delete_volumes([parts[1]], permanent)
        raise ApiError(404, "not_found", f"No route for {method} /v1{rel}")

    # ---------------------------------------------------------------- availability

    def _availability(self, instance_type: str | None, query: dict[str, str]
                      ) -> tuple[int, str, bytes, dict[str, str]]:
        raw_spot = query.get("isSpot", query.get("is_spot"))
        pools: list[bool]
        if raw_spot is None or raw_spot == "":
            pools = [False, True]
        elif raw_spot.lower() in ("true", "1"):
            pools = [True]
        elif raw_spot.lower() in ("false", "0"):
            pools = [False]
        else:
            raise _bad("isSpot must be true or false")
        location = query.get("location_code") or None
        if location is not None and location not in _LOCATION_CODES:
            raise _bad("Invalid location code")
        locations = [location] if location else _LOCATION_CODES
        with self._lock:
            if instance_type is not None:
                if instance_type not in self._types:
                    raise ApiError(404, "not_found", "Invalid instance type")
                ok = any(self._free(instance_type, loc, spot) for loc in locations for spot in pools)
                return _json(200, ok)
            result = [{"location_code": loc,
                       "availabilities": [t for t in self._types
                                          if any(self._free(t, loc, spot) for spot in pools)]}
                      for loc in locations]
        return _json(200, result)

    # ---------------------------------------------------------------- instances

    def _list_instances(self, query: dict[str, str], tags: list[str]) -> tuple[int, str, bytes, dict[str, str]]:
        """`?tag=key` (any value) or `?tag=key=value` (split at the first `=`), repeated: every one must match [DOC]."""
        status = query.get("status")
        wanted = [(t.split("=", 1)[0].lower(), t.split("=", 1)[1] if "=" in t else None) for t in tags]

        def tagged(inst: _Instance) -> bool:
            have = {(t["key"], t["value"]) for t in inst.tags}
            return all(any(k == key and (value is None or v == value) for k, v in have) for key, value in wanted)

        with self._lock:
            items = [self._instance_view(i) for i in self._instances.values()
                     if not i.deleted and (not status or i.status == status) and tagged(i)]
        return _json(200, items)

    def _create_instance(self, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        if not isinstance(body, dict):
            raise _bad("Expected a JSON object")
        for key in ("instance_type", "image", "hostname", "description"):
            if not isinstance(body.get(key), str) or not body.get(key):
                raise _bad(f"Missing or invalid field: {key}")
        itype_name, image = body["instance_type"], body["image"]
        location = body.get("location_code") or "FIN-03"
        contract = body.get("contract")
        is_spot = bool(body.get("is_spot")) or contract == "SPOT"
        contract = contract or ("SPOT" if is_spot else "PAY_AS_YOU_GO")
        if contract not in ("SPOT", "PAY_AS_YOU_GO", "LONG_TERM"):
            raise _bad("Invalid contract")
        if is_spot and contract != "SPOT":
            raise _bad("A spot instance must use the SPOT contract")
        pricing = body.get("pricing") or "FIXED_PRICE"
        if pricing not in ("FIXED_PRICE", "DYNAMIC_PRICE"):
            raise _bad("Invalid pricing")
        ssh_key_ids = body.get("ssh_key_ids") or []
        if not isinstance(ssh_key_ids, list):
            raise _bad("ssh_key_ids must be a list")
        os_volume = body.get("os_volume")
        if os_volume is not None and not isinstance(os_volume, dict):
            raise _bad("os_volume must be an object")
        policy = (os_volume or {}).get("on_spot_discontinue") or "keep_detached"
        if policy not in ("keep_detached", "move_to_trash", "delete_permanently"):
            raise _bad("Invalid on_spot_discontinue")
        new_volumes = body.get("volumes") or []
        existing = body.get("existing_volumes") or []
        if not isinstance(new_volumes, list) or not isinstance(existing, list):
            raise _bad("volumes and existing_volumes must be lists")
        with self._lock:
            itype = self._types.get(itype_name)
            if itype is None:
                raise _bad("Invalid instance type")
            if location not in _LOCATION_CODES:
                raise _bad("Invalid location code")
            for key_id in ssh_key_ids:
                if key_id not in self._ssh_keys:
                    raise _bad(f"Invalid ssh key id: {key_id}")
            script_id = body.get("startup_script_id")
            if script_id is not None and script_id not in self._scripts:
                raise _bad("Invalid startup script id")
            tags = _tags(body.get("tags"))
            # The boot disk: image = a detached OS volume id, else an OS volume among existing_volumes.
            boot_vol: _Volume | None = None
            if image in self._volumes:
                boot_vol = self._volumes[image]
                if not boot_vol.is_os_volume:
                    raise _bad("Volume is not an OS volume")
            attach: list[_Volume] = []
            for vid in existing:
                vol = self._volumes.get(vid)
                if vol is None or vol.status == "deleted":
                    raise _bad(f"Invalid volume id: {vid}")
                if vol.is_os_volume and boot_vol is None:
                    boot_vol = vol
                elif vol is not boot_vol:
                    attach.append(vol)
            for vol in ([boot_vol] if boot_vol else []) + attach:
                if vol.status != "detached":
                    raise _bad(f"Volume {vol.id} is not detached")
                if vol.location != location:
                    raise _bad(f"Volume {vol.id} is in {vol.location}; it must match the instance location "
                               f"{location}")
            if boot_vol is None:
                image_type = _IMAGE_BY_ID.get(image, image)
                if image_type not in itype["supported_os"]:
                    raise _bad("Operating system is not valid for this instance type")
            for spec in new_volumes:
                if (not isinstance(spec, dict) or spec.get("type") not in _VOLUME_PRICE
                        or not isinstance(spec.get("size"), int) or spec["size"] < 1):
                    raise _bad("Invalid volume specification")
            if self.balance_usd - self.spend() <= 0:
                raise ApiError(402, "insufficient_funds", "Insufficient funds")
            if not self._free(itype_name, location, is_spot):
                raise ApiError(503, "service_unavailable",
                               f"Not enough capacity for {itype_name} in {location}"
                               f"{' (spot)' if is_spot else ''}, try another location or instance type")
            if pricing == "DYNAMIC_PRICE":
                price = float(itype["dynamic_price"])
            else:
                price = float(itype["spot_price"] if is_spot else itype["price_per_hour"])
            inst_id = str(uuid.uuid4())
            hostname = body["hostname"]
            if boot_vol is None:
                size = int((os_volume or {}).get("size") or _DEFAULT_OS_VOLUME_GB)
                boot_vol = self._new_volume((os_volume or {}).get("name") or f"OS-NVMe-{hostname}", size,
                                            "NVMe", location, True)
                boot_vol.status = "creating"
            else:
                boot_vol.status = "attached"
            boot_vol.instance_id = inst_id
            for vol in attach:
                vol.status, vol.instance_id = "attached", inst_id
            for spec in new_volumes:
                vol = self._new_volume(spec.get("name") or f"Volume-{hostname}", spec["size"], spec["type"],
                                       location, False)
                vol.status, vol.instance_id = "creating", inst_id
            inst = _Instance(
                id=inst_id, instance_type=itype_name, hostname=hostname, description=body["description"],
                image=image, location=location, is_spot=is_spot, contract=contract, pricing=pricing,
                price_per_hour=price, ssh_key_ids=list(ssh_key_ids), startup_script_id=script_id, tags=tags,
                os_volume=boot_vol.id, on_spot_discontinue=policy, created_at=_now_iso(),
                jupyter_token=secrets.token_hex(16))
            inst.status = self.boot_states[0]
            self._instances[inst_id] = inst
            self._launch_boot(inst)
        return 202, "text/plain", inst_id.encode(), {}

    def _instance_action(self, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        if not isinstance(body, dict):
            raise _bad("Expected a JSON object")
        ids = _as_list(body.get("id"))
        action = body.get("action")
        if not ids or not all(isinstance(i, str) for i in ids):
            raise _bad("id must be an instance id or a list of them")
        volume_ids = body.get("volume_ids")
        if volume_ids is not None and not isinstance(volume_ids, list):
            raise _bad("volume_ids must be a list or null")
        permanently = bool(body.get("delete_permanently"))
        results: list[dict[str, Any]] = []
        errors: list[ApiError] = []
        for inst_id in ids:
            try:
                self._one_action(inst_id, action, volume_ids, permanently)
                results.append({"action": action, "instanceId": inst_id, "status": "success"})
            except ApiError as err:
                errors.append(err)
                results.append({"action": action, "instanceId": inst_id, "status": "error",
                                "error": err.message, "statusCode": err.status})
        if errors and len(errors) == len(ids):
            raise errors[0]
        return _json(207 if errors else 202, results)

    def _one_action(self, inst_id: str, action: Any, volume_ids: list[str] | None, permanently: bool) -> None:
        known = ("start", "boot", "shutdown", "force_shutdown", "delete", "discontinue", "delete_stuck",
                 "hibernate", "restore", "configure_spot", "deploy", "transfer")
        if action not in known:
            raise _bad(f"Invalid action: {action}")
        hosts: list[tuple[Any, bool]] = []  # (host, graceful)
        remove_dirs: list[Path] = []
        with self._lock:
            inst = self._instances.get(inst_id)
            if inst is None:
                raise ApiError(404, "not_found", "Invalid instance id")
            status = inst.status
            if action in ("start", "boot"):
                if status != "offline":  # an offline instance keeps its slot, so start needs no capacity check
                    raise _bad(f"Can't start a {status} instance")
                inst.status = "provisioning"
                inst.boot_gen += 1
                self._launch_boot(inst)
            elif action in ("shutdown", "force_shutdown"):
                if status == "discontinued":
                    raise _bad("Invalid instance id" if inst.deleted else "Can't shutdown a discontinued instance")
                if status == "offline":
                    raise _bad("Can't shutdown an offline instance")
                if status in _BOOTING and action == "shutdown":  # [DOC example] for provisioning, [INF] the rest
                    raise _bad(f"Can't shutdown a {status} instance")
                hosts.append((self._take_down(inst, "offline"), action == "shutdown"))
            elif action in ("delete", "discontinue", "delete_stuck", "hibernate"):
                if status == "discontinued":
                    raise _bad("Can't discontinue a discontinued instance")
                if status in _BOOTING and action != "delete_stuck":  # [3P] for provisioning, [INF] the rest
                    raise _bad(self.booting_refusal.format(status=status))
                mine = {v.id: v for v in self._volumes_of(inst)}
                if action == "hibernate":
                    to_delete: list[str] = []
                elif volume_ids is None:
                    to_delete = [inst.os_volume] if inst.os_volume in mine else []
                else:
                    for vid in volume_ids:
                        if vid not in mine:
                            raise _bad(f"Invalid volume id: {vid}")
                    to_delete = list(volume_ids)
                hosts.append((self._take_down(inst, "discontinued"), False))
                inst.deleted = True
                for vid, vol in mine.items():
                    if vid not in to_delete:
                        vol.status, vol.instance_id = "detached", None
                    elif permanently and volume_ids is not None:
                        remove_dirs.append(self._remove_volume(vol))
                    else:
                        self._trash_volume(vol)
            else:
                raise _bad(f"Action {action} is not supported")
        for host, graceful in hosts:
            if graceful:
                _stop_host(host)
            else:
                _kill_host(host)
        for path in remove_dirs:
            shutil.rmtree(path, ignore_errors=True)

    # ---------------------------------------------------------------- ssh keys and scripts

    def _named_items(self, method: str, parts: list[str], body: Any, store: dict[str, dict[str, Any]],
                     value_key: str, bulk_key: str, label: str) -> tuple[int, str, bytes, dict[str, str]]:
        n = len(parts)
        with self._lock:
            if n == 1 and method == "GET":
                return _json(200, copy.deepcopy(list(store.values())))
            if n == 2 and method == "GET":
                if parts[1] not in store:
                    raise ApiError(404, "not_found", f"Invalid {label} id")
                # one object, as Verda's OpenAPI file says [DOC] (the verda SDK 1.25's get_by_id reads a list [SRC]:
                # they disagree; Trainyard calls neither)
                return _json(200, copy.deepcopy(store[parts[1]]))
            if n == 1 and method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
                    raise _bad("Missing or invalid field: name")
                value = body.get(value_key)
                if not isinstance(value, str) or not value.strip():
                    raise _bad(f"Missing or invalid field: {value_key}")
                item: dict[str, Any] = {"id": str(uuid.uuid4()), "name": body["name"], value_key: value,
                                        "created_at": _now_iso()}
                if value_key == "key":
                    fields = value.split()
                    if len(fields) < 2 or not (fields[0].startswith("ssh-") or fields[0].startswith("ecdsa-")):
                        raise _bad("Invalid SSH public key")
                    item["key"] = value.strip()
                    item["fingerprint"] = "SHA256:" + secrets.token_urlsafe(32)[:43]
                    item["created_by_user_id"] = None  # required and nullable in the file
                store[item["id"]] = item
                return 201, "text/plain", item["id"].encode(), {}
            if method == "DELETE" and n in (1, 2):
                ids = [parts[1]] if n == 2 else _as_list((body or {}).get(bulk_key) if isinstance(body, dict) else None)
                if not ids:
                    raise _bad(f"Missing field: {bulk_key}")
                for item_id in ids:
                    if item_id not in store:
                        raise ApiError(404, "not_found", f"Invalid {label} id")
                for item_id in ids:
                    del store[item_id]
                return 200, "application/json", b"", {}
        raise ApiError(404, "not_found", f"No route for {method} /{'/'.join(parts)}")

    # ---------------------------------------------------------------- volumes

    def _create_volume(self, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        if not isinstance(body, dict):
            raise _bad("Expected a JSON object")
        vtype, name, size = body.get("type"), body.get("name"), body.get("size")
        location = body.get("location_code") or "FIN-03"
        if vtype not in _VOLUME_PRICE:
            raise _bad("Invalid volume type")
        if not isinstance(name, str) or not name or not isinstance(size, int) or size < 1:
            raise _bad("Invalid volume name or size")
        with self._lock:
            if location not in _LOCATION_CODES:
                raise _bad("Invalid location code")
            inst_id = body.get("instance_id")
            inst = None
            if inst_id:
                inst = self._instances.get(inst_id)
                if inst is None or inst.status not in _LIVE:
                    raise ApiError(404, "not_found", "Invalid instance id")
                if inst.location != location:
                    raise _bad("The volume location must match the instance location")
            vol = self._new_volume(name, size, vtype, location, False)
            if inst is not None:
                vol.status, vol.instance_id = "attached", inst.id
        return 202, "text/plain", vol.id.encode(), {}

    def _volume_action(self, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        if not isinstance(body, dict):
            raise _bad("Expected a JSON object")
        ids = _as_list(body.get("id"))
        action = body.get("action")
        if not ids:
            raise _bad("Missing field: id")
        if action == "delete":
            return self._delete_volumes(ids, bool(body.get("is_permanent")))
        with self._lock:
            vols = []
            for vid in ids:
                vol = self._volumes.get(vid)
                if vol is None or (vol.status == "deleted" and action != "restore"):
                    raise ApiError(404, "not_found", "Invalid volume id")
                vols.append(vol)
            if action == "attach":
                inst = self._instances.get(body.get("instance_id") or "")
                if inst is None or inst.status not in _LIVE:
                    raise ApiError(404, "not_found", "Invalid instance id")
                if inst.status != "offline":
                    raise _bad("The instance needs to be shut down (offline) to attach volumes")
                for vol in vols:
                    if vol.status != "detached":
                        raise _bad(f"Volume {vol.id} is not detached")
                    if vol.location != inst.location:
                        raise _bad("The volume location must match the instance location")
                for vol in vols:
                    vol.status, vol.instance_id = "attached", inst.id
            elif action == "detach":
                for vol in vols:
                    owner = self._instances.get(vol.instance_id or "")
                    if vol.instance_id is None:
                        raise _bad(f"Volume {vol.id} is not attached")
                    if owner is not None and owner.status in _LIVE and owner.status != "offline":
                        raise _bad("The instance needs to be shut down (offline) to detach volumes")
                for vol in vols:
                    vol.status, vol.instance_id = "detached", None
            elif action == "rename":
                name = body.get("name")
                if not isinstance(name, str) or not name:
                    raise _bad("Missing field: name")
                for vol in vols:
                    vol.name = name
            elif action == "resize":
                size = body.get("size")
                if not isinstance(size, int) or any(size <= vol.size for vol in vols):
                    raise _bad("The new size must be larger than the current size")
                for vol in vols:
                    vol.size = size
            elif action == "restore":
                for vol in vols:
                    if vol.status != "deleted":
                        raise _bad(f"Volume {vol.id} is not in the trash")
                for vol in vols:
                    vol.status, vol.deleted_at = "detached", None
            else:  # clone: the file says 202 without a body, the SDK reads new ids from it [SRC]; left out
                raise _bad(f"Invalid action: {action}")
        return 202, "application/json", b"", {}  # no body [DOC]

    def _delete_volumes(self, ids: list[str], permanent: bool) -> tuple[int, str, bytes, dict[str, str]]:
        remove_dirs: list[Path] = []
        with self._lock:
            vols = []
            for vid in ids:
                vol = self._volumes.get(vid)
                if vol is None or (vol.status == "deleted" and not permanent):
                    raise ApiError(404, "not_found", "Invalid volume id")
                owner = self._instances.get(vol.instance_id or "")
                if owner is not None and owner.status in _LIVE and owner.status != "offline":
                    raise _bad("The instance needs to be shut down (offline) to delete its volumes")
                vols.append(vol)
            for vol in vols:
                if permanent:
                    remove_dirs.append(self._remove_volume(vol))
                else:
                    self._trash_volume(vol)
        for path in remove_dirs:
            shutil.rmtree(path, ignore_errors=True)
        return 202, "application/json", b"", {}  # no body [DOC]

    # ------------------------------------------------------------------ /_emulator controls

    def _control(self, method: str, rel: str, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        args = body if isinstance(body, dict) else {}
        parts = [p for p in rel.split("/") if p]
        try:
            if parts == ["health"] and method == "GET":
                return _json(200, {"ok": True})
            if parts == ["state"] and method == "GET":
                return _json(200, self.state())
            if parts == ["calls"] and method == "GET":
                return _json(200, self.calls)
            if parts == ["calls"] and method == "DELETE":
                self.clear_calls()
                return _json(200, {"ok": True})
            if parts == ["fail-next"] and method == "POST":
                self.fail_next(int(args.get("n", 1)), int(args.get("status", 500)), path=args.get("path"),
                               method=args.get("method"), code=args.get("code"), message=args.get("message"),
                               after_effect=bool(args.get("after_effect", False)))
                return _json(200, {"ok": True})
            if parts == ["live-instances"] and method == "GET":
                return _json(200, self.live_instances())
            if parts == ["spend"] and method == "GET":
                with self._lock:
                    by_instance = {i: self.spend(i) for i in self._instances}
                return _json(200, {"total": sum(by_instance.values()), "by_instance": by_instance})
            if parts == ["capacity"] and method == "POST":
                self.set_capacity(args["instance_type"], int(args["count"]), location=args.get("location"),
                                  is_spot=args.get("is_spot"))
                return _json(200, {"ok": True})
            if parts == ["expire-tokens"] and method == "POST":
                self.expire_tokens()
                return _json(200, {"ok": True})
            if parts == ["settings"] and method in ("GET", "POST"):
                for key in ("boot_delay_s", "order_delay_s", "token_ttl_s", "balance_usd"):
                    if key in args:
                        setattr(self, key, float(args[key]))
                if "boot_states" in args:
                    self.boot_states = tuple(args["boot_states"])
                if "booting_refusal" in args:
                    self.booting_refusal = str(args["booting_refusal"])
                if "default_capacity" in args:
                    self.default_capacity = int(args["default_capacity"])
                if "ssh_answers" in args:
                    self.ssh_answers = bool(args["ssh_answers"])
                if "rate_limit_per_s" in args:
                    value = args["rate_limit_per_s"]
                    self.rate_limit_per_s = float(value) if value is not None else None
                return _json(200, self._settings())
            if len(parts) == 3 and parts[0] == "instances" and parts[2] == "preempt" and method == "POST":
                self.preempt(parts[1])
                return _json(200, self.instance(parts[1]))
            if len(parts) == 3 and parts[0] == "instances" and parts[2] == "ssh-port" and method == "GET":
                return _json(200, {"host": "127.0.0.1", "port": self.ssh_port(parts[1]), "user": "root"})
        except KeyError as err:
            raise ApiError(404, "not_found", f"Unknown id or missing field: {err}") from None
        except (ValueError, RuntimeError, TypeError) as err:
            raise ApiError(409, "invalid_request", str(err)) from None
        raise ApiError(404, "not_found", f"No emulator control {method} /_emulator{rel}")


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------

def _json(status: int, data: Any) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(data).encode(), {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


_SECRET_KEYS = {"client_secret", "refresh_token", "access_token", "password", "token"}


def _tags(raw: Any) -> list[dict[str, str]]:
    """A create's `tags` ([{key, value?}], at most 10, keys lowercased [DOC]) as the API shows them."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 10 or not all(isinstance(t, dict) and isinstance(t.get("key"), str)
                                                            and t["key"] for t in raw):
        raise _bad("tags must be a list of at most 10 {key, value} objects")
    return [{"id": f"tag_{secrets.token_hex(11)}", "key": t["key"].lower(), "value": str(t.get("value") or "")}
            for t in raw]


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if k in _SECRET_KEYS and v else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _running_seconds(inst: _Instance, now: float) -> float:
    return sum((end if end is not None else now) - start for start, end in inst.running_intervals)


def _kill_host(host: Any) -> None:
    if host is None:
        return
    try:
        host.kill()
    except Exception as exc:  # noqa: BLE001 - keep tearing the rest down; say what went wrong
        print(f"verda emulator: killing {host!r} failed: {exc!r}", file=sys.stderr)


def _stop_host(host: Any) -> None:
    if host is None:
        return
    try:
        host.stop()
    except Exception as exc:  # noqa: BLE001
        print(f"verda emulator: stopping {host!r} failed: {exc!r}; killing it", file=sys.stderr)
        _kill_host(host)


class _Handler(BaseHTTPRequestHandler):
    server_version = "VerdaEmulator/1.0"
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        emu: VerdaEmulator = self.server.emulator  # type: ignore[attr-defined]
        status, ctype, payload, extra = emu.handle(self.command, self.path, headers, body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # e.g. the instance that asked to delete itself is gone
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.verda_api",
                                     description="Local Verda (DataCrunch) REST API emulator.")
    parser.add_argument("--root", required=True, type=Path, help="directory for volumes and scripts")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--boot-delay", type=float, default=0.5, help="minimum seconds in provisioning")
    parser.add_argument("--no-ssh", action="store_true", help="instances without sshd (API only)")
    args = parser.parse_args(argv)
    client_id = os.environ.get("VERDA_CLIENT_ID") or "verda_test_id"
    client_secret = os.environ.get("VERDA_CLIENT_SECRET") or "verda_test_secret"
    emu = VerdaEmulator(args.root, client_id, client_secret, port=args.port, boot_delay_s=args.boot_delay,
                        ssh=not args.no_ssh).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(json.dumps({"url": emu.url, "base_url": emu.base_url, "client_id": client_id,
                      "controls": emu.url + "/_emulator"}), flush=True)
    try:
        done.wait()
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
