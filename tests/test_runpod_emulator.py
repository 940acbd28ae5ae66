"""The RunPod GraphQL emulator driven by the REAL `runpod` 1.12 SDK, and the SshHost instances behind it.

Tests marked `slow` boot real sshd instances (root + openssh-server, PID/mount namespaces)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from emulators.runpod_api import (
    BID_TOO_LOW, GPU_CATALOG, NO_CAPACITY, NO_FREE_GPUS, EmulatorClient, RunPodEmulator,
)
from emulators.sshhost import SshHost, generate_keypair, pids_in_namespace, ssh_command
from tests.openapi_contract import RUNPOD, runpod_exchanges
from tests import reference

REPO = Path(__file__).resolve().parents[1]
GPU = "NVIDIA GeForce RTX 4090"
SPOT_MUTATION = """
mutation {{
  podRentInterruptable(input: {{ bidPerGpu: {bid}, cloudType: SECURE, gpuCount: 1, gpuTypeId: "{gpu}",
      name: "spot", imageName: "runpod/pytorch", startSsh: true, supportPublicIp: true, ports: "22/tcp",
      volumeInGb: 5, volumeMountPath: "/workspace", env: [{{ key: "PUBLIC_KEY", value: "{pub}" }}] }}) {{
    id desiredStatus imageName env machineId machine {{ podHostId }}
  }}
}}
"""


# ------------------------------------------------------------------------------------------------ helpers

def ssh(port: int, key: Path, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(port, key, command), capture_output=True, text=True, timeout=timeout)


def wait_ssh_port(runpod, pod_id: str, timeout: float = 30) -> int:
    """What the SDK's own rp_info.get_pod_ssh_ip_port does: poll get_pod until 22 is mapped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = runpod.get_pod(pod_id)
        if pod and pod["desiredStatus"] == "RUNNING" and pod["runtime"]:
            for port in pod["runtime"]["ports"]:
                if port["privatePort"] == 22 and port["ip"] and port["publicPort"]:
                    return int(port["publicPort"])
        time.sleep(0.05)
    raise AssertionError(f"pod {pod_id} never exposed 22/tcp: {runpod.get_pod(pod_id)}")


