"""The Hugging Face Jobs backend: the job runs on the Hub's own GPUs through `huggingface_hub`'s Jobs API
(`HfApi.run_job`, `inspect_job`, `list_jobs`, `cancel_job`, `fetch_job_logs`, `list_jobs_hardware`).

- The job's command decodes the runtime bundle and job.json from its environment (TRAINYARD_BUNDLE_*, as RunPod's
  start_command mode: no secret in them) and runs the runtime; HF_TOKEN and WANDB_API_KEY are the job's
  `secrets`, never its environment, command or a file.
- Money: the ledger line is written before `run_job`; the job's `timeout` is the time limit plus grace (or what
  the budget buys, if less), so the Jobs server ends it without the laptop; Ctrl-C cancels it; `invoke cleanup`
  cancels any job labelled `trainyard` the ledger lost.
- Work: checkpoints go to the hf:// store while training runs. A job whose machine was lost (it ended in ERROR, not
  at its timeout, with no word from its trainer) is relaunched BY THE LAUNCHER as a new job that resumes from the
  store (helpers/backends/recovery.py: within limits.max_recoveries, the time limit and the budget), with documented
  calls only. The server's own `attempts` (hfjobs.attempts) stays 1 by default: what it counts as a failure, whether a
  retry gets a new machine, and whether `timeoutSeconds` is per attempt are documented nowhere, so a user who sets
  more gets the budget split over the attempts (the worst reading: each attempt may run to the timeout).
- Billing per minute while the job starts and runs; no spot. Flavors and prices: `list_jobs_hardware` live, the
  dated table below offline.
"""

from __future__ import annotations

import time
from pathlib import Path

from helpers import gpus
from helpers.backends.base import (
    EXIT_DONE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOST, EXIT_STOPPED, Descriptor, LaunchOptions, RunHandle, host_secrets,
)
from helpers.backends.provider import Cleanable
from helpers.bundle import BUNDLE_ENV, bundle_env
from helpers.console import say, table, warn
from helpers.errors import ConfigError, ProviderError
from helpers.planning import Plan

PROVIDER = "hfjobs"
RUN_DIR = "trainyard_run"  # in the job's working directory
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")

END_WORKERS = 16
# flavor -> (GPU key in helpers.gpus, count): huggingface_hub's JobHardware names [SRC] whose GPU the catalog has
# (T4 and A10G flavors are not: too small for these trainers)
FLAVOR_GPUS = {
    "l4x1": ("L4", 1), "l4x4": ("L4", 4), "l40sx1": ("L40S", 1), "l40sx4": ("L40S", 4), "l40sx8": ("L40S", 8),
    "a100-large": ("A100-SXM-80GB", 1), "a100x4": ("A100-SXM-80GB", 4), "a100x8": ("A100-SXM-80GB", 8),
    "h200": ("H200-SXM", 1), "h200x2": ("H200-SXM", 2), "h200x4": ("H200-SXM", 4), "h200x8": ("H200-SXM", 8),
}
# USD per hour, HF's jobs pricing page as issue 19 quotes it (2026-11): the flavors it names
FALLBACK_PRICES = {"l4x1": 0.80, "l40sx1": 1.80, "a100-large": 2.50, "h200": 5.00, "h200x8": 40.00}
FALLBACK_AS_OF = "2026-11"

DESCRIPTOR = Descriptor(
    PROVIDER, noun="Hugging Face Job", cloud=True, vanishes="always",  # the job's machine goes when it ends
    gpus=lambda: gpus.with_keys(key for key, _ in FLAVOR_GPUS.values()), fallback_offers=lambda: fallback_offers(),
    credentials={"HF_TOKEN": "to run and end Hugging Face Jobs"}, cleanup=lambda: cleanup_provider())


# ------------------------------------------------------------------------------------------------ the API


def client():
    """HfApi with HF_TOKEN (environment beats .env), at HF_ENDPOINT."""
    from huggingface_hub import HfApi

    from helpers.workspace import current

    return HfApi(token=current().secrets.require("HF_TOKEN", "to run Hugging Face Jobs"))


def namespace_of(api, job) -> str:
    return job.hfjobs.namespace or api.whoami()["name"]


