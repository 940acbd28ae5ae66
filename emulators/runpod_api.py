"""A local RunPod API for tests and --rehearse: REST API v2 (what Trainyard uses) and GraphQL (spot only, and the
`runpod` SDK's own calls), over the same pods.

REST v2 (RunPod's OpenAPI file, tests/reference/runpod-rest-v2.openapi.json, is the contract [DOC]), served from
the root (`RUNPOD_REST_URL=<emulator.url>`): listGpuTypes (`GET /v2/catalog/gpus`, with include=AVAILABILITY&product=POD
the stock for `count` GPUs in `cloud`), createPod, listPods, getPod, deletePod, podAction and getPodLogs (SSE). Errors
are RFC 7807 objects {title, status, detail, errors?}; 429 carries Retry-After. The tests check every REST exchange
against the file's schemas (tests/openapi_contract.py); what the file leaves open is tagged [INF] where it is decided.
Inside a pod RUNPOD_API_KEY is a key scoped to that pod [DOC]; what it may do is documented nowhere. Here, by
default, it may read and act on its own pod (getPod, podAction) on REST v2 [INF], and on GraphQL it works as its
account's (runpodctl's `remove pod` sends podTerminate with it [SRC]) [INF scope]; nothing else. Both readings are
switches, so every money test runs under the other one too: `pod_key_rest = False` refuses it on REST v2 with 403
(one community report of a 403 [3P]), `pod_key_graphql = False` refuses it on GraphQL [INF].

GraphQL (`RUNPOD_API_BASE_URL=<emulator.api_base>`; the SDK appends /graphql; `runpod.api_key = <emulator.api_key>`,
HOME isolated so ~/.runpod/config.toml is not picked up; CLOUD_APIS.md Part 1): every request body is parsed by
graphql-core and validated against `SCHEMA_SDL` (the subset of RunPod's schema that the SDK, SkyPilot-style spot
launchers and runpodctl v1 use), then executed. `graphql_gone` makes it answer 410 Gone, as once retired [INF body].

Each pod is a real SSH host (`emulators.sshhost.SshHost`) whose disk is `<root>/pods/<pod_id>`; its published 22/tcp
is its sshd on 127.0.0.1 (`ssh.direct` in REST). The pod's start command (`args`, GraphQL `dockerArgs`) is the
container's command; when it exits on its own while the pod is meant to run, RunPod starts the container again, and
again (reported from real use: dstack issue #1142, "infinitely restarts the pod" [3P]); here after `restart_delay_s`
[INF], the pod still RUNNING and billing, its container disk kept [INF]. Stopping/preempting a pod wipes its container
disk (everything but the volume at `/workspace`-or-`volumeMountPath`, and the volume too when it has none); resuming
boots it again on a new port.

Test controls: Python methods on `RunPodEmulator`, or HTTP under `/_emulator/...` (see `EmulatorClient`).
Run standalone: `python -m emulators.runpod_api --root DIR` prints the env to export and serves.

Values and behaviours the reference marks [INF] (not documented by RunPod) are marked INF here too.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import string
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, build_schema, execute, parse, validate
from graphql.language import FieldNode

from emulators.serving import EmulatorHTTPServer
from emulators.sshhost import SshHost, free_port

__all__ = ["RunPodEmulator", "EmulatorClient", "GPU_CATALOG", "SCHEMA_SDL", "NO_CAPACITY", "NO_FREE_GPUS"]

# --- error messages the SDK surfaces as runpod.error.QueryError(message) ---------------------------------
NO_CAPACITY = ("There are no longer any instances available with the requested specifications. "
               "Please refresh and try again.")                                       # [3P], the common one
NO_FREE_GPUS = "There are not enough free GPUs on the host machine to start this pod."  # [3P], resume
POD_NOT_FOUND = "Pod not found."                                                       # INF
BID_TOO_LOW = "Your bid price is below the minimum bid price for this GPU type."       # INF

# --- GPU catalog ------------------------------------------------------------------------------------------
# ids/displayName/memoryInGb: runpod.get_gpus() as of 2026-01-29 (seeds/000_*.txt), in that order.
# Prices USD per GPU-hour, from GPU_FACTS.md §3.1, per column the dated figure closest to 2026-01-29:
#   S = 2026-01-01 Malaeu/nanoGPT-RH (on-demand tier unstated, placed in Secure as the reference does;
#       its spot figure is used as secureSpotPrice), C = 2025-07-13 carsonpo/gpus, P = 2026-08-19 privum,
#   D = 2025-10-02 dstack docs (A100 PCIe spot 0.60 / 0.82; which tier is which is INF).
# "~" = INF: spot price not published -> 0.85 x the on-demand price of that tier (the ratio of Malaeu's
#   published spot/on-demand pairs). Rows tagged INF have no dated figure at all: placeholders in the
#   range RunPod charged for that class of card, for planning tests only, not market data.
# "-" = tier not offered (null in the API). A6000's 2023 spot figure (0.49) is ignored as stale.
# columns: id | displayName | memoryInGb | cudaCores | secure | community | secureSpot | communitySpot | source
_CATALOG_TABLE = """
AMD Instinct MI300X OAM | MI300X | 192 | - | 2.49 | - | ~ | - | INF
NVIDIA A100 80GB PCIe | A100 PCIe | 80 | 6912 | 1.64 | 1.19 | 0.82 | 0.60 | C on-demand; D spot
NVIDIA A100-SXM4-80GB | A100 SXM | 80 | 6912 | 1.89 | 1.39 | ~ | ~ | C secure; P community
NVIDIA A30 | A30 | 24 | 3584 | - | 0.22 | - | ~ | INF
NVIDIA A40 | A40 | 48 | 10752 | 0.40 | 0.35 | ~ | ~ | INF
NVIDIA B200 | B200 | 180 | - | 5.19 | 5.98 | 4.41 | ~ | S secure+spot; P community
NVIDIA B300 SXM6 AC | B300 | 288 | - | 7.89 | 6.94 | ~ | ~ | P
NVIDIA GeForce RTX 3070 | RTX 3070 | 8 | 5888 | - | 0.13 | - | ~ | INF
NVIDIA GeForce RTX 3080 | RTX 3080 | 10 | 8704 | - | 0.17 | - | ~ | INF
NVIDIA GeForce RTX 3080 Ti | RTX 3080 Ti | 12 | 10240 | - | 0.18 | - | ~ | INF
NVIDIA GeForce RTX 3090 | RTX 3090 | 24 | 10496 | 0.43 | 0.22 | ~ | ~ | INF
NVIDIA GeForce RTX 3090 Ti | RTX 3090 Ti | 24 | 10752 | - | 0.27 | - | ~ | INF
NVIDIA GeForce RTX 4070 Ti | RTX 4070 Ti | 12 | 7680 | - | 0.19 | - | ~ | INF
NVIDIA GeForce RTX 4080 | RTX 4080 | 16 | 9728 | - | 0.27 | - | ~ | INF
NVIDIA GeForce RTX 4080 SUPER | RTX 4080 SUPER | 16 | 10240 | - | 0.28 | - | ~ | INF
NVIDIA GeForce RTX 4090 | RTX 4090 | 24 | 16384 | 0.59 | 0.34 | 0.50 | ~ | S secure+spot; C community
NVIDIA GeForce RTX 5080 | RTX 5080 | 16 | 10752 | - | 0.39 | - | ~ | INF
NVIDIA GeForce RTX 5090 | RTX 5090 | 32 | 21760 | 0.89 | 0.69 | ~ | ~ | INF
NVIDIA H100 80GB HBM3 | H100 SXM | 80 | 16896 | 2.69 | 2.69 | ~ | ~ | S secure (no spot listed); C community
NVIDIA H100 NVL | H100 NVL | 94 | 16896 | 3.07 | 2.59 | 2.61 | ~ | S secure+spot; C community
NVIDIA H100 PCIe | H100 PCIe | 80 | 14592 | 2.39 | 1.99 | 2.03 | ~ | S secure+spot; C community
NVIDIA H200 | H200 SXM | 141 | 16896 | 3.59 | 3.59 | 3.05 | ~ | S secure+spot; C community
NVIDIA H200 NVL | NVIDIA H200 NVL | 143 | 16896 | 3.39 | - | 2.88 | - | S (listed with H200)
NVIDIA L4 | L4 | 24 | 7424 | 0.43 | - | ~ | - | INF
NVIDIA L40 | L40 | 48 | 18176 | 0.99 | 0.69 | ~ | ~ | INF
NVIDIA L40S | L40S | 48 | 18176 | 0.86 | 0.79 | 0.71 | ~ | S secure+spot; C community
NVIDIA RTX 2000 Ada Generation | RTX 2000 Ada | 16 | 2816 | 0.24 | - | 0.18 | - | S
NVIDIA RTX 4000 Ada Generation | RTX 4000 Ada | 20 | 6144 | 0.26 | 0.20 | ~ | ~ | INF
NVIDIA RTX 4000 SFF Ada Generation | RTX 4000 Ada SFF | 20 | 6144 | 0.27 | - | ~ | - | INF
NVIDIA RTX 5000 Ada Generation | RTX 5000 Ada | 32 | 12800 | 0.77 | 0.59 | ~ | ~ | INF
NVIDIA RTX 6000 Ada Generation | RTX 6000 Ada | 48 | 18176 | 0.77 | 0.74 | 0.63 | ~ | S secure+spot; C community
NVIDIA RTX A2000 | RTX A2000 | 6 | 3328 | - | 0.12 | - | ~ | INF
NVIDIA RTX A4000 | RTX A4000 | 16 | 6144 | 0.32 | 0.17 | ~ | ~ | INF
NVIDIA RTX A4500 | RTX A4500 | 20 | 7168 | 0.34 | 0.19 | ~ | ~ | INF
NVIDIA RTX A5000 | RTX A5000 | 24 | 8192 | 0.36 | 0.16 | ~ | ~ | INF
NVIDIA RTX A6000 | RTX A6000 | 48 | 10752 | 0.49 | 0.33 | ~ | ~ | C
NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition | RTX PRO 6000 MaxQ | 96 | 24064 | 1.79 | - | ~ | - | INF
NVIDIA RTX PRO 6000 Blackwell Server Edition | RTX PRO 6000 | 96 | 24064 | 1.84 | 1.69 | ~ | ~ | INF
NVIDIA RTX PRO 6000 Blackwell Workstation Edition | RTX PRO 6000 WK | 96 | 24064 | 1.79 | - | ~ | - | INF
Tesla V100-PCIE-16GB | Tesla V100 | 16 | 5120 | - | 0.19 | - | ~ | INF
Tesla V100-SXM2-16GB | V100 SXM2 | 16 | 5120 | - | 0.23 | - | ~ | INF
Tesla V100-SXM2-32GB | V100 SXM2 32GB | 32 | 5120 | - | 0.29 | - | ~ | INF
unknown | unknown | 0 | - | - | - | - | - | the API's own placeholder row: never rentable
"""
SPOT_RATIO = 0.85  # INF, see above


def _build_catalog() -> dict[str, dict[str, Any]]:
    catalog: dict[str, dict[str, Any]] = {}
    for line in _CATALOG_TABLE.strip().splitlines():
        gid, display, mem, cores, sec, com, sspot, cspot, source = (c.strip() for c in line.split("|"))

        def num(v: str, base: float | None = None) -> float | None:
            if v == "-":
                return None
            if v == "~":
                return None if base is None else round(base * SPOT_RATIO, 2)
            return float(v)

        secure, community = num(sec), num(com)
        catalog[gid] = {
            "id": gid, "displayName": display, "memoryInGb": int(mem),
            "manufacturer": "AMD" if gid.startswith("AMD") else ("Nvidia" if gid != "unknown" else "unknown"),
            "cudaCores": None if cores == "-" else int(cores),
            "maxGpuCount": 0 if gid == "unknown" else 8,
            "secureCloud": secure is not None, "communityCloud": community is not None,
            "securePrice": secure, "communityPrice": community,
            "secureSpotPrice": num(sspot, secure), "communitySpotPrice": num(cspot, community),
            "oneWeekPrice": None, "oneMonthPrice": None, "threeMonthPrice": None,
            "source": source,
        }
    return catalog


GPU_CATALOG: dict[str, dict[str, Any]] = _build_catalog()

CPU_PRICE_PER_HR = 0.08  # INF: deployCpuPod flat rate
DEFAULT_DC = "EU-RO-1"   # INF: where pods land when dataCenterId is null

# --- schema -----------------------------------------------------------------------------------------------
SCHEMA_SDL = """
schema { query: Query  mutation: Mutation }

