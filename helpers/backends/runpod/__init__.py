"""RunPod pods: seed 000 (train_in_runpod.py) and seed 004 (Thinnka Podsmith) on RunPod's REST API v2.

    plan(job, options)         live GPU offers (list prices per cloud, pod stock: catalog.py) -> helpers.planning.plan_gpu:
                               the Hub/gated check, the memory estimate and the cheapest GPU type that fits
    launch(job, plan, options) create the pod (ledger line first), run the job, watch it, end it; two modes below
    status / logs / fetch / stop / gpus     (`--rehearse`: emulators/rehearsal.py)

The package: api.py (every RunPod API call, in `RunPodApi`), catalog.py (RunPod's answers as offers, its dated price
table), pods.py (the pod spec and the lifecycle's provider), start_command_flow.py (the run without SSH); this module the
backend's verbs.

Two ways to run the job (`runpod.mode`):

* `ssh` (seed 004). The pod publishes 22/tcp and gets PUBLIC_KEY (SSH_PUBLIC_KEY / RUNPOD_SSH_PUBLIC_KEY, else
  the public half of SSH_PRIVATE_KEY_PATH / runpod.ssh_private_key, default ~/.ssh/id_ed25519). The lifecycle
  (helpers/backends/lifecycle.py) waits for the pod's `ssh.direct` address (its mapped 22/tcp), uploads
  runs/<run_id>/ (.env with the secrets, mode 0600), starts the runtime detached, streams its log with the progress
  bar and the cost so far, fetches the outputs to runs/<run_id>/outputs and terminates the pod.
* `start_command` (seed 000). No SSH at all (start_command_flow.py): the bundle and the secrets travel in the pod's
  environment, the pod's start command runs it, the launcher polls the pod.

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

import time
from pathlib import Path

from helpers import gpus as gpu_catalog
from helpers.offers import RUNPOD_GPU_COUNTS
from helpers.backends.after_launch import connect, end_now, fetch_outputs, ledger_entries, show_log, status_rows
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.backends.lifecycle import Flow, HostSpec, cost_line, run_on_instance
from helpers.backends.runpod import catalog
from helpers.backends.runpod.api import client
from helpers.backends.runpod.pods import (
    DEFAULT_IMAGE, PROVIDER, RunPodProvider, bid_for, cleanup_provider, default_display_name, gpu_type_id, start_command,
)
from helpers.backends.runpod.start_command_flow import StartCommandFlow
from helpers.bundle import BUNDLE_ENV
from helpers.config import RunpodSection
from helpers.console import table
from helpers.errors import ConfigError
from helpers.planning import Plan

DESCRIPTOR = Descriptor(
    PROVIDER, noun="pod", cloud=True, vanishes="if_spot_or_relaunched", gpus=lambda: gpu_catalog.having("runpod_id"),
    fallback_offers=catalog.fallback_offers, credentials={"RUNPOD_API_KEY": "to create and end RunPod pods"},
    cleanup=cleanup_provider, gpu_counts=RUNPOD_GPU_COUNTS)
REMOTE_DIR = RunpodSection.model_fields["remote_dir"].default  # where a run lives on its pod unless the ledger says
DEFAULT_PRIVATE_KEY = "~/.ssh/id_ed25519"


def plan(job, options: LaunchOptions = LaunchOptions()) -> Plan:
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
        pool, read["source"] = catalog.offers(api, job, offline=offline or api is None or bool(down))
        return pool

    the_plan = plan_gpu(job, DESCRIPTOR, live, token=hf_token(), offline=offline or not options.check_hub)
    source = read["source"]
    offer = the_plan.offer
    if offer.spot:
        the_plan.bid_per_gpu = bid_for(job, offer)
        the_plan.price_per_hour = round(the_plan.bid_per_gpu * offer.gpu_count, 4)
    what = f"image {job.runpod.image}" if job.runpod.image else (
        f"template {job.runpod.template_id}" if job.runpod.template_id else f"image {DEFAULT_IMAGE}")
    limit = job.time_limit_seconds
    ends = (("terminated" if job.limits.terminate_on_stop else "stopped") + " by its runtime when the job ends"
            if job.limits.end_when_done else "kept running after the job (limits.end_when_done false)")
    the_plan.why = (f"{the_plan.why}; {'spot bid $%.4f/GPU/h' % the_plan.bid_per_gpu if offer.spot else 'on-demand'}, "
                       f"{what}, mode {job.runpod.mode} ({source}); pod {ends}"
                       + (f"; time limit {limit / 3600:g} h" if limit else "; no time limit"))
    commands = render_commands(job, the_plan.gpu_count)
    runtime = f"{job.runpod.python} {BUNDLE_NAME} job.json --mode auto" + (" --skip-setup" if job.runpod.skip_setup else "")
    if job.runpod.mode == "start_command":
        commands.append(f"(pod start command) {start_command(job, 1).replace(f'{BUNDLE_ENV}_0', f'{BUNDLE_ENV}_*')}")
        files = [f"runs/{job.run_id}/{BUNDLE_NAME} + job.json (zipped, base64, in the pod's env {BUNDLE_ENV}_*)",
                 "secrets as pod environment variables (never in the start command)"]
    else:
        commands.append(f"(on the pod, in {job.runpod.remote_dir}, over SSH) {runtime}")
        files = [f"runs/{job.run_id}/{BUNDLE_NAME}", f"runs/{job.run_id}/job.json", f"runs/{job.run_id}/.env (0600)"]
    ends = ("the runtime terminates it at the end of the job, the time limit and the budget with the pod's own "
            "pod-scoped RUNPOD_API_KEY (RunPod sets it in every pod; no account key is shipped): REST v2's pod action, "
            "else GraphQL podTerminate while GraphQL answers (what the key may do is documented nowhere: the runtime "
            "says at start whether it can); if every means refuses, a deadman_failed alarm (webhook, status) until "
            "an attached launcher or `invoke cleanup` ends it")
    the_plan.commands, the_plan.files, the_plan.ends = commands, files, ends
    if note:
        the_plan.warnings.insert(0, note)
    return the_plan


# ============================================================================================== SSH keys


def ssh_settings(job) -> tuple[Path, str]:
    """(private key file, public key text): seed 004's SSH_PRIVATE_KEY_PATH / SSH_PUBLIC_KEY / RUNPOD_SSH_PUBLIC_KEY,
    from the config, the environment or .env; the public key defaults to the private key's public half."""
    from helpers.remote import public_key
    from helpers.workspace import current

    setting = current().setting

    path = Path(job.runpod.ssh_private_key or setting("SSH_PRIVATE_KEY_PATH") or DEFAULT_PRIVATE_KEY).expanduser()
    if not path.is_file():
        raise ConfigError("runpod.ssh_private_key", f"no SSH private key at {path}",
                          "set SSH_PRIVATE_KEY_PATH (or runpod.ssh_private_key), or create one: ssh-keygen -t ed25519")
    pub = setting("SSH_PUBLIC_KEY") or setting("RUNPOD_SSH_PUBLIC_KEY") or public_key(path)
    return path, " ".join(pub.split()[:2])