def _call(fn, *args, what: str, **kwargs):
    """One Jobs API call: 401/403 are the user's to fix (one line), others a ProviderError; a dropped connection
    too (huggingface_hub 2.5's HTTP client, httpx2, raises its own errors for it)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return fn(*args, **kwargs)
    except httpx2.TransportError as exc:
        raise ProviderError(f"{what}: no answer from the Hub ({type(exc).__name__})") from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            raise ConfigError("HF_TOKEN", f"the Hub refused {what} ({status})",
                              "use a token with write access to the namespace (hfjobs.namespace)") from None
        raise ProviderError(f"{what}: the Hub answered {status}: {str(exc).splitlines()[0][:200]}") from None
    except OSError as exc:
        raise ProviderError(f"{what}: the Hub is unreachable ({type(exc).__name__})") from None


# -------------------------------------------------------------------------------------------------- offers


def offers_from(hardware: list) -> list:
    """Offers from list_jobs_hardware (live): GPU flavors whose accelerator Trainyard knows, priced per hour."""
    from helpers.offers import Offer

    out = []
    for h in hardware:
        known = FLAVOR_GPUS.get(h.name)
        if known is None and h.accelerator is not None:
            gpu = gpus.find(h.accelerator.model)
            known = (gpu.key, int(h.accelerator.quantity)) if gpu else None
        if known is None or known[0] not in gpus.BY_KEY:
            continue
        per_hour = float(h.unit_cost_usd) * (60 if h.unit_label == "minute" else 3600 if h.unit_label == "second" else 1)
        out.append(Offer(PROVIDER, gpus.BY_KEY[known[0]], known[1], round(per_hour, 4), instance_type=h.name))
    return out


def fallback_offers() -> list:
    from helpers.offers import Offer

    return [Offer(PROVIDER, gpus.BY_KEY[FLAVOR_GPUS[f][0]], FLAVOR_GPUS[f][1], price, instance_type=f,
                  source=f"fallback {FALLBACK_AS_OF}") for f, price in FALLBACK_PRICES.items()]


def timeout_seconds(job, price_per_hour: float) -> int:
    """The job's server-side timeout: the time limit plus the runtime's grace for its final sync, or what the budget
    buys if that is less. HF's own default is 30 minutes, so a job is never sent without one."""
    limit = job.time_limit_seconds
    if not limit:
        raise ConfigError("limits.time_limit", "unset: HF Jobs ends every job at its timeout (30 minutes unless told)",
                          "set limits.time_limit (e.g. 6h): it becomes the job's timeout, enforced by the Jobs server")
    seconds = limit + job.grace_seconds
    if job.limits.budget_usd and price_per_hour:  # every attempt may run to the timeout (the worst reading)
        seconds = min(seconds, job.limits.budget_usd / price_per_hour * 3600 / job.hfjobs.attempts)
    return int(seconds)


def plan(job, options: LaunchOptions = LaunchOptions()) -> Plan:
    """The job Trainyard would run: helpers.planning.plan_gpu on the live flavors (or the dated prices), the
    timeout, the command, what travels where."""
    from helpers.planning import hf_token, plan_gpu

    note, offline = None, options.offline

    def live() -> list:
        nonlocal note
        if offline:
            return fallback_offers()
        try:
            api = client()
            return offers_from(_call(api.list_jobs_hardware, what="listing the Jobs hardware"))
        except (ConfigError, ProviderError) as exc:
            note = f"planning from the dated price table: {exc}"
            return fallback_offers()

    the_plan = plan_gpu(job, DESCRIPTOR, live, token=hf_token(), offline=offline or not options.check_hub)
    offer = the_plan.offer
    seconds = timeout_seconds(job, offer.price_per_hour)
    the_plan.commands = [f"(the job's command) {job_command(job, 1).replace(f'{BUNDLE_ENV}_0', f'{BUNDLE_ENV}_*')}"]
    the_plan.files = [f"runs/{job.run_id}/trainyard_runtime.pyz + job.json (zipped, base64, in the job's "
                         f"environment {BUNDLE_ENV}_*)", "HF_TOKEN, WANDB_API_KEY as the job's secrets"]
    the_plan.ends = (f"the Jobs server ends it at its timeout ({seconds / 3600:.2f} h: the time limit + "
                        f"{job.grace_seconds:.0f} s grace, or what limits.budget_usd buys) and bills per minute; "
                        "a lost job is relaunched by the launcher and resumes from the store" +
                        (f"; {job.hfjobs.attempts} server attempts: if each may run to the timeout (undocumented), it "
                         f"can bill {job.hfjobs.attempts} x that, so the budget is split over them"
                         if job.hfjobs.attempts > 1 else ""))
    the_plan.why += f"; flavor {offer.instance_type}, image {job.hfjobs.image}"
    if note:
        the_plan.warnings.append(note)
    return the_plan


