"""local.*: run on this machine (also the embedded default of `make demo`)."""

from invoke import Exit, task

from helpers.cli.common import TRAIN_HELP, friendly, helps, job_from_flags, launch


@task(iterable=["set_"], help=TRAIN_HELP)
@friendly
def train(c, config, run_id=None, steps=None, batch_size=None, save_freq=None, store=None, time_limit=None,
          set_=None, dry_run=False, env_file=None):
    """Train here: set up the trainer environment, train, sync checkpoints, resume automatically if one exists."""
    job = job_from_flags(config, run_id, steps, batch_size, save_freq, store, time_limit, set_)
    code = launch("local", job, dry_run, env_file, mode="auto")
    if code:
        raise Exit(code=code)


@task(iterable=["set_"], help=helps("config", "run_id", "steps", "store", "set_", "dry_run", "env_file",
                                    local_only="resume from outputs/ on disk, not the store (resume_local)"))
@friendly
def resume(c, config, run_id=None, steps=None, store=None, set_=None, local_only=False, dry_run=False, env_file=None):
    """Resume from the newest complete checkpoint in the store (or on disk with --local-only)."""
    job = job_from_flags(config, run_id, steps, None, None, store, None, set_)
    code = launch("local", job, dry_run, env_file, mode="resume_local" if local_only else "resume")
    if code:
        raise Exit(code=code)


@task
@friendly
def status(c):
    """Local runs: state, step, loss, last synced step."""
    from helpers.backends import local

    local.status()


@task(help={"run_id": "the run (see local.status)", "follow": "keep following the log"})
@friendly
def logs(c, run_id, follow=False):
    """Print (or follow) a local run's log."""
    from helpers.backends import local

    local.logs(run_id, follow)


@task(help={"run_id": "the run to stop"})
@friendly
def stop(c, run_id):
    """Stop a local run cleanly (its last checkpoint is synced first)."""
    from helpers.backends import local

    local.terminate(run_id)


@task(help={"config": "demo job (default configs/demo_act_cpu.yaml)"})
@friendly
def demo(c, config="configs/demo_act_cpu.yaml"):
    """The main job on the embedded default: real LeRobot ACT on CPU, checkpoints synced, then a resume."""
    from helpers.demo import run_demo

    run_demo(config)