# ============================================================================================== launch


def launch(job, plan: Plan, options: LaunchOptions) -> int:
    """Create the pod and run the job on it (runpod.mode ssh: the lifecycle's Flow; start_command: StartCommandFlow).
    Returns 0 done, 1 failed, 3 stopped early (time limit), 4 pod lost (spot), 130 interrupted.
    limits.recover (None: on for spot): relaunch a lost pod and resume (helpers/backends/recovery.py, both modes)."""
    api, the_plan = client(), plan
    offer = the_plan.offer
    price = float(the_plan.price_per_hour)
    fields = {"access": job.runpod.mode, "spot": offer.spot, "gpu": gpu_type_id(offer), "gpu_count": offer.gpu_count,
              "cloud": offer.cloud, "display_name": job.runpod.name or default_display_name()}
    key_path, public = ssh_settings(job) if job.runpod.mode == "ssh" else (None, None)
    provider = RunPodProvider(api, job=job, price_per_hour=price, spot=offer.spot,
                              bid_per_gpu=the_plan.bid_per_gpu, mode=job.runpod.mode,
                              env={"PUBLIC_KEY": public} if public else {}, poll_seconds=job.runpod.poll_seconds,
                              display=fields["display_name"])
    machine = {"kind": PROVIDER, "terminate": job.limits.terminate_on_stop}
    spec = HostSpec(remote_dir=job.runpod.remote_dir, ssh_key=key_path, python=job.runpod.python,
                    skip_setup=job.runpod.skip_setup, machine=machine, ledger_fields=fields,
                    deadline_epoch=job.launcher_deadline(time.time()))
    return run_on_instance(provider, job, offer, host_secrets(job, DESCRIPTOR), spec, mode=options.mode,
                           detach=options.detach, recover=job.limits.recover, the_plan=the_plan,
                           flow_class=Flow if job.runpod.mode == "ssh" else StartCommandFlow)


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
