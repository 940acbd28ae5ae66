"""verda.*: Verda (formerly DataCrunch) instances — seed 001's verda_lerobot_manager.py as tasks.

    invoke verda.train --config configs/seeds/train.remote.yaml --gpu-model H100 --gpus-per-instance 4 --run-id first_run
    invoke verda.resume --train-config configs/seeds/train.remote.yaml --checkpoint-repo-id me/ckpt --run-id resume_run_1
    invoke verda.resume-local --config ... --run-id resume_local_1 [--os-volume-id ID]

Spot by default (seed 001): `--no-spot` (or `resources.spot: false` in the YAML) rents on-demand. The SDK is
imported inside the tasks only, so `invoke --list` stays fast.
"""

import os
from pathlib import Path

from invoke import Exit, task

from helpers.cli.common import LAUNCH_FLAGS, cloud_verbs, friendly, helps, job_from_flags, launch, toggle

LAUNCH_HELP = helps(
    *LAUNCH_FLAGS,
    train_config="alias of --config (seed 001); default $LEROBOT_TRAIN_CONFIG or configs/train.remote.yaml",
    gpu_model="GPU model, e.g. H100, A100, B200 (resources.gpu)",
    gpus_per_instance="GPUs per instance (resources.gpu_count): H100 x 4 picks 4H100.80S.176V",
    checkpoint_repo_id="Hub repo of the checkpoints (checkpoint.repo_id; the store becomes hf://<id>)",
    image="OS image (verda.image); ignored by resume_local",
    location="FIN-01, FIN-02, FIN-03 or ICE-01 (verda.location; default: cheapest place with capacity)",
    spot="spot instance (default, like seed 001); --no-spot rents on-demand",
    detach="start the run and return; the instance ends itself when the job ends",
    recover="relaunch a preempted/lost instance (same offer if in stock, else the next-cheapest that fits) and resume "
            "from the store, at most limits.max_recoveries times; default: on for spot; --no-recover: never",
)


def _config(config, train_config):
    chosen = config or train_config or os.environ.get("LEROBOT_TRAIN_CONFIG")
    if not chosen and Path("configs/train.remote.yaml").is_file():
        chosen = "configs/train.remote.yaml"
    if not chosen:
        from helpers.errors import ConfigError

        raise ConfigError("--config", "no job config given", "pass --config (or --train-config) FILE.yaml")
    return chosen


def _job(config, run_id, steps, batch_size, save_freq, store, time_limit, set_, gpu_model, gpus_per_instance,
         checkpoint_repo_id, image, location, os_volume_id=None, *, spot: bool | None):
    """The job from the flags; `spot` None: neither --spot nor --no-spot was given."""
    keys = {"resources.gpu": gpu_model, "resources.gpu_count": gpus_per_instance, "verda.image": image,
            "verda.location": location, "verda.os_volume_id": os_volume_id}
    if checkpoint_repo_id:
        keys.update({"checkpoint.repo_id": checkpoint_repo_id, "checkpoint.store": f"hf://{checkpoint_repo_id}"})
    job = job_from_flags(config, run_id, steps, batch_size, save_freq, store, time_limit, set_, **keys)
    chosen = spot
    if chosen is None:  # neither --spot nor --no-spot: the YAML decides if it says, else spot (seed 001)
        chosen = job.resources.spot if "spot" in job.resources.model_fields_set else True
    job.resources.spot = chosen
    return job


def _launch(job, mode, dry_run, config_path, os_volume_id=None, detach=False, image_given=False, recover=None) -> int:
    """The contract's launch sequence (helpers.cli.common.launch) in one of seed 001's modes."""
    from helpers.backends.base import LaunchOptions
    from helpers.console import warn

    if recover is not None:
        job.limits.recover = recover
    if image_given:
        warn("--image is ignored: resume_local boots from the OS volume")
    options = LaunchOptions(mode=mode, detach=detach, os_volume_id=os_volume_id,
                            config_path=str(config_path) if config_path else None)
    return launch("verda", job, options, dry_run)


def _done(code):
    if code:
        raise Exit(code=code)


def _in_mode(mode: str, flags: dict) -> None:
    """train, resume and resume-local: one implementation, three modes (seed 001's three subcommands)."""
    path = _config(flags["config"], flags["train_config"])
    resume_local = mode == "resume_local"
    job = _job(path, flags["run_id"], flags["steps"], flags["batch_size"], flags["save_freq"], flags["store"],
               flags["time_limit"], flags["set_"], flags["gpu_model"], flags["gpus_per_instance"],
               flags["checkpoint_repo_id"], None if resume_local else flags["image"], flags["location"],
               flags.get("os_volume_id"), spot=toggle("spot"))
    _done(_launch(job, mode, flags["dry_run"], path, flags.get("os_volume_id"), flags["detach"],
                  image_given=resume_local and bool(flags["image"]), recover=None if resume_local else toggle("recover")))


def _launch_task(name: str, mode: str, doc: str):
    """verda.train and verda.resume: the same flags, another mode."""
    def body(c, config=None, train_config=None, run_id=None, gpu_model=None, gpus_per_instance=None, steps=None,
             batch_size=None, save_freq=None, store=None, time_limit=None, checkpoint_repo_id=None, image=None,
             location=None, spot=True, set_=None, dry_run=False, env_file=None, detach=False, recover=True):
        _in_mode(mode, locals())

    body.__name__, body.__qualname__, body.__doc__ = name, name, doc
    return task(friendly(body), iterable=["set_"], help=LAUNCH_HELP, auto_shortflags=False)