def wait_until(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """True if /proc shows a live (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def host_pid_of(host: SshHost, ns_pid: int) -> int:
    for host_pid, inner, _cmd in host.processes():
        if inner == ns_pid:
            return host_pid
    raise AssertionError(f"no process {ns_pid} inside {host}: {host.processes()}")


def procs_mentioning(text: str) -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and alive(int(entry)):
                out.append(f"{entry}: {cmd}")
    return out


def create(runpod, pub: str, **kw) -> dict:
    args = dict(name="t", image_name="runpod/pytorch", gpu_type_id=GPU, ports="22/tcp",
                env={"PUBLIC_KEY": pub, "FOO": "bar baz"}, volume_mount_path="/workspace")
    args.update(kw)
    return runpod.create_pod(**args)


# ---------------------------------------------------------------------------------------- SshHost itself

@pytest.mark.slow
def test_sshhost_is_a_real_ssh_host_and_kill_leaves_nothing(tmp_path):
    key, pub = generate_keypair(tmp_path / "keys")
    disk = tmp_path / "disk"
    host = SshHost(disk, pub, env={"GREETING": 'hello "world"'}, start_command="echo booted > /workspace/boot; sleep 600")
    port = host.start()
    assert host.running and port == host.port
    r = ssh(port, key, 'echo "$GREETING"; cat /workspace/boot; echo $HOME; hostname -I >/dev/null; '
                       'nohup sleep 4711 >/dev/null 2>&1 & echo $!')
    assert r.returncode == 0, r.stderr
    greeting, boot, home, bg = r.stdout.split("\n")[:4]
    assert greeting == 'hello "world"' and boot == "booted" and home == "/root"
    assert (disk / "workspace" / "boot").read_text() == "booted\n"  # /workspace is the disk's
    sleeper = host_pid_of(host, int(bg))
    assert alive(sleeper)  # survived the end of its ssh session
    ns = host.pidns
    assert len(pids_in_namespace(ns)) >= 4  # init, sshd, start command, sleeper

    host.kill()
    assert not host.running and host.exit_reason == "killed"
    assert not alive(sleeper) and pids_in_namespace(ns) == []
    assert procs_mentioning(str(disk)) == []
    assert (disk / "workspace" / "boot").exists()  # the disk outlives the instance

    port2 = host.start()  # same disk boots again: same host key, files still there
    r = ssh(port2, key, "cat /workspace/boot")
    assert r.stdout == "booted\n"
    host.stop()
    assert host.exit_reason == "stopped" and pids_in_namespace(host.pidns) == []


@pytest.mark.slow
def test_sshhost_graceful_stop_and_exit_with_command(tmp_path):
    key, pub = generate_keypair(tmp_path / "keys")
    host = SshHost(tmp_path / "d1", pub, grace_s=5,
                   start_command="trap 'echo got TERM > /workspace/term; exit 0' TERM; while :; do sleep 0.1; done")
    host.start()
    began = time.monotonic()
    host.stop()
    assert time.monotonic() - began < 4, "a process that exits on SIGTERM must not wait out the grace"
    assert (tmp_path / "d1" / "workspace" / "term").read_text() == "got TERM\n"
    assert pids_in_namespace(host.pidns) == []

    ended = []
    host = SshHost(tmp_path / "d2", pub, start_command="sleep 0.3; exit 7", exit_with_command=True,
                   on_exit=lambda h: ended.append(h.exit_reason))
    host.start()
    assert host.wait(15)
    assert ended == ["command-exited"] and host.command_returncode == 7
    assert pids_in_namespace(host.pidns) == []


@pytest.mark.slow
def test_sshhost_never_outlives_its_owner(tmp_path):
    _key, pub = generate_keypair(tmp_path / "keys")
    owner = (f"import sys, time; sys.path.insert(0, {str(REPO)!r})\n"
             "from pathlib import Path\nfrom emulators.sshhost import SshHost\n"
             f"h = SshHost(Path({str(tmp_path / 'disk')!r}), {pub!r}, start_command='sleep 600')\n"
             "h.start(); print(h.pidns, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True)
    ns = proc.stdout.readline().strip()
    assert ns.startswith("pid:[") and len(pids_in_namespace(ns)) >= 3
    proc.kill()
    proc.wait()
    wait_until(lambda: pids_in_namespace(ns) == [], 10, "the instance to die with its owner")


# ------------------------------------------------------------------------------------------ GPU queries

def test_get_gpus_is_the_2026_01_29_list(runpod_sdk):
    expected = json.loads(reference.path("runpod-get-gpus-2026-01-29.json").read_text())  # seed 000's list
    assert runpod_sdk.get_gpus() == expected
    assert len(expected) == 43


def test_get_gpu_prices_lowest_price_and_unknown_id(runpod_sdk, runpod_emulator):
    gpu = runpod_sdk.get_gpu(GPU, 2)
    # GPU_FACTS §3.1, closest to 2026-01-29: 0.59 on-demand + 0.50 spot (2026-01-01), community 0.34 (2025-07-13)
    assert (gpu["securePrice"], gpu["communityPrice"], gpu["secureSpotPrice"]) == (0.59, 0.34, 0.50)
    assert gpu["secureCloud"] is True and gpu["communityCloud"] is True and gpu["maxGpuCount"] == 8
    assert gpu["lowestPrice"] == {"minimumBidPrice": min(0.50, gpu["communitySpotPrice"]), "uninterruptablePrice": 0.34}
    assert set(gpu) == {"maxGpuCount", "id", "displayName", "manufacturer", "memoryInGb", "cudaCores", "secureCloud",
                        "communityCloud", "securePrice", "communityPrice", "oneMonthPrice", "threeMonthPrice",
                        "oneWeekPrice", "communitySpotPrice", "secureSpotPrice", "lowestPrice"}  # selection honoured
    h100 = runpod_sdk.get_gpu("NVIDIA H100 PCIe")
    assert (h100["securePrice"], h100["communityPrice"], h100["secureSpotPrice"]) == (2.39, 1.99, 2.03)
    with pytest.raises(ValueError, match="No GPU found"):
        runpod_sdk.get_gpu("NVIDIA Imaginary 9000")

    from runpod.api.graphql import run_graphql_query
    q = 'query { gpuTypes(input: {id: "NVIDIA L40S"}) { id lowestPrice(input: {gpuCount: 1, secureCloud: true}) ' \
        "{ stockStatus minimumBidPrice uninterruptablePrice availableGpuCounts } } }"
    assert run_graphql_query(q)["data"]["gpuTypes"][0]["lowestPrice"] == {
        "stockStatus": "High", "minimumBidPrice": 0.71, "uninterruptablePrice": 0.86, "availableGpuCounts": [1, 2, 4, 8]}
    runpod_emulator.set_stock("NVIDIA L40S", 2)
    assert run_graphql_query(q)["data"]["gpuTypes"][0]["lowestPrice"]["stockStatus"] == "Low"
    assert run_graphql_query(q)["data"]["gpuTypes"][0]["lowestPrice"]["availableGpuCounts"] == [1, 2]
    runpod_emulator.set_stock("NVIDIA L40S", "None")
    assert run_graphql_query(q)["data"]["gpuTypes"][0]["lowestPrice"]["stockStatus"] == "None"


def test_every_catalog_row_is_consistent():
    for gid, g in GPU_CATALOG.items():
        if gid == "unknown":
            assert not g["secureCloud"] and not g["communityCloud"]
            continue
        assert g["secureCloud"] or g["communityCloud"], gid
        for tier in ("secure", "community"):
            on_demand, spot = g[f"{tier}Price"], g[f"{tier}SpotPrice"]
            assert (on_demand is None) == (not g[f"{tier}Cloud"]), gid
            if on_demand is not None:
                assert spot is not None and 0 < spot <= on_demand, (gid, tier)


# --------------------------------------------------------------------------------------------- pods

@pytest.mark.slow
def test_on_demand_pod_ssh_env_background_process_and_preemption(runpod_sdk, runpod_emulator, runpod_ssh_key):
    key, pub = runpod_ssh_key
    created = create(runpod_sdk, pub, volume_in_gb=10)
    pod_id = created["id"]
    assert re.fullmatch(r"[a-z0-9]{14}", pod_id)
    assert created["imageName"] == "runpod/pytorch" and "FOO=bar baz" in created["env"]
    assert created["machine"]["podHostId"].startswith(pod_id + "-")

    port = wait_ssh_port(runpod_sdk, pod_id)
    pod = runpod_sdk.get_pod(pod_id)
    assert pod["desiredStatus"] == "RUNNING" and pod["podType"] == "RESERVED"
    assert pod["costPerHr"] == 0.34  # cloudType ALL -> the cheaper tier (community)
    assert pod["runtime"]["ports"] == [{"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                                        "publicPort": port, "type": "tcp"}]
    assert pod["machine"] == {"gpuDisplayName": "RTX 4090"}

    r = ssh(port, key, 'echo "$RUNPOD_POD_ID|$FOO|$RUNPOD_GPU_COUNT|$RUNPOD_TCP_PORT_22|$RUNPOD_API_KEY|'
                       '$RUNPOD_API_BASE_URL|$PUBLIC_KEY"; echo data > /workspace/kept; '
                       "nohup sleep 9999 >/dev/null 2>&1 & echo $!")
    assert r.returncode == 0, r.stderr
    env_line, bg = r.stdout.strip().split("\n")
    # RUNPOD_API_KEY inside a pod is a key scoped to that pod [DOC], not the account's
    pod_key = runpod_emulator.pod(pod_id)["podKey"]
    assert pod_key != runpod_emulator.api_key
    assert env_line.split("|") == [pod_id, "bar baz", "1", str(port), pod_key, runpod_emulator.api_base, pub]
    host = runpod_emulator.host(pod_id)
    sleeper = host_pid_of(host, int(bg))
    time.sleep(0.3)
    assert alive(sleeper), "a background process must survive the end of its ssh session"
    ns = host.pidns

    runpod_emulator.preempt(pod_id)
    assert not alive(sleeper) and pids_in_namespace(ns) == []
    pod = runpod_sdk.get_pod(pod_id)
    assert pod["desiredStatus"] == "EXITED" and pod["runtime"] is None
    assert pod_id in [p["id"] for p in runpod_sdk.get_pods()]  # a preempted pod stays listed
    assert ssh(port, key, "true", timeout=15).returncode != 0
    assert (runpod_emulator.root / "pods" / pod_id / "workspace" / "kept").read_text() == "data\n"
    assert runpod_emulator.live_pods() == []


@pytest.mark.slow
def test_spot_pod_through_run_graphql_query(runpod_sdk, runpod_emulator, runpod_ssh_key):
    from runpod.api.graphql import run_graphql_query
    from runpod.error import QueryError

    key, pub = runpod_ssh_key
    with pytest.raises(QueryError, match=re.escape(BID_TOO_LOW)):
        run_graphql_query(SPOT_MUTATION.format(bid=0.2, gpu=GPU, pub=pub))
    spot = run_graphql_query(SPOT_MUTATION.format(bid=0.55, gpu=GPU, pub=pub))["data"]["podRentInterruptable"]
    assert spot["desiredStatus"] == "RUNNING"
    port = wait_ssh_port(runpod_sdk, spot["id"])
    pod = runpod_sdk.get_pod(spot["id"])
    assert pod["podType"] == "INTERRUPTABLE" and pod["costPerHr"] == 0.55
    assert ssh(port, key, "echo $RUNPOD_POD_ID").stdout.strip() == spot["id"]

    EmulatorClient(runpod_emulator.url).preempt(spot["id"])  # from "another process": HTTP controls
    pod = runpod_sdk.get_pod(spot["id"])
    assert (pod["desiredStatus"], pod["podType"]) == ("EXITED", "INTERRUPTABLE")  # how launchers detect eviction

    resumed = run_graphql_query(
        f'mutation {{ podBidResume(input: {{podId: "{spot["id"]}", bidPerGpu: 0.6, gpuCount: 1}}) '
        "{ id desiredStatus costPerHr } }")["data"]["podBidResume"]
    assert resumed == {"id": spot["id"], "desiredStatus": "RUNNING", "costPerHr": 0.6}
    new_port = wait_ssh_port(runpod_sdk, spot["id"])
    assert ssh(new_port, key, "echo up").stdout == "up\n"


@pytest.mark.slow
def test_stop_resume_keeps_the_volume_and_wipes_the_container_disk(runpod_sdk, runpod_emulator, runpod_ssh_key):
    key, pub = runpod_ssh_key
    with_volume = create(runpod_sdk, pub, volume_in_gb=10)["id"]
    no_volume = create(runpod_sdk, pub)["id"]  # SDK default volume_in_gb=0: nothing survives a stop
    for pod_id in (with_volume, no_volume):
        port = wait_ssh_port(runpod_sdk, pod_id)
        assert ssh(port, key, "echo v > /workspace/v; echo c > /root/c").returncode == 0
        assert runpod_sdk.stop_pod(pod_id) == {"id": pod_id, "desiredStatus": "EXITED"}
        assert runpod_sdk.get_pod(pod_id)["runtime"] is None
        resumed = runpod_sdk.resume_pod(pod_id, 1)
        assert resumed["desiredStatus"] == "RUNNING" and resumed["id"] == pod_id
        new_port = wait_ssh_port(runpod_sdk, pod_id)
        r = ssh(new_port, key, "cat /workspace/v 2>/dev/null; ls /root/c 2>/dev/null; echo end")
        assert r.stdout == ("v\nend\n" if pod_id == with_volume else "end\n")


@pytest.mark.slow
def test_terminate_pod_kills_everything_and_stops_billing(runpod_sdk, runpod_emulator, runpod_ssh_key):
    key, pub = runpod_ssh_key
    pod_id = create(runpod_sdk, pub, docker_args="sleep 600")["id"]
    port = wait_ssh_port(runpod_sdk, pod_id)
    bg = ssh(port, key, "nohup sleep 8888 >/dev/null 2>&1 & echo $!").stdout.strip()
    host = runpod_emulator.host(pod_id)
    sleeper, ns = host_pid_of(host, int(bg)), host.pidns
    assert runpod_emulator.spend(pod_id) > 0

    assert runpod_sdk.terminate_pod(pod_id) is None
    assert runpod_sdk.get_pod(pod_id) is None
    assert pod_id not in [p["id"] for p in runpod_sdk.get_pods()]
    assert not alive(sleeper) and pids_in_namespace(ns) == []
    assert runpod_emulator.pod(pod_id)["status"] == "TERMINATED"
    spent = runpod_emulator.spend(pod_id)
    time.sleep(0.2)
    assert runpod_emulator.spend(pod_id) == spent and runpod_emulator.live_pods() == []

    from runpod.error import QueryError
    with pytest.raises(QueryError):
        runpod_sdk.stop_pod(pod_id)


@pytest.mark.slow
def test_pod_terminates_itself_via_sdk_and_stops_itself_via_plain_http(runpod_sdk, runpod_emulator, runpod_ssh_key,
                                                                       tmp_path):
    key, pub = runpod_ssh_key
    # 1) the start command uses the SDK with only what the pod was given (RUNPOD_* env, the host's venv python)
    script = tmp_path / "self_terminate.py"
    script.write_text("import os, runpod\n"
                      "runpod.api_key = os.environ['RUNPOD_API_KEY']\n"
                      "open('/workspace/started', 'w').write(os.environ['RUNPOD_POD_ID'])\n"
                      "runpod.terminate_pod(os.environ['RUNPOD_POD_ID'])\n"
                      "import time; time.sleep(600)\n")
    pod_id = create(runpod_sdk, pub, docker_args=f"{sys.executable} {script}", volume_in_gb=1)["id"]
    wait_until(lambda: runpod_emulator.pod(pod_id)["status"] == "TERMINATED", 30, "the pod to terminate itself")
    assert runpod_sdk.get_pod(pod_id) is None
    assert (runpod_emulator.root / "pods" / pod_id / "workspace" / "started").read_text() == pod_id
    assert runpod_emulator.processes() == []

    # 2) over ssh, plain curl in runpodctl-v1 style: ?api_key= and GraphQL variables
    stop_self = tmp_path / "stop_self.sh"
    stop_self.write_text(
        'body=\'{"query": "mutation stopPod($podId: String!) { podStop(input: {podId: $podId}) '
        '{ id desiredStatus } }", "variables": {"podId": "\'"$RUNPOD_POD_ID"\'"}}\'\n'
        'curl -s -X POST "$RUNPOD_GRAPHQL_URL?api_key=$RUNPOD_API_KEY" -H "Content-Type: application/json" -d "$body"\n'
        "sleep 600\n")
    pod_id = create(runpod_sdk, pub)["id"]
    port = wait_ssh_port(runpod_sdk, pod_id)
    ssh(port, key, f"bash {stop_self}", timeout=30)  # the session dies with the pod
    assert runpod_sdk.get_pod(pod_id)["desiredStatus"] == "EXITED"
    assert runpod_emulator.pod(pod_id)["exitReason"] == "stopped"
    assert runpod_emulator.processes() == []


@pytest.mark.slow
def test_a_start_command_that_exits_is_started_again_like_runpod_does(runpod_sdk, runpod_emulator, runpod_ssh_key):
    """RunPod restarts a container whose command exits while the pod is meant to run (dstack issue #1142,
    "infinitely restarts the pod"): the pod stays RUNNING and billing, the command runs again and again."""
    _key, pub = runpod_ssh_key
    pod_id = create(runpod_sdk, pub, docker_args="bash -c 'echo run >> /workspace/runs; exit 3'")["id"]
    runs = runpod_emulator.root / "pods" / pod_id / "workspace" / "runs"
    wait_until(lambda: runs.exists() and len(runs.read_text().splitlines()) >= 3, 30, "the container to restart")
    info = runpod_emulator.pod(pod_id)
    assert info["restarts"] >= 2 and runpod_sdk.get_pod(pod_id)["desiredStatus"] == "RUNNING"
    assert runpod_emulator.live_pods() == [pod_id]
    runpod_sdk.terminate_pod(pod_id)
    assert runpod_emulator.live_pods() == []
    wait_until(lambda: runpod_emulator.processes() == [], 10, "the last container to go")


# ------------------------------------------------------------------------------------- failures & errors

def test_injected_429_and_500_surface_as_the_sdk_raises_them(runpod_sdk, runpod_emulator):
    from runpod.error import QueryError

    runpod_emulator.fail_next(1, status=429)
    with pytest.raises(QueryError, match="429 Too Many Requests"):
        runpod_sdk.get_gpus()
    assert len(runpod_sdk.get_gpus()) == 43  # the retry goes through

    EmulatorClient(runpod_emulator.url).fail_next(2, status=500, op="pod")
    assert runpod_sdk.get_gpus()  # other operations are not affected
    for _ in range(2):
        with pytest.raises(QueryError, match="500 Internal Server Error"):
            runpod_sdk.get_pod("nosuchpod00000")
    assert runpod_sdk.get_pod("nosuchpod00000") is None

    runpod_emulator.fail_next(1, status=502, html=True)  # a gateway page, not JSON: the SDK leaks requests' error
    with pytest.raises(requests.exceptions.JSONDecodeError):
        runpod_sdk.get_gpus()
    statuses = [c["status"] for c in runpod_emulator.calls]
    assert statuses == [429, 200, 200, 500, 500, 200, 502]


@pytest.mark.slow
def test_capacity_refusal_and_resume_without_free_gpus(runpod_sdk, runpod_emulator, runpod_ssh_key):
    from runpod.error import QueryError

    _key, pub = runpod_ssh_key
    runpod_emulator.refuse_capacity(GPU)
    with pytest.raises(QueryError, match=re.escape(NO_CAPACITY)):
        create(runpod_sdk, pub)
    assert runpod_sdk.get_pods() == [] and runpod_emulator.spend() == 0
    other = create(runpod_sdk, pub, gpu_type_id="NVIDIA L40S")["id"]  # other GPU types still rent
    runpod_emulator.allow_capacity(GPU)

    runpod_emulator.set_stock(GPU, 1)
    first = create(runpod_sdk, pub)["id"]
    with pytest.raises(QueryError, match=re.escape(NO_CAPACITY)):
        create(runpod_sdk, pub)  # the only free 4090 is taken
    runpod_sdk.stop_pod(first)
    second = create(runpod_sdk, pub)["id"]  # the stopped pod gave its GPU back ...
    with pytest.raises(QueryError, match=re.escape(NO_FREE_GPUS)):
        runpod_sdk.resume_pod(first, 1)  # ... so it cannot come back ("zero GPU pods")
    runpod_sdk.terminate_pod(second)
    assert runpod_sdk.resume_pod(first, 1)["desiredStatus"] == "RUNNING"
    assert sorted(runpod_emulator.live_pods()) == sorted([first, other])


def test_auth_parse_and_validation_errors(runpod_sdk, runpod_emulator, monkeypatch):
    from runpod.api.graphql import run_graphql_query
    from runpod.error import AuthenticationError, QueryError

    with pytest.raises(AuthenticationError):
        runpod_sdk.get_gpus(api_key="wrong")
    with pytest.raises(QueryError, match="Syntax Error"):
        run_graphql_query('mutation { podStop(input: {podId: "a"b"}) { id } }')  # unescaped quote, as the SDK would
    with pytest.raises(QueryError, match="Cannot query field 'bogus'"):
        run_graphql_query("query { myself { bogus } }")
    with pytest.raises(QueryError, match="'PodFindAndDeployOnDemandInput' not to include unknown field 'spot'"):
        run_graphql_query('mutation { podFindAndDeployOnDemand(input: {gpuTypeId: "x", spot: true}) { id } }')
    user = runpod_sdk.get_user()
    assert user["networkVolumes"] == [] and user["id"]
    monkeypatch.setattr(runpod_sdk, "api_key", None)
    with pytest.raises(AuthenticationError, match="No API key"):
        runpod_sdk.get_pods()


@pytest.mark.slow
def test_sdk_in_another_process_reads_isolated_home_and_the_calls_log(runpod_emulator, runpod_ssh_key, tmp_path):
    _key, pub = runpod_ssh_key
    home = tmp_path / "other-home"
    (home / ".runpod").mkdir(parents=True)
    (home / ".runpod" / "config.toml").write_text(f'[default]\napi_key = "{runpod_emulator.api_key}"\n')
    code = ("import json, runpod, sys\n"  # no api_key assignment: it comes from $HOME/.runpod/config.toml
            f"pod = runpod.create_pod('x', 'img', {GPU!r}, ports='22/tcp', env={{'PUBLIC_KEY': {pub!r}}})\n"
            "print(json.dumps({'pod': pod['id'], 'listed': [p['id'] for p in runpod.get_pods()]}))\n")
    env = {"PATH": os.environ["PATH"], **runpod_emulator.sdk_env(home)}
    env.pop("RUNPOD_API_KEY")  # the SDK does not read it anyway
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["listed"] == [result["pod"]]
    runpod_emulator.wait_ready(result["pod"])
    assert [c["method"] for c in EmulatorClient(runpod_emulator.url).calls()] == ["get_gpu", "create_pod", "get_pods"]
    assert runpod_emulator.call_counts() == {"gpuTypes": 1, "podFindAndDeployOnDemand": 1, "myself": 1}


@pytest.mark.slow
def test_emulator_stop_leaves_no_process_and_nothing_billing(tmp_path, runpod_ssh_key, monkeypatch):
    key, pub = runpod_ssh_key
    emu = RunPodEmulator(tmp_path / "rp").start()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.api_base)
    import runpod

    monkeypatch.setattr(runpod, "api_key", emu.api_key)
    ids = [create(runpod, pub, docker_args="sleep 600")["id"] for _ in range(2)]
    namespaces = []
    for pod_id in ids:
        port = wait_ssh_port(runpod, pod_id)
        assert ssh(port, key, "nohup sleep 7777 >/dev/null 2>&1 &").returncode == 0
        namespaces.append(emu.host(pod_id).pidns)
    assert all(len(pids_in_namespace(ns)) >= 4 for ns in namespaces)
    emu.stop()
    assert all(pids_in_namespace(ns) == [] for ns in namespaces)
    assert procs_mentioning(str(emu.root)) == [] and emu.live_pods() == []
    assert {p["status"] for p in emu.pods()} == {"TERMINATED"}
    spent = emu.spend()
    time.sleep(0.2)
    assert emu.spend() == spent > 0
    RUNPOD.check(runpod_exchanges(emu.calls))


@pytest.mark.slow
def test_cli_prints_env_serves_and_cleans_up(tmp_path, runpod_ssh_key):
    _key, pub = runpod_ssh_key
    root = tmp_path / "cli-root"
    proc = subprocess.Popen([sys.executable, "-m", "emulators.runpod_api", "--root", str(root)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports = {}
        for _ in range(4):
            line = proc.stdout.readline()
            name, value = line.removeprefix("export ").strip().split("=", 1)
            exports[name] = value
        base, api_key = exports["RUNPOD_API_BASE_URL"], exports["RUNPOD_API_KEY"]
        body = json.dumps({"query": f'mutation {{ podFindAndDeployOnDemand(input: {{gpuTypeId: "{GPU}", '
                                    f'imageName: "i", ports: "22/tcp", env: [{{key: "PUBLIC_KEY", value: "{pub}"}}]}}) '
                                    "{ id } }"}).encode()
        req = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json",
                                                               "Authorization": f"Bearer {api_key}"})
        pod_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]["podFindAndDeployOnDemand"]["id"]
        wait_until(lambda: EmulatorClient(base).pod(pod_id)["sshPort"], 20, "the pod to boot")
        assert procs_mentioning(str(root))  # its instance is running
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()
    assert procs_mentioning(str(root)) == []


def test_api_only_pods_boot_delay_and_created_phase(tmp_path, monkeypatch):
    """ssh=False: the same state machine without running anything (no root needed)."""
    with RunPodEmulator(tmp_path / "api-only", ssh=False, boot_delay_s=0.3, created_status_s=0.3) as emu:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.api_base)
        import runpod

        monkeypatch.setattr(runpod, "api_key", emu.api_key)
        pod_id = runpod.create_pod("a", "img", GPU, cloud_type="SECURE", gpu_count=2, ports="22/tcp,8888/http")["id"]
        first = runpod.get_pod(pod_id)
        assert (first["desiredStatus"], first["runtime"], first["costPerHr"]) == ("CREATED", None, 1.18)
        port = wait_ssh_port(runpod, pod_id)
        ports = runpod.get_pod(pod_id)["runtime"]["ports"]
        assert ports[0]["publicPort"] == port
        assert ports[1]["type"] == "http" and ports[1]["isIpPublic"] is False and ports[1]["privatePort"] == 8888
        assert runpod.stop_pod(pod_id)["desiredStatus"] == "EXITED"
        assert runpod.resume_pod(pod_id, 2)["desiredStatus"] == "RUNNING"
        assert runpod.get_pod(pod_id)["runtime"] is None  # booting again
        wait_ssh_port(runpod, pod_id)
        assert emu.live_pods() == [pod_id]
    assert emu.live_pods() == [] and emu.pod(pod_id)["status"] == "TERMINATED"
    RUNPOD.check(runpod_exchanges(emu.calls))
