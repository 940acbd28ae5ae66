"""Where a run's checkpoints go: decided once per launch, so that the work is safe with the defaults.

A directory store on a cloud instance lives on that instance's disk. When the instance can vanish (a spot instance,
or any run that the launcher relaunches after a loss), a relaunch would find nothing there and start at step 0. So:

- `checkpoint.store: hf://org/repo` is used as given; any other scheme (s3://, gs://, file:, ...) is refused when
  the config is loaded (`check_spec`), never taken for a directory named `s3:`.
- unset, on an instance that can vanish: a private Hub repo `hf://<user>/<run_id>-checkpoints` (the user from the
  token's whoami, the repo created at launch) when HF_TOKEN is set; without a token the plan and the launch stop
  before anything is created, naming `checkpoint.store` and both fixes.
- a directory set explicitly on an instance that can vanish is refused the same way.
- everywhere else (local, SLURM's shared filesystem, CHTC's transferred sandbox, an on-demand pod without
  recovery) the directory default `runs/<run_id>/store` survives what the run can meet, and stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from helpers.errors import ConfigError

SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")  # `s3://`, `gs://`, `file:` ...; not a Windows drive (`C:`)
USER_PLACEHOLDER = "<HF_TOKEN's user>"


def check_spec(spec: str | None) -> str | None:
    """Config validation of `checkpoint.store`: hf:// or a directory; anything else in one line."""
    if spec is None:
        return None
    scheme = SCHEME.match(spec)
    if scheme and len(scheme[1]) > 1 and scheme[1].lower() != "hf":
        raise ConfigError("checkpoint.store", f"'{spec}': the store scheme '{scheme[1]}:' is not supported",
                          "use hf://<org>/<repo> (a private Hub repo) or a directory path")
    if spec.lower().startswith("hf:") and not re.fullmatch(r"hf://[^/\s]+/[^/\s]+(/.*)?", spec):
        raise ConfigError("checkpoint.store", f"'{spec}' is not hf://<org>/<repo>", "write e.g. hf://my-org/my-run-ckpt")
    return spec


def can_vanish(job, backend, recover: bool | None) -> bool:
    """Whether the instance can be lost with its disk while the run goes on: spot on a cloud backend, or a cloud
    run that the launcher relaunches (recover None means: on for spot). The backend (its Descriptor) says which."""
    vanishes = backend.vanishes
    return vanishes == "always" or (vanishes == "if_spot_or_relaunched" and (bool(job.resources.spot) or recover is True))


def default_repo(user: str, job) -> str:
    return f"hf://{user}/{job.run_id}-checkpoints"


@dataclass(frozen=True)
class StoreChoice:
    spec: str  # what the run uses (a placeholder user until the launch asks whoami)
    why: str
    default_hub: bool = False  # Trainyard chose a Hub repo: the launch creates it and sets checkpoint.store


def choose(job, backend, *, recover: bool | None, token: str | None, user: str | None = None) -> StoreChoice:
    """The store this run would use on `backend` (its Descriptor), and why; ConfigError (exit 2) for one that would not
    survive."""
    vanishing = can_vanish(job, backend, recover)
    name = backend.name
    what = (f"a {backend.noun} whose machine goes with it" if backend.vanishes == "always" else
            f"a spot {name} instance" if job.resources.spot else f"a {name} instance the launcher relaunches")
    given = job.checkpoint.store
    if given and given.startswith("hf://"):
        return StoreChoice(given, "checkpoint.store: a private Hub repo, outside every machine")
    if given and vanishing:
        raise ConfigError("checkpoint.store", f"'{given}' is a directory on {what}: it is lost with the instance, "
                          "and a relaunch would start at step 0",
                          "use checkpoint.store: hf://<org>/<repo>, or leave it unset with HF_TOKEN set "
                          f"(default hf://<your user>/{job.run_id}-checkpoints)")
    if not vanishing:
        where = {"local": "this machine", "slurm": "the cluster's shared filesystem",
                 "chtc": "the job's sandbox, transferred back to the access point on eviction"}.get(name)
        where = where or f"the {name} instance's disk (on-demand, not relaunched: it lives as long as the run)"
        return StoreChoice(job.store, f"{'checkpoint.store' if given else 'the default'}: a directory on {where}")
    if not token:
        raise ConfigError("checkpoint.store", f"unset, and {what} can vanish with its disk: the checkpoints need a "
                          "store outside it", f"set HF_TOKEN in .env (the default becomes hf://<your user>/"
                          f"{job.run_id}-checkpoints, private) or set checkpoint.store: hf://<org>/<repo>")
    return StoreChoice(default_repo(user or USER_PLACEHOLDER, job),
                       f"the default for {what}: a private Hub repo (HF_TOKEN is set), so a relaunch resumes from it",
                       default_hub=True)


def settle(job, backend, *, recover: bool | None, token: str | None) -> StoreChoice:
    """At launch, before anything is created: the choice made real. A default Hub repo gets the token's user
    (whoami) and is created private now, and `checkpoint.store` names it in the job every host receives."""
    choice = choose(job, backend, recover=recover, token=token)
    if not choice.default_hub:
        return choice
    from helpers.errors import ProviderError

    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        user = api.whoami()["name"]
        spec = default_repo(user, job)
        api.create_repo(spec.removeprefix("hf://"), repo_type="model", private=True, exist_ok=True)
    except Exception as exc:  # noqa: BLE001 - one line, before any instance exists
        raise ProviderError(f"could not create the checkpoint repo on the Hub ({type(exc).__name__}: "
                            f"{str(exc)[:200]}): nothing was created — check HF_TOKEN (it needs write access) "
                            "or set checkpoint.store: hf://<org>/<repo>") from None
    job.checkpoint.store = spec
    from helpers.console import say

    say(f"checkpoints: {spec} (a private Hub repo, ready) — {choice.why}")
    return StoreChoice(spec, choice.why, default_hub=True)
