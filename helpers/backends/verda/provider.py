"""Verda instances as the cloud lifecycle rents them: the provider (helpers/backends/provider.py) that creates, reads,
finds, relaunches and deletes them, and says what became of their volumes.

Volumes. Spot instances are created with `on_spot_discontinue: keep_detached`: after a spot kill the OS volume
stays, detached, for `resume_local`. Deleting always sends an explicit `volume_ids` list: `[]` (every volume is
kept, detached) unless the run finished and its outputs are home, then `[<os volume>]` (the OS volume goes to
Verda's trash, restorable for about 96 h). What happened is printed each time; a kept volume bills as storage
(~$0.20/GB/month for NVMe) until deleted, and `invoke cleanup` lists the ones named ty-*."""

from __future__ import annotations

import json
import time

from helpers.backends.provider import (
    ERROR, GONE, PENDING, RUNNING, STOPPED, Cleanable, FindsByName, InstanceInfo, Provider, Relaunches, Transient,
)
from helpers.backends.verda.api import (
    TAG_KEY,
    api,
    client,
    create_instance,
    instances_tagged,
    refusal_of,
    volume,
    volumes,
)
from helpers.backends.verda.catalog import offers as catalog_offers
from helpers.errors import ProviderError
from helpers.workspace import current

PROVIDER = "verda"
# Verda refuses to delete an instance while it boots [3P: "Can't discontinue a provisioning instance"]; the words
# for the other booting states are unknown [INF], so a refused delete is tried again while the instance's STATUS is
# one of these, whatever the message says.
BOOTING_STATES = ("new", "ordered", "validating", "pending", "provisioning")
DELETE_WAIT_S = 1800.0  # how long a delete waits for a booting instance to become deletable (real boots take minutes)
STATES = {
    "ordered": PENDING, "new": PENDING, "provisioning": PENDING, "validating": PENDING, "pending": PENDING,
    "starting": PENDING, "restoring": PENDING, "unknown": PENDING,
    "running": RUNNING,
    "offline": STOPPED, "starting_hibernation": STOPPED, "hibernating": STOPPED,
    "discontinued": GONE, "deleting": GONE, "deleted": GONE, "notfound": GONE,
    "error": ERROR, "installation_failed": ERROR, "no_capacity": ERROR,
}