scalar Void
enum CloudTypeEnum { ALL SECURE COMMUNITY }
enum PodStatus { CREATED RUNNING RESTARTING EXITED PAUSED DEAD TERMINATED }

type Query {
  gpuTypes(input: GpuTypeFilter): [GpuType]
  pod(input: PodFilter!): Pod
  myself: User
}

type Mutation {
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput!): Pod
  podRentInterruptable(input: PodRentInterruptableInput!): Pod
  deployCpuPod(input: DeployCpuPodInput!): Pod
  podStop(input: PodStopInput!): Pod
  podResume(input: PodResumeInput!): Pod
  podBidResume(input: PodBidResumeInput!): Pod
  podTerminate(input: PodTerminateInput!): Void
  updateUserSettings(input: UserSettingsInput!): User
}

input GpuTypeFilter { id: String, ids: [String] }
input PodFilter { podId: String! }
input GpuLowestPriceInput {
  gpuCount: Int!, secureCloud: Boolean, minMemoryInGb: Int, minVcpuCount: Int, totalDisk: Int, minDisk: Int,
  dataCenterId: String, countryCode: String, supportPublicIp: Boolean, minDownload: Int, minUpload: Int,
  allowedCudaVersions: [String], includeAiApi: Boolean
}
input EnvironmentVariableInput { key: String!, value: String! }

input PodFindAndDeployOnDemandInput {
  name: String, imageName: String, cloudType: CloudTypeEnum, startSsh: Boolean, startJupyter: Boolean,
  gpuTypeId: String, gpuTypeIdList: [String], supportPublicIp: Boolean, gpuCount: Int, volumeInGb: Int,
  containerDiskInGb: Int, minVcpuCount: Int, minMemoryInGb: Int, minDisk: Int, allowedCudaVersions: [String],
  cudaVersion: String, dataCenterId: String, countryCode: String, dockerArgs: String, ports: String, port: Int,
  volumeMountPath: String, volumeKey: String, env: [EnvironmentVariableInput], templateId: String,
  networkVolumeId: String, minDownload: Int, minUpload: Int, stopAfter: String, terminateAfter: String,
  deployCost: Float, aiApiId: String
}
input PodRentInterruptableInput {
  bidPerGpu: Float!
  name: String, imageName: String, cloudType: CloudTypeEnum, startSsh: Boolean, startJupyter: Boolean,
  gpuTypeId: String, gpuTypeIdList: [String], supportPublicIp: Boolean, gpuCount: Int, volumeInGb: Int,
  containerDiskInGb: Int, minVcpuCount: Int, minMemoryInGb: Int, minDisk: Int, allowedCudaVersions: [String],
  cudaVersion: String, dataCenterId: String, countryCode: String, dockerArgs: String, ports: String, port: Int,
  volumeMountPath: String, volumeKey: String, env: [EnvironmentVariableInput], templateId: String,
  networkVolumeId: String, minDownload: Int, minUpload: Int, stopAfter: String, terminateAfter: String
}
input DeployCpuPodInput {
  name: String, imageName: String, cloudType: CloudTypeEnum, startSsh: Boolean, instanceId: String,
  containerDiskInGb: Int, volumeInGb: Int, dataCenterId: String, countryCode: String, dockerArgs: String,
  ports: String, volumeMountPath: String, env: [EnvironmentVariableInput], templateId: String,
  networkVolumeId: String, minDownload: Int, minUpload: Int, supportPublicIp: Boolean
}
input PodStopInput { podId: String!, incrementVersion: Boolean }
input PodResumeInput { podId: String!, gpuCount: Int, syncMachine: Boolean }
input PodBidResumeInput { podId: String!, bidPerGpu: Float!, gpuCount: Int }
input PodTerminateInput { podId: String! }
input UserSettingsInput { pubKey: String }

type GpuType {
  id: String!
  displayName: String
  manufacturer: String
  memoryInGb: Int
  cudaCores: Int
  maxGpuCount: Int
  maxGpuCountSecureCloud: Int
  maxGpuCountCommunityCloud: Int
  secureCloud: Boolean
  communityCloud: Boolean
  securePrice: Float
  communityPrice: Float
  secureSpotPrice: Float
  communitySpotPrice: Float
  oneWeekPrice: Float
  oneMonthPrice: Float
  threeMonthPrice: Float
  lowestPrice(input: GpuLowestPriceInput): LowestPrice
}

type LowestPrice {
  gpuName: String
  gpuTypeId: String
  minimumBidPrice: Float
  uninterruptablePrice: Float
  stockStatus: String
  availableGpuCounts: [Int]
  maxUnreservedGpuCount: Int
  minMemory: Int
  minVcpu: Float
  countryCode: String
}

type Pod {
  id: String!
  name: String
  imageName: String
  desiredStatus: PodStatus
  lastStatusChange: String
  costPerHr: Float
  adjustedCostPerHr: Float
  gpuCount: Int
  vcpuCount: Int
  memoryInGb: Int
  containerDiskInGb: Int
  volumeInGb: Int
  volumeMountPath: String
  dockerArgs: String
  dockerId: String
  env: [String]
  podType: String
  port: Int
  ports: String
  uptimeSeconds: Int
  machineId: String
  templateId: String
  interruptible: Boolean
  runtime: PodRuntime
  machine: PodMachine
}
type PodRuntime { uptimeInSeconds: Int, ports: [PodRuntimePort], gpus: [PodRuntimeGpu], container: PodRuntimeContainer }
type PodRuntimePort { ip: String, isIpPublic: Boolean, privatePort: Int, publicPort: Int, type: String }
type PodRuntimeGpu { id: String, gpuUtilPercent: Float, memoryUtilPercent: Float }
type PodRuntimeContainer { cpuPercent: Float, memoryPercent: Float }
type PodMachine {
  podHostId: String, gpuDisplayName: String, gpuTypeId: String, dataCenterId: String, location: String,
  secureCloud: Boolean
}