def job_command(job, chunks: int, mode: str = "auto") -> str:
    """Decode the bundle from the environment, run the runtime. No quote, no secret."""
    names = " ".join(f"{BUNDLE_ENV}_{i}" for i in range(chunks))
    python = job.hfjobs.python
    skip = " --skip-setup" if job.hfjobs.skip_setup else ""
    # The runtime's 3 (stopped at the time limit, checkpoint synced) is a finished job here: a failed one would be run
    # again by the server, for another time limit.
    return (f"set -e; mkdir -p {RUN_DIR}; chmod 700 {RUN_DIR}; cd {RUN_DIR}; printenv {names} | base64 -d > .bundle.zip; "
            f"{python} -m zipfile -e .bundle.zip .; rm -f .bundle.zip; {python} trainyard_runtime.pyz job.json "
            f"--mode {mode}{skip} || {{ code=$?; [ $code -eq 3 ] && exit 0; exit $code; }}")


# -------------------------------------------------------------------------------------------------- launch


def launch(job, plan: Plan, options: LaunchOptions) -> int:
    """Record, run_job, follow, under the recovery supervisor: 0 done, 1 failed, 3 stopped at the time limit or the
    budget, 4 lost (and no relaunch left), 130 interrupted (then cancelled). A lost job is relaunched by default
    (limits.recover; --detach: nobody is there to)."""
    from helpers.backends.recovery import supervise

    api, offer = client(), plan.offer
    namespace = namespace_of(api, job)
    provider = JobsProvider(api, namespace, poll_seconds=job.hfjobs.poll_seconds)
    recover = False if options.detach else (True if job.limits.recover is None else job.limits.recover)
    return supervise(job, provider, offer, lambda launch: _run_job(api, namespace, launch, options.detach),
                     mode=options.mode, recover=recover, the_plan=plan)


def _run_job(api, namespace: str, launch, detach: bool) -> int:
    """One job: its ledger line before run_job, the job, its log followed to its end."""
    from helpers.backends.provider import instance_name
    from helpers.bundle import stage_run
    from helpers.workspace import current

    job, offer, mode = launch.job, launch.offer, launch.mode
    seconds = timeout_seconds(job, offer.price_per_hour)
    ledger = current().ledger
    name = instance_name(job.run_id)
    run_dir = stage_run(job, {"kind": PROVIDER}, {}, offer.price_per_hour)  # no secrets in it
    env = bundle_env(run_dir)
    created = time.time()
    fields = {"run_id": job.run_id, "price_per_hour": offer.price_per_hour, "flavor": offer.instance_type,
              "gpu": offer.gpu.label, "gpu_count": offer.gpu_count, "namespace": namespace, "created": created,
              "mode": mode, **launch.ledger_fields}
    ledger.record(PROVIDER, name, "creating", **fields)
    secrets = {k: v for k, v in host_secrets(job, DESCRIPTOR).items() if k in ("HF_TOKEN", "WANDB_API_KEY")}
    try:
        info = _call(api.run_job, image=job.hfjobs.image, command=["bash", "-c", job_command(job, len(env), mode)],
                     env=env, secrets=secrets, flavor=offer.instance_type, timeout=seconds,
                     attempts=job.hfjobs.attempts, labels={"trainyard": name, "trainyard-run": job.run_id},
                     namespace=namespace, what=f"creating job {name}")
    except (ProviderError, ConfigError) as exc:
        found = _find(api, namespace, name)  # a create whose answer was lost may have made the job
        if found is None:
            ledger.record(PROVIDER, name, "failed", ended=time.time())
            if isinstance(exc, ProviderError):
                exc.nothing_left = True  # a relaunch may try again
            raise
        info = found
    ledger.record(PROVIDER, name, "running", instance_id=info.id)
    say(f"job {info.id} ({offer.instance_type}, ${offer.price_per_hour:.2f}/h, timeout {seconds / 3600:.2f} h, "
        f"{job.hfjobs.attempts} attempt{'s' if job.hfjobs.attempts > 1 else ''}): {getattr(info, 'url', '')}")
    if detach:
        say(f"detached: the Jobs server ends it at its timeout. Status: invoke hfjobs.status; logs: invoke hfjobs.logs "
            f"--run-id {job.run_id}; end now: invoke hfjobs.stop --run-id {job.run_id}")
        return EXIT_DONE
    try:
        return follow(api, namespace, info.id, name, offer.price_per_hour, created, ledger, job)
    except KeyboardInterrupt:
        warn(f"interrupted: cancelling job {info.id}")
        _call(api.cancel_job, job_id=info.id, namespace=namespace, what=f"cancelling job {info.id}")
        ledger.record(PROVIDER, name, "terminated", instance_id=info.id, ended=time.time(), by="Ctrl-C")
        return EXIT_INTERRUPTED


