"""What every task shares: friendly errors, config loading with CLI overrides, and seed-style toggles."""

from __future__ import annotations

import functools
import sys

from invoke import Exit

from helpers.errors import TrainyardError

CONFIG_HELP = "job config YAML (see configs/README.md)"


def _flags_get_a_did_you_mean() -> None:
    """Invoke answers an unknown flag with "No idea what '--gpus' is!" and exit 1; a config key gets a
    did-you-mean and exit 2, so a flag gets the same: one line naming the flag, the task and the fix. And a task's
    --help is help, also where the task takes a positional argument."""
    import re

    from invoke import Exit as _Exit
    from invoke.parser.parser import ParseMachine

    plain = ParseMachine.error

    def error(self, msg: str) -> None:
        import difflib

        token = re.fullmatch(r"No idea what '(.+)' is!", msg)
        if token is None or self.context is None or not token[1].startswith("-"):
            return plain(self, msg)
        flag, task_name = token[1], self.context.name
        names = sorted({*self.context.flags, *self.context.inverse_flags})
        close = difflib.get_close_matches(flag.split("=")[0], names, n=1, cutoff=0.75)
        fix = f"did you mean {close[0]}?" if close else f"`invoke {task_name} --help` lists its flags"
        raise _Exit(f"error: {flag}: not a flag of {task_name} — {fix}", code=2)

    ParseMachine.error = error

    # Invoke gives a token to a task's missing positional argument before it looks for --help, so
    # `invoke logs --help` looked for a run called "--help": help wins over a positional argument.
    plain_handle = ParseMachine.handle

    def handle(self, token: str) -> None:
        help_flag = self.initial.flags.get(token) if self.initial is not None else None
        if (help_flag is not None and help_flag.name == "help" and self.context is not None
                and self.context.missing_positional_args and not self.waiting_for_flag_value):
            help_flag.value = self.context.name
            return None
        return plain_handle(self, token)

    ParseMachine.handle = handle
    plain_complete = ParseMachine.complete_context

    def complete_context(self) -> None:  # a task asked for help needs none of its positional arguments
        help_flag = self.initial.flags.get("--help") if self.initial is not None else None
        if help_flag is not None and self.context is not None and help_flag.value == self.context.name:
            if self.context not in self.result:
                self.result.append(self.context)
            return None
        return plain_complete(self)

    ParseMachine.complete_context = complete_context


_flags_get_a_did_you_mean()


def failure_code(exc: BaseException) -> int:
    """A user's mistake or Ctrl-C as one line on stderr; the exit code (2, or the error's own; 130)."""
    from helpers.console import fail  # on failure only: the console pulls the redaction filter in

    if isinstance(exc, KeyboardInterrupt):
        fail("interrupted")
        return 130
    fail(str(exc))
    return exc.exit_code


def friendly(task_body):
    """A user's mistake prints one line and exits 2; Ctrl-C exits 130 without a traceback."""

    @functools.wraps(task_body)
    def run(c, *args, **kwargs):
        from helpers.workspace import from_invoke, opened

        try:
            with opened(**from_invoke(c, kwargs.get("env_file"))):
                return task_body(c, *args, **kwargs)
        except (TrainyardError, KeyboardInterrupt) as exc:
            raise Exit(code=failure_code(exc)) from None

    return run


def toggle(name: str) -> bool | None:
    """Seed 000's `--x/--no-x` flags: the last one given wins; None when neither was given (config decides)."""
    value = None
    for arg in sys.argv[1:]:
        if arg == f"--{name}":
            value = True
        elif arg == f"--no-{name}":
            value = False
    return value


def load(config: str | None, **overrides):
    """The job: CLI flags (non-None overrides, by dotted key) > environment > YAML > defaults."""
    from helpers.config import load_job
    from helpers.errors import ConfigError

    if not config:  # an optional flag, so that `invoke <task> --help` is never taken for the config's path
        raise ConfigError("--config", "missing", "pass --config configs/<job>.yaml (examples in configs/, keys in configs/README.md)")
    return load_job(config, {key.replace("__", "."): value for key, value in overrides.items()})


def parse_sets(sets: list[str]) -> dict[str, object]:
    """`--set key.path=value` (repeatable), values parsed as YAML scalars: 3, true, null, [1,2]."""
    import yaml

    from helpers.errors import ConfigError

    parsed = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", f"'{item}' is not key.path=value", "write e.g. --set training.steps=500")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


