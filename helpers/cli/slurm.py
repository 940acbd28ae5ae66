"""slurm.*: a SLURM cluster. `sbatch slurm/pi0_finetune.sh` keeps working; these render and submit from the config."""

from invoke import task

from helpers.cli.common import CONFIG_HELP, friendly, helps, job_from_flags, launch

WHICH = {
    "config": "the job's config (its run id finds the job submitted last)",
    "run_id": "the run (runs/<run_id>/slurm.json), instead of --config",
    "job_id": "a SLURM job id, instead of the recorded one",
}


def _handle(config, run_id, job_id):
    from helpers.backends.base import RunHandle

    if config and not run_id:
        run_id = job_from_flags(config).run_id
    return RunHandle("slurm", run_id, str(job_id) if job_id is not None else None)


@task(help={"config": CONFIG_HELP, "output": "write the script to this file (mode 0755) instead of printing it"})
@friendly
def render(c, config=None, output=None):
    """The sbatch script of a config (slurm/pi0_finetune.sh is configs/pi0.yaml's).

    Printed, or written with --output. The script stages runs/<run_id>/ itself at every start, so a plain
    `sbatch` of it works on the login node."""
    import os
    import sys
    from pathlib import Path

    from helpers.backends.slurm_jobs import render as render_script
    from helpers.console import say
    from helpers.secrets import redact

    job = job_from_flags(config)
    text = render_script(job, config_path=config, script_path=output)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        os.chmod(output, 0o755)
        say(f"wrote {output} (sbatch {output} from the repository root)")
    else:
        sys.stdout.write(redact(text))


@task(iterable=["set_"], help=helps("config", "run_id", "steps", "batch_size", "save_freq", "store", "set_", "env_file",
                                    time_limit="#SBATCH --time: seconds, '90m', '2h', 'D-HH:MM:SS' (sets slurm.time)",
                                    dry_run="print the plan and the batch script; stage and submit nothing"))
@friendly
def submit(c, config=None, run_id=None, steps=None, batch_size=None, save_freq=None, store=None, time_limit=None,
           set_=None, dry_run=False, env_file=None):
    """Stage runs/<run_id>/, render its sbatch script, sbatch it; prints the job id.

    The run folder goes in this directory (a shared filesystem: the job runs there); secrets only in its .env (0600)."""
    from helpers.backends import slurm_jobs
    from helpers.backends.base import LaunchOptions
    from helpers.console import say

    extra = {"slurm.time": slurm_jobs.format_time(time_limit)} if time_limit else {}
    job = job_from_flags(config, run_id, steps, batch_size, save_freq, store, time_limit, set_, **extra)
    launch("slurm", job, LaunchOptions(), dry_run)
    if dry_run:
        import sys

        from helpers.secrets import redact

        say(f"--- runs/{job.run_id}/{slurm_jobs.script_name(job)} (not written: --dry-run)")
        sys.stdout.write(redact(slurm_jobs.render(job)))


@task(help=WHICH)
@friendly
def status(c, config=None, run_id=None, job_id=None):
    """The job in SLURM (scontrol; sacct when kept) and the runtime's step."""
    from helpers.backends.base import backend

    backend("slurm").status(_handle(config, run_id, job_id))


@task(help={**WHICH, "follow": "keep printing until the job has ended (through requeues)"})
@friendly
def logs(c, config=None, run_id=None, job_id=None, follow=False):
    """The job's output file (#SBATCH --output); --follow until the job ends."""
    from helpers.backends.base import backend

    backend("slurm").logs(_handle(config, run_id, job_id), follow)


@task(help={**WHICH, "dest": "copy the outputs there too"})
@friendly
def fetch(c, config=None, run_id=None, job_id=None, dest=None):
    """Where the job's outputs are (the shared filesystem: already here)."""
    from helpers.backends.base import backend

    backend("slurm").fetch(_handle(config, run_id, job_id), dest)


@task(aliases=["cancel"], help=WHICH)
@friendly
def stop(c, config=None, run_id=None, job_id=None):
    """scancel the job (also `slurm.cancel`); the runtime syncs its last checkpoint first; no requeue."""
    from helpers.backends.base import backend

    backend("slurm").stop(_handle(config, run_id, job_id))
