"""The Verda REST emulator, driven by the REAL `verda` 1.25 SDK; instances are real sshd hosts on loopback.

Every exchange is checked against Verda's OpenAPI file when a test ends (tests/fixtures_verda.py). Where the SDK
sends what the file does not allow (nulls on a create or an action, the deprecated `isSpot` and `/sshkeys`), the
tests send what Trainyard sends instead (helpers/backends/verda/api.py), through the SDK's own HTTP client.

Tests marked `slow` boot real sshd instances (root + openssh-server); the others check API semantics with
`ssh=False` instances, which go through the same state machine without running anything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from verda.exceptions import APIException
from verda.instances import OSVolume

from emulators.sshhost import ssh_command
from emulators.verda_api import VerdaEmulator
from helpers.backends.verda.api import add_ssh_key, availabilities, create_instance
from verda import VerdaClient

REPO = Path(__file__).resolve().parents[1]
GPU_TYPE = "1H100.80S.30V"
CPU_TYPE = "CPU.4V.16G"
GPU_IMAGE = "ubuntu-24.04-cuda-12.8-open-docker"


# ----------------------------------------------------------------------------------------------- helpers

def ssh(emu: VerdaEmulator, key: Path, instance_id: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(emu.ssh_port(instance_id), key, command), check=False, capture_output=True, text=True,
                          timeout=timeout)


def create(client: VerdaClient, instance_type: str, image: str, hostname: str, description: str, *, ssh_key_ids=(),
           location: str = "FIN-03", os_volume=None, **fields):
    """A create as Trainyard sends it, then the SDK's view of the instance once it left `ordered` (as the SDK's own
    create waits)."""
    if isinstance(os_volume, OSVolume):
        os_volume = {k: v for k, v in os_volume.to_dict().items() if v is not None}
    instance_id = create_instance(client, instance_type=instance_type, image=image, hostname=hostname,
                                  description=description, ssh_key_ids=list(ssh_key_ids), location_code=location,
                                  os_volume=os_volume, **fields)
    while (inst := client.instances.get_by_id(instance_id)).status == "ordered":
        time.sleep(0.05)
    return inst


def act(client: VerdaClient, ids, action: str, volume_ids=None, delete_permanently=None) -> None:
    """PUT /instances with only what the file defines (the SDK sends `volume_ids: null`)."""
    body = {"id": ids, "action": action, "volume_ids": volume_ids, "delete_permanently": delete_permanently}
    client._http_client.put("/instances", json={k: v for k, v in body.items() if v is not None})


def new_volume(client: VerdaClient, name: str, size: int, location: str) -> str:
    """POST /volumes without the SDK's `instance_id: null`."""
    body = {"type": "NVMe", "name": name, "size": size, "location_code": location}
    return client._http_client.post("/volumes", json=body).text.strip()


def is_available(client: VerdaClient, instance_type: str, is_spot: bool = False, location_code=None) -> bool:
    params = {"is_spot": "true" if is_spot else "false", **({"location_code": location_code} if location_code else {})}
    return client._http_client.get(f"/instance-availability/{instance_type}", params=params).json()


