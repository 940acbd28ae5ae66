"""chtc.*: the CHTC GPU Lab through HTCondor (seed 003). Run `submit` on the CHTC access point."""

from invoke import Exit, task

from helpers.cli.common import CONFIG_HELP, TRAIN_HELP, friendly, job_from_flags, launch

EXP_HELP = "openpi exp_name (other frameworks: the run id); names runs/chtc/<config_name>/<exp_name>/"


def _job(config, exp_name=None, set_=None):
    from helpers.cli.common import load

    probe = load(config)
    key = "openpi.exp_name" if probe.framework == "openpi" else "job.run_id"
    return job_from_flags(config, set_=set_, **{key: exp_name})


@task(iterable=["set_"], help={"config": CONFIG_HELP, "exp_name": EXP_HELP, "set_": TRAIN_HELP["set_"],
                               "dry_run": "print the plan (GPUs, job length, command) and stop; nothing is written",
                               "env_file": TRAIN_HELP["env_file"]})
@friendly
def submit(c, config=None, exp_name=None, set_=None, dry_run=False, env_file=None):
    """Render runs/chtc/<config>/<exp>/ (bundle, job.json, train.sub) and condor_submit it."""
    from helpers.backends.base import LaunchOptions

    code = launch("chtc", _job(config, exp_name, set_), LaunchOptions(), dry_run)
    if code:
        raise Exit(code=code)


@task(iterable=["set_"], help={"config": CONFIG_HELP, "exp_name": EXP_HELP, "set_": TRAIN_HELP["set_"],
                               "static": "print the ready chtc/train.sub instead (no config needed)",
                               "env_file": TRAIN_HELP["env_file"]})
@friendly
def render(c, config=None, exp_name=None, set_=None, static=False, env_file=None):
    """Write the run folder and print its submit file (stdout holds only the submit file)."""
    import sys

    from helpers.backends import chtc_condor
    from helpers.errors import ConfigError
    from helpers.secrets import redact

    if static:
        sys.stdout.write(chtc_condor.static_text())
        return
    if not config:
        raise ConfigError("--config", "a job config is needed", "pass --config configs/openpi_pi05_lora.yaml (or --static)")
    from helpers.backends.base import backend
    from helpers.secrets import required_secrets
    from helpers.workspace import current

    job = _job(config, exp_name, set_)
    secrets = current().secrets  # the ones the job uses and this shell has go into its .env (0600)
    found = {n: secrets.get(n) for n in required_secrets(job, backend("chtc").DESCRIPTOR) if n in ("HF_TOKEN", "WANDB_API_KEY") and secrets.get(n)}
    submit_file, text, settings = chtc_condor.render(job, secrets=found)
    sys.stdout.write(redact(text))
    for note in settings.notes:
        print(redact(f"note: {note}"), file=sys.stderr)
    print(redact(f"wrote {submit_file.parent}/ — on the access point: condor_submit {submit_file}"), file=sys.stderr)


@task(help={"all": "every job of yours, not only Trainyard's"})
@friendly
def status(c, all=False):
    """condor_q: your Trainyard jobs on the CHTC pool."""
    from helpers.backends import chtc_condor

    code = chtc_condor.queue(all_jobs=all)
    if code:
        raise Exit(code=code)


WHICH = {"run_id": "the run (its job id was recorded at submit)", "job_id": "an HTCondor job id instead (e.g. 12345.0)"}


def _handle(run_id, job_id):
    from helpers.backends.base import RunHandle
    from helpers.errors import ConfigError

    if not (run_id or job_id):
        raise ConfigError("--run-id", "which job?", "pass --run-id (the exp name) or --job-id (see `invoke chtc.status`)")
    return RunHandle("chtc", run_id, job_id)


@task(help={**WHICH, "follow": "keep following"})
@friendly
def logs(c, run_id=None, job_id=None, follow=False):
    """condor_tail the run's job while it is queued; after it, the stdout it left in its run folder."""
    from helpers.backends import chtc_condor

    chtc_condor.logs(_handle(run_id, job_id), follow)


@task(help=WHICH)
@friendly
def stop(c, run_id=None, job_id=None):
    """condor_rm the run's job."""
    from helpers.backends import chtc_condor

    chtc_condor.stop(_handle(run_id, job_id))


def _script(c, script: str, args: list[str], config, dry_run: bool) -> None:
    """Run a chtc/*.sh script with the transfer host from the config (CHTC_TRANSFER_HOST in the environment wins)."""
    import os
    import shlex
    import subprocess
    from pathlib import Path

    from helpers.console import say

    env = dict(os.environ)
    if config and not env.get("CHTC_TRANSFER_HOST"):
        from helpers.cli.common import load

        env["CHTC_TRANSFER_HOST"] = load(config).chtc.transfer_host
    path = Path(__file__).resolve().parents[2] / "chtc" / script
    shown = f"CHTC_TRANSFER_HOST={env['CHTC_TRANSFER_HOST']} " if env.get("CHTC_TRANSFER_HOST") else ""
    say(shown + shlex.join([str(path), *args]))
    if dry_run:
        return
    code = subprocess.run(["bash", str(path), *args], env=env).returncode
    if code:
        raise Exit(code=code)


def _netid(netid, config):
    if netid:
        return netid
    if config:
        from helpers.cli.common import load

        if load(config).chtc.netid:
            return load(config).chtc.netid
    from helpers.errors import ConfigError

    raise ConfigError("--netid", "missing", "pass --netid (or set chtc.netid in --config)")


@task(help={"netid": "your NetID (default chtc.netid)", "dataset_dir": "LeRobot dataset folder (default $HF_LEROBOT_HOME/local/collab)",
            "config": CONFIG_HELP + " (optional: chtc.netid, chtc.transfer_host)", "dry_run": "print the command only"})
@friendly
def stage(c, netid=None, dataset_dir=None, config=None, dry_run=False):
    """chtc/stage_data.sh: pack a dataset and rsync it to /staging/<netid>/openpi/data/ (seed 003, step 3)."""
    _script(c, "stage_data.sh", [_netid(netid, config)] + ([dataset_dir] if dataset_dir else []), config, dry_run)


@task(help={"config_name": "openpi config of the run", "exp_name": "its exp_name", "netid": "your NetID (default chtc.netid)",
            "config": CONFIG_HELP + " (optional: chtc.netid, chtc.transfer_host, openpi.config_name/exp_name)",
            "dry_run": "print the command only"})
@friendly
def pull(c, config_name=None, exp_name=None, netid=None, config=None, dry_run=False):
    """chtc/pull_checkpoints.sh: rsync a run's checkpoints from /staging to ./checkpoints/ (seed 003, step 5)."""
    if config and not (config_name and exp_name):
        from helpers.cli.common import load

        job = load(config)
        config_name, exp_name = config_name or job.openpi.config_name, exp_name or job.openpi.exp_name or job.run_id
    if not (config_name and exp_name):
        from helpers.errors import ConfigError

        raise ConfigError("--config-name", "config_name and exp_name are needed", "pass both, or --config")
    _script(c, "pull_checkpoints.sh", [_netid(netid, config), config_name, exp_name], config, dry_run)
