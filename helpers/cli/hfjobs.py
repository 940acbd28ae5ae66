"""hfjobs.*: Hugging Face Jobs — the same config on the Hub's own GPUs (helpers/backends/hf_jobs.py).

    invoke hfjobs.train --config configs/act.yaml --time-limit 2h        # plan, run_job, stream the logs, record
    invoke hfjobs.hardware                                               # flavors and prices, live
    invoke hfjobs.status; invoke hfjobs.logs --run-id R; invoke hfjobs.stop --run-id R
"""

from __future__ import annotations

from invoke import Exit, task

from helpers.cli.common import LAUNCH_FLAGS, cloud_verbs, friendly, helps, job_from_flags, launch

TRAIN_HELP = helps(
    *LAUNCH_FLAGS,
    flavor="an HF Jobs flavor (`invoke hfjobs.hardware`), e.g. a100-large: resources.gpu for this backend",
    attempts="attempts the Jobs server makes, the first included (hfjobs.attempts, default 1; a lost job is relaunched "
             "by the launcher either way)",
    detach="start the job and return; the Jobs server ends it at its timeout",
)


@task(iterable=["set_"], help=TRAIN_HELP, auto_shortflags=False)
@friendly
def train(c, config=None, run_id=None, steps=None, batch_size=None, save_freq=None, store=None, time_limit=None,
          set_=None, dry_run=False, env_file=None, flavor=None, attempts=None, detach=False):
    """Train on Hugging Face Jobs: plan (memory estimate, live flavor prices), run_job, follow the logs, record."""
    gpu, count = None, None
    if flavor:
        from helpers.backends.hf_jobs import FLAVOR_GPUS
        from helpers.errors import ConfigError

        if flavor not in FLAVOR_GPUS:
            raise ConfigError("--flavor", f"unknown flavor '{flavor}'", f"use one of {', '.join(FLAVOR_GPUS)}")
        gpu, count = FLAVOR_GPUS[flavor]
    job = job_from_flags(config, run_id, steps, batch_size, save_freq, store, time_limit, set_,
                         **{"resources.gpu": gpu, "resources.gpu_count": count, "hfjobs.attempts": attempts,
                            "backend": "hfjobs"})
    from helpers.backends.base import LaunchOptions

    code = launch("hfjobs", job, LaunchOptions(detach=detach), dry_run)
    if code:
        raise Exit(code=code)


status, logs, fetch = cloud_verbs(
    "hfjobs",
    status_doc="The ledger's Hugging Face Jobs: the stage the Jobs API reports and the cost so far.",
    logs_doc="The job's log from the Jobs API (secrets redacted); --follow streams it.",
    fetch_doc="The run's newest checkpoint from its store to runs/<run_id>/outputs (the job's own disk is gone with it).")


@task(help={"run_id": "the run", "job_id": "an HF Jobs job id instead", "env_file": TRAIN_HELP["env_file"]})
@friendly
def stop(c, run_id=None, job_id=None, env_file=None):
    """Cancel the run's job now; its checkpoints are in the store."""
    from helpers.backends.base import RunHandle, backend

    backend("hfjobs").stop(RunHandle("hfjobs", run_id, job_id))


@task(help={"env_file": TRAIN_HELP["env_file"]})
@friendly
def hardware(c, env_file=None):
    """Flavors (what --flavor takes) with their GPUs and price per hour, live from list_jobs_hardware."""
    from helpers.backends import hf_jobs

    hf_jobs.hardware()