TRAIN_HELP = {
    "config": CONFIG_HELP,
    "run_id": "run id (default: job.name); names the run folder, the instance and the store",
    "steps": "training.steps",
    "batch_size": "training.batch_size",
    "save_freq": "training.save_freq (a spot kill loses at most this many steps)",
    "store": "checkpoint store: hf://org/repo or a directory (default runs/<run_id>/store)",
    "time_limit": "limits.time_limit: seconds, '90m', '2h' (the machine ends itself then)",
    "set_": "any key: --set training.steps=500 (repeatable)",
    "dry_run": "print the plan (GPU and why, price, exact command, files, secrets) and stop",
    "env_file": "secrets file (default .env; or trainyard.env_file in invoke.yaml)",
}


# the flags every cloud launch takes (runpod.train, verda.train/resume/resume-local)
LAUNCH_FLAGS = ("config", "run_id", "steps", "batch_size", "save_freq", "store", "time_limit", "set_", "dry_run", "env_file")


def helps(*names: str, **extra: str) -> dict[str, str]:
    """Help texts for the shared flags a task takes, plus its own."""
    return {**{n: TRAIN_HELP[n] for n in names}, **extra}


def job_from_flags(config, run_id=None, steps=None, batch_size=None, save_freq=None, store=None, time_limit=None,
                   set_=None, **backend_keys):
    """Merge the shared training flags and a backend's own flags (dotted keys) over the YAML."""
    overrides = {
        "job.run_id": run_id, "training.steps": steps, "training.batch_size": batch_size,
        "training.save_freq": save_freq, "checkpoint.store": store, "limits.time_limit": time_limit,
        **backend_keys, **parse_sets(set_),
    }
    return load(config, **{k.replace(".", "__"): v for k, v in overrides.items()})


def launch(backend_name: str, job, options, dry_run: bool = False) -> int:
    """The one sequence of every launch task (`<backend>.train`, `slurm.submit`, `chtc.submit`, `invoke train`),
    through the contract only: the secrets checked (no network), the backend's `plan` printed, and unless --dry-run:
    a cloud plan without live offers refused, the checkpoint store settled (a default Hub repo created,
    helpers/stores.py) and the backend's `launch`. Returns the exit code."""
    from helpers.backends.base import backend, check_nodes, descriptor
    from helpers.errors import ProviderError
    from helpers.planning import print_plan
    from helpers.secrets import check_secrets
    from helpers.stores import settle
    from helpers.workspace import current

    module = backend(backend_name)
    secrets = current().secrets
    described = descriptor(backend_name)
    check_nodes(job, described)
    check_secrets(job, described, secrets)
    the_plan = module.plan(job, options)
    print_plan(job, the_plan)
    if dry_run:
        return 0
    if described.cloud and the_plan.price_source != "live":  # no network, or no keys
        why = (the_plan.warnings or ["the dated price table"])[0]
        raise ProviderError(f"no live {backend_name} offers ({why}): nothing was created")
    settle(job, described, recover=job.limits.recover, token=secrets.get("HF_TOKEN"))
    return module.launch(job, the_plan, options)


def cloud_verbs(name: str, *, status_doc: str, logs_doc: str, fetch_doc: str):
    """`<cloud>.status`, `.logs` and `.fetch`: the same three tasks for every cloud namespace, on the Backend
    contract (helpers/backends/base.py); each backend says in its own words what they show (`invoke --list`)."""
    from invoke import task

    env_help = TRAIN_HELP["env_file"]

    def status(c, run_id=None, env_file=None):
        from helpers.backends.base import RunHandle, backend

        backend(name).status(RunHandle(name, run_id) if run_id else None)

    def logs(c, run_id, follow=False, env_file=None):
        from helpers.backends.base import RunHandle, backend

        backend(name).logs(RunHandle(name, run_id), follow)

    def fetch(c, run_id, dest=None, env_file=None):
        from helpers.backends.base import RunHandle, backend

        backend(name).fetch(RunHandle(name, run_id), dest)

    status.__doc__, logs.__doc__, fetch.__doc__ = status_doc, logs_doc, fetch_doc
    return (task(friendly(status), help={"run_id": "only this run", "env_file": env_help}),
            task(friendly(logs), help={"run_id": "the run", "follow": "keep following until it ends", "env_file": env_help}),
            task(friendly(fetch), help={"run_id": "the run", "dest": "local folder (default runs/<run_id>/outputs)",
                                        "env_file": env_help}))