def wait_running(client: VerdaClient, instance_id: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        inst = client.instances.get_by_id(instance_id)
        if inst.status == "running":
            return inst
        assert inst.status in ("ordered", "provisioning"), inst.status
        assert time.monotonic() < deadline, f"{instance_id} still {inst.status}"
        time.sleep(0.1)


def marker_pids(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (sees into every PID namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry))
    return found


def start_marker(emu: VerdaEmulator, key: Path, instance_id: str) -> str:
    """Leave a long-running process on the instance whose argv[0] is a unique marker; return the marker."""
    marker = f"verda-marker-{uuid.uuid4().hex[:12]}"
    r = ssh(emu, key, instance_id, f"nohup bash -c 'exec -a {marker} sleep 600' >/dev/null 2>&1 </dev/null & echo ok")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    deadline = time.monotonic() + 5
    while not marker_pids(marker):
        assert time.monotonic() < deadline, "marker process never appeared"
        time.sleep(0.05)
    return marker


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def raw(emu: VerdaEmulator, client: VerdaClient, method: str, path: str, **kwargs) -> requests.Response:
    """A request with the SDK's current bearer token, to see the wire format the SDK hides."""
    headers = {"Authorization": f"Bearer {client._authentication._access_token}", "Content-Type": "application/json"}
    return requests.request(method, emu.base_url + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture
def key_id(verda_client: VerdaClient, verda_ssh_key) -> str:
    return add_ssh_key(verda_client, "test-key", verda_ssh_key[1])


@pytest.fixture
def api(verda_emulator_api_only: VerdaEmulator, verda_ssh_key):
    """(emulator without sshd, its client, an ssh key id): for tests of API semantics only."""
    emu = verda_emulator_api_only
    client = VerdaClient(emu.client_id, emu.client_secret, base_url=emu.base_url)
    return emu, client, add_ssh_key(client, "test-key", verda_ssh_key[1])


# --------------------------------------------------------------------------------------------------- auth

def test_auth_client_credentials_refresh_and_rejections(verda_emulator: VerdaEmulator):
    verda_emulator.token_ttl_s = 1.0
    client = VerdaClient(verda_emulator.client_id, verda_emulator.client_secret, base_url=verda_emulator.base_url)
    first = verda_emulator.calls[0]
    assert first["path"] == "/v1/oauth2/token" and first["status"] == 200
    assert first["body"]["grant_type"] == "client_credentials"
    assert first["body"]["client_secret"] == "***"  # the calls log never keeps secrets
    assert first["user_agent"] == "datacrunch-python-verda_test"
    assert client.balance.get().amount == pytest.approx(1000.0)

    time.sleep(1.1)  # the access token expired: the SDK refreshes with its refresh token, then retries nothing
    assert client.balance.get().currency == "usd"
    grants = [c["body"]["grant_type"] for c in verda_emulator.calls if c["path"] == "/v1/oauth2/token"]
    assert grants == ["client_credentials", "refresh_token"]
    last = verda_emulator.calls[-1]
    assert last["path"] == "/v1/balance" and last["auth"] == "client"
    assert last["user_agent"].startswith("datacrunch-python-v1.25.0-")

    with pytest.raises(APIException) as err:
        VerdaClient(verda_emulator.client_id, "wrong-secret", base_url=verda_emulator.base_url)
    assert err.value.code == "unauthorized_request"

    anonymous = requests.get(verda_emulator.base_url + "/instances", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthorized_request"

    verda_emulator.expire_tokens()  # server-side revocation: the SDK does not know and gets the 401
    verda_emulator.token_ttl_s = 3600.0
    with pytest.raises(APIException) as err:
        client.instances.get()
    assert err.value.code == "unauthorized_request"


# ---------------------------------------------------------------------------------------- catalog / capacity

def test_instance_types_send_string_prices(verda_emulator: VerdaEmulator, verda_client: VerdaClient):
    wire = raw(verda_emulator, verda_client, "GET", "/instance-types", params={"currency": "usd"}).json()
    h100 = next(t for t in wire if t["instance_type"] == GPU_TYPE)
    assert isinstance(h100["price_per_hour"], str) and isinstance(h100["spot_price"], str)

    types = {t.instance_type: t for t in verda_client.instance_types.get()}
    assert types[GPU_TYPE].price_per_hour == pytest.approx(float(h100["price_per_hour"]))
    assert types[GPU_TYPE].spot_price_per_hour == pytest.approx(float(h100["spot_price"]))
    assert types[GPU_TYPE].spot_price_per_hour < types[GPU_TYPE].price_per_hour
    assert types[GPU_TYPE].gpu["number_of_gpus"] == 1 and GPU_IMAGE in types[GPU_TYPE].supported_os
    assert types["4H100.80S.176V"].gpu["number_of_gpus"] == 4

    assert {loc["code"] for loc in verda_client.locations.get()} == {"FIN-01", "FIN-02", "FIN-03", "ICE-01"}
    cpu_images = {img.image_type for img in verda_client.images.get(instance_type=CPU_TYPE)}
    assert GPU_IMAGE not in cpu_images and "ubuntu-24.04" in cpu_images


def test_availability_is_per_location_and_pool(api):
    verda_emulator, verda_client, key_id = api
    verda_emulator.set_capacity(GPU_TYPE, 0, location="FIN-02", is_spot=True)
    verda_emulator.set_capacity(CPU_TYPE, 1, location="ICE-01", is_spot=False)

    spot = {a["location_code"]: a["availabilities"] for a in availabilities(verda_client, True)}
    assert set(spot) == {"FIN-01", "FIN-02", "FIN-03", "ICE-01"}
    assert GPU_TYPE not in spot["FIN-02"] and GPU_TYPE in spot["FIN-01"]
    assert verda_emulator.calls[-1]["query"] == {"is_spot": "true"}
    assert is_available(verda_client, GPU_TYPE, is_spot=True, location_code="FIN-02") is False
    assert is_available(verda_client, GPU_TYPE, is_spot=False, location_code="FIN-02") is True
    only_fin1 = availabilities(verda_client, True, "FIN-01")
    assert [a["location_code"] for a in only_fin1] == ["FIN-01"]
    # the Go SDK / CLI spelling
    go_style = raw(verda_emulator, verda_client, "GET", "/instance-availability",
                   params={"is_spot": "true", "location_code": "FIN-02"}).json()
    assert GPU_TYPE not in go_style[0]["availabilities"]

    with pytest.raises(APIException) as err:
        create(verda_client, GPU_TYPE, GPU_IMAGE, "h", "d", ssh_key_ids=[key_id], location="FIN-02",
                                      is_spot=True)
    assert "capacity" in err.value.message
    assert verda_emulator.live_instances() == []

    # the single ICE-01 on-demand CPU slot: taken by one instance, then unavailable
    inst = create(verda_client, CPU_TYPE, "ubuntu-24.04", "h", "d", ssh_key_ids=[key_id], location="ICE-01")
    assert is_available(verda_client, CPU_TYPE, location_code="ICE-01") is False
    with pytest.raises(APIException):
        create(verda_client, CPU_TYPE, "ubuntu-24.04", "h2", "d", ssh_key_ids=[key_id], location="ICE-01")
    with pytest.raises(APIException) as err:
        create(verda_client, CPU_TYPE, GPU_IMAGE, "h3", "d", ssh_key_ids=[key_id], location="FIN-01")
    assert err.value.message == "Operating system is not valid for this instance type"
    wait_running(verda_client, inst.id)
    act(verda_client, inst.id, "delete")
    assert is_available(verda_client, CPU_TYPE, location_code="ICE-01") is True


# ------------------------------------------------------------------------------------- create / ssh / spend

@pytest.mark.slow  # boots real sshd instances
def test_create_spot_and_on_demand_then_ssh_in(verda_emulator: VerdaEmulator, verda_client: VerdaClient,
                                                verda_ssh_key, key_id):
    key, _ = verda_ssh_key
    script = verda_client.startup_scripts.create(
        "boot", "#!/bin/bash\necho \"booted $VERDA_INSTANCE_ID\" > /root/boot.txt\n")

    # the create call answers the id as plain text (not JSON)
    body = {"instance_type": CPU_TYPE, "image": "ubuntu-24.04", "ssh_key_ids": [key_id], "hostname": "wire",
            "description": "d", "location_code": "FIN-03", "volumes": [], "existing_volumes": [], "is_spot": False}
    created = raw(verda_emulator, verda_client, "POST", "/instances", json=body)
    assert created.status_code in (200, 201, 202)
    assert created.headers["Content-Type"].startswith("text/plain")
    wire_id = created.text
    assert wire_id == wire_id.strip() and '"' not in wire_id and str(uuid.UUID(wire_id)) == wire_id

    spot = create(verda_client, GPU_TYPE, GPU_IMAGE, "spot-host", "spot", ssh_key_ids=[key_id], location="FIN-01",
                  is_spot=True, contract="SPOT", startup_script_id=script.id,
                  os_volume=OSVolume(name="os", size=80, on_spot_discontinue="keep_detached"))
    on_demand = create(verda_client, GPU_TYPE, GPU_IMAGE, "od-host", "od", ssh_key_ids=[key_id], location="FIN-03")
    assert spot.status in ("provisioning", "running")  # the SDK's create waits until it is no longer `ordered`
    assert any(c["path"] == f"/v1/instances/{spot.id}" for c in verda_emulator.calls)
    types = {t.instance_type: t for t in verda_client.instance_types.get()}
    assert spot.is_spot and spot.contract == "SPOT"
    assert spot.price_per_hour == pytest.approx(types[GPU_TYPE].spot_price_per_hour)
    assert not on_demand.is_spot and on_demand.contract == "PAY_AS_YOU_GO"
    assert on_demand.price_per_hour == pytest.approx(types[GPU_TYPE].price_per_hour)

    spot = wait_running(verda_client, spot.id)
    on_demand = wait_running(verda_client, on_demand.id)
    wait_running(verda_client, wire_id)
    assert spot.ip == "127.0.0.1" and spot.os_volume_id and spot.location == "FIN-01"
    listed = {i.id for i in verda_client.instances.get(status="running")}
    assert {spot.id, on_demand.id, wire_id} <= listed
    wire = raw(verda_emulator, verda_client, "GET", f"/instances/{spot.id}").json()
    assert wire["emulator_ssh_port"] == verda_emulator.ssh_port(spot.id)
    os_vol = verda_client.volumes.get_by_id(spot.os_volume_id)
    assert (os_vol.status, os_vol.instance_id, os_vol.is_os_volume, os_vol.size) == ("attached", spot.id, True, 80)

    r = ssh(verda_emulator, key, spot.id, "whoami; echo \"[$VERDA_INSTANCE_ID$VERDA_API_BASE$VERDA_INSTANCE_TOKEN]\"; "
                                          "for i in $(seq 50); do [ -s /root/boot.txt ] && break; sleep 0.1; done; "
                                          "cat /root/boot.txt")
    assert r.returncode == 0, r.stderr
    # the real API gives an instance no id, address or credential in its environment
    assert [line.strip() for line in r.stdout.split("\n")[:3]] == ["root", "[]", "booted"]
    # the other instance is a different host with its own disk and no startup script
    r = ssh(verda_emulator, key, on_demand.id, "echo host; test -e /root/boot.txt && echo has-boot")
    assert r.stdout.split() == ["host"]

    time.sleep(0.5)
    spent_spot, spent_od = verda_emulator.spend(spot.id), verda_emulator.spend(on_demand.id)
    assert spent_spot > 0 and spent_od > spent_spot  # same time running, on-demand costs more per hour
    assert spent_spot < spot.price_per_hour * 30 / 3600  # at most the ~seconds the test ran
    for inst_id in (spot.id, on_demand.id, wire_id):
        act(verda_client, inst_id, "delete")
    assert verda_emulator.live_instances() == []
    frozen = verda_emulator.spend()
    time.sleep(0.2)
    assert verda_emulator.spend() == frozen  # billing stopped with the instances


# ------------------------------------------------------------------------------- spot preemption / resume_local

@pytest.mark.slow  # boots real sshd instances
def test_preempt_kills_everything_and_os_volume_boots_again(verda_emulator: VerdaEmulator,
                                                             verda_client: VerdaClient, verda_ssh_key, key_id):
    key, _ = verda_ssh_key
    first = create(verda_client, GPU_TYPE, GPU_IMAGE, "train-1", "d", ssh_key_ids=[key_id],
                                          location="FIN-02", is_spot=True)
    first = wait_running(verda_client, first.id)
    port = verda_emulator.ssh_port(first.id)
    r = ssh(verda_emulator, key, first.id,
            "mkdir -p /root/outputs/checkpoints/last && echo 1200 > /root/outputs/checkpoints/last/step")
    assert r.returncode == 0, r.stderr
    marker = start_marker(verda_emulator, key, first.id)

    # through the HTTP control, as a separate test process would do it
    ctl = requests.post(f"{verda_emulator.url}/_emulator/instances/{first.id}/preempt", timeout=30)
    assert ctl.status_code == 200 and ctl.json()["status"] == "discontinued"

    assert marker_pids(marker) == []  # every process of the instance died
    assert not port_open(port)
    gone = verda_client.instances.get_by_id(first.id)
    assert gone.status == "discontinued" and gone.ip is None
    assert first.id in {i.id for i in verda_client.instances.get()}  # still listed, as discontinued
    assert verda_emulator.live_instances() == []
    detached = verda_client.volumes.get(status="detached")
    assert [(v.id, v.is_os_volume, v.instance_id, v.location) for v in detached] == \
        [(first.os_volume_id, True, "", "FIN-02")]  # required strings in the file: "" for none
    with pytest.raises(APIException) as err:
        act(verda_client, first.id, "delete")
    assert err.value.message == "Can't discontinue a discontinued instance"
    with pytest.raises(APIException) as err:  # the volume must be used in its own location
        create(verda_client, GPU_TYPE, first.os_volume_id, "wrong-loc", "d", ssh_key_ids=[key_id],
                                      location="FIN-01", is_spot=True)
    assert "location" in err.value.message

    # resume_local: boot a new instance from the kept OS volume; the files are still there
    second = create(verda_client, GPU_TYPE, first.os_volume_id, "train-2", "d", ssh_key_ids=[key_id],
                                           location="FIN-02", is_spot=True)
    second = wait_running(verda_client, second.id)
    assert second.os_volume_id == first.os_volume_id and second.id != first.id
    assert verda_client.volumes.get_by_id(first.os_volume_id).status == "attached"
    r = ssh(verda_emulator, key, second.id, "cat /root/outputs/checkpoints/last/step; hostname")
    assert r.stdout.split()[0] == "1200"

    # the same through existing_volumes (image ignored, boot from the OS volume found there)
    verda_emulator.preempt(second.id)
    third = create(verda_client, GPU_TYPE, GPU_IMAGE, "train-3", "d", ssh_key_ids=[key_id],
                                          location="FIN-02", is_spot=True, existing_volumes=[first.os_volume_id])
    third = wait_running(verda_client, third.id)
    assert third.os_volume_id == first.os_volume_id
    assert ssh(verda_emulator, key, third.id, "cat /root/outputs/checkpoints/last/step").stdout.strip() == "1200"

    od = create(verda_client, CPU_TYPE, "ubuntu-24.04", "od", "d", ssh_key_ids=[key_id])
    with pytest.raises(ValueError):  # only spot instances are preempted
        verda_emulator.preempt(od.id)


def test_preempt_move_to_trash_policy(api):
    verda_emulator, verda_client, key_id = api
    inst = create(verda_client, CPU_TYPE, "ubuntu-24.04", "h", "d", ssh_key_ids=[key_id], is_spot=True,
                                         os_volume={"name": "os", "size": 50, "on_spot_discontinue": "move_to_trash"})
    inst = wait_running(verda_client, inst.id)
    verda_emulator.preempt(inst.id)
    assert [v.id for v in verda_client.volumes.get_in_trash()] == [inst.os_volume_id]
    assert verda_client.volumes.get() == []


# ---------------------------------------------------------------------------------- actions / volume semantics

@pytest.mark.slow  # instances that boot for seconds
def test_delete_volume_semantics(api):
    verda_emulator, verda_client, key_id = api
    verda_emulator.boot_delay_s = 2.0
    ids = [create(verda_client, CPU_TYPE, "ubuntu-24.04", f"h{n}", "d", ssh_key_ids=[key_id],
                                         volumes=[{"type": "NVMe", "name": f"data{n}", "size": 10}]).id
           for n in range(3)]
    booting = verda_client.instances.get_by_id(ids[-1])
    assert (booting.status, booting.ip, booting.os_volume_id) == ("provisioning", None, "")  # ip is nullable
    with pytest.raises(APIException) as err:
        act(verda_client, ids[-1], "delete")
    assert err.value.message == "Can't discontinue a provisioning instance"
    with pytest.raises(APIException):
        act(verda_client, ids[-1], "shutdown")
    insts = [wait_running(verda_client, i) for i in ids]
    data = {i.id: next(v for v in verda_client.volumes.get() if v.instance_id == i.id and not v.is_os_volume)
            for i in insts}

    # volume_ids omitted: the OS volume goes to the trash, other volumes are detached
    act(verda_client, insts[0].id, "delete")
    assert verda_client.instances.get_by_id(insts[0].id).status == "discontinued"
    assert insts[0].id not in {i.id for i in verda_client.instances.get()}
    assert verda_client.volumes.get_by_id(insts[0].os_volume_id).status == "deleted"
    assert insts[0].os_volume_id in {v.id for v in verda_client.volumes.get_in_trash()}
    assert verda_client.volumes.get_by_id(data[insts[0].id].id).status == "detached"

    # volume_ids=[]: every volume is kept, detached
    act(verda_client, insts[1].id, "delete", volume_ids=[])
    kept = verda_client.volumes.get_by_id(insts[1].os_volume_id)
    assert (kept.status, kept.instance_id) == ("detached", "")

    # volume_ids=[os] + delete_permanently: that one is gone for good, the rest detached
    disk = verda_emulator.disk_path(insts[2].os_volume_id)
    assert disk.is_dir()
    act(verda_client, insts[2].id, "delete", volume_ids=[insts[2].os_volume_id], delete_permanently=True)
    with pytest.raises(APIException) as err:
        verda_client.volumes.get_by_id(insts[2].os_volume_id)
    assert err.value.code == "not_found"
    assert not disk.exists()
    assert verda_client.volumes.get_by_id(data[insts[2].id].id).status == "detached"

    with pytest.raises(APIException) as err:
        act(verda_client, insts[2].id, "delete")
    assert err.value.message == "Can't discontinue a discontinued instance"
    with pytest.raises(APIException) as err:
        verda_client.instances.get_by_id("00000000-0000-0000-0000-000000000000")
    assert err.value.message == "Invalid instance id"
    assert verda_emulator.live_instances() == []


@pytest.mark.slow  # boots real sshd instances
def test_shutdown_start_keeps_disk_and_billing(verda_emulator: VerdaEmulator, verda_client: VerdaClient,
                                               verda_ssh_key, key_id):
    """An `offline` (shut down) instance keeps billing until it is deleted [DOC verda-cli cmd/vm/action.go]."""
    key, _ = verda_ssh_key
    inst = wait_running(verda_client, create(verda_client, 
        CPU_TYPE, "ubuntu-24.04", "h", "d", ssh_key_ids=[key_id]).id)
    assert ssh(verda_emulator, key, inst.id, "echo keep > /root/keep.txt").returncode == 0
    marker = start_marker(verda_emulator, key, inst.id)
    old_port = verda_emulator.ssh_port(inst.id)

    act(verda_client, inst.id, "shutdown")
    assert verda_client.instances.get_by_id(inst.id).status == "offline"
    assert marker_pids(marker) == [] and not port_open(old_port)
    billed = verda_emulator.spend(inst.id)
    time.sleep(0.3)
    assert verda_emulator.spend(inst.id) >= billed + 0.05 * 0.29 / 3600  # the meter runs on while offline
    # volumes can be attached only while offline
    vol_id = new_volume(verda_client, "extra", 20, "FIN-03")
    verda_client.volumes.attach(vol_id, inst.id)
    assert verda_client.volumes.get_by_id(vol_id).instance_id == inst.id

    act(verda_client, inst.id, "start")
    inst = wait_running(verda_client, inst.id)
    assert ssh(verda_emulator, key, inst.id, "cat /root/keep.txt").stdout.strip() == "keep"
    assert verda_emulator.spend(inst.id) > billed
    with pytest.raises(APIException):  # a running instance's volumes stay put
        verda_client.volumes.detach(vol_id)


# ------------------------------------------------------------------------------------------ fault injection

def test_429_and_500_surface_as_api_exceptions(api):
    verda_emulator, verda_client, key_id = api
    verda_emulator.fail_next(1, status=429)
    with pytest.raises(APIException) as err:
        verda_client.instances.get()
    assert err.value.code == "too_many_requests"
    assert verda_emulator.calls[-1]["status"] == 429
    assert verda_client.instances.get() == []  # only the next one failed

    verda_emulator.fail_next(2, status=500, path="/instances", method="POST")
    for _ in range(2):
        with pytest.raises(APIException) as err:
            create(verda_client, CPU_TYPE, "ubuntu-24.04", "h", "d", ssh_key_ids=[key_id])
        assert (err.value.code, err.value.message) == ("server_error", "Internal server error")
    assert verda_emulator.live_instances() == []  # nothing was created
    assert verda_client.instance_types.get()  # other paths unaffected

    # after_effect: the create happened but the client only saw the 500 (an orphan to clean up)
    verda_emulator.fail_next(1, status=500, path="/instances", method="POST", after_effect=True)
    with pytest.raises(APIException):
        create(verda_client, CPU_TYPE, "ubuntu-24.04", "orphan", "d", ssh_key_ids=[key_id])
    orphans = verda_emulator.live_instances()
    assert [o["hostname"] for o in orphans] == ["orphan"]

    wire = requests.post(f"{verda_emulator.url}/_emulator/fail-next", json={"n": 1, "status": 503}, timeout=10)
    assert wire.status_code == 200
    resp = raw(verda_emulator, verda_client, "GET", "/locations")
    assert resp.status_code == 503 and resp.json() == {"code": "service_unavailable", "message": "Service unavailable"}

    verda_emulator.rate_limit_per_s = 3
    codes = [raw(verda_emulator, verda_client, "GET", "/balance").status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    verda_emulator.rate_limit_per_s = None


# ----------------------------------------------------------------------------------- the instance ends itself

@pytest.mark.slow  # boots real sshd instances
def test_an_instance_ends_itself_only_with_the_account_credentials(verda_emulator: VerdaEmulator,
                                                                   verda_client: VerdaClient, verda_ssh_key, key_id):
    """What Trainyard's dead-man does on a real Verda VM: the account's client credentials (the only kind of
    credential Verda has) -> POST /oauth2/token -> find itself by name -> PUT /instances delete."""
    key, _ = verda_ssh_key
    a = create(verda_client, CPU_TYPE, "ubuntu-24.04", "ty-self-aaaaaa", "ty-self-aaaaaa", ssh_key_ids=[key_id])
    b = create(verda_client, CPU_TYPE, "ubuntu-24.04", "other", "other", ssh_key_ids=[key_id])
    a, b = wait_running(verda_client, a.id), wait_running(verda_client, b.id)
    program = (
        "import json, sys, urllib.request\n"
        f"base = {verda_emulator.base_url!r}\n"
        "def call(method, path, body=None, token=None):\n"
        "    headers = {'Content-Type': 'application/json', **({'Authorization': 'Bearer ' + token} if token else {})}\n"
        "    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,\n"
        "                                 headers=headers)\n"
        "    with urllib.request.urlopen(req, timeout=10) as r: return r.status, json.loads(r.read() or b'null')\n"
        f"token = call('POST', '/oauth2/token', {{'grant_type': 'client_credentials', 'client_id': sys.argv[1], "
        "'client_secret': sys.argv[2]})[1]['access_token']\n"
        "me = next(i for i in call('GET', '/instances', token=token)[1] if i['hostname'] == 'ty-self-aaaaaa')\n"
        "print(call('PUT', '/instances', {'id': [me['id']], 'action': 'delete', 'volume_ids': []}, token)[0])\n"
    )
    (verda_emulator.disk_path(a.os_volume_id) / "self_end.py").write_text(program)
    r = ssh(verda_emulator, key, a.id, f"python3 /root/self_end.py {verda_emulator.client_id} {verda_emulator.client_secret}")
    assert verda_client.instances.get_by_id(a.id).status == "discontinued", (r.stdout, r.stderr)
    assert verda_client.volumes.get_by_id(a.os_volume_id).status == "detached"  # it asked to keep its volume
    assert verda_client.instances.get_by_id(b.id).status == "running"
    assert [i["id"] for i in verda_emulator.live_instances()] == [b.id]


# Every /v1 endpoint the emulator answers; each is an operation of Verda's OpenAPI file (checked below).
REAL_ENDPOINTS = [
    ("POST", "/oauth2/token"), ("GET", "/balance"), ("GET", "/instance-types"), ("GET", "/instance-availability"),
    ("GET", "/instance-availability/{type}"), ("GET", "/locations"), ("GET", "/images"), ("GET", "/instances"),
    ("POST", "/instances"), ("PUT", "/instances"), ("GET", "/instances/{id}"), ("GET", "/ssh-keys"),
    ("POST", "/ssh-keys"), ("GET", "/sshkeys"), ("POST", "/sshkeys"), ("GET", "/scripts"), ("GET", "/volumes"),
    ("GET", "/volumes/trash"), ("PUT", "/volumes"), ("GET", "/volume-types"), ("POST", "/volumes"),
    ("GET", "/long-term/periods/instances"),
]


def test_the_emulator_grows_no_credential_or_endpoint_the_real_api_lacks(verda_emulator: VerdaEmulator,
                                                                         verda_client: VerdaClient):
    """A token that is not one /oauth2/token handed out is refused everywhere; every endpoint the emulator
    answers is one the real API has; an instance's description has no credential in it."""
    import requests

    from tests.openapi_contract import VERDA

    base = verda_emulator.base_url
    for method, path in REAL_ENDPOINTS:
        VERDA.operation(method, "/v1" + path.replace("{type}", GPU_TYPE).replace("{id}", "x"))
        if path == "/oauth2/token":
            continue
        url = base + path.replace("{type}", "1H100.80S.30V").replace("{id}", "x")
        for token in ("", "it-made-up", "at-made-up"):
            answer = requests.request(method, url, headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10)
            assert answer.status_code == 401, (method, path, token, answer.status_code)
    inst = create(verda_client, CPU_TYPE, "ubuntu-24.04", "h", "d")
    wire = raw(verda_emulator, verda_client, "GET", f"/instances/{inst.id}").json()
    assert not [k for k in wire if "token" in k.lower() and k != "jupyter_token"]  # jupyter_token is real [SRC]
    # the routes the emulator serves under /v1: every first path segment is one of the real API's
    import re

    source = (REPO / "emulators" / "verda_api.py").read_text()
    route = source[source.index("    def _route("):source.index("    def _availability(")]
    heads = set(re.findall(r'head == "([a-z-]+)"', route)) | {
        h for group in re.findall(r"head in \(([^)]*)\)", route) for h in re.findall(r'"([a-z-]+)"', group)}
    real = {path.split("/")[1] for _, path in REAL_ENDPOINTS}
    assert heads and heads <= real, heads - real
    assert "INSTANCE_TOKEN" not in source and "self_token" not in source and "_check_scope" not in source


# --------------------------------------------------------------------------------- keys, scripts, volumes

def test_ssh_keys_scripts_and_volume_endpoints(verda_emulator: VerdaEmulator, verda_client: VerdaClient,
                                                verda_ssh_key):
    _, pub = verda_ssh_key
    k1 = add_ssh_key(verda_client, "one", pub)
    k2 = add_ssh_key(verda_client, "two", pub)
    wire = raw(verda_emulator, verda_client, "GET", f"/ssh-keys/{k1}").json()
    assert wire["key"] == pub  # one object, as the file says (the SDK's get_by_id reads a list: they disagree)
    assert {k["name"] for k in raw(verda_emulator, verda_client, "GET", "/ssh-keys").json()} == {"one", "two"}
    raw(verda_emulator, verda_client, "DELETE", "/ssh-keys", json={"keys": [k1]}).raise_for_status()
    raw(verda_emulator, verda_client, "DELETE", f"/ssh-keys/{k2}").raise_for_status()
    assert raw(verda_emulator, verda_client, "GET", "/ssh-keys").json() == []
    with pytest.raises(APIException):
        add_ssh_key(verda_client, "bad", "not a key")

    s = verda_client.startup_scripts.create("s", "#!/bin/sh\ntrue\n")
    assert raw(verda_emulator, verda_client, "GET", f"/scripts/{s.id}").json()["script"] == "#!/bin/sh\ntrue\n"
    verda_client.startup_scripts.delete_by_id(s.id)
    assert verda_client.startup_scripts.get() == []

    vol = verda_client.volumes.get_by_id(new_volume(verda_client, "data", 100, "FIN-01"))
    assert (vol.status, vol.size, vol.location, vol.is_os_volume) == ("detached", 100, "FIN-01", False)
    verda_client.volumes.rename(vol.id, "renamed")
    verda_client.volumes.increase_size(vol.id, 200)
    got = verda_client.volumes.get_by_id(vol.id)
    assert (got.name, got.size) == ("renamed", 200)
    other = new_volume(verda_client, "other", 10, "FIN-01")
    verda_client.volumes.delete(vol.id)
    assert [v.id for v in verda_client.volumes.get_in_trash()] == [vol.id]
    verda_client.volumes.delete_by_id(other, is_permanent=True)
    assert verda_client.volumes.get() == []
    assert verda_client.volume_types.get()[0].price_per_month_per_gb > 0


# ------------------------------------------------------------------------------------------ stop / CLI

@pytest.mark.slow  # boots real sshd instances
def test_stop_leaves_no_process_and_no_instance(tmp_path: Path, verda_ssh_key):
    key, pub = verda_ssh_key
    emu = VerdaEmulator(tmp_path / "v", boot_delay_s=0.2, order_delay_s=0.05).start()
    client = VerdaClient(emu.client_id, emu.client_secret, base_url=emu.base_url)
    key_id = add_ssh_key(client, "k", pub)
    ids = [create(client, CPU_TYPE, "ubuntu-24.04", f"h{n}", "d", ssh_key_ids=[key_id], is_spot=bool(n)).id
           for n in range(2)]
    for inst_id in ids:
        wait_running(client, inst_id)
    markers = [start_marker(emu, key, inst_id) for inst_id in ids]
    ports = [emu.ssh_port(inst_id) for inst_id in ids]
    # one more still booting when stop() comes
    emu.boot_delay_s = 5.0
    booting = create(client, CPU_TYPE, "ubuntu-24.04", "late", "d", ssh_key_ids=[key_id])
    assert booting.status == "provisioning"

    base_url = emu.base_url
    disks = str(tmp_path / "v")
    deadline = time.monotonic() + 10  # the booting one's host starts a moment into `provisioning`
    while len([pid for pid in marker_pids(disks) if pid != os.getpid()]) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len([pid for pid in marker_pids(disks) if pid != os.getpid()]) >= 3  # each host's unshare names its disk
    emu.stop()
    assert all(marker_pids(m) == [] for m in markers)
    assert not any(port_open(p) for p in ports)
    assert emu.live_instances() == []
    assert all(emu.instance(i)["status"] == "discontinued" for i in ids + [booting.id])
    assert [pid for pid in marker_pids(disks) if pid != os.getpid()] == []  # nothing refers to its disks any more
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url + "/locations", timeout=2)


def test_cli_serves_until_sigterm(tmp_path: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO), VERDA_CLIENT_ID="cli-id", VERDA_CLIENT_SECRET="cli-secret")
    proc = subprocess.Popen([sys.executable, "-m", "emulators.verda_api", "--root", str(tmp_path / "cli"),
                             "--no-ssh"], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        info = json.loads(proc.stdout.readline())
        assert "cli-secret" not in json.dumps(info)
        client = VerdaClient("cli-id", "cli-secret", base_url=info["base_url"])
        inst = create(client, CPU_TYPE, "ubuntu-24.04", "h", "d")
        assert wait_running(client, inst.id).ip == "127.0.0.1"
        assert requests.get(info["controls"] + "/live-instances", timeout=5).json()[0]["id"] == inst.id
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