type User {
  id: String
  email: String
  pubKey: String
  clientBalance: Float
  currentSpendPerHr: Float
  pods: [Pod]
  networkVolumes: [NetworkVolume]
}
type NetworkVolume { id: String, name: String, size: Int, dataCenterId: String }
"""
SCHEMA = build_schema(SCHEMA_SDL)

# Which SDK function sends a request, from its root field (for the calls log).
_SDK_METHOD = {
    "podFindAndDeployOnDemand": "create_pod", "deployCpuPod": "create_pod",
    "podRentInterruptable": "create_spot_pod (run_graphql_query)", "podStop": "stop_pod",
    "podResume": "resume_pod", "podBidResume": "resume_spot_pod (run_graphql_query)",
    "podTerminate": "terminate_pod", "pod": "get_pod", "updateUserSettings": "update_user_settings",
}


def _now_text() -> str:
    return time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", time.gmtime())


def _rand(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


@dataclass
class Pod:
    id: str
    name: str
    image_name: str
    gpu_type_id: str | None
    gpu_count: int
    cloud_type: str                 # SECURE | COMMUNITY (resolved from ALL)
    pod_type: str                   # RESERVED | INTERRUPTABLE (INF for RESERVED)
    bid_per_gpu: float | None
    cost_per_hr: float
    env: dict[str, str]
    docker_args: str
    ports: str | None
    template_id: str | None
    container_disk_in_gb: int
    volume_in_gb: int
    volume_mount_path: str
    data_center_id: str
    vcpu_count: int
    memory_in_gb: int
    api_key: str
    pod_key: str                    # the pod-scoped RUNPOD_API_KEY set inside the pod [DOC]
    machine_id: str
    pod_host_id: str
    status: str = "RUNNING"         # what desiredStatus reports (plus TERMINATED internally)
    last_status_change: str = ""
    created_at: float = field(default_factory=time.monotonic)
    run_started: float | None = None  # monotonic start of the current billed interval
    billed_s: float = 0.0
    holds_gpus: bool = False
    host: SshHost | None = None
    ssh_port: int | None = None
    http_ports: dict[int, int] = field(default_factory=dict)
    generation: int = 0
    boot_error: str | None = None
    exit_reason: str | None = None
    history: list[tuple[float, str]] = field(default_factory=list)
    restarts: int = 0               # times the container was started again after its command exited
    op_lock: threading.RLock = field(default_factory=threading.RLock)


class RunPodEmulator:
    """RunPod's REST v2 and GraphQL APIs on 127.0.0.1, with real SSH hosts as pods.

    RunPodEmulator(root, api_key="rp_test_key", port=0).start() -> .url, .api_base; .stop() terminates
    every pod. Usable as a context manager.
    """

    def __init__(self, root: Path, api_key: str = "rp_test_key", port: int = 0, *,
                 boot_delay_s: float = 0.0, account_public_key: str | None = None,
                 extra_api_keys: tuple[str, ...] = (), created_status_s: float = 0.0,
                 wipe_container_disk: bool = True, client_balance: float = 100.0,
                 stop_grace_s: float = 2.0, ssh: bool = True, restart_delay_s: float = 1.0) -> None:
        self.root = Path(root).absolute()
        self.api_key = api_key
        self.api_keys = {api_key, *extra_api_keys}
        self.port = port
        self.boot_delay_s = boot_delay_s          # seconds between create/resume and sshd starting
        self.created_status_s = created_status_s  # >0: desiredStatus reads CREATED this long after create
        self.account_public_key = account_public_key
        self.wipe_container_disk = wipe_container_disk
        self.client_balance = client_balance
        self.stop_grace_s = stop_grace_s
        self.ssh = ssh                            # False: pods go through every state but run nothing
        self.restart_delay_s = restart_delay_s    # a container whose command exited starts again after this [INF]
        self.graphql_gone = False                 # True: /graphql answers 410 Gone (RunPod retires it in 2027 [DOC])
        self.rest_gone = False                    # True: /v2 answers 410 Gone (how a retired API answers is INF)
        self.pod_key_rest = True                  # False: a pod-scoped key gets 403 on REST v2 [3P] (True: [INF])
        self.pod_key_graphql = True               # False: a pod-scoped key is refused on GraphQL [INF]
        self.ssh_answers = True                   # False: a pod boots (RUNNING, billing) but SSH never answers (a
        # broken image, a dead sshd); `host(id).kill_sshd()` kills it later. Test controls, not API behaviours.
        self._stopping = threading.Event()
        self.calls: list[dict[str, Any]] = []
        self.latency_s = 0.0  # added to every API request (bench: real APIs answer in ~100 ms, this one in ~2)
        self._pods: dict[str, Pod] = {}
        self._lock = threading.RLock()
        self._failures: list[dict[str, Any]] = []
        self._refused: set[str] = set()
        self._stock: dict[str, dict[str, Any]] = {}
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> "RunPodEmulator":
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        emulator = self

        class Handler(_Handler):
            emu = emulator

        self._server = EmulatorHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="runpod-emulator", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for RUNPOD_API_BASE_URL (the SDK appends /graphql)."""
        return self.url

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def sdk_env(self, home: Path | None = None) -> dict[str, str]:
        """Environment for a process using the real SDK against this emulator (HOME isolated if given)."""
        env = {"RUNPOD_API_BASE_URL": self.api_base, "RUNPOD_API_KEY": self.api_key,
               "RUNPOD_API_URL": self.graphql_url, "RUNPOD_GRAPHQL_URL": self.graphql_url,
               "RUNPOD_REST_URL": self.url}  # REST v2 (`/v2/...`) is served from the root
        if home is not None:
            env["HOME"] = str(home)
        return env

    def stop(self) -> None:
        """Terminate every pod (nothing left running or billing), then stop serving."""
        self._stopped = True
        self._stopping.set()  # no container starts again from here on
        with self._lock:
            ids = [p.id for p in self._pods.values() if p.status != "TERMINATED"]
        for pid in ids:
            try:
                self._terminate(pid)
            except GraphQLError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "RunPodEmulator":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------- controls
    def preempt(self, pod_id: str, grace_s: float = 0.0) -> None:
        """Spot interruption: every process of the pod dies (SIGKILL, or SIGTERM then SIGKILL after
        grace_s), desiredStatus becomes EXITED, runtime null, container disk wiped, volume kept."""
        pod = self._get(pod_id)
        self._halt(pod, "EXITED", f"Interrupted by the host: {_now_text()}", kill=grace_s <= 0,
                   grace_s=grace_s, reason="preempted")

    def fail_next(self, n: int = 1, status: int = 500, op: str | None = None, html: bool = False,
                  message: str | None = None) -> None:
        """The next n requests (only those of `op`, if given: a REST operationId such as "getPod" or
        "podAction:terminate", or a GraphQL root field such as "podRentInterruptable") fail with HTTP `status`
        before doing anything. The body is REST's problem object or GraphQL's `errors` (the SDK raises
        QueryError), or an HTML gateway page if html=True."""
        with self._lock:
            self._failures.append({"n": n, "status": status, "op": op, "html": html, "message": message})

    def refuse_capacity(self, gpu_type_id: str = "all") -> None:
        """Creates (and resumes) for this GPU type, or all, fail with the SDK-visible no-capacity error."""
        with self._lock:
            self._refused.add(gpu_type_id)

    def allow_capacity(self, gpu_type_id: str = "all") -> None:
        """Undo refuse_capacity (gpu_type_id="all" clears every refusal)."""
        with self._lock:
            if gpu_type_id == "all":
                self._refused.clear()
            else:
                self._refused.discard(gpu_type_id)

    def set_stock(self, gpu_type_id: str, level: str | int | None) -> None:
        """lowestPrice.stockStatus for a GPU type. "High"/"Medium"/"Low": reported, unlimited capacity;
        "None" (or None): no capacity; an int n: n free GPUs (pods take and give them back), with the
        level derived from n (0 None, 1-2 Low, 3-7 Medium, 8+ High; INF thresholds)."""
        if gpu_type_id not in GPU_CATALOG:
            raise KeyError(gpu_type_id)
        with self._lock:
            if level is None or level == "None":
                self._stock[gpu_type_id] = {"level": "None", "free": 0}
            elif isinstance(level, int):
                self._stock[gpu_type_id] = {"level": None, "free": level}
            elif level in ("High", "Medium", "Low"):
                self._stock[gpu_type_id] = {"level": level, "free": None}
            else:
                raise ValueError(f"stock level must be High|Medium|Low|None or an int, not {level!r}")

    def live_pods(self) -> list[str]:
        """Pods that are running or booting (desiredStatus RUNNING/CREATED) — i.e. billing GPU time."""
        with self._lock:
            return [p.id for p in self._pods.values() if p.status in ("RUNNING", "CREATED")]

    def billing_pods(self) -> list[str]:
        """Pods that bill anything: the live ones, and a stopped (EXITED) pod with a volume, whose disk still bills
        [DOC: RunPod's pricing]. A leak is any of these that nobody meant to keep."""
        with self._lock:
            return [p.id for p in self._pods.values() if p.status in ("RUNNING", "CREATED")
                    or (p.status == "EXITED" and p.volume_in_gb > 0)]

    def spend(self, pod_id: str | None = None) -> float:
        """USD accrued: costPerHr x running time, for one pod or all of them."""
        with self._lock:
            pods = [self._get(pod_id)] if pod_id else list(self._pods.values())
            now = time.monotonic()
            return sum(p.cost_per_hr * (p.billed_s + ((now - p.run_started) if p.run_started else 0.0)) / 3600
                       for p in pods)

    def running_seconds(self, pod_id: str | None = None) -> float:
        """Billed running time in seconds (for 'API calls per instance-minute')."""
        with self._lock:
            pods = [self._get(pod_id)] if pod_id else list(self._pods.values())
            now = time.monotonic()
            return sum(p.billed_s + ((now - p.run_started) if p.run_started else 0.0) for p in pods)

    def call_counts(self) -> Counter:
        """Requests per REST operation or GraphQL root field (e.g. {'getPod': 12, 'createPod': 1})."""
        with self._lock:
            return Counter(c["field"] for c in self.calls)

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def pod(self, pod_id: str) -> dict[str, Any]:
        """Internal view of a pod, including TERMINATED ones (which the API no longer shows)."""
        with self._lock:
            p = self._get(pod_id)
            return {"id": p.id, "name": p.name, "status": p.status, "podType": p.pod_type,
                    "gpuTypeId": p.gpu_type_id, "gpuCount": p.gpu_count, "costPerHr": p.cost_per_hr,
                    "sshPort": p.ssh_port if p.status == "RUNNING" else None,
                    "disk": str(self.root / "pods" / p.id), "env": dict(p.env), "dockerArgs": p.docker_args,
                    "exitReason": p.exit_reason, "bootError": p.boot_error, "spend": self.spend(p.id),
                    "podKey": p.pod_key, "restarts": p.restarts,
                    "history": list(p.history)}

    def pods(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.pod(pid) for pid in self._pods]

    def host(self, pod_id: str) -> SshHost | None:
        """The SshHost currently backing a pod (None while stopped/booting)."""
        return self._get(pod_id).host

    def wait_ready(self, pod_id: str, timeout: float = 30.0) -> int:
        """Block until the pod's sshd is up; returns the public port of 22/tcp."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self._get(pod_id)
            if p.boot_error:
                raise RuntimeError(f"pod {pod_id} failed to boot: {p.boot_error}")
            if p.ssh_port and p.status == "RUNNING" and (not self.ssh or (p.host is not None and p.host.running)):
                return p.ssh_port
            time.sleep(0.02)
        raise TimeoutError(f"pod {pod_id} not ready after {timeout}s")

    def processes(self) -> list[tuple[str, int, str]]:
        """(pod id, host pid, cmdline) of every process any pod is running."""
        out = []
        with self._lock:
            pods = list(self._pods.values())
        for p in pods:
            h = p.host
            if h is not None:
                out += [(p.id, pid, cmd) for pid, _ns, cmd in h.processes()]
        return out

    # ------------------------------------------------------------------------------ state machine
    def _get(self, pod_id: str | None) -> Pod:
        with self._lock:
            pod = self._pods.get(pod_id or "")
        if pod is None:
            raise KeyError(pod_id)
        return pod

    def _api_pod(self, pod_id: str) -> Pod:
        with self._lock:
            pod = self._pods.get(pod_id)
            if pod is None or pod.status == "TERMINATED":
                raise GraphQLError(POD_NOT_FOUND)
            return pod

    def _refuses(self, gpu: str) -> bool:
        return "all" in self._refused or gpu in self._refused

    def _free(self, gpu: str) -> int | None:
        stock = self._stock.get(gpu)
        return None if stock is None else stock["free"]

    def _stock_status(self, gpu: str) -> str:
        stock = self._stock.get(gpu)
        if gpu == "unknown":
            return "None"
        if stock is None:
            return "High"
        free = stock["free"]
        if free is None:
            return stock["level"]
        return "None" if free <= 0 else "Low" if free <= 2 else "Medium" if free < 8 else "High"

    def _take_gpus(self, gpu: str | None, count: int, resume: bool) -> None:
        """Reserve capacity (caller holds self._lock) or raise the SDK-visible error."""
        if gpu is None:
            if self._refuses("cpu"):
                raise GraphQLError(NO_CAPACITY)
            return
        message = NO_FREE_GPUS if resume else NO_CAPACITY
        if self._refuses(gpu) or count > GPU_CATALOG[gpu]["maxGpuCount"]:
            raise GraphQLError(message)
        free = self._free(gpu)
        if free is not None:
            if free < count:
                raise GraphQLError(message)
            self._stock[gpu]["free"] = free - count

    def _release_gpus(self, pod: Pod) -> None:
        if pod.holds_gpus and pod.gpu_type_id and self._free(pod.gpu_type_id) is not None:
            self._stock[pod.gpu_type_id]["free"] += pod.gpu_count
        pod.holds_gpus = False

    def _set_status(self, pod: Pod, status: str, note: str) -> None:
        now = time.monotonic()
        if status in ("RUNNING", "CREATED"):
            if pod.run_started is None:
                pod.run_started = now
        elif pod.run_started is not None:
            pod.billed_s += now - pod.run_started
            pod.run_started = None
        pod.status = status
        pod.last_status_change = note
        pod.history.append((time.time(), status))

    def _create(self, inp: dict[str, Any], api_key: str, spot: bool, cpu: bool = False) -> Pod:
        if self._stopped:
            raise GraphQLError("The emulator is shutting down.")
        gpu = None if cpu else inp.get("gpuTypeId")
        if not cpu and not gpu and inp.get("gpuTypeIdList"):
            gpu = inp["gpuTypeIdList"][0]
        if not cpu and (gpu is None or gpu not in GPU_CATALOG):
            raise GraphQLError(f"Invalid gpuTypeId: {gpu}")  # INF; the SDK checks with get_gpu() first
        count = 0 if cpu else int(inp.get("gpuCount") or 1)
        if not cpu and count < 1:
            raise GraphQLError("gpuCount must be at least 1.")  # INF
        if not inp.get("imageName") and not inp.get("templateId"):
            raise GraphQLError("Either imageName or templateId is required.")  # INF
        requested = inp.get("cloudType") or "ALL"
        bid = inp.get("bidPerGpu")
        if cpu:
            tier, per_gpu = "SECURE", None
        else:
            tier, per_gpu = self._price(gpu, requested, spot)
        if not cpu and per_gpu is None:
            raise GraphQLError(NO_CAPACITY)  # the tier is not offered for this GPU
        if spot and bid < per_gpu - 1e-9:
            raise GraphQLError(BID_TOO_LOW)
        cost = CPU_PRICE_PER_HR if cpu else round((bid if spot else per_gpu) * count, 4)
        mount = inp.get("volumeMountPath") or "/workspace"
        if mount.startswith("/root") or mount.startswith("/proc") or mount.rstrip("/") == "":
            raise GraphQLError(f"volumeMountPath {mount} is not supported by the emulator")
        env = {e["key"]: e["value"] for e in (inp.get("env") or [])}
        with self._lock:
            self._take_gpus(gpu, count, resume=False)
            pod_id = _rand(14)
            while pod_id in self._pods:
                pod_id = _rand(14)
            pod = Pod(
                id=pod_id, name=inp.get("name") or "", image_name=inp.get("imageName") or "",
                gpu_type_id=gpu, gpu_count=count, cloud_type=tier,
                pod_type="INTERRUPTABLE" if spot else "RESERVED", bid_per_gpu=bid if spot else None,
                cost_per_hr=cost, env=env, docker_args=inp.get("dockerArgs") or "",
                ports=inp.get("ports") if inp.get("ports") is not None else ("22/tcp" if inp.get("templateId") else None),
                template_id=inp.get("templateId"), container_disk_in_gb=int(inp.get("containerDiskInGb") or 10),
                volume_in_gb=int(inp.get("volumeInGb") or 0), volume_mount_path=mount,
                data_center_id=inp.get("dataCenterId") or DEFAULT_DC,
                vcpu_count=max(int(inp.get("minVcpuCount") or 1), 8 * max(count, 1) if not cpu else 2),  # INF
                memory_in_gb=max(int(inp.get("minMemoryInGb") or 1), 31 * max(count, 1) if not cpu else 4),  # INF
                api_key=api_key, pod_key="rpa_pod_" + _rand(24), machine_id=_rand(12), pod_host_id=f"{pod_id}-{random.randrange(16**8):08x}",
                holds_gpus=True,
            )
            self._pods[pod_id] = pod
            status = "CREATED" if self.created_status_s > 0 else "RUNNING"
            self._set_status(pod, status, f"Rented by User: {_now_text()}")
            gen = pod.generation
        threading.Thread(target=self._boot, args=(pod, gen), daemon=True, name=f"boot-{pod_id}").start()
        return pod

    def _price(self, gpu: str, requested: str, spot: bool) -> tuple[str, float | None]:
        g = GPU_CATALOG[gpu]
        offers = {"SECURE": g["secureSpotPrice" if spot else "securePrice"],
                  "COMMUNITY": g["communitySpotPrice" if spot else "communityPrice"]}
        if requested != "ALL":
            return requested, offers.get(requested)
        available = [(price, tier) for tier, price in offers.items() if price is not None]
        if not available:
            return "SECURE", None
        price, tier = min(available)
        return tier, price

    def _boot(self, pod: Pod, gen: int) -> None:
        delay = max(self.boot_delay_s, self.created_status_s)
        if delay:
            time.sleep(delay)
        with pod.op_lock:
            with self._lock:
                if pod.generation != gen or pod.status not in ("RUNNING", "CREATED"):
                    return
                if pod.status == "CREATED":
                    pod.status = "RUNNING"
                    pod.history.append((time.time(), "RUNNING"))
            if not self.ssh:
                with self._lock:
                    pod.ssh_port = free_port()  # reported, nothing listens there
                    pod.http_ports = {p: random.randrange(40000, 65000) for p in self._exposed(pod, "http")}
                return
            try:
                host = self._make_host(pod)
                port = host.start()
                if not self.ssh_answers:
                    host.kill_sshd()
            except Exception as exc:  # noqa: BLE001 - surfaced through pod()/wait_ready()
                pod.boot_error = f"{type(exc).__name__}: {exc}"
                print(f"runpod emulator: pod {pod.id} failed to boot: {exc}", file=sys.stderr)
                return
            with self._lock:
                pod.host, pod.ssh_port = host, port
                pod.http_ports = {p: random.randrange(40000, 65000) for p in self._exposed(pod, "http")}

    def _exposed(self, pod: Pod, kind: str) -> list[int]:
        out = []
        for item in (pod.ports or "").split(","):
            item = item.strip()
            if not item:
                continue
            port, _, proto = item.partition("/")
            if (proto or "http") == kind and port.isdigit():
                out.append(int(port))
        return out

    def _pod_env(self, pod: Pod) -> tuple[dict[str, str], tuple[str, ...]]:
        env = dict(pod.env)
        env.setdefault("PUBLIC_KEY", self.account_public_key or "null")  # RunPod sends the string null [3P]
        env.update({
            "RUNPOD_POD_ID": pod.id,
            "RUNPOD_API_KEY": pod.pod_key,
            "RUNPOD_API_BASE_URL": self.api_base,
            "RUNPOD_API_URL": self.graphql_url,
            "RUNPOD_GRAPHQL_URL": self.graphql_url,
            "RUNPOD_GPU_COUNT": str(pod.gpu_count),
            "RUNPOD_CPU_COUNT": str(pod.vcpu_count),
            "RUNPOD_DC_ID": pod.data_center_id,
            "RUNPOD_POD_HOSTNAME": pod.pod_host_id,
            "RUNPOD_PUBLIC_IP": "127.0.0.1",
        })
        for p in self._exposed(pod, "tcp"):
            if p != 22:
                env[f"RUNPOD_TCP_PORT_{p}"] = str(p)  # symmetric: the network namespace is shared
        port_env = ("RUNPOD_TCP_PORT_22",) if 22 in self._exposed(pod, "tcp") else ()
        return env, port_env

    def _make_host(self, pod: Pod) -> SshHost:
        env, port_env = self._pod_env(pod)
        keys = env["PUBLIC_KEY"] if env["PUBLIC_KEY"] != "null" else ""
        gen = pod.generation
        return SshHost(
            self.root / "pods" / pod.id, keys, env=env, start_command=pod.docker_args or None,
            exit_with_command=True, port_env=port_env, volume_mount_path=pod.volume_mount_path,
            hostname=pod.id, grace_s=self.stop_grace_s,
            on_exit=lambda h, pod=pod, gen=gen: self._on_host_exit(pod, gen, h),
        )

    def _on_host_exit(self, pod: Pod, gen: int, host: SshHost) -> None:
        # Runs in the host's watcher thread: never block on pod.op_lock here (its holder may be
        # waiting for this very thread); hand the bookkeeping to a fresh thread.
        with self._lock:
            if pod.generation != gen:
                return  # we stopped/preempted/terminated it ourselves
        threading.Thread(target=self._container_exited, args=(pod, gen, host), daemon=True).start()

    def _container_exited(self, pod: Pod, gen: int, host: SshHost) -> None:
        """The start command ended while the pod is meant to run: RunPod starts the container again [3P]."""
        with pod.op_lock:
            with self._lock:
                if pod.generation != gen or pod.host is not host:
                    return
                rc = host.command_returncode
                pod.generation += 1
                pod.host, pod.ssh_port, pod.exit_reason = None, None, host.exit_reason
                pod.restarts += 1
                pod.history.append((time.time(), f"container exited with code {rc}: restarting"))
                gen = pod.generation
        threading.Thread(target=self._restart, args=(pod, gen), daemon=True, name=f"restart-{pod.id}").start()

    def _restart(self, pod: Pod, gen: int) -> None:
        if not self._stopping.wait(self.restart_delay_s):
            self._boot(pod, gen)

    def _halt(self, pod: Pod, status: str, note: str, *, kill: bool, grace_s: float = 0.0,
              reason: str) -> None:
        """Move a pod out of RUNNING: bump its generation, end its host, free GPUs, wipe the container."""
        with pod.op_lock:
            with self._lock:
                was_running = pod.status in ("RUNNING", "CREATED")
                if pod.status == "TERMINATED" or (status == "EXITED" and not was_running):
                    return
                pod.generation += 1
                host, pod.host, pod.ssh_port = pod.host, None, None
                pod.exit_reason = reason
                self._release_gpus(pod)
                self._set_status(pod, status, note)
            if host is not None:
                if kill:
                    host.kill()
                else:
                    host.grace_s = grace_s or self.stop_grace_s
                    host.stop()
            if status == "EXITED":
                self._wipe(pod)

    def _wipe(self, pod: Pod) -> None:
        """Container disk is gone when a pod stops; the volume stays if it has one."""
        if not self.wipe_container_disk:
            return
        disk = self.root / "pods" / pod.id
        if not disk.exists():
            return
        for entry in disk.iterdir():
            if entry.name == ".sshhost" or (entry.name == "workspace" and pod.volume_in_gb > 0):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        for stale in ("command.log", "command.rc"):
            (disk / ".sshhost" / stale).unlink(missing_ok=True)

    def _stop(self, pod_id: str) -> Pod:
        pod = self._api_pod(pod_id)
        self._halt(pod, "EXITED", f"Exited by User: {_now_text()}", kill=False, reason="stopped")
        return pod

    def _terminate(self, pod_id: str) -> None:
        pod = self._api_pod(pod_id)
        self._halt(pod, "TERMINATED", f"Terminated by User: {_now_text()}", kill=True, reason="terminated")

    def _resume(self, pod_id: str, gpu_count: int | None, bid: float | None) -> Pod:
        pod = self._api_pod(pod_id)
        with pod.op_lock:
            with self._lock:
                if pod.status in ("RUNNING", "CREATED"):
                    return pod  # INF: resuming a running pod is a no-op
                count = int(gpu_count) if gpu_count else pod.gpu_count
                self._take_gpus(pod.gpu_type_id, count, resume=True)
                if bid is not None:
                    _tier, floor = self._price(pod.gpu_type_id, pod.cloud_type, spot=True)
                    if floor is None or bid < floor - 1e-9:
                        self._release_gpus_count(pod.gpu_type_id, count)
                        raise GraphQLError(BID_TOO_LOW)
                    pod.pod_type, pod.bid_per_gpu = "INTERRUPTABLE", bid
                    pod.cost_per_hr = round(bid * count, 4)
                elif pod.gpu_type_id and count != pod.gpu_count and pod.pod_type == "RESERVED":
                    _tier, per_gpu = self._price(pod.gpu_type_id, pod.cloud_type, spot=False)
                    pod.cost_per_hr = round((per_gpu or 0) * count, 4)
                pod.gpu_count, pod.holds_gpus = count, True
                pod.generation += 1
                pod.exit_reason, pod.boot_error = None, None
                self._set_status(pod, "RUNNING", f"Resumed by User: {_now_text()}")
                gen = pod.generation
        threading.Thread(target=self._boot, args=(pod, gen), daemon=True, name=f"boot-{pod_id}").start()
        return pod

    def _release_gpus_count(self, gpu: str | None, count: int) -> None:
        if gpu and self._free(gpu) is not None:
            self._stock[gpu]["free"] += count

    # --------------------------------------------------------------------------- GraphQL values
    def _view(self, pod: Pod) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            host = pod.host
            alive = (host is not None and host.running) if self.ssh else True
            up = alive and pod.ssh_port is not None and pod.status == "RUNNING"
            runtime = None
            if up:
                ports = []
                for p in self._exposed(pod, "tcp"):
                    ports.append({"ip": "127.0.0.1", "isIpPublic": True, "privatePort": p,
                                  "publicPort": pod.ssh_port if p == 22 else p, "type": "tcp"})
                for p in self._exposed(pod, "http"):
                    ports.append({"ip": "100.65.0.2", "isIpPublic": False, "privatePort": p,
                                  "publicPort": pod.http_ports.get(p), "type": "http"})
                runtime = {"uptimeInSeconds": int(now - pod.run_started) if pod.run_started else 0,
                           "ports": ports,
                           "gpus": [{"id": f"GPU-{pod.id[:8]}-{i}", "gpuUtilPercent": 0.0, "memoryUtilPercent": 0.0}
                                    for i in range(pod.gpu_count)],
                           "container": {"cpuPercent": 0.0, "memoryPercent": 0.0}}
            g = GPU_CATALOG.get(pod.gpu_type_id or "", {})
            return {
                "id": pod.id, "name": pod.name, "imageName": pod.image_name,
                "desiredStatus": pod.status, "lastStatusChange": pod.last_status_change,
                "costPerHr": pod.cost_per_hr, "adjustedCostPerHr": pod.cost_per_hr,
                "gpuCount": pod.gpu_count, "vcpuCount": pod.vcpu_count, "memoryInGb": pod.memory_in_gb,
                "containerDiskInGb": pod.container_disk_in_gb, "volumeInGb": pod.volume_in_gb,
                "volumeMountPath": pod.volume_mount_path, "dockerArgs": pod.docker_args,
                "dockerId": None, "env": [f"{k}={v}" for k, v in pod.env.items()],
                "podType": pod.pod_type, "port": None, "ports": pod.ports,
                "uptimeSeconds": int(now - pod.run_started) if pod.run_started and pod.status == "RUNNING" else 0,
                "machineId": pod.machine_id, "templateId": pod.template_id,
                "interruptible": pod.pod_type == "INTERRUPTABLE", "runtime": runtime,
                "machine": {"podHostId": pod.pod_host_id, "gpuDisplayName": g.get("displayName"),
                            "gpuTypeId": pod.gpu_type_id, "dataCenterId": pod.data_center_id,
                            "location": pod.data_center_id, "secureCloud": pod.cloud_type == "SECURE"},
            }

    def _gpu_value(self, gid: str) -> dict[str, Any]:
        g = GPU_CATALOG[gid]
        value = {k: v for k, v in g.items() if k != "source"}
        value["maxGpuCountSecureCloud"] = g["maxGpuCount"] if g["secureCloud"] else 0
        value["maxGpuCountCommunityCloud"] = g["maxGpuCount"] if g["communityCloud"] else 0

        def lowest_price(_info: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
            inp = input or {}
            want = inp.get("gpuCount") or 1
            tiers = ["SECURE", "COMMUNITY"] if inp.get("secureCloud") is None else \
                (["SECURE"] if inp["secureCloud"] else ["COMMUNITY"])
            on_demand = [g["securePrice" if t == "SECURE" else "communityPrice"] for t in tiers]
            spot = [g["secureSpotPrice" if t == "SECURE" else "communitySpotPrice"] for t in tiers]
            on_demand = [p for p in on_demand if p is not None]
            spot = [p for p in spot if p is not None]
            with self._lock:
                status = self._stock_status(gid)
                free = self._free(gid)
            limit = g["maxGpuCount"] if free is None else min(free, g["maxGpuCount"])
            # refuse_capacity() is deliberately invisible here: stock is no guarantee [3P]
            counts = [n for n in (1, 2, 4, 8) if n <= limit] if on_demand else []
            return {"gpuName": g["displayName"], "gpuTypeId": gid,
                    "minimumBidPrice": min(spot) if spot else None,
                    "uninterruptablePrice": min(on_demand) if on_demand else None,
                    "stockStatus": None if not on_demand else (status if want <= limit else "None"),
                    "availableGpuCounts": counts, "maxUnreservedGpuCount": limit if on_demand else 0,
                    "minMemory": 31 * want, "minVcpu": float(8 * want), "countryCode": None}

        value["lowestPrice"] = lowest_price
        return value

    # ------------------------------------------------------------------------------------- HTTP
    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(entry)

    def _take_failure(self, fields: list[str]) -> dict[str, Any] | None:
        with self._lock:
            for f in self._failures:
                if f["op"] is None or f["op"] in fields:
                    f["n"] -= 1
                    if f["n"] <= 0:
                        self._failures.remove(f)
                    return f
        return None

    def handle_graphql(self, body: bytes, api_key: str | None) -> tuple[int, dict[str, str], bytes]:
        """One POST /graphql: returns (status, headers, body)."""
        # logged before it takes effect (status 0 until answered): whoever sees its effect finds the call in the log
        entry: dict[str, Any] = {"t": time.time(), "field": "?", "fields": [], "method": "?", "status": 0}
        self._record(entry)
        try:
            if self.graphql_gone:  # INF: the body a retired GraphQL endpoint sends; a problem object like REST v2's
                status, headers, out = _problem(410, "Gone", "the GraphQL API has been retired; use REST API v2")
                entry["status"] = status
                return status, headers, out
            status, headers, out = self._graphql(body, api_key, entry)
        except Exception:  # noqa: BLE001 - a bug must still answer JSON, never a bare 500
            traceback.print_exc()
            status, headers, out = 500, {}, _json({"errors": [{"message": "Internal emulator error"}]})
        entry["status"] = status
        return status, headers, out

    # ------------------------------------------------------------------------------- REST v2
    # RunPod's OpenAPI file (tests/reference/runpod-rest-v2.openapi.json) is the contract [DOC]: the operations
    # below, their parameters, bodies, statuses and the RFC 7807 error objects. The tests check every request and
    # answer that passes here against the file's schemas (tests/openapi_contract.py).
    REST_ROUTES = (("GET", ("v2", "catalog", "gpus"), "listGpuTypes"), ("GET", ("v2", "pods"), "listPods"),
                   ("POST", ("v2", "pods"), "createPod"), ("GET", ("v2", "pods", "*"), "getPod"),
                   ("DELETE", ("v2", "pods", "*"), "deletePod"), ("POST", ("v2", "pods", "*", "action"), "podAction"),
                   ("GET", ("v2", "pods", "*", "logs"), "getPodLogs"))

    def handle_rest(self, method: str, path: str, query: dict[str, list[str]], body: bytes, api_key: str | None,
                    last_event_id: str | None = None) -> tuple[int, dict[str, str], Any]:
        """One REST v2 request: (status, headers, body bytes, or an iterator of bytes for an event stream). Logged
        like a GraphQL call, with `field` the operationId and the request and answer kept for the contract tests."""
        if self.latency_s:
            time.sleep(self.latency_s)  # a real API's round trip (bench scale): not a behaviour of the API
        parts = [p for p in path.split("/") if p]
        route = next(((m, shape, op) for m, shape, op in self.REST_ROUTES if m == method and len(shape) == len(parts)
                      and all(a in ("*", b) for a, b in zip(shape, parts))), None)
        entry: dict[str, Any] = {"t": time.time(), "field": route[2] if route else f"REST {method} {path}", "fields": [],
                                 "method": "rest", "status": 0, "rest": True, "http": method, "path": path,
                                 "query": {k: v[-1] for k, v in query.items()}, "request": None}
        self._record(entry)
        try:
            entry["request"] = json.loads(body) if body else None
        except ValueError:
            entry["request"] = body.decode(errors="replace")
        try:
            status, headers, out = self._rest(route, parts, entry, api_key, last_event_id)
        except Exception:  # noqa: BLE001 - a bug must still answer a problem object, never a bare 500
            traceback.print_exc()
            status, headers, out = _problem(500, "Internal Server Error", "internal emulator error")
        entry["status"] = status
        entry["response"] = json.loads(out) if isinstance(out, bytes) and out and \
            not headers.get("Content-Type", "").startswith("text/") else None
        return status, headers, out

    def _rest(self, route, parts: list[str], entry: dict[str, Any], api_key: str | None, last_event_id: str | None):
        if route is None:
            return _problem(404, "Not Found", f"no route {entry['http']} {entry['path']}")
        op, request, query = route[2], entry["request"], entry["query"]
        pod_id = parts[2] if len(parts) > 2 and parts[1] == "pods" else None
        with self._lock:
            key_pod = next((p for p in self._pods.values() if p.pod_key == api_key), None)
        if api_key not in self.api_keys and key_pod is None:
            return _problem(401, "Unauthorized", "missing bearer token" if not api_key else "invalid API key")
        entry["key"] = "account" if api_key in self.api_keys else "pod"
        if key_pod is not None and (not self.pod_key_rest or op not in ("podAction", "getPod") or key_pod.id != pod_id):
            return _problem(403, "Forbidden", "access denied")  # INF: what a pod-scoped key may do (3P: a 403)
        action = request.get("action") if op == "podAction" and isinstance(request, dict) else None
        entry["fields"] = [op] + ([f"{op}:{action}"] if action else [])
        failure = self._take_failure(entry["fields"])
        if failure is not None:  # a test control (fail_next(op="getPod")); 429 carries Retry-After [DOC]
            entry["injected"] = True
            return self._failure_response(failure, rest=True)
        if self.rest_gone:  # INF: how RunPod will answer once it retires an API version is not published
            return _problem(410, "Gone", "this API version has been retired")
        return getattr(self, "_rest_" + op)(pod_id, request, query, entry=entry, last_event_id=last_event_id)

    def _rest_listGpuTypes(self, _pod_id, _request, query, **_):  # noqa: N802
        """GET /v2/catalog/gpus: list prices per cloud, per-cloud ceilings; with include=AVAILABILITY&product=POD the
        stock for `count` GPUs in `cloud` (default SECURE) [DOC]. A tier a GPU is not offered in has price 0 and
        maxCount 0 [INF: the file requires both numbers]. The GraphQL placeholder row `unknown` is not listed [INF]."""
        include, product = query.get("include"), query.get("product")
        scoped = [k for k in ("count", "cloud", "countryCodes", "cudaVersions", "minCudaVersion") if k in query]
        if include is not None and include != "AVAILABILITY":
            return _problem(422, "Unprocessable Entity", "invalid include", [f"include: {include} is not AVAILABILITY"])
        if (include is None) != (product is None) or (scoped and include is None):
            return _problem(400, "Bad Request", "product and the availability filters are valid only with "
                                                "include=AVAILABILITY, which requires product")
        cloud = query.get("cloud", "SECURE")
        try:
            count = int(query.get("count", "1"))
        except ValueError:
            count = 0
        if cloud not in ("SECURE", "COMMUNITY") or count < 1:
            return _problem(422, "Unprocessable Entity", "invalid query", ["count must be >= 1; cloud SECURE|COMMUNITY"])
        gpus = []
        for gid, g in GPU_CATALOG.items():
            if gid == "unknown":
                continue
            tiers = {"secure": g["securePrice"], "community": g["communityPrice"]}
            item = {"id": gid, "name": g["displayName"], "pool": None,
                    "manufacturer": "AMD" if gid.startswith("AMD") else "NVIDIA", "memory": int(g["memoryInGb"]),
                    "secure": tiers["secure"] is not None, "community": tiers["community"] is not None,
                    "price": {t: float(v or 0.0) for t, v in tiers.items()},
                    "maxCount": {t: (g["maxGpuCount"] if v is not None else 0) for t, v in tiers.items()}}
            if include:
                item["availability"] = self._availability(gid, cloud.lower(), count) if "POD" in product else "NONE"
            gpus.append(item)
        return 200, {}, _json({"gpus": gpus})

    def _availability(self, gid: str, tier: str, count: int) -> str:
        """Stock for `count` GPUs in one tier, as the catalog's AvailabilityLevel. refuse_capacity() is deliberately
        invisible here: stock is no guarantee [DOC: "a create can still fail for capacity"]."""
        g = GPU_CATALOG[gid]
        if g[f"{tier}Price"] is None or count > g["maxGpuCount"]:
            return "NONE"
        with self._lock:
            level, free = self._stock_status(gid), self._free(gid)
        if free is not None and free < count:
            return "NONE"
        return level.upper()

    def _rest_listPods(self, _pod_id, _request, _query, **_):  # noqa: N802
        """GET /v2/pods: the account's pods; a deleted pod no longer appears [DOC]."""
        with self._lock:
            return 200, {}, _json({"pods": [self._rest_pod(p) for p in self._pods.values() if p.status != "TERMINATED"]})

    def _rest_getPod(self, pod_id, _request, _query, **_):  # noqa: N802
        """GET /v2/pods/{id}; a deleted pod is 404 [INF: the file says only that it leaves listPods]."""
        with self._lock:
            pod = self._pods.get(pod_id)
            if pod is None or pod.status == "TERMINATED":
                return _problem(404, "Not Found", "pod not found")
            return 200, {}, _json(self._rest_pod(pod))

    def _rest_deletePod(self, pod_id, _request, _query, **_):  # noqa: N802
        """DELETE /v2/pods/{id}: 204 without a body; an unknown (or already deleted) pod 404 [DOC]."""
        try:
            self._terminate(pod_id)
        except GraphQLError:
            return _problem(404, "Not Found", "pod not found")
        return 204, {}, b""

    def _rest_createPod(self, _pod_id, body, _query, *, entry, **_):  # noqa: N802
        """POST /v2/pods -> 201 and the pod, PROVISIONING first [DOC]. The body must match CreatePodRequest (the
        tests validate it against the file; here only what this emulator needs: 422 for what it cannot read [DOC]).
        A rule it breaks or a GPU without capacity is 400 with a human-readable detail [DOC]."""
        if not isinstance(body, dict) or not body.get("name") or not isinstance(body.get("gpu"), dict):
            return _problem(422, "Unprocessable Entity", "invalid request body",
                            ["$: name and gpu (this emulator has no CPU pods) are required"])
        if not body.get("image") and not body.get("templateId"):
            return _problem(400, "Bad Request", "image is required unless templateId is set")
        gpu, mounts = body["gpu"], body.get("mounts") or {}
        persistent = mounts.get("persistent") or {}
        inp = {"name": body["name"], "imageName": body.get("image"), "templateId": body.get("templateId"),
               "gpuTypeId": gpu.get("id"), "gpuCount": gpu.get("count", 1), "cloudType": body.get("cloud", "SECURE"),
               "env": [{"key": k, "value": v} for k, v in (body.get("env") or {}).items()],
               "dockerArgs": body.get("args") or "", "ports": ",".join(body.get("ports") or []) or None,
               "containerDiskInGb": body.get("disk"), "volumeInGb": persistent.get("size") or 0,
               "volumeMountPath": persistent.get("path"),
               "dataCenterId": (body.get("dataCenterIds") or [None])[0]}
        if inp["gpuTypeId"] not in GPU_CATALOG or inp["gpuTypeId"] == "unknown":
            return _problem(400, "Bad Request", f"unknown GPU type {inp['gpuTypeId']!r}")
        if inp["ports"] is None and body.get("templateId"):
            inp["ports"] = "22/tcp"
        ssh = body.get("startSsh") and not any(e["key"] == "PUBLIC_KEY" for e in inp["env"])
        if ssh and self.account_public_key:  # startSsh injects the account's registered keys [DOC]
            inp["env"].append({"key": "PUBLIC_KEY", "value": self.account_public_key})
        try:
            pod = self._create(inp, self.api_key, spot=False)
        except GraphQLError as exc:  # capacity and rule errors: 400 with the text as detail [DOC]
            return _problem(400, "Bad Request", exc.message)
        with self._lock:
            return 201, {}, _json(self._rest_pod(pod))

    def _rest_podAction(self, pod_id, request, _query, **_):  # noqa: N802
        """POST /v2/pods/{id}/action: terminate 204 without a body, stop/start/restart 200 with the pod; an action
        the pod's status does not allow 409; an unknown pod 404 [DOC]."""
        if not isinstance(request, dict) or set(request) != {"action"} or \
                request["action"] not in ("start", "stop", "restart", "terminate"):
            return _problem(422, "Unprocessable Entity", "invalid request body",
                            ["$.action: must be one of start, stop, restart, terminate; no other properties"])
        with self._lock:
            pod = self._pods.get(pod_id)
        if pod is None or pod.status == "TERMINATED":
            return _problem(404, "Not Found", "pod not found")
        action, current = request["action"], self._rest_status(pod)
        if action not in self._rest_actions(current):
            return _problem(409, "Conflict", f"cannot {action} a pod that is {current}")
        if action == "terminate":
            self._terminate(pod_id)
            return 204, {}, b""
        if action == "stop":
            self._stop(pod_id)
        elif action == "start":
            try:
                self._resume(pod_id, None, None)
            except GraphQLError as exc:
                return _problem(400, "Bad Request", exc.message)
        else:  # restart: the container again, in place [INF: as a stop and a start]
            self._stop(pod_id)
            self._resume(pod_id, None, None)
        with self._lock:
            return 200, {}, _json(self._rest_pod(pod))

    def _rest_getPodLogs(self, pod_id, _request, query, *, last_event_id=None, **_):  # noqa: N802
        """GET /v2/pods/{id}/logs: Server-Sent Events, `id: <ts>/<seq>` and `data: {ts, source, line}` [DOC]; `tail`
        lines of backfill (default 100), or from after `Last-Event-ID`. Here the container's output (the start
        command's stdout and stderr) is the `container` source; there is no `system` source [INF]. The stream
        follows the log while the pod runs and closes once it no longer does [INF: the file does not say]."""
        with self._lock:
            pod = self._pods.get(pod_id)
        if pod is None or pod.status == "TERMINATED":
            return _problem(404, "Not Found", "pod not found")
        try:
            tail = int(query.get("tail", "100"))
        except ValueError:
            tail = -1
        if not 0 <= tail <= 5000 or query.get("source", "container") not in ("container", "system"):
            return _problem(422, "Unprocessable Entity", "invalid query", ["tail: 0..5000; source: container|system"])
        after = int(last_event_id.rsplit("/", 1)[-1]) if last_event_id and last_event_id.rsplit("/", 1)[-1].isdigit() else None
        log = self.root / "pods" / pod.id / ".sshhost" / "command.log"
        want = query.get("source", "container") == "container"

        def events():
            sent = 0
            lines = (log.read_text(errors="replace").splitlines() if log.exists() else []) if want else []
            start = after if after is not None else max(0, len(lines) - tail)
            while True:
                for seq in range(max(start, sent), len(lines)):
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    data = json.dumps({"ts": stamp, "source": "container", "line": lines[seq]})
                    yield f"id: {stamp}/{seq + 1:012d}\ndata: {data}\n\n".encode()
                sent = start = len(lines)
                if pod.status not in ("RUNNING", "CREATED") or self._stopping.is_set():
                    return
                time.sleep(0.2)
                if want and log.exists():
                    lines = log.read_text(errors="replace").splitlines()

        return 200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, events()

    def _rest_status(self, pod: Pod) -> str:
        """Internal state -> REST PodStatus [DOC enum]: PROVISIONING until the pod has a machine (CREATED), STARTING
        until its container is up (sshd listening), then RUNNING; EXITED when stopped or preempted."""
        if pod.status == "RUNNING":
            return "RUNNING" if pod.ssh_port is not None else "STARTING"
        return {"CREATED": "PROVISIONING", "RESTARTING": "STARTING", "EXITED": "EXITED", "PAUSED": "EXITED",
                "DEAD": "ERROR", "TERMINATED": "TERMINATED"}.get(pod.status, "ERROR")

    @staticmethod
    def _rest_actions(status: str) -> list[str]:
        """The transitions RunPod's file publishes per status (podAction's description) [DOC]."""
        return {"RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"],
                "ERROR": ["start", "terminate"], "PROVISIONING": ["stop", "terminate"],
                "STARTING": ["stop", "terminate"]}.get(status, [])

    def _rest_pod(self, pod: Pod) -> dict[str, Any]:
        """A pod as REST v2's Pod schema describes it (every required field) [DOC]; values as this emulator knows them.
        `ssh.direct` and `runtime.ports` carry the mapped 22/tcp once the pod runs and exposes it [DOC]."""
        status = self._rest_status(pod)
        running = status == "RUNNING"
        ports = [p.strip() for p in (pod.ports or "").split(",") if p.strip()]
        direct = ({"host": "127.0.0.1", "port": pod.ssh_port, "username": "root",
                   "command": f"ssh root@127.0.0.1 -p {pod.ssh_port}"} if running and "22/tcp" in ports else None)
        def stamp(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        created = pod.history[0][0] if pod.history else time.time()
        view = {
            "id": pod.id, "name": pod.name, "status": status, "actions": self._rest_actions(status),
            "image": pod.image_name, "args": pod.docker_args, "disk": pod.container_disk_in_gb,
            "mounts": ({"persistent": {"size": pod.volume_in_gb, "path": pod.volume_mount_path}}
                       if pod.volume_in_gb else {}),
            "ports": ports, "env": dict(pod.env), "registry": None, "cloud": pod.cloud_type,
            "dataCenterId": pod.data_center_id, "cudaVersion": None,
            "ssh": {"proxy": None, "direct": direct}, "template": pod.template_id,
            "cost": pod.cost_per_hr if status in ("RUNNING", "STARTING", "PROVISIONING") else 0.0, "locked": False,
            "runtime": {"uptime": int(time.monotonic() - pod.run_started) if pod.run_started else 0,
                        "ports": [{"private": 22, "public": pod.ssh_port, "type": "tcp", "ip": "127.0.0.1"}]
                        if direct else []} if running else None,
            "createdAt": stamp(created), "startedAt": stamp(time.time()) if running else None,
            "globalNetworking": {"enabled": False},
        }
        if pod.gpu_type_id:
            view["gpu"] = {"id": pod.gpu_type_id, "count": pod.gpu_count}
        return view

    def _graphql(self, body: bytes, api_key: str | None, entry: dict[str, Any]):
        with self._lock:  # a pod's own key works as its account's here (seed 000 stops its pod with it) [INF scope]
            owner = next((p.api_key for p in self._pods.values() if p.pod_key == api_key), None)
        if owner is not None and not self.pod_key_graphql:
            return 403, {}, _json({"errors": [{"message": "Forbidden: this API key cannot do that"}]})  # INF body
        api_key = owner or api_key
        if api_key not in self.api_keys:
            return 401, {}, _json({"errors": [{"message": "Unauthorized"}]})
        try:
            payload = json.loads(body or b"{}")
            query = payload["query"]
            variables = payload.get("variables") or None
            op_name = payload.get("operationName") or None
            if not isinstance(query, str):
                raise TypeError("query must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {}, _json({"errors": [{"message": f"Bad request body: {exc}"}]})
        try:
            document = parse(query)
        except GraphQLError as exc:
            return 400, {}, _json({"errors": [exc.formatted]})
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        op = next((o for o in ops if op_name is None or (o.name and o.name.value == op_name)), None)
        if op is not None:
            fields = [s.name.value for s in op.selection_set.selections if isinstance(s, FieldNode)]
            entry["fields"] = fields
            entry["field"] = fields[0] if fields else "?"
            entry["operation"] = op.operation.value
            entry["method"] = self._sdk_method(op)
        failure = self._take_failure(entry["fields"])
        if failure is not None:
            entry["injected"] = True
            return self._failure_response(failure)
        errors = validate(SCHEMA, document)
        if errors:
            return 400, {}, _json({"errors": [e.formatted for e in errors]})
        result = execute(SCHEMA, document, root_value=_Root(self, api_key or ""),
                         variable_values=variables, operation_name=op_name)
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
            for e in result.errors:
                if e.original_error is not None and not isinstance(e.original_error, GraphQLError):
                    traceback.print_exception(e.original_error)
        return 200, {}, _json(out)

    @staticmethod
    def _sdk_method(op: OperationDefinitionNode) -> str:
        first = next((s for s in op.selection_set.selections if isinstance(s, FieldNode)), None)
        if first is None:
            return "?"
        name = first.name.value
        if name == "gpuTypes":
            return "get_gpu" if first.arguments else "get_gpus"
        if name == "myself":
            subs = [s.name.value for s in (first.selection_set.selections if first.selection_set else [])
                    if isinstance(s, FieldNode)]
            return "get_pods" if "pods" in subs else "get_user"
        return _SDK_METHOD.get(name, name)

    @staticmethod
    def _failure_response(f: dict[str, Any], rest: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = f["status"]
        reason = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
                  410: "Gone", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable"}.get(status, "Error")
        headers = {"Retry-After": "1"} if status == 429 else {}
        if f["html"]:
            headers["Content-Type"] = "text/html"
            return status, headers, f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
        message = f["message"] or f"{status} {reason}"  # INF: RunPod's own error text is undocumented
        if rest:  # REST v2: an RFC 7807 problem object [DOC]
            code, headers_, out = _problem(status, reason, message)
            return code, {**headers_, **headers}, out
        return status, headers, _json({"errors": [{"message": message, "extensions": {"code": status}}]})

    def handle_control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """/_emulator/... test controls (no API key)."""
        try:
            args = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "body must be JSON"}
        parts = [p for p in path.split("/") if p][1:]  # drop "_emulator"
        try:
            if method == "GET" and parts == ["live_pods"]:
                return 200, self.live_pods()
            if method == "GET" and parts == ["billing_pods"]:
                return 200, self.billing_pods()
            if method == "GET" and parts == ["spend"]:
                return 200, {"spend": self.spend(args.get("pod_id")), "running_seconds": self.running_seconds()}
            if method == "GET" and parts == ["calls"]:
                with self._lock:
                    return 200, {"calls": list(self.calls), "counts": dict(self.call_counts())}
            if method == "GET" and parts == ["pods"]:
                return 200, self.pods()
            if method == "GET" and len(parts) == 2 and parts[0] == "pods":
                return 200, self.pod(parts[1])
            if method == "POST" and len(parts) == 3 and parts[0] == "pods" and parts[2] == "preempt":
                self.preempt(parts[1], float(args.get("grace_s", 0.0)))
                return 200, self.pod(parts[1])
            if method == "POST" and parts == ["calls", "reset"]:
                self.reset_calls()
                return 200, {}
            if method == "POST" and parts == ["fail_next"]:
                self.fail_next(int(args.get("n", 1)), int(args.get("status", 500)), args.get("op"),
                               bool(args.get("html", False)), args.get("message"))
                return 200, {}
            if method == "POST" and parts == ["refuse_capacity"]:
                self.refuse_capacity(args.get("gpu", "all"))
                return 200, {}
            if method == "POST" and parts == ["allow_capacity"]:
                self.allow_capacity(args.get("gpu", "all"))
                return 200, {}
            if method == "POST" and parts == ["stock"]:
                self.set_stock(args["gpu"], args.get("level"))
                return 200, {}
            if method == "POST" and parts == ["gone"]:
                self.graphql_gone = bool(args.get("graphql", self.graphql_gone))
                self.rest_gone = bool(args.get("rest", self.rest_gone))
                return 200, {}
            if method == "POST" and parts == ["pod_key"]:  # the other readings of what a pod-scoped key may do
                self.pod_key_rest = bool(args.get("rest", self.pod_key_rest))
                self.pod_key_graphql = bool(args.get("graphql", self.pod_key_graphql))
                return 200, {}
            if method == "POST" and parts == ["boot_delay"]:
                self.boot_delay_s = float(args["seconds"])
                return 200, {}
        except KeyError as exc:
            return 404, {"error": f"unknown: {exc}"}
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        return 404, {"error": f"no control {method} {path}"}


class _Root:
    """GraphQL root value: graphql-core calls these with (info, **arguments)."""

    def __init__(self, emu: RunPodEmulator, api_key: str) -> None:
        self.emu, self.api_key = emu, api_key

    # queries
    def gpuTypes(self, _info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # noqa: N802
        ids = list(GPU_CATALOG)
        if input:
            if input.get("id") is not None:
                ids = [input["id"]] if input["id"] in GPU_CATALOG else []
            if input.get("ids") is not None:
                ids = [i for i in ids if i in input["ids"]]
        return [self.emu._gpu_value(i) for i in ids]

    def pod(self, _info: Any, input: dict[str, Any]) -> dict[str, Any] | None:
        with self.emu._lock:
            pod = self.emu._pods.get(input["podId"])
        if pod is None or pod.status == "TERMINATED":
            return None
        return self.emu._view(pod)

    def myself(self, _info: Any) -> dict[str, Any]:
        emu = self.emu
        with emu._lock:
            pods = [p for p in emu._pods.values() if p.status != "TERMINATED"]
            spend_hr = sum(p.cost_per_hr for p in pods if p.status in ("RUNNING", "CREATED"))
        return {"id": "user_emulator", "email": "emulator@example.invalid", "pubKey": emu.account_public_key,
                "clientBalance": round(emu.client_balance - emu.spend(), 4), "currentSpendPerHr": spend_hr,
                "pods": [emu._view(p) for p in pods], "networkVolumes": []}

    # mutations
    def podFindAndDeployOnDemand(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self.emu._view(self.emu._create(input, self.api_key, spot=False))

    def podRentInterruptable(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self.emu._view(self.emu._create(input, self.api_key, spot=True))

    def deployCpuPod(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self.emu._view(self.emu._create(input, self.api_key, spot=False, cpu=True))

    def podStop(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self.emu._view(self.emu._stop(input["podId"]))

    def podResume(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self.emu._view(self.emu._resume(input["podId"], input.get("gpuCount"), None))

    def podBidResume(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self.emu._view(self.emu._resume(input["podId"], input.get("gpuCount"), input["bidPerGpu"]))

    def podTerminate(self, _info: Any, input: dict[str, Any]) -> None:  # noqa: N802
        self.emu._terminate(input["podId"])
        return None

    def updateUserSettings(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if input.get("pubKey") is not None:
            self.emu.account_public_key = input["pubKey"]
        return self.myself(info)


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _problem(status: int, title: str, detail: str, errors: list[str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A REST v2 error answer: ErrorResponse {title, status, detail, errors?} as application/problem+json [DOC]."""
    obj = {"title": title, "status": status, "detail": detail, **({"errors": errors} if errors else {})}
    return status, {"Content-Type": "application/problem+json"}, _json(obj)


class _Handler(BaseHTTPRequestHandler):
    emu: RunPodEmulator
    protocol_version = "HTTP/1.1"
    server_version = "RunPodEmulator/1"

    def log_message(self, *_args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        try:
            self.send_response(status)
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # e.g. a pod that terminated itself is no longer there to read the answer

    def _api_key(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        return (query.get("api_key") or [None])[0]

    def _rest(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        status, headers, out = self.emu.handle_rest(method, split.path, urllib.parse.parse_qs(split.query),
                                                    self._body(), self._api_key(), self.headers.get("Last-Event-ID"))
        if isinstance(out, bytes):
            self._send(status, out, headers)
            return
        try:  # an event stream: no length, the connection closes when it ends
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in out:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/v2/"):
            return self._rest("POST")
        body = self._body()
        if path.rstrip("/") == "/graphql":
            status, headers, out = self.emu.handle_graphql(body, self._api_key())
            self._send(status, out, headers)
        elif path.startswith("/_emulator/"):
            status, obj = self.emu.handle_control("POST", path, body)
            self._send(status, _json(obj))
        else:
            self._send(404, _json({"errors": [{"message": f"Not found: {path}"}]}))

    def do_DELETE(self) -> None:  # noqa: N802
        self._rest("DELETE")

    def do_GET(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/v2/"):
            return self._rest("GET")
        body = self._body()
        if path.startswith("/_emulator/"):
            status, obj = self.emu.handle_control("GET", path, body)
            self._send(status, _json(obj))
        elif path == "/health":
            self._send(200, b'{"ok": true}')
        else:
            self._send(404, _json({"errors": [{"message": f"Not found: {path}"}]}))


class EmulatorClient:
    """Drive a RunPodEmulator in another process over its /_emulator/ HTTP controls."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/_emulator/{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None

    def preempt(self, pod_id: str, grace_s: float = 0.0) -> dict[str, Any]:
        return self._call("POST", f"pods/{pod_id}/preempt", {"grace_s": grace_s})

    def fail_next(self, n: int = 1, status: int = 500, op: str | None = None, html: bool = False,
                  message: str | None = None) -> None:
        self._call("POST", "fail_next", {"n": n, "status": status, "op": op, "html": html, "message": message})

    def refuse_capacity(self, gpu_type_id: str = "all") -> None:
        self._call("POST", "refuse_capacity", {"gpu": gpu_type_id})

    def allow_capacity(self, gpu_type_id: str = "all") -> None:
        self._call("POST", "allow_capacity", {"gpu": gpu_type_id})

    def set_stock(self, gpu_type_id: str, level: str | int | None) -> None:
        self._call("POST", "stock", {"gpu": gpu_type_id, "level": level})

    def set_boot_delay(self, seconds: float) -> None:
        self._call("POST", "boot_delay", {"seconds": seconds})

    def pod_key(self, rest: bool, graphql: bool) -> None:
        """What a pod-scoped key may do, on REST v2 and on GraphQL (the other readings: False)."""
        self._call("POST", "pod_key", {"rest": rest, "graphql": graphql})

    def live_pods(self) -> list[str]:
        return self._call("GET", "live_pods")

    def billing_pods(self) -> list[str]:
        return self._call("GET", "billing_pods")

    def spend(self) -> float:
        return self._call("GET", "spend")["spend"]

    def calls(self) -> list[dict[str, Any]]:
        return self._call("GET", "calls")["calls"]

    def call_counts(self) -> dict[str, int]:
        return self._call("GET", "calls")["counts"]

    def reset_calls(self) -> None:
        self._call("POST", "calls/reset", {})

    def pods(self) -> list[dict[str, Any]]:
        return self._call("GET", "pods")

    def pod(self, pod_id: str) -> dict[str, Any]:
        return self._call("GET", f"pods/{pod_id}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulators.runpod_api",
                                 description="Serve a local RunPod GraphQL API whose pods are real SSH hosts.")
    ap.add_argument("--root", required=True, type=Path, help="directory for pod disks (<root>/pods/<id>)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--api-key", default="rp_test_key")
    ap.add_argument("--boot-delay", type=float, default=0.0, help="seconds before a pod's sshd starts")
    ap.add_argument("--public-key", default=None, help="account SSH public key (PUBLIC_KEY in pods)")
    args = ap.parse_args(argv)
    emu = RunPodEmulator(args.root, api_key=args.api_key, port=args.port, boot_delay_s=args.boot_delay,
                         account_public_key=args.public_key).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"export RUNPOD_API_BASE_URL={emu.api_base}")
    print(f"export RUNPOD_API_KEY={emu.api_key}")
    print(f"export RUNPOD_API_URL={emu.graphql_url}")
    print(f"export RUNPOD_GRAPHQL_URL={emu.graphql_url}")
    print(f"# controls: {emu.url}/_emulator/  (the SDK ignores RUNPOD_API_KEY: set runpod.api_key)", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
