"""Verda (formerly DataCrunch) instances: seed 001's pipeline through the real `verda` SDK and the shared flow.

    plan(job)                  instance type for the GPU model and GPUs per instance (H100 x 4 -> 4H100.80S.176V),
                               spot or on-demand, the cheapest location that has it now, price, commands
    launch(job, secrets, mode) train ("auto"), resume ("resume": restore from the store) or resume_local (boot a
                               new spot instance from a detached OS volume, same location; the runtime resumes from
                               the newest checkpoints/last on it) — via helpers.backends.instance_flow
    status / logs / fetch / terminate / gpus / cleanup_provider

Credentials: VERDA_CLIENT_ID / VERDA_CLIENT_SECRET (or the seed's DATACRUNCH_*), from the environment or .env.
The API base URL is https://api.verda.com/v1 unless VERDA_BASE_URL says otherwise (tests: the emulator).
SSH: the key named verda.ssh_key_name / VERDA_SSH_KEY_NAME (default "trainyard"; registered from the public key if
Verda does not know it) and its private key verda.ssh_private_key / VERDA_SSH_PRIVATE_KEY (default ~/.ssh/id_ed25519).
The instance gets the host name `ty-<run_id>-<hex6>` (or verda.hostname) and always that name as description, so
`invoke cleanup` recognises it even if the ledger is lost. The run folder goes to verda.remote_dir
(/root/lerobot_run, seed 001) with the original YAML as train.remote.yaml.

Volumes. Spot instances are created with `on_spot_discontinue: keep_detached`: after a spot kill the OS volume
stays, detached, for `resume_local`. Deleting always sends an explicit `volume_ids` list: `[]` (every volume is
kept, detached) unless the run finished and its outputs are home, then `[<os volume>]` (the OS volume goes to
Verda's trash, restorable for about 96 h). What happened is printed each time; a kept volume bills as storage
(~$0.20/GB/month for NVMe) until deleted, and `invoke cleanup` lists the ones named ty-*.

The dead-man on a real Verda instance (`verda.deadman`). Verda has no narrowly scoped credential: the only ones are
the account's client id and secret, and an instance that is only shut down (`offline`) keeps billing until it is
deleted (Verda's CLI: "Shutdown instances continue to charge your account"), so shutdown never counts as ended.
`account` (the default): the instance's .env (0600, beside the runtime; seed 001 uploads its .env too) holds the
client id and secret; the runtime takes them out of the trainer's environment and, at the end of the job, the time
limit and the budget, deletes its own instance through the real API (token, list, `PUT /instances` delete; see
helpers/runtime/machine.py `end_verda`). The plan says so; the credentials leave with the instance's deletion.
`launcher`: nothing is uploaded and only the launcher deletes (at the end, on Ctrl-C, and `limits.grace_s` after the
time limit); `--detach` is refused, and a launcher that dies leaves the instance billing until `invoke cleanup`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from helpers.backends.instance_flow import (
    ERROR, GONE, PENDING, RUNNING, STOPPED, HostSpec, InstanceInfo, Transient, connect, cost_line, end_now,
    fetch_outputs, show_log, status_rows, translated,
)
from helpers import gpus as gpu_catalog, offers as offers_mod
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.config import VerdaSection
from helpers.console import say, table, warn
from helpers.errors import ConfigError, ProviderError

PROVIDER = "verda"
CREDENTIALS = ("VERDA_CLIENT_ID", "VERDA_CLIENT_SECRET")
DESCRIPTOR = Descriptor(
    PROVIDER, noun="instance", cloud=True, vanishes="if_spot_or_relaunched",
    gpus=lambda: gpu_catalog.having("verda_prefix"), fallback_offers=offers_mod.verda_fallback_offers,
    credentials={name: "to create and end Verda instances" for name in CREDENTIALS},
    # verda.deadman account: the instance deletes itself through the API with the account's keys (no narrower one)
    host_credentials=lambda job: CREDENTIALS if job.verda.deadman == "account" else (),
    cleanup=lambda: cleanup_provider())
REMOTE_DIR = VerdaSection.model_fields["remote_dir"].default  # where a run lives on its instance unless the ledger says
DEFAULT_BASE_URL = "https://api.verda.com/v1"
DEFAULT_KEY_NAME = "trainyard"
DEFAULT_PRIVATE_KEY = "~/.ssh/id_ed25519"
TRANSIENT_CODES = ("server_error", "too_many_requests", "rate_limited")
# A delete refused while the instance boots [3P: "Can't discontinue a provisioning instance"; the other states INF]
BOOTING_REFUSAL = re.compile(r"can't (discontinue|shutdown) an? (new|ordered|validating|pending|provisioning) instance")
DELETE_WAIT_S = 1800.0  # how long a delete waits for a booting instance to become deletable (real boots take minutes)
STATES = {
    "ordered": PENDING, "new": PENDING, "provisioning": PENDING, "validating": PENDING, "pending": PENDING,
    "starting": PENDING, "restoring": PENDING, "unknown": PENDING,
    "running": RUNNING,
    "offline": STOPPED, "starting_hibernation": STOPPED, "hibernating": STOPPED,
    "discontinued": GONE, "deleting": GONE, "deleted": GONE, "notfound": GONE,
    "error": ERROR, "installation_failed": ERROR, "no_capacity": ERROR,
}


# --------------------------------------------------------------------------------------------- the API


def client():
    """The real VerdaClient (it authenticates at once)."""
    from verda import VerdaClient

    from helpers.workspace import current

    secrets = current().secrets
    client_id = secrets.require("VERDA_CLIENT_ID", "to talk to the Verda API")
    client_secret = secrets.require("VERDA_CLIENT_SECRET", "to talk to the Verda API")
    base = base_url()
    from helpers.backends.instance_flow import call

    return call(api, VerdaClient, client_id, client_secret, base_url=base, what=f"connecting to {base}", attempts=3)


def base_url() -> str:
    from helpers.workspace import current

    return current().setting("VERDA_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def _classify(exc: BaseException, what: str) -> BaseException:
    """SDK error -> Transient (worth repeating) or ProviderError (one line, final)."""
    import requests
    from verda.exceptions import APIException

    if isinstance(exc, APIException):
        message = exc.message or ""
        if exc.code in TRANSIENT_CODES or (exc.code == "service_unavailable" and "capacity" not in message.lower()):
            return Transient(f"Verda: {message} ({exc.code})")
        return ProviderError(f"{what}: Verda says: {message} ({exc.code})")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, json.JSONDecodeError)):
        return Transient(f"Verda API unreachable or garbled ({type(exc).__name__}: {str(exc)[:200]})")
    return exc


def api(fn, *args, what: str = "Verda API call", **kwargs):
    with translated(_classify, what):
        return fn(*args, **kwargs)


def _refusal(exc: BaseException) -> str:
    """The message of the Verda API error behind a classified one (lower case), or ''."""
    return str(getattr(exc.__cause__, "message", "") or "").lower()


class VerdaProvider:
    """The instance_flow provider (and `invoke cleanup`'s) for Verda."""

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

    # --- instance_flow interface --------------------------------------------------------------------
    def create(self, job, offer, name: str) -> str:
        os_volume = None
        if not self.boot_volume_id:
            os_volume = {"name": f"{name}-os", "size": self.os_volume_gb}
            if self.spot:  # on-demand: the API may reject the policy, and it means nothing there
                os_volume["on_spot_discontinue"] = "keep_detached"
        instance = api(self.client.instances.create, instance_type=self.instance_type,
                       image=self.boot_volume_id or self.image, hostname=self.hostname or name, description=name,
                       ssh_key_ids=self.ssh_key_ids, location=self.location or "FIN-03", os_volume=os_volume,
                       is_spot=self.spot, contract="SPOT" if self.spot else None, wait_for_status=None,
                       what=f"creating {self.instance_type}")
        return instance.id

    def raw(self, instance_id: str) -> dict | None:
        """The instance as the API sends it (the SDK's Instance drops unknown keys such as the emulator's
        `emulator_ssh_port`); None when the id is unknown (deleted long ago)."""
        try:
            data = api(lambda: self.client._http_client.get("/instances/{id}", path_params={"id": instance_id}).json(),
                       what=f"reading instance {instance_id}")
        except ProviderError as exc:
            if "invalid instance id" in _refusal(exc) or getattr(exc.__cause__, "code", None) == "not_found":
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
        """Delete with an explicit volume list; while Verda refuses because the instance is still booting (new,
        ordered, validating, pending, provisioning) ask again until it accepts; confirm."""
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
                message = _refusal(exc)
                if "discontinued" in message or "invalid instance id" in message:
                    already_gone = True
                    break
                if BOOTING_REFUSAL.search(message) and time.monotonic() < deadline:
                    time.sleep(2)  # "Can't discontinue a provisioning instance": it will be deletable soon
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

    # --- recovery hooks (instance_flow.supervise) ---------------------------------------------------
    def for_offer(self, offer) -> "VerdaProvider":
        """This provider for another offer of the plan (instance type, location, spot, price). A relaunch boots a
        fresh image: the lost instance's OS volume stays detached for `verda.resume-local`."""
        return VerdaProvider(self.client, price_per_hour=offer.price_per_hour, instance_type=offer.instance_type,
                             image=self.image, location=offer.location or self.location, spot=offer.spot,
                             ssh_key_ids=self.ssh_key_ids, hostname=self.hostname, os_volume_gb=self.os_volume_gb,
                             poll_seconds=self.poll_seconds)

    def live_offers(self) -> list:
        return offers(self.client)[0]

    def find(self, name: str) -> str | None:
        for instance in api(self.client.instances.get, what="listing instances"):
            if name in (instance.description, instance.hostname) and instance.status != "discontinued":
                return instance.id
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
            return {i: _refusal(exc) or str(exc) for i in instance_ids}

    def list_instances(self) -> list[dict]:
        """Every ty-* instance of the account not yet discontinued, from one GET /instances (the JSON itself: the
        SDK's Instance drops keys, such as the emulator's `emulator_ssh_port`; the real API's is 22)."""
        listed = api(lambda: self.client._http_client.get("/instances").json(), what="listing instances")
        found = []
        for data in listed:
            name = next((n for n in (data.get("description"), data.get("hostname")) if (n or "").startswith("ty-")), None)
            if name and data.get("status") != "discontinued":
                running = data.get("status") == "running" and data.get("ip")
                found.append({"id": data["id"], "name": name, "state": data.get("status"),
                              "price_per_hour": data.get("price_per_hour"),
                              "ssh": (data["ip"], int(data.get("emulator_ssh_port") or 22)) if running else None})
        return found

    def leftovers(self) -> list[str]:
        """Detached OS volumes Trainyard made (named ty-*): they bill as storage until deleted."""
        lines = []
        for volume in api(self.client.volumes.get, status="detached", what="listing volumes"):
            if volume.is_os_volume and (volume.name or "").startswith("ty-"):
                monthly = getattr(volume, "monthly_price", None)
                lines.append(f"detached OS volume {volume.id} '{volume.name}' ({volume.size} GB, {volume.location}"
                             + (f", ~${monthly}/month" if monthly else "") + "): keep it for "
                             f"`invoke verda.resume-local --os-volume-id {volume.id}`, or delete it in the Verda console")
        return lines

    def volume_note(self, volume_id: str | None) -> str | None:
        if not volume_id:
            return None
        try:
            volume = api(self.client.volumes.get_by_id, volume_id, what="reading the OS volume")
        except Exception:  # noqa: BLE001
            return f"OS volume {volume_id}: state unknown (check the Verda console)"
        if volume.status == "deleted":
            return f"OS volume {volume_id} moved to Verda's trash (restorable for about 96 h, then deleted)."
        monthly = getattr(volume, "monthly_price", None)
        return (f"OS volume {volume_id} ({volume.size} GB, {volume.location}) is kept, {volume.status}: it bills as "
                f"storage{f' (~${monthly}/month)' if monthly else ''} until deleted. Resume from it: "
                f"invoke verda.resume-local --os-volume-id {volume_id}; delete it in the Verda console when done.")


def cleanup_provider() -> VerdaProvider | None:
    """For `invoke cleanup`: a provider when Verda credentials exist, else None."""
    from helpers.workspace import current

    secrets = current().secrets
    if not (secrets.get("VERDA_CLIENT_ID") and secrets.get("VERDA_CLIENT_SECRET")):
        return None
    return VerdaProvider(client())


# --------------------------------------------------------------------------------------------- planning


def offers(verda_client=None, offline: bool = False):
    """(offers, source): live from the API, or the dated table without credentials/network."""

    if verda_client is not None and not offline:
        from helpers.backends.instance_flow import call

        # 429/5xx are repeated with backoff here too: a plan (or a relaunch) must not fail on one bad answer
        types = call(api, verda_client.instance_types.get, what="listing instance types", attempts=5, max_wait_s=20)
        on_demand = call(api, verda_client.instances.get_availabilities, is_spot=False, what="reading availability",
                         attempts=5, max_wait_s=20)
        spot = call(api, verda_client.instances.get_availabilities, is_spot=True, what="reading availability",
                    attempts=5, max_wait_s=20)
        return offers_mod.from_verda_instance_types(types, on_demand, spot_availability=spot), "live"
    return offers_mod.verda_fallback_offers(), "price table"


def plan(job, options: LaunchOptions = LaunchOptions()) -> dict:
    """The instance Trainyard would rent (helpers.planning.plan_gpu on Verda's live offers): the cheapest instance
    type of the wanted GPU model and count that fits, spot or on-demand as configured (only that kind), in
    verda.location / resources.location, or in the boot volume's location for resume_local (chosen here: the
    plan names it)."""
    from helpers.bundle import BUNDLE_NAME, render_commands
    from helpers.net import unreachable
    from helpers.planning import hf_token, plan_gpu

    if options.detach and job.verda.deadman == "launcher":
        raise ConfigError("verda.deadman", "launcher: only the launcher deletes the instance, and --detach leaves "
                          "nobody to do it (it would bill until `invoke cleanup`)",
                          "set verda.deadman: account (the instance deletes itself), or drop --detach"
                          ).with_source(str(options.config_path or ""))
    notes, verda_client, offline, boot_volume = [], None, options.offline, None
    down = None if offline else unreachable(base_url())
    if down and options.mode == "resume_local":
        raise ProviderError(f"the Verda API at {base_url()} is unreachable ({down}): resume_local needs its volumes")
    if down:
        notes.append(f"planning from the dated price table: the Verda API is unreachable ({down})")
    elif not offline:
        try:
            verda_client = client()
        except (ConfigError, ProviderError) as exc:  # said with the plan's warnings (stderr with --json)
            notes.append(f"planning from the dated price table: {exc}")
    if options.mode == "resume_local":
        boot_volume = choose_os_volume(verda_client or client(), job, options.os_volume_id or job.verda.os_volume_id)
    read: dict[str, str] = {}

    def live() -> list:  # called by plan_gpu once the input is checked: a wrong config costs no API call
        pool, read["source"] = offers(verda_client, offline=offline or verda_client is None)
        pool = [o for o in pool if o.spot == job.resources.spot]
        return [o for o in pool if o.location in (None, boot_volume.location)] if boot_volume is not None else pool

    the_plan = plan_gpu(job, PROVIDER, live, token=hf_token(), offline=offline or not options.check_hub)
    source = read["source"]
    location = (boot_volume.location if boot_volume is not None else
                the_plan.get("location") or job.verda.location or job.resources.location or "FIN-03")
    image = f"OS volume {boot_volume.id}" if boot_volume is not None else job.verda.image
    runtime = f"{job.verda.python} {BUNDLE_NAME} job.json --mode <mode>" + (" --skip-setup" if job.verda.skip_setup else "")
    if job.verda.deadman == "account":
        ends = ("it deletes itself through the Verda API at the end of the job, the time limit and the budget, with "
                "the account-wide Verda credentials it holds in its .env (0600, verda.deadman: account); they leave "
                "with the instance's deletion")
    else:
        ends = ("only the launcher deletes it (verda.deadman: launcher): if the launcher dies, it bills until "
                "`invoke cleanup` — a shut-down Verda instance still bills")
    the_plan.update(
        boot_volume=boot_volume, ends=ends, warnings=notes + list(the_plan.get("warnings") or []), location=location, image=image,
        why=f"{the_plan['instance_type']} in {location}, {image} ({source}); {the_plan['why']}",
        commands=render_commands(job, the_plan["gpu_count"]) + [f"(on the instance, in {job.verda.remote_dir}) {runtime}"],
        files=[f"runs/{job.run_id}/{BUNDLE_NAME}", f"runs/{job.run_id}/job.json",
               f"runs/{job.run_id}/.env (0600{', with VERDA_CLIENT_ID/SECRET' if job.verda.deadman == 'account' else ''})",
               "train.remote.yaml"],
    )
    return the_plan


# --------------------------------------------------------------------------------------------- SSH keys


def ssh_settings(job) -> tuple[str, Path]:
    """(key name at Verda, private key file): config (and CLI) > environment > .env > defaults."""
    from helpers.workspace import current

    setting = current().setting
    name = job.verda.ssh_key_name or setting("VERDA_SSH_KEY_NAME", DEFAULT_KEY_NAME)
    key = job.verda.ssh_private_key or setting("VERDA_SSH_PRIVATE_KEY", DEFAULT_PRIVATE_KEY)
    path = Path(key).expanduser()
    if not path.is_file():
        raise ConfigError("verda.ssh_private_key", f"no SSH private key at {path}",
                          "set VERDA_SSH_PRIVATE_KEY (or verda.ssh_private_key), or create one: ssh-keygen -t ed25519")
    return name, path


def public_key(private_key: Path) -> str:
    pub = private_key.with_name(private_key.name + ".pub")
    if pub.is_file():
        return " ".join(pub.read_text().split()[:2])
    import paramiko

    key = paramiko.PKey.from_path(str(private_key))
    return f"{key.get_name()} {key.get_base64()}"


def ensure_ssh_key(verda_client, name: str, private_key: Path) -> str:
    """The id of the SSH key `name` at Verda; registered from the public key if Verda does not have it."""
    from helpers.backends.instance_flow import call

    mine = public_key(private_key)
    for key in call(api, verda_client.ssh_keys.get, what="listing SSH keys", attempts=5, max_wait_s=20):
        if key.name == name:
            if " ".join((key.public_key or "").split()[:2]) != mine:
                warn(f"the SSH key '{name}' at Verda is not the public half of {private_key}: SSH will be refused")
            return key.id
    created = api(verda_client.ssh_keys.create, name, mine, what="registering the SSH key")
    say(f"registered SSH key '{name}' at Verda ({private_key}.pub)")
    return created.id


# --------------------------------------------------------------------------------------------- volumes


def choose_os_volume(verda_client, job, os_volume_id: str | None = None):
    """resume_local: the detached OS volume to boot from: --os-volume-id, else a choice (a question on a
    terminal; without one, the only candidate, or the only one this run made)."""
    if os_volume_id:
        volume = api(verda_client.volumes.get_by_id, os_volume_id, what=f"reading volume {os_volume_id}")
        if not volume.is_os_volume:
            raise ConfigError("--os-volume-id", f"volume {os_volume_id} is not an OS volume",
                              "pick an OS volume (see the list without --os-volume-id)")
        if volume.status != "detached":
            raise ConfigError("--os-volume-id", f"volume {os_volume_id} is {volume.status}, not detached",
                              "end the instance using it first (its volumes are kept with `invoke verda.terminate`)")
        return volume
    volumes = [v for v in api(verda_client.volumes.get, status="detached", what="listing volumes") if v.is_os_volume]
    if not volumes:
        raise ConfigError("--os-volume-id", "no detached OS volume at Verda",
                          "resume from the store instead: invoke verda.resume")
    table("detached OS volumes", ["#", "id", "name", "GB", "location", "created"],
          [[i + 1, v.id, v.name, v.size, v.location, v.created_at] for i, v in enumerate(volumes)])
    if sys.stdin and sys.stdin.isatty():
        answer = input(f"boot from which volume? [1-{len(volumes)}] ").strip() or "1"
        if not answer.isdigit() or not 1 <= int(answer) <= len(volumes):
            raise ConfigError("--os-volume-id", f"'{answer}' is not one of 1-{len(volumes)}", "run again and pick a number")
        return volumes[int(answer) - 1]
    from helpers.backends.instance_flow import instance_name

    prefix = instance_name(job.run_id).rsplit("-", 1)[0] + "-"
    mine = [v for v in volumes if (v.name or "").startswith(prefix)]
    if len(volumes) == 1 or len(mine) == 1:
        chosen = volumes[0] if len(volumes) == 1 else mine[0]
        say(f"using detached OS volume {chosen.id} ({chosen.name})")
        return chosen
    raise ConfigError("--os-volume-id", f"{len(volumes)} detached OS volumes and no terminal to ask on",
                      "pass --os-volume-id with one of the ids listed above")


# --------------------------------------------------------------------------------------------- verbs


def launch(job, plan: dict, options: LaunchOptions) -> int:
    """Rent the instance and run the job there (helpers.backends.instance_flow); returns the exit code.
    limits.recover (None: on for spot): relaunch a lost instance and resume from the store (instance_flow.supervise)."""
    from helpers.backends.instance_flow import run_on_instance

    the_plan, boot_volume, config_path = plan, plan.get("boot_volume"), options.config_path
    verda_client = client()
    offer = the_plan["offer"]
    key_name, key_path = ssh_settings(job)
    key_id = ensure_ssh_key(verda_client, key_name, key_path)
    provider = VerdaProvider(
        verda_client, price_per_hour=offer.price_per_hour, instance_type=offer.instance_type, image=job.verda.image,
        location=the_plan["location"], spot=offer.spot, ssh_key_ids=[key_id], hostname=job.verda.hostname,
        os_volume_gb=job.verda.os_volume_gb, boot_volume_id=boot_volume.id if boot_volume is not None else None,
        poll_seconds=job.verda.poll_seconds)
    spec = HostSpec(
        remote_dir=job.verda.remote_dir, ssh_key=key_path, python=job.verda.python, skip_setup=job.verda.skip_setup,
        extra_files={"train.remote.yaml": Path(config_path)} if config_path else {},
        machine={"kind": PROVIDER, "volume_ids": [], "deadman": job.verda.deadman, "api_base": base_url()},
        ledger_fields={"instance_type": offer.instance_type, "location": the_plan["location"], "spot": offer.spot,
                       "image": the_plan["image"]},
        deadline_epoch=job.launcher_deadline(time.time()))
    return run_on_instance(provider, job, offer, host_secrets(job, PROVIDER), spec, mode=options.mode,
                           detach=options.detach, recover=job.limits.recover, the_plan=the_plan)


def _provider() -> VerdaProvider:
    return cleanup_provider() or VerdaProvider(client())


def status(handle: RunHandle | None = None) -> list[list]:
    """Live Verda instances from the ledger (of one run, given its handle): provider state, cost so far, and the
    run's step/loss/synced step."""
    run_id = handle.run_id if handle else None
    provider = cleanup_provider()

    rows = [[entry.get("run_id"), entry["id"], entry.get("instance_id", ""), entry.get("instance_type", ""), state,
             progress, cost_line(entry.get("price_per_hour") or 0, entry.get("created", entry["time"]))]
            for entry, state, progress in status_rows(provider, PROVIDER, run_id, REMOTE_DIR, lambda entry, listed: True)]
    table("Verda instances", ["run", "name", "instance id", "type", "state", "run state", "cost"], rows)
    return rows


def logs(handle: RunHandle, follow: bool = False) -> None:
    """The run's runtime.log from its instance (or the copy fetched when it ended)."""
    show_log(PROVIDER, "Verda instance", handle.run_id, lambda entry: connect(_provider(), entry), REMOTE_DIR, follow)


def fetch(handle: RunHandle, dest: str | Path | None = None) -> Path:
    """Copy the run's output directory from its instance to runs/<run_id>/outputs (or `dest`)."""
    return fetch_outputs(PROVIDER, "Verda instance", handle.run_id, lambda entry: connect(_provider(), entry),
                         REMOTE_DIR, dest)


def stop(handle: RunHandle) -> None:
    """Delete the run's instance(s) now (or the one the handle names); the OS volume is kept (detached) for
    resume_local (`delete` also deletes it)."""
    end_now(_provider(), PROVIDER, "instance", handle.run_id, handle.native_id, keep_disk=True)


def delete(handle: RunHandle) -> None:
    """`verda.stop --delete-volume`: the run's instance(s) and their OS volumes."""
    end_now(_provider(), PROVIDER, "instance", handle.run_id, handle.native_id, keep_disk=False)


def gpus(spot: bool | None = None, location: str | None = None) -> None:
    """Instance types with GPUs: on-demand and spot price, and where each can start now."""
    from helpers import gpus as gpu_catalog

    verda_client = client()
    types = api(verda_client.instance_types.get, what="listing instance types")
    available = {}
    for is_spot in (False, True):
        for entry in api(verda_client.instances.get_availabilities, is_spot=is_spot, location_code=location,
                         what="reading availability"):
            for name in entry.get("availabilities", []):
                available.setdefault((name, is_spot), []).append(entry["location_code"])
    rows = []
    for t in sorted(types, key=lambda t: (t.gpu.get("number_of_gpus", 0), t.price_per_hour)):
        count = t.gpu.get("number_of_gpus", 0)
        if not count:
            continue
        parsed = gpu_catalog.from_verda_instance_type(t.instance_type)
        rows.append([t.instance_type, parsed[0].label if parsed else t.name, count, f"{t.price_per_hour:.2f}",
                     f"{t.spot_price_per_hour:.2f}", ", ".join(available.get((t.instance_type, False), [])) or "-",
                     ", ".join(available.get((t.instance_type, True), [])) or "-"])
    if spot is not None:
        rows = [r for r in rows if r[6 if spot else 5] != "-"]
    table("Verda instance types (USD/h per instance)", ["type", "GPU", "GPUs", "on-demand", "spot",
                                                         "on-demand now in", "spot now in"], rows)
