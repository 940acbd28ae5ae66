"""Verda (formerly DataCrunch) instances: seed 001's pipeline through the real `verda` SDK and the shared flow.

    plan(job)                  instance type for the GPU model and GPUs per instance (H100 x 4 -> 4H100.80S.176V),
                               spot or on-demand, the cheapest location that has it now, price, commands
    launch(job, secrets, mode) train ("auto"), resume ("resume": restore from the store) or resume_local (boot a
                               new spot instance from a detached OS volume, same location; the runtime resumes from
                               the newest checkpoints/last on it) — via helpers.backends.lifecycle
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

import sys
import time
from dataclasses import replace
from pathlib import Path

from helpers import gpus as gpu_catalog
from helpers.backends.after_launch import connect, end_now, fetch_outputs, show_log, status_rows
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.backends.lifecycle import HostSpec, cost_line, run_on_instance
from helpers.backends.provider import call, instance_name
from helpers.backends.verda import catalog
from helpers.backends.verda import api as verda_api
from helpers.backends.verda.api import api, base_url, client
from helpers.backends.verda.provider import PROVIDER, VerdaProvider, cleanup_provider
from helpers.config import VerdaSection
from helpers.console import say, table, warn
from helpers.errors import ConfigError, ProviderError
from helpers.planning import Plan
from helpers.remote import public_key

CREDENTIALS = ("VERDA_CLIENT_ID", "VERDA_CLIENT_SECRET")
DESCRIPTOR = Descriptor(
    PROVIDER, noun="instance", cloud=True, vanishes="if_spot_or_relaunched",
    gpus=lambda: gpu_catalog.having("verda_prefix"), fallback_offers=catalog.fallback_offers,
    credentials={name: "to create and end Verda instances" for name in CREDENTIALS},
    # verda.deadman account: the instance deletes itself through the API with the account's keys (no narrower one)
    host_credentials=lambda job: CREDENTIALS if job.verda.deadman == "account" else (),
    cleanup=cleanup_provider)
REMOTE_DIR = VerdaSection.model_fields["remote_dir"].default  # where a run lives on its instance unless the ledger says
DEFAULT_KEY_NAME = "trainyard"
DEFAULT_PRIVATE_KEY = "~/.ssh/id_ed25519"


def plan(job, options: LaunchOptions = LaunchOptions()) -> Plan:
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
        pool, read["source"] = catalog.offers(verda_client, offline=offline or verda_client is None)
        pool = [o for o in pool if o.spot == job.resources.spot]
        return [o for o in pool if o.location in (None, boot_volume["location"])] if boot_volume is not None else pool

    the_plan = plan_gpu(job, DESCRIPTOR, live, token=hf_token(), offline=offline or not options.check_hub)
    source = read["source"]
    location = (boot_volume["location"] if boot_volume is not None else
                the_plan.location or job.verda.location or job.resources.location or "FIN-03")
    image = f"OS volume {boot_volume['id']}" if boot_volume is not None else job.verda.image
    runtime = f"{job.verda.python} {BUNDLE_NAME} job.json --mode <mode>" + (" --skip-setup" if job.verda.skip_setup else "")
    if job.verda.deadman == "account":
        ends = ("it deletes itself through the Verda API at the end of the job, the time limit and the budget, with "
                "the account-wide Verda credentials it holds in its .env (0600, verda.deadman: account); they leave "
                "with the instance's deletion")
    else:
        ends = ("only the launcher deletes it (verda.deadman: launcher): if the launcher dies, it bills until "
                "`invoke cleanup` — a shut-down Verda instance still bills")
    return replace(
        the_plan, boot_volume=boot_volume, ends=ends, warnings=notes + the_plan.warnings, location=location, image=image,
        why=f"{the_plan.instance_type} in {location}, {image} ({source}); {the_plan.why}",
        commands=render_commands(job, the_plan.gpu_count) + [f"(on the instance, in {job.verda.remote_dir}) {runtime}"],
        files=[f"runs/{job.run_id}/{BUNDLE_NAME}", f"runs/{job.run_id}/job.json",
               f"runs/{job.run_id}/.env (0600{', with VERDA_CLIENT_ID/SECRET' if job.verda.deadman == 'account' else ''})",
               "train.remote.yaml"])


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


def ensure_ssh_key(verda_client, name: str, private_key: Path) -> str:
    """The id of the SSH key `name` at Verda; registered from the public key if Verda does not have it."""

    mine = public_key(private_key)
    for key in call(api, verda_api.ssh_keys, verda_client, what="listing SSH keys", attempts=5, max_wait_s=20):
        if key.get("name") == name:
            if " ".join((key.get("key") or "").split()[:2]) != mine:
                warn(f"the SSH key '{name}' at Verda is not the public half of {private_key}: SSH will be refused")
            return key["id"]
    created = api(verda_api.add_ssh_key, verda_client, name, mine, what="registering the SSH key")
    say(f"registered SSH key '{name}' at Verda ({private_key}.pub)")
    return created


# --------------------------------------------------------------------------------------------- volumes


def choose_os_volume(verda_client, job, os_volume_id: str | None = None):
    """resume_local: the detached OS volume to boot from: --os-volume-id, else a choice (a question on a
    terminal; without one, the only candidate, or the only one this run made)."""
    if os_volume_id:
        volume = api(verda_api.volume, verda_client, os_volume_id, what=f"reading volume {os_volume_id}")
        if not volume.get("is_os_volume"):
            raise ConfigError("--os-volume-id", f"volume {os_volume_id} is not an OS volume",
                              "pick an OS volume (see the list without --os-volume-id)")
        if volume.get("status") != "detached":
            raise ConfigError("--os-volume-id", f"volume {os_volume_id} is {volume.get('status')}, not detached",
                              "end the instance using it first (its volumes are kept with `invoke verda.terminate`)")
        return volume
    volumes = [v for v in api(verda_api.volumes, verda_client, "detached", what="listing volumes") if v.get("is_os_volume")]
    if not volumes:
        raise ConfigError("--os-volume-id", "no detached OS volume at Verda",
                          "resume from the store instead: invoke verda.resume")
    table("detached OS volumes", ["#", "id", "name", "GB", "location", "created"],
          [[i + 1, v["id"], v.get("name"), v.get("size"), v.get("location"), v.get("created_at")] for i, v in enumerate(volumes)])
    if sys.stdin and sys.stdin.isatty():
        answer = input(f"boot from which volume? [1-{len(volumes)}] ").strip() or "1"
        if not answer.isdigit() or not 1 <= int(answer) <= len(volumes):
            raise ConfigError("--os-volume-id", f"'{answer}' is not one of 1-{len(volumes)}", "run again and pick a number")
        return volumes[int(answer) - 1]

    prefix = instance_name(job.run_id).rsplit("-", 1)[0] + "-"
    mine = [v for v in volumes if (v.get("name") or "").startswith(prefix)]
    if len(volumes) == 1 or len(mine) == 1:
        chosen = volumes[0] if len(volumes) == 1 else mine[0]
        say(f"using detached OS volume {chosen['id']} ({chosen.get('name')})")
        return chosen
    raise ConfigError("--os-volume-id", f"{len(volumes)} detached OS volumes and no terminal to ask on",
                      "pass --os-volume-id with one of the ids listed above")


# --------------------------------------------------------------------------------------------- verbs


def launch(job, plan: Plan, options: LaunchOptions) -> int:
    """Rent the instance and run the job there (helpers/backends/lifecycle.py); returns the exit code.
    limits.recover (None: on for spot): relaunch a lost instance and resume from the store (helpers/backends/recovery.py)."""
    the_plan, boot_volume, config_path = plan, plan.boot_volume, options.config_path
    verda_client = client()
    offer = the_plan.offer
    key_name, key_path = ssh_settings(job)
    key_id = ensure_ssh_key(verda_client, key_name, key_path)
    provider = VerdaProvider(
        verda_client, price_per_hour=offer.price_per_hour, instance_type=offer.instance_type, image=job.verda.image,
        location=the_plan.location, spot=offer.spot, ssh_key_ids=[key_id], hostname=job.verda.hostname,
        os_volume_gb=job.verda.os_volume_gb, boot_volume_id=boot_volume["id"] if boot_volume is not None else None,
        poll_seconds=job.verda.poll_seconds)
    spec = HostSpec(
        remote_dir=job.verda.remote_dir, ssh_key=key_path, python=job.verda.python, skip_setup=job.verda.skip_setup,
        extra_files={"train.remote.yaml": Path(config_path)} if config_path else {},
        machine={"kind": PROVIDER, "volume_ids": [], "deadman": job.verda.deadman, "api_base": base_url()},
        ledger_fields={"instance_type": offer.instance_type, "location": the_plan.location, "spot": offer.spot,
                       "image": the_plan.image},
        deadline_epoch=job.launcher_deadline(time.time()))
    return run_on_instance(provider, job, offer, host_secrets(job, DESCRIPTOR), spec, mode=options.mode,
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
        for entry in api(verda_api.availabilities, verda_client, is_spot, location, what="reading availability"):
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
