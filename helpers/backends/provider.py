"""The provider contract of the cloud lifecycle: what a cloud's API must answer (an abstract base and explicit
capability mixins, in the manner of dstack's ComputeWith*), the states and errors it speaks in, and the one retry
helper for its idempotent calls.

Errors: raise `Transient` for what is worth repeating (HTTP 429, 5xx, dropped connections); `call` repeats those
with exponential backoff and jitter (tenacity), never sooner than the provider's Retry-After. Raise
`helpers.errors.ProviderError` (one line) for a final refusal; `translated` maps an SDK's errors to these.
"""

from __future__ import annotations

import secrets as _secrets
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import NamedTuple

from helpers.console import warn
from helpers.errors import ProviderError

PENDING, RUNNING, STOPPED, GONE, ERROR = "pending", "running", "stopped", "gone", "error"


class Transient(ProviderError):
    """A provider call that may succeed when repeated: HTTP 429, 5xx, a dropped connection. (A ProviderError, so one
    that escapes the retries still prints as one line.) `retry_after`: the seconds the provider asked to wait."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class InstanceLost(ProviderError):
    """The instance went away (spot preemption, deleted elsewhere, failed to boot)."""


class InstanceInfo(NamedTuple):
    state: str
    ssh_host: str | None
    ssh_port: int | None


class Provider(ABC):
    """A cloud's machines as the lifecycle (helpers/backends/lifecycle.py) rents and ends them. What every provider
    must do is abstract here; what only some can do is a capability mixin below, declared in the class line
    (`class RunPodProvider(Provider, FindsByName, Relaunches, Stops, Cleanable)`), never probed with getattr."""

    name: str  # the ledger's provider key: "verda", "runpod"
    noun: str = "instance"  # what its machines are called in messages
    price_per_hour: float = 0.0  # the chosen offer's price for the whole machine, USD
    poll_seconds: float = 10.0  # one status call per interval while booting (and while a start command runs)

    @abstractmethod
    def create(self, job, offer, name: str) -> str:
        """Start the instance named `name` (Trainyard's `ty-<run_id>-<hex6>`: give it to the provider as the
        instance's name, so `find` and `invoke cleanup` recognise it); its id. Raise Transient for what is worth
        repeating, ProviderError for a final refusal."""

    @abstractmethod
    def get(self, instance_id: str) -> InstanceInfo:
        """(state, ssh_host, ssh_port): state is PENDING, RUNNING, STOPPED, GONE or ERROR; GONE also for an id the
        provider no longer knows."""

    @abstractmethod
    def terminate(self, instance_id: str, keep_disk: bool = True) -> str | None:
        """End it; return only once the provider confirms (already gone counts as success). keep_disk=False only
        after the outputs came home. The returned text is printed (e.g. what happened to the volumes)."""


class FindsByName(ABC):
    """The provider can look an instance up by the name it was created with: a create whose answer was lost is found
    instead of renting a second machine."""

    @abstractmethod
    def find(self, name: str) -> str | None:
        """The id of the live instance with that name, or None."""


class Stops(ABC):
    """The provider can stop an instance without ending it (seed 000's --no-terminate keeps a stopped pod)."""

    @abstractmethod
    def stop(self, instance_id: str) -> None: ...


class Relaunches(ABC):
    """The provider can say what it offers now and set itself up for another offer of the plan, so a lost instance
    is relaunched on the next-cheapest offer that fits (helpers/backends/recovery.py); without it a relaunch only
    goes to the same offer."""

    @abstractmethod
    def live_offers(self) -> list:
        """The provider's offers now (helpers.offers.Offer), with stock and price."""

    @abstractmethod
    def for_offer(self, offer) -> "Provider":
        """This provider for another offer of the plan (price, GPU type, location, spot)."""


class Cleanable(ABC):
    """What `invoke cleanup` needs: every `ty-*` instance in one list, and ends sent for many at once."""

    ENDED_STATES: tuple[str, ...] = ()  # the provider's states that already mean ended

    @abstractmethod
    def list_instances(self) -> list[dict]:
        """Live instances whose name starts with "ty-": {"id", "name", "state", "price_per_hour", "ssh"}."""

    @abstractmethod
    def end(self, instance_ids: list[str]) -> dict[str, str | None]:
        """Send the ends without waiting: id -> None when the provider took it, else why not."""

    def leftovers(self) -> list[str]:
        """What still bills but is no instance (kept volumes): listed by cleanup, never deleted there."""
        return []


def instance_name(run_id: str) -> str:
    """`ty-<run_id>-<hex6>`: unique, a valid host name (lower case, letters, digits, dashes, at most 63)."""
    import re

    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-") or "run"
    return f"ty-{slug[:52].rstrip('-')}-{_secrets.token_hex(3)}"


def call(fn, *args, what: str, attempts: int = 8, max_wait_s: float = 60.0, **kwargs):
    """fn(*args, **kwargs), repeated with exponential backoff and jitter while it raises Transient."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

    backoff = wait_exponential_jitter(initial=1, max=max_wait_s, jitter=1)

    def wait(state) -> float:  # never sooner than the provider's Retry-After
        asked = getattr(state.outcome.exception(), "retry_after", None) or 0.0
        return max(backoff(state), min(float(asked), 300.0))

    def before_sleep(state) -> None:
        warn(f"{what}: {state.outcome.exception()} — retrying in {state.next_action.sleep:.1f}s")

    try:
        for attempt in Retrying(retry=retry_if_exception_type(Transient), stop=stop_after_attempt(attempts),
                                wait=wait,
                                before_sleep=before_sleep, reraise=True):
            with attempt:
                return fn(*args, **kwargs)
    except Transient as exc:
        raise ProviderError(f"{what} failed {attempts} times: {exc}") from exc


@contextmanager
def translated(classify, what: str, chain: bool = True):
    """The block's provider-SDK errors re-raised as Trainyard's (Transient, ProviderError, ConfigError) by the
    provider's `classify(exc, what)`; anything it does not know passes unchanged. `chain=False` drops the SDK's
    exception (RunPod's carries the query text, pod env included)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - classified right here
        mapped = classify(exc, what)
        if mapped is exc:
            raise
        raise mapped from (exc if chain else None)
