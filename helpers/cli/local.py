"""local.*: run on this machine (also the embedded default of `make demo`)."""

from invoke import Exit, task

from helpers.cli.common import TRAIN_HELP, friendly, helps, job_from_flags, launch


@task(iterable=["set_"], help=TRAIN_HELP)
@friendly
def train(c, config=None, run_id=None, steps=None, batch_size=None, save_freq=None, store=None, time_limit=None,
          set_=None, dry_run=False, env_file=None):
    """Train here: set up the trainer environment, train, sync checkpoints, resume automatically if one exists."""
    from helpers.backends.base import LaunchOptions

    job = job_from_flags(config, run_id, steps, batch_size, save_freq, store, time_limit, set_)
    code = launch("local", job, LaunchOptions(mode="auto"), dry_run)
    if code:
        raise Exit(code=code)


@task(iterable=["set_"], help=helps("config", "run_id", "steps", "store", "set_", "dry_run", "env_file",
                                    local_only="resume from outputs/ on disk, not the store (resume_local)"))
@friendly
def resume(c, config=None, run_id=None, steps=None, store=None, set_=None, local_only=False, dry_run=False, env_file=None):
    """Resume from the newest complete checkpoint in the store (or on disk with --local-only)."""
    from helpers.backends.base import LaunchOptions

    job = job_from_flags(config, run_id, steps, None, None, store, None, set_)
    code = launch("local", job, LaunchOptions(mode="resume_local" if local_only else "resume"), dry_run)
    if code:
        raise Exit(code=code)


@task(help={"run_id": "only this run"})
@friendly
def status(c, run_id=None):
    """Local runs: state, step, loss, last synced step."""
    from helpers.backends.base import RunHandle, backend

    backend("local").status(RunHandle("local", run_id) if run_id else None)


@task(help={"run_id": "the run (see local.status)", "follow": "keep following the log"})
@friendly
def logs(c, run_id, follow=False):
    """Print (or follow) a local run's log."""
    from helpers.backends.base import RunHandle, backend

    backend("local").logs(RunHandle("local", run_id), follow)


@task(help={"run_id": "the run", "dest": "copy the outputs there too"})
@friendly
def fetch(c, run_id, dest=None):
    """Where a local run's outputs are (they are already here)."""
    from helpers.backends.base import RunHandle, backend

    backend("local").fetch(RunHandle("local", run_id), dest)


@task(help={"run_id": "the run to stop"})
@friendly
def stop(c, run_id):
    """Stop a local run cleanly (its last checkpoint is synced first)."""
    from helpers.backends.base import RunHandle, backend

    backend("local").stop(RunHandle("local", run_id))


@task(help={"config": "demo job (default configs/demo_act_cpu.yaml)"})
@friendly
def demo(c, config="configs/demo_act_cpu.yaml"):
    """The main job on the embedded default: real LeRobot ACT on CPU, checkpoints synced, then a resume."""
    from helpers.demo import run_demo

    run_demo(config)


def serve_command(checkpoint: str, config_name: str | None, repo_dir: str, port: int | None = None):
    """(argv, cwd) of openpi's policy server for a checkpoint; the checkpoint path is made absolute (cwd changes)."""
    from pathlib import Path

    from helpers.errors import ConfigError

    step_dir = Path(checkpoint).expanduser().resolve()
    steps = sorted((int(p.name), p) for p in step_dir.iterdir() if p.name.isdigit()) if step_dir.is_dir() else []
    if steps and not (step_dir / "params").exists():  # the exp folder: serve its newest step
        step_dir = steps[-1][1]
    if not config_name:  # checkpoints/<config>/<exp>/<step>
        if not step_dir.name.isdigit() or len(step_dir.parts) < 4:
            raise ConfigError("--config-name", f"cannot tell the openpi config from {checkpoint}",
                              "pass --config-name, e.g. pi05_libero")
        config_name = step_dir.parent.parent.name
    argv = ["uv", "run", "scripts/serve_policy.py"]
    if port:
        argv.append(f"--port={port}")
    argv += ["policy:checkpoint", f"--policy.config={config_name}", f"--policy.dir={step_dir}"]
    return argv, Path(repo_dir).expanduser().resolve()


@task(help={
    "checkpoint": "an openpi checkpoint step folder, checkpoints/<config>/<exp>/<step> (or the exp folder: newest step)",
    "config_name": "openpi train config (default: read from the checkpoint path, checkpoints/<config>/...)",
    "config": "job config YAML, for openpi.repo_dir (optional)",
    "repo_dir": "openpi checkout to run in (default: openpi.repo_dir, else ./openpi)",
    "port": "websocket port (openpi's default 8000)",
    "dry_run": "print the command and stop",
})
@friendly
def serve(c, checkpoint, config_name=None, config=None, repo_dir=None, port=None, dry_run=False):
    """Serve a trained openpi policy here: openpi's serve_policy.py policy:checkpoint (seed 003, step 5)."""
    import shlex
    import shutil
    import subprocess

    from helpers.cli.common import load
    from helpers.console import say
    from helpers.errors import ConfigError

    repo = repo_dir or (load(config).openpi.repo_dir if config else "openpi")
    argv, cwd = serve_command(checkpoint, config_name, repo, int(port) if port else None)
    say(f"cd {shlex.quote(str(cwd))} && {shlex.join(argv)}")
    if dry_run:
        return
    if not cwd.is_dir() or not shutil.which("uv"):
        raise ConfigError("--repo-dir", f"needs uv and an openpi checkout at {cwd}",
                          "install uv and clone openpi (uv sync there), or pass --repo-dir")
    code = subprocess.run(argv, cwd=cwd).returncode
    if code:
        raise Exit(code=code)