train = _launch_task("train", "auto", "Train on a new Verda instance: upload, start detached, follow, fetch outputs, "
                     "delete (auto-resumes from the store).")
resume = _launch_task("resume", "resume", "Resume on a new (spot) instance from the newest checkpoint in the store "
                      "(--checkpoint-repo-id or the config).")


@task(iterable=["set_"], help={**{k: v for k, v in LAUNCH_HELP.items() if k != "recover"},
                               "os_volume_id": "the detached OS volume to boot from (else a list to pick from)"},
      auto_shortflags=False)
@friendly
def resume_local(c, config=None, train_config=None, run_id=None, gpu_model=None, gpus_per_instance=None, steps=None,
                 batch_size=None, save_freq=None, store=None, time_limit=None, checkpoint_repo_id=None, image=None,
                 location=None, os_volume_id=None, spot=True, set_=None, dry_run=False, env_file=None, detach=False):
    """Boot a new spot instance from a kept OS volume (same location) and resume from the newest checkpoints/last on it."""
    _in_mode("resume_local", locals())


status, logs, fetch = cloud_verbs(
    "verda",
    status_doc="Live Verda instances from the ledger: Verda's state, the run's step, loss, synced step, cost so far.",
    logs_doc="The run's runtime.log from its instance over SSH (or the copy fetched when it ended).",
    fetch_doc="Copy the run's output directory from its instance to runs/<run_id>/outputs.")


@task(aliases=["terminate"], help={"run_id": "the run", "instance_id": "a Verda instance id instead",
                                   "delete_volume": "also delete its OS volume (default: kept, detached)",
                                   "env_file": LAUNCH_HELP["env_file"]})
@friendly
def stop(c, run_id=None, instance_id=None, delete_volume=False, env_file=None):
    """Delete the run's instance now (also `verda.terminate`); the OS volume is kept for resume_local unless
    --delete-volume."""
    from helpers.backends.base import RunHandle, backend

    verda = backend("verda")
    (verda.delete if delete_volume else verda.stop)(RunHandle("verda", run_id, instance_id))


@task(help={"spot": "only types available as spot now (--no-spot: on-demand)", "location": "only this location",
            "env_file": "secrets file (default .env)"})
@friendly
def gpus(c, spot=True, location=None, env_file=None):
    """Instance types with GPUs: prices (on-demand and spot) and where each can start now."""
    from helpers.backends import verda

    verda.gpus(toggle("spot"), location)


# ------------------------------------------------------------------------------ seed 001's command line

SEED_MODES = {"train": "auto", "resume": "resume", "resume_local": "resume_local"}


def seed_main(argv: list[str] | None = None) -> int:
    """`python verda/verda_lerobot_manager.py train|resume|resume_local --gpu-model H100 --gpus-per-instance 4
    --env-file .env --train-config configs/train.remote.yaml --run-id first_run`: seed 001's flags, the same code
    as `invoke verda.train|resume|resume-local`."""
    import argparse

    from helpers.cli.common import failure_code
    from helpers.errors import TrainyardError
    from helpers.workspace import opened

    parser = argparse.ArgumentParser(prog="verda_lerobot_manager.py", description="LeRobot training on Verda "
                                     "instances (seed 001's flags; the same code as `invoke verda.*`).")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="{train,resume,resume_local}")
    for verb, what in (("train", "train on a new instance"), ("resume", "resume on a new instance from the store"),
                       ("resume_local", "boot a new spot instance from a kept OS volume and resume from it")):
        one = sub.add_parser(verb, help=what, description=what)
        one.add_argument("--train-config", "--config", dest="config", help=LAUNCH_HELP["train_config"])
        one.add_argument("--env-file", default=".env", help="secrets file (default .env)")
        one.add_argument("--run-id", help=LAUNCH_HELP["run_id"])
        one.add_argument("--gpu-model", help=LAUNCH_HELP["gpu_model"])
        one.add_argument("--gpus-per-instance", type=int, help=LAUNCH_HELP["gpus_per_instance"])
        one.add_argument("--checkpoint-repo-id", help=LAUNCH_HELP["checkpoint_repo_id"])
        one.add_argument("--image", help=LAUNCH_HELP["image"])
        one.add_argument("--location", help=LAUNCH_HELP["location"])
        if verb == "resume_local":
            one.add_argument("--os-volume-id", help="the detached OS volume to boot from (else a list to pick from)")
        one.add_argument("--spot", dest="spot", action="store_const", const=True, default=None, help=LAUNCH_HELP["spot"])
        one.add_argument("--no-spot", dest="spot", action="store_const", const=False, help="on-demand")
        one.add_argument("--dry-run", action="store_true", help=LAUNCH_HELP["dry_run"])
        one.add_argument("--detach", action="store_true", help=LAUNCH_HELP["detach"])
    args = parser.parse_args(argv)
    try:
        path = _config(args.config, None)
        os_volume_id = getattr(args, "os_volume_id", None)
        job = _job(path, args.run_id, None, None, None, None, None, None, args.gpu_model, args.gpus_per_instance,
                   args.checkpoint_repo_id, args.image if args.verb != "resume_local" else None, args.location,
                   os_volume_id, spot=args.spot)
        with opened(env_file=args.env_file):
            return _launch(job, SEED_MODES[args.verb], args.dry_run, path, os_volume_id, args.detach,
                           image_given=bool(args.image) and args.verb == "resume_local")
    except (TrainyardError, KeyboardInterrupt) as exc:
        return failure_code(exc)
