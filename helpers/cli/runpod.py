"""runpod.*: RunPod pods — seed 000's train_in_runpod.py and seed 004's Podsmith as tasks.

    invoke runpod.train -c configs/seeds/runpod_config.yaml                       # seed 000's config.yaml, unchanged
    invoke runpod.train -c config.yaml --gpu "NVIDIA GeForce RTX 4090" --gpu-count 2 --spot --time-limit 7200 --timeout
    invoke runpod.train -c configs/open_r1_grpo.yaml --gpu-count 1 --image reeeon/thinnka:latest --skip-setup  # seed 004
    invoke runpod.train -c configs/command.yaml --rehearse                        # the whole launch against a local emulator

Seed 000's toggles (`--spot/--no-spot`, `--terminate/--no-terminate`, `--timeout/--no-timeout`): the last one given
wins; given none, the config decides. `runpod/train_in_runpod.py` takes the seed's own flags and calls the same
code (`seed_main`). The SDK is imported inside the tasks only, so `invoke --list` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task
from invoke.tasks import Task

from helpers.cli.common import LAUNCH_FLAGS, cloud_verbs, friendly, helps, job_from_flags, launch, toggle


class _SeedFlags(Task):
    """Long flags only, plus seed 000's `-c` for --config (automatic short flags would take -h and worse)."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name == "config":
            opts["names"] = ["config", "c"]
        return opts

TRAIN_HELP = helps(
    *LAUNCH_FLAGS,
    name="pod name (runpod.name; default python-<time>, seed 000); the pod also carries its [ty-...] tag",
    template_id="RunPod template (runpod.template_id; seed 000: o6u732ibrq)",
    gpu="GPU type id as `invoke runpod.gpus` lists it, e.g. 'NVIDIA RTX 2000 Ada Generation' (any alias works)",
    gpu_count="GPUs per pod: 1, 2, 4, 6 or 8",
    spot="spot pod with a bid (podRentInterruptable); --no-spot: on-demand. Last one wins",
    terminate="a pod that stops itself is terminated (default); --no-terminate: only stopped. Last one wins",
    timeout="apply --time-limit (seed 000 default: off); --no-timeout: never. Last one wins",
    image="Docker image instead of a template (runpod.image), e.g. reeeon/thinnka:latest (seed 004)",
    skip_setup="the image already has the framework: no venv, no pip on the pod (runpod.skip_setup)",
    mode="ssh (upload and start over SSH, seed 004) or start_command (no SSH, seed 000)",
    rehearse="run the whole launch against a local RunPod emulator (pods are sshd hosts here); spends nothing",
    detach="create the pod, start the run and return; the pod ends itself when the job ends",
    recover="relaunch a preempted/lost pod (same offer if in stock, else the next-cheapest that fits) and resume from "
            "the store, at most limits.max_recoveries times; default: on for spot. --no-recover: never. Last one wins",
)


def _config_path(config: str | None) -> str:
    if config:
        return config
    if Path("config.yaml").is_file():  # seed 000's default
        return "config.yaml"
    from helpers.errors import ConfigError

    raise ConfigError("--config", "no job config given and no ./config.yaml", "pass -c/--config FILE.yaml")


def job_from_seed_flags(config=None, *, name=None, template_id=None, gpu=None, gpu_count=None, time_limit=None,
                        spot=None, terminate=None, timeout=None, image=None, skip_setup=None, mode=None, run_id=None,
                        steps=None, batch_size=None, save_freq=None, store=None, set_=None):
    """The job: seed 000's flags (None: not given) over the other training flags over the YAML."""
    keys = {"runpod.name": name, "resources.gpu": gpu, "resources.gpu_count": int(gpu_count) if gpu_count else None,
            "resources.spot": spot, "limits.terminate_on_stop": terminate, "limits.timeout": timeout,
            "runpod.mode": mode, "runpod.skip_setup": True if skip_setup else None}
    if template_id:
        keys.update({"runpod.template_id": template_id, "runpod.image": None})
    if image:
        keys.update({"runpod.image": image})
    job = job_from_flags(_config_path(config), run_id, steps, batch_size, save_freq, store, time_limit, set_,
                         **{k: v for k, v in keys.items() if v is not None})
    if template_id and job.runpod.image and not image:
        job.runpod.image = None  # the template given on the command line beats an image in the YAML
    return job


def _train(job, *, dry_run=False, rehearse=False, detach=False, recover=None) -> int:
    """`runpod.train` and seed 000's command line: the contract's launch sequence (helpers.cli.common.launch), or
    with `rehearse` the same against a local RunPod emulator. `recover` None: the config decides (on for spot)."""
    from helpers.backends.base import LaunchOptions

    if recover is not None:
        job.limits.recover = recover  # carried by the job from here on (plan, store, supervisor)
    if rehearse:
        from emulators.rehearsal import rehearsal  # --rehearse only: the emulators are no part of a real launch

        with rehearsal(job) as (rehearsed, _emu):
            return launch("runpod", rehearsed, LaunchOptions(detach=detach, check_hub=False), dry_run)
    return launch("runpod", job, LaunchOptions(detach=detach), dry_run)