class VerdaProvider(Provider, FindsByName, Relaunches, Cleanable):
    """The lifecycle's provider (helpers/backends/lifecycle.py) and `invoke cleanup`'s, for Verda."""

    name = PROVIDER

    def __init__(self, verda_client, *, price_per_hour: float = 0.0, instance_type: str | None = None,
                 image: str | None = None, location: str | None = None, spot: bool = False,
                 ssh_key_ids: list[str] | None = None, hostname: str | None = None, os_volume_gb: int = 200,
                 boot_volume_id: str | None = None, poll_seconds: float = 10.0):
        self.client = verda_client
        self.price_per_hour, self.instance_type, self.image = price_per_hour, instance_type, image
        self.location, self.spot, self.ssh_key_ids = location, spot, list(ssh_key_ids or [])
        self.hostname, self.os_volume_gb, self.boot_volume_id = hostname, os_volume_gb, boot_volume_id
        self.poll_seconds = poll_seconds
        self.os_volumes: dict[str, str] = {}  # instance id -> its OS volume id, as seen

    # --- the lifecycle's -----------------------------------------------------------------------------
    def create(self, job, offer, name: str) -> str:
        os_volume = None
        if not self.boot_volume_id:
            os_volume = {"name": f"{name}-os", "size": self.os_volume_gb}
            if self.spot:  # on-demand: the API may reject the policy, and it means nothing there
                os_volume["on_spot_discontinue"] = "keep_detached"
        return api(create_instance, self.client, instance_type=self.instance_type,
                   image=self.boot_volume_id or self.image, hostname=self.hostname or name, description=name,
                   ssh_key_ids=self.ssh_key_ids, location_code=self.location or "FIN-03", os_volume=os_volume,
                   is_spot=self.spot or None, contract="SPOT" if self.spot else None, what=f"creating {self.instance_type}")

    def raw(self, instance_id: str) -> dict | None:
        """The instance as the API sends it (the SDK's Instance drops unknown keys such as the emulator's
        `emulator_ssh_port`); None when the id is unknown (deleted long ago)."""
        try:
            data = api(lambda: self.client._http_client.get("/instances/{id}", path_params={"id": instance_id}).json(),
                       what=f"reading instance {instance_id}")
        except ProviderError as exc:
            if "invalid instance id" in refusal_of(exc) or getattr(exc.__cause__, "code", None) == "not_found":
                return None
            raise
        if data.get("os_volume_id"):
            self.os_volumes[instance_id] = data["os_volume_id"]
        return data

    def get(self, instance_id: str) -> InstanceInfo:
        data = self.raw(instance_id)
        if data is None:
            return InstanceInfo(GONE, None, None)
        state = STATES.get(str(data.get("status")), PENDING)
        if state != RUNNING or not data.get("ip"):
            return InstanceInfo(state if state != RUNNING else PENDING, None, None)
        return InstanceInfo(RUNNING, data["ip"], int(data.get("emulator_ssh_port") or 22))

    def delete(self, instance_id: str, volume_ids: list[str]) -> None:
        """PUT /instances delete for one instance; a refusal raises (as the SDK's APIException)."""
        from verda.exceptions import APIException

        refused = self.delete_each([instance_id], volume_ids).get(instance_id)
        if refused:
            raise APIException("invalid_request", refused)

    def delete_each(self, instance_ids: list[str], volume_ids: list[str]) -> dict[str, str | None]:
        """PUT /instances delete; instance id -> None (accepted) or Verda's reason. A 207 (some ids failed) is read
        per instance, which the SDK does not do: it takes any 2xx for success [DOC Go SDK: 202 all accepted,
        207 partial, items with "status", "error", "statusCode"]. Every id failing is a 4xx error body (raised)."""
        answer = self.client._http_client.put("/instances", json={"id": list(instance_ids), "action": "delete",
                                                                   "volume_ids": volume_ids})
        items = answer.json() if answer.status_code == 207 and answer.text.strip() else []
        by_id = {i.get("instanceId"): i for i in items if isinstance(i, dict)}
        if answer.status_code != 207:
            return {i: None for i in instance_ids}
        return {i: None if (by_id.get(i) or {}).get("status") == "success" else
                str((by_id.get(i) or {}).get("error") or f"207 without a result for {i}") for i in instance_ids}

    def terminate(self, instance_id: str, keep_disk: bool = True) -> str | None:
        """Delete with an explicit volume list; a refusal while the instance's status is a booting one (new, ordered,
        validating, pending, provisioning) is asked again until Verda accepts, whatever its words; confirm."""
        data = self.raw(instance_id)
        os_volume = (data or {}).get("os_volume_id") or self.os_volumes.get(instance_id)
        volume_ids = [] if keep_disk or not os_volume else [os_volume]
        already_gone = data is None or data.get("status") == "discontinued"
        deadline = time.monotonic() + DELETE_WAIT_S
        while not already_gone:
            try:
                api(self.delete, instance_id, volume_ids, what=f"deleting instance {instance_id}")
                break
            except ProviderError as exc:
                message = refusal_of(exc)
                if "discontinued" in message or "invalid instance id" in message:
                    already_gone = True
                    break
                if (self.raw(instance_id) or {}).get("status") in BOOTING_STATES and time.monotonic() < deadline:
                    time.sleep(2)  # still booting: it will be deletable soon
                    continue
                raise
        for _ in range(60):  # confirmation: the API shows it deleting/discontinued, or no longer knows it
            data = self.raw(instance_id)
            if data is None or data.get("status") in ("discontinued", "deleting", "deleted"):
                break
            time.sleep(2)
        else:
            raise Transient(f"instance {instance_id} still {data.get('status')} after the delete")
        meaning = "keep every volume" if not volume_ids else "delete the OS volume"
        sent = "" if already_gone else f"deleted with volume_ids={json.dumps(volume_ids)} ({meaning}). "
        return sent + (self.volume_note(os_volume) or "")

    # --- Relaunches (helpers/backends/recovery.py) -------------------------------------------------------
    def for_offer(self, offer) -> "VerdaProvider":
        """This provider for another offer of the plan (instance type, location, spot, price). A relaunch boots a
        fresh image: the lost instance's OS volume stays detached for `verda.resume-local`."""
        return VerdaProvider(self.client, price_per_hour=offer.price_per_hour, instance_type=offer.instance_type,
                             image=self.image, location=offer.location or self.location, spot=offer.spot,
                             ssh_key_ids=self.ssh_key_ids, hostname=self.hostname, os_volume_gb=self.os_volume_gb,
                             poll_seconds=self.poll_seconds)

    def live_offers(self) -> list:
        return catalog_offers(self.client)[0]

    def find(self, name: str) -> str | None:
        """By its tag (trainyard=<name>), else by name: an instance created by an older Trainyard has no tag."""
        tagged = api(instances_tagged, self.client, name, what="finding the instance by its tag")
        listed = tagged or api(lambda: self.client._http_client.get("/instances").json(), what="listing instances")
        for data in listed:
            if name in (data.get("description"), data.get("hostname")) and data.get("status") != "discontinued":
                return data["id"]
        return None

    # --- cleanup interface --------------------------------------------------------------------------
    ENDED_STATES = ("discontinued", "deleting")

    def end(self, instance_ids: list[str]) -> dict[str, str | None]:
        """One PUT /instances delete for all of them, every volume kept (a 207 read per instance: an instance still
        booting is refused and asked again by the caller); instance id -> None or Verda's reason."""
        from verda.exceptions import APIException

        try:
            return api(self.delete_each, instance_ids, [], what=f"deleting {len(instance_ids)} instance(s)")
        except ProviderError as exc:  # every id refused: a 4xx error body
            if isinstance(exc.__cause__, APIException) and len(instance_ids) > 1:
                return {i: self.end([i])[i] for i in instance_ids}  # find out which, one by one
            return {i: refusal_of(exc) or str(exc) for i in instance_ids}

    def list_instances(self) -> list[dict]:
        """Every instance of the account not yet discontinued that carries Trainyard's tag or a ty-* name, from one
        GET /instances (the JSON itself: the SDK's Instance drops keys, such as the emulator's `emulator_ssh_port`;
        the real API's is 22)."""
        listed = api(lambda: self.client._http_client.get("/instances").json(), what="listing instances")
        found = []
        for data in listed:
            tag = next((t.get("value") or "?" for t in data.get("tags") or [] if t.get("key") == TAG_KEY), None)
            name = tag or next((n for n in (data.get("description"), data.get("hostname")) if (n or "").startswith("ty-")), None)
            if name and data.get("status") != "discontinued":
                running = data.get("status") == "running" and data.get("ip")
                found.append({"id": data["id"], "name": name, "state": data.get("status"),
                              "price_per_hour": data.get("price_per_hour"),
                              "ssh": (data["ip"], int(data.get("emulator_ssh_port") or 22)) if running else None})
        return found

    def leftovers(self) -> list[str]:
        """Detached OS volumes Trainyard made (named ty-*): they bill as storage until deleted."""
        lines = []
        for found in api(volumes, self.client, "detached", what="listing volumes"):
            if found.get("is_os_volume") and (found.get("name") or "").startswith("ty-"):
                monthly = found.get("monthly_price")
                lines.append(f"detached OS volume {found['id']} '{found['name']}' ({found.get('size')} GB, "
                             f"{found.get('location')}" + (f", ~${monthly}/month" if monthly else "") + "): keep it for "
                             f"`invoke verda.resume-local --os-volume-id {found['id']}`, or delete it in the Verda console")
        return lines

    def volume_note(self, volume_id: str | None) -> str | None:
        if not volume_id:
            return None
        try:
            found = api(volume, self.client, volume_id, what="reading the OS volume")
        except Exception:  # noqa: BLE001
            return f"OS volume {volume_id}: state unknown (check the Verda console)"
        if found.get("status") == "deleted":
            return f"OS volume {volume_id} moved to Verda's trash (restorable for about 96 h, then deleted)."
        monthly = found.get("monthly_price")
        return (f"OS volume {volume_id} ({found.get('size')} GB, {found.get('location')}) is kept, {found.get('status')}: it bills as "
                f"storage{f' (~${monthly}/month)' if monthly else ''} until deleted. Resume from it: "
                f"invoke verda.resume-local --os-volume-id {volume_id}; delete it in the Verda console when done.")


def cleanup_provider() -> VerdaProvider | None:
    """For `invoke cleanup`: a provider when Verda credentials exist, else None."""
    secrets = current().secrets
    if not (secrets.get("VERDA_CLIENT_ID") and secrets.get("VERDA_CLIENT_SECRET")):
        return None
    return VerdaProvider(client())