def _find(api, namespace: str, name: str):
    """The job labelled `name`, or None. `list_jobs` is a generator in huggingface_hub 2.4 (not a list)."""
    try:
        return next(iter(api.list_jobs(namespace=namespace, labels={"trainyard": name})), None)
    except Exception:  # noqa: BLE001 - the lookup after a failed create: None means "not there"
        return None


def follow(api, namespace: str, job_id: str, name: str, price: float, created: float, ledger, job) -> int:
    """Stream the job's log (secrets redacted) with step and cost so far, until the job ends; record its end."""
    from helpers.backends.lifecycle import COST_EVERY_S, cost_line
    from helpers.runtime.progress import step_of
    from helpers.secrets import redact

    total = job.training.steps
    last_cost, stopped_early, step, trainer_ended = time.monotonic(), False, None, False
    try:
        for line in api.fetch_job_logs(job_id=job_id, namespace=namespace, follow=True):
            print(redact(line), flush=True)
            stopped_early |= "time limit or budget reached" in line
            trainer_ended |= "trainer exited with code" in line  # the runtime saw its trainer end: not a lost machine
            if (seen := step_of(line)) is not None:  # the runtime's reading: LeRobot's "step:1K" is 1000, not 1
                step = seen
            if time.monotonic() - last_cost >= COST_EVERY_S:
                last_cost = time.monotonic()
                say(f"[trainyard] job {job_id}" + (f" step {step}/{total}" if step is not None else "") +
                    f"; {cost_line(price, created)}")
    except Exception as exc:  # noqa: BLE001 - the stream is a view; the job's stage is what counts
        warn(f"the log stream of job {job_id} broke ({type(exc).__name__}); waiting for the job to end "
             f"(`invoke hfjobs.logs --run-id {job.run_id}` shows it)")
    info = _call(api.inspect_job, job_id=job_id, namespace=namespace, what=f"reading job {job_id}")
    while info.status.stage not in TERMINAL:  # the stream can end before the job does
        time.sleep(job.hfjobs.poll_seconds)
        info = _call(api.inspect_job, job_id=job_id, namespace=namespace, what=f"reading job {job_id}")
    stage, message = info.status.stage, info.status.message or ""
    ledger.record(PROVIDER, name, "terminated", instance_id=job_id, ended=time.time(), stage=stage)
    say(f"job {job_id} {stage}{': ' + message if message else ''} ({cost_line(price, created)}); checkpoints: {job.store}")
    if stage == "COMPLETED":
        return EXIT_STOPPED if stopped_early else EXIT_DONE
    if stage == "ERROR" and "timeout" in message.lower():  # the wording is not documented: only the exit code follows
        return EXIT_STOPPED
    if stage == "ERROR" and not trainer_ended:  # the machine went away under the runtime: the supervisor relaunches
        warn(f"job {job_id} was lost ({message or 'no message'}); checkpoints synced so far are in {job.store}")
        return EXIT_LOST
    return EXIT_FAILED


# -------------------------------------------------------------------------------------------------- cleanup


class JobsProvider(Cleanable):
    """The namespace's jobs labelled `trainyard`: `invoke cleanup` lists and cancels them; the recovery supervisor
    knows the backend by it (its name, how often it polls)."""

    name, noun = PROVIDER, "job"
    ENDED_STATES = TERMINAL

    def __init__(self, api, namespace: str, poll_seconds: float = 10.0):
        self.api, self.namespace, self.poll_seconds = api, namespace, poll_seconds

    def list_instances(self) -> list[dict]:
        prices = {o.instance_type: o.price_per_hour for o in fallback_offers()}
        jobs = _call(self.api.list_jobs, namespace=self.namespace, what="listing jobs")
        return [{"id": j.id, "name": (j.labels or {})["trainyard"], "state": j.status.stage,
                 "price_per_hour": prices.get(j.flavor), "ssh": None}
                for j in jobs if "trainyard" in (j.labels or {}) and j.status.stage not in TERMINAL]

    def end(self, job_ids: list[str]) -> dict[str, str | None]:
        from concurrent.futures import ThreadPoolExecutor

        def one(job_id: str) -> str | None:
            try:
                _call(self.api.cancel_job, job_id=job_id, namespace=self.namespace, what=f"cancelling job {job_id}")
                return None
            except Exception as exc:  # noqa: BLE001 - reported per job, asked again
                return str(exc)

        with ThreadPoolExecutor(max_workers=min(END_WORKERS, max(1, len(job_ids)))) as pool:
            return dict(zip(job_ids, pool.map(one, job_ids)))


