"""The settings every task shares, loaded once per task and carried, never threaded through calls: the secrets
file, the run folders and the ledger.

Invoke carries them: tasks.py configures `trainyard.env_file` and `trainyard.runs_dir` (~/.invoke.yaml, an invoke.yaml beside
tasks.py or INVOKE_TRAINYARD_ENV_FILE may change them; a task's `--env-file` wins), `helpers.cli.common.friendly` opens the
workspace for the task, and whatever runs below asks `current()`. Outside a task (tests, the seeds' own command
lines) `current()` is the default: `.env` and `runs/` in the working directory.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

DEFAULTS = {"env_file": ".env", "runs_dir": "runs"}


@dataclass
class Workspace:
    env_file: Path | None = Path(DEFAULTS["env_file"])
    runs_dir: Path = Path(DEFAULTS["runs_dir"])

    @cached_property
    def dotenv(self) -> dict[str, str]:
        """The `.env` file's values, parsed once (python-dotenv, the one parser)."""
        if not self.env_file or not Path(self.env_file).is_file():
            return {}
        from dotenv import dotenv_values

        return {k: v for k, v in dotenv_values(self.env_file).items() if v}

    @cached_property
    def secrets(self):
        """helpers.secrets.Secrets: the environment beats `.env`."""
        from helpers.secrets import secrets_from

        return secrets_from(os.environ, self.dotenv)

    def setting(self, name: str, default: str | None = None) -> str | None:
        """A non-secret setting (an API base URL, an SSH key path): the environment, then `.env`, then `default`."""
        return os.environ.get(name) or self.dotenv.get(name) or default

    ledger_path: Path | None = None  # default: $TRAINYARD_LEDGER, else <runs_dir>/ledger.jsonl

    @cached_property
    def ledger(self):
        """The one ledger of this workspace (helpers/ledger.py), beside its runs."""
        from helpers.ledger import Ledger

        return Ledger(self.ledger_path or os.environ.get("TRAINYARD_LEDGER") or self.runs_dir / "ledger.jsonl")


_current: ContextVar[Workspace | None] = ContextVar("trainyard_workspace", default=None)


def current() -> Workspace:
    """The open workspace; outside one, a fresh default (so nothing read outside a task is kept)."""
    return _current.get() or Workspace()


@contextmanager
def opened(env_file: str | Path | None = DEFAULTS["env_file"], runs_dir: str | Path = DEFAULTS["runs_dir"],
           ledger_path: str | Path | None = None):
    """The workspace of one task (or one test): `current()` answers it until the block ends."""
    token = _current.set(Workspace(Path(env_file) if env_file else None, Path(runs_dir),
                                   Path(ledger_path) if ledger_path else None))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def from_invoke(context, env_file: str | None = None) -> dict[str, str | None]:
    """The workspace settings of an Invoke task: its --env-file, else the `trainyard` configuration."""
    config = dict(DEFAULTS)
    try:
        config.update({k: v for k, v in dict(context.config.get("trainyard") or {}).items() if k in DEFAULTS})
    except AttributeError:  # a context without configuration (a bare call in a test)
        pass
    if env_file:
        config["env_file"] = env_file
    return config