def _done(code):
    if code:
        raise Exit(code=code)


@task(iterable=["set_"], help=TRAIN_HELP, auto_shortflags=False, klass=_SeedFlags)
@friendly
def train(c, config=None, name=None, template_id=None, gpu=None, gpu_count=None, time_limit=None, spot=True,
          terminate=True, timeout=True, image=None, skip_setup=False, mode=None, run_id=None, steps=None,
          batch_size=None, save_freq=None, store=None, set_=None, dry_run=False, rehearse=False, detach=False,
          env_file=None, recover=True):
    """Train on a new RunPod pod: plan (gated check, GPU by memory estimate, live price), create, run, watch, end."""
    job = job_from_seed_flags(config, name=name, template_id=template_id, gpu=gpu, gpu_count=gpu_count,
                              time_limit=time_limit, spot=toggle("spot"), terminate=toggle("terminate"),
                              timeout=toggle("timeout"), image=image, skip_setup=skip_setup, mode=mode, run_id=run_id,
                              steps=steps, batch_size=batch_size, save_freq=save_freq, store=store, set_=set_)
    _done(_train(job, dry_run=dry_run, rehearse=rehearse, detach=detach, recover=toggle("recover")))


status, logs, fetch = cloud_verbs(
    "runpod",
    status_doc="Live RunPod pods from the ledger: RunPod's state, the run's step, loss, synced step (ssh mode), cost so far.",
    logs_doc="The run's runtime.log from its pod over SSH (ssh mode), or the container's log from RunPod (start_command).",
    fetch_doc="Copy the run's output directory from its pod (ssh mode) to runs/<run_id>/outputs.")


@task(aliases=["terminate"], help={"run_id": "the run", "pod_id": "a RunPod pod id instead",
                                   "env_file": TRAIN_HELP["env_file"]})
@friendly
def stop(c, run_id=None, pod_id=None, env_file=None):
    """Terminate the run's pod now (also `runpod.terminate`, seed 000's word); checkpoints are in the store."""
    from helpers.backends.base import RunHandle, backend

    backend("runpod").stop(RunHandle("runpod", run_id, pod_id))


@task(help={"gpu_count": "stock for this many GPUs per pod (default 1)",
            "spot": "only types with a spot price (--no-spot: only with an on-demand price)",
            "env_file": "secrets file (default .env)"})
@friendly
def gpus(c, gpu_count=1, spot=True, env_file=None):
    """GPU type ids (what --gpu takes) with memory, prices and stock, live from RunPod."""
    from helpers.backends import runpod as rp

    rp.gpus(int(gpu_count), toggle("spot"))


# ------------------------------------------------------------------------------ seed 000's command line


def seed_main(argv: list[str] | None = None) -> int:
    """`python runpod/train_in_runpod.py [-c config.yaml] [--name ...] [--spot|--no-spot] ...`: seed 000's flags."""
    import argparse

    from helpers.cli.common import failure_code
    from helpers.errors import TrainyardError

    parser = argparse.ArgumentParser(prog="train_in_runpod.py", description="Create a RunPod pod and train on it "
                                     "(seed 000's flags; the same code as `invoke runpod.train`).")
    parser.add_argument("-c", "--config", default=None, help="YAML config (default: config.yaml)")
    parser.add_argument("--name", help="pod name (default python-<time>)")
    parser.add_argument("--template-id", help="template id (seed default o6u732ibrq)")
    parser.add_argument("--gpu", help="GPU type id, see `invoke runpod.gpus`")
    parser.add_argument("--gpu-count", type=int)
    parser.add_argument("--time-limit", help="seconds (used with --timeout)")
    for flag, what in (("spot", "spot pod"), ("terminate", "terminate a pod that stopped itself"),
                       ("timeout", "terminate past --time-limit")):
        parser.add_argument(f"--{flag}", dest=flag, action="store_const", const=True, default=None, help=what)
        parser.add_argument(f"--no-{flag}", dest=flag, action="store_const", const=False, help=f"not: {what}")
    args = parser.parse_args(argv)
    try:
        job = job_from_seed_flags(args.config, name=args.name, template_id=args.template_id, gpu=args.gpu,
                                  gpu_count=args.gpu_count, time_limit=args.time_limit, spot=args.spot,
                                  terminate=args.terminate, timeout=args.timeout)
        return _train(job)
    except (TrainyardError, KeyboardInterrupt) as exc:
        return failure_code(exc)