def cleanup_provider() -> JobsProvider | None:
    from helpers.workspace import current

    if not current().secrets.get("HF_TOKEN"):
        return None
    api = client()
    return JobsProvider(api, api.whoami()["name"])


# ---------------------------------------------------------------------------------------------- the verbs


def _entries(run_id: str | None, live_only: bool = True) -> list[dict]:
    from helpers.backends.after_launch import ledger_entries

    return ledger_entries(PROVIDER, run_id, live_only=live_only)


def status(handle: RunHandle | None = None) -> list[list]:
    """The ledger's HF Jobs (of one run, given its handle), with the stage the Jobs API reports (one list) and the
    cost so far."""
    from helpers.backends.lifecycle import cost_line

    provider = cleanup_provider()
    listed = {i["id"]: i for i in provider.list_instances()} if provider else {}
    rows = []
    for entry in _entries(handle.run_id if handle else None):
        stage = listed.get(entry.get("instance_id"), {}).get("state") or ("gone" if provider else entry["state"])
        rows.append([entry.get("run_id"), entry["id"], entry.get("instance_id", ""), entry.get("flavor", ""), stage,
                     cost_line(entry.get("price_per_hour") or 0, entry.get("created", entry["time"]))])
    table("Hugging Face Jobs", ["run", "name", "job id", "flavor", "stage", "cost"], rows)
    return rows


def _newest(run_id: str) -> dict:
    found = [e for e in _entries(run_id, live_only=False) if e.get("instance_id")]
    if not found:
        raise ConfigError("--run-id", f"no HF Job of run '{run_id}' in the ledger", "see `invoke hfjobs.status`")
    return found[-1]


def logs(handle: RunHandle, follow: bool = False) -> None:
    from helpers.secrets import redact

    entry = _newest(handle.run_id)
    api = client()
    for line in api.fetch_job_logs(job_id=entry["instance_id"], namespace=entry.get("namespace") or api.whoami()["name"],
                                   follow=follow):
        print(redact(line), flush=True)


def fetch(handle: RunHandle, dest: str | Path | None = None) -> Path:
    """The run's checkpoints from its store (the job's own disk is gone with it)."""
    from helpers.runtime.store import open_store

    entry = _newest(handle.run_id)
    from helpers.workspace import current

    target = Path(dest or current().runs_dir / handle.run_id / "outputs")
    store = open_store(entry.get("store") or _store_of(handle.run_id))
    step = store.restore(target)
    say(f"checkpoint step {step} of {handle.run_id} in {target}" if step is not None else "no checkpoint in the store yet")
    return target


def _store_of(run_id: str) -> str:
    import json

    from helpers.workspace import current

    doc = json.loads((current().runs_dir / run_id / "job.json").read_text())
    return doc["config"]["checkpoint"]["store"]


def stop(handle: RunHandle) -> None:
    """Cancel the run's live jobs now (the runtime's last synced checkpoint stays in the store)."""
    from helpers.workspace import current

    api = client()
    for entry in _entries(handle.run_id):
        if entry.get("instance_id") and (handle.native_id in (None, entry["instance_id"])):
            _call(api.cancel_job, job_id=entry["instance_id"], namespace=entry.get("namespace"),
                  what=f"cancelling job {entry['instance_id']}")
            current().ledger.record(PROVIDER, entry["id"], "terminated", instance_id=entry["instance_id"], ended=time.time(),
                            by="hfjobs.stop")
            say(f"cancelled job {entry['instance_id']} ({entry['id']})")


def hardware() -> list[list]:
    """Flavors, GPUs and prices, live."""
    api = client()
    known = {o.instance_type: o for o in offers_from(_call(api.list_jobs_hardware, what="listing the Jobs hardware"))}
    rows = [[h.name, h.pretty_name, f"{known[h.name].gpu_count}x {known[h.name].gpu.label}" if h.name in known else "-",
             f"{h.unit_cost_usd * (60 if h.unit_label == 'minute' else 1):.2f}"]
            for h in _call(api.list_jobs_hardware, what="listing the Jobs hardware")]
    table("Hugging Face Jobs hardware (billed per minute)", ["flavor", "name", "GPUs", "$/h"], rows)
    return rows
