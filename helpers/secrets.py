"""Secrets come from `.env` or the environment only, and every value is masked in what Trainyard prints or writes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from helpers.errors import ConfigError

# Canonical name -> accepted names, first found wins (the seeds' older names are accepted too).
SECRET_NAMES = {
    "RUNPOD_API_KEY": ("RUNPOD_API_KEY",),
    "VERDA_CLIENT_ID": ("VERDA_CLIENT_ID", "DATACRUNCH_CLIENT_ID"),
    "VERDA_CLIENT_SECRET": ("VERDA_CLIENT_SECRET", "DATACRUNCH_CLIENT_SECRET"),
    "HF_TOKEN": ("HF_TOKEN", "HUGGINGFACE_HUB_TOKEN"),
    "WANDB_API_KEY": ("WANDB_API_KEY",),
}
MASK = "***"


@dataclass
class Secrets:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def require(self, name: str, why: str) -> str:
        value = self.values.get(name)
        if not value:
            aliases = " or ".join(SECRET_NAMES.get(name, (name,)))
            raise ConfigError(name, f"missing secret ({why})", f"put {aliases}=... in .env (see .env.example) or export it")
        return value


def secrets_from(environ, filed: dict[str, str]) -> Secrets:
    """Environment beats `.env`; unknown names in `.env` are ignored (they are not ours to read)."""
    values = {}
    for name, accepted in SECRET_NAMES.items():
        for source in (environ, filed):
            found = next((source[a] for a in accepted if source.get(a)), None)
            if found:
                values[name] = found
                break
    REDACTOR.add(*values.values())
    return Secrets(values)


class Redactor:
    """Masks known secret values (and token-shaped strings) in any text."""

    TOKEN_SHAPES = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|rpa_[A-Za-z0-9]{20,})\b")

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str) -> None:
        new = {v for v in values if v and len(v) >= 6} - self._values
        if new:
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return self.TOKEN_SHAPES.sub(MASK, text)


REDACTOR = Redactor()
redact = REDACTOR


def required_secrets(job, backend) -> dict[str, str]:
    """Secret name -> why, for this job on this backend (its Descriptor, helpers/backends/base.py; checked before any
    network call): the backend's own credentials and what the job's store, pushes and loggers need."""
    needed = dict(backend.credentials)
    if job.store.startswith("hf://"):
        needed["HF_TOKEN"] = f"checkpoints go to {job.store}"
    if job.policy.push_to_hub and (job.policy.repo_id or any(r.policy_repo_id for r in job.runs)):
        needed["HF_TOKEN"] = "the trained policy is pushed to the Hub (policy.push_to_hub)"
    if job.wandb.enable:
        needed["WANDB_API_KEY"] = "wandb.enable is true"
    return needed


def check_secrets(job, backend, secrets: Secrets) -> dict[str, str]:
    """Fail with one line on the first missing secret; return the ones the host needs in its .env."""
    needed = required_secrets(job, backend)
    for name, why in needed.items():
        secrets.require(name, why)
    host = {n: secrets.values[n] for n in ("HF_TOKEN", "WANDB_API_KEY") if secrets.get(n)}
    more = backend.host_credentials  # e.g. Verda's dead-man deletes its instance with the account's keys
    host.update({n: secrets.values[n] for n in (more(job) if more else ())})
    return host
