"""The flow every cloud backend shares: rent one instance, run the job on it over SSH, bring the results home,
end the instance. Verda uses it now; RunPod (SSH mode) plugs in the same way.

    code = run_on_instance(provider, job, offer, host_secrets, HostSpec(remote_dir=..., ssh_key=...), mode="auto")

The provider is any object with this interface (duck-typed, see `Provider`):

    name: str                                  ledger provider key: "verda", "runpod"
    price_per_hour: float                      the chosen offer's price for the whole machine, USD
    poll_seconds: float                        (optional, default 10) one status call per interval while booting
    create(job, offer, name) -> str            start the instance, return its id. `name` is Trainyard's unique
                                               `ty-<run_id>-<hex6>`: give it to the provider as the instance's
                                               name/hostname, so `find` and `invoke cleanup` can recognise it
    get(instance_id) -> (state, ssh_host, ssh_port)
                                               state is PENDING, RUNNING, STOPPED, GONE or ERROR (below); GONE also
                                               for an id the provider no longer knows. Return an InstanceInfo
                                               (a NamedTuple of those three). `invoke cleanup` uses it too
    terminate(instance_id, keep_disk=True) -> str | None
                                               end it; return only once the provider confirms (already gone counts
                                               as success). keep_disk=False only after the outputs came home. The
                                               returned text is printed (e.g. what happened to the volumes)
    find(name) -> str | None                   (optional) the id of the live instance with that name: a create that
                                               failed with a Transient error may still have created one
    list_instances() -> list[dict]             (optional, `invoke cleanup`) live instances whose name starts with
                                               "ty-": {"id", "name", "state", "price_per_hour"}

    for_offer(offer) -> provider               (optional, recovery) the same provider set up for another offer of
                                               the plan (price, GPU type, location, spot); without it a relaunch
                                               only goes to the same offer
    live_offers() -> list[Offer]               (optional, recovery) the provider's offers now, with stock and price

Errors: raise `Transient` for what is worth repeating (HTTP 429, 5xx, dropped connections); the flow repeats those
with exponential backoff and jitter (tenacity, `call`). Raise `helpers.errors.ProviderError` (one line) for a final
refusal. Anything else is final too: the flow ends the instance and re-raises.

The host side (HostSpec): the run folder staged by helpers.bundle.stage_run goes to `remote_dir` over SSH
(helpers.remote), the runtime starts detached (`<python> trainyard_runtime.pyz job.json --mode <mode>
[--skip-setup]`), its log is streamed with the progress bar and the cost so far, and on `done` the job's output_dir
comes home to runs/<run_id>/outputs (plus runtime.log and events.jsonl to runs/<run_id>/).

Money rules, in the order they happen:
  * the ledger line (`creating`, key = the instance name) is written and fsync'ed BEFORE the create call, and the
    provider's id is added once known; a crash anywhere after leaves the line, so `invoke cleanup` finds it;
  * any exception after create ends the instance; Ctrl-C asks "detach or terminate?" (terminate when stdin is no
    TTY); SIGTERM terminates; while terminating, Ctrl-C is ignored;
  * the ledger says `terminated` only after the provider confirmed it;
  * the job document's `machine` tells the runtime how to end the instance itself (the dead-man, for a closed
    laptop or a detached run). While this flow follows the run it touches a heartbeat file on the host every
    HEARTBEAT_EVERY_S (env TRAINYARD_HEARTBEAT_S, default 10 s; stale after 6 beats); the runtime's ender waits
    while that heartbeat is fresh (the orchestrator is still fetching outputs and will end the machine), at most
    `orchestrator_grace_s`, then ends the machine itself (see helpers/runtime/machine.py `wait_for_orchestrator`).

Recovery (`supervise`: ONE supervisor for every cloud backend, this flow and RunPod's start_command run alike).
With `recover` (the CLI's `--recover`, on by default for spot) a run whose instance is lost — a spot preemption
(RunPod EXITED/interrupted, Verda `discontinued`), SSH gone and the provider saying the instance stopped, or an
instance that stays unreachable — is relaunched: on the same offer if it is in stock, else on the next-cheapest
offer of the plan that fits (`relaunch_offers`), in mode `auto`, so the runtime resumes from the newest complete
checkpoint in the store. Bounded: at most `limits.max_recoveries` relaunches; the time limit counts from the first
launch (a relaunch gets what is left) and `limits.budget_usd` is the spend of every instance of the run (from the
ledger). Each relaunch is a ledger entry (`recovery: n`, `replaces: <lost instance>`) and a webhook event
(`recovery`, the runtime's payload, from helpers.runtime.events.Events; also in runs/<run_id>/launcher_events.jsonl).
A detached run is not supervised (nobody is there to relaunch it); its instance still ends itself.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets as _secrets
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol

from helpers.console import say, warn
from helpers.errors import ConfigError, ProviderError, TrainyardError
from helpers.workspace import current

PENDING, RUNNING, STOPPED, GONE, ERROR = "pending", "running", "stopped", "gone", "error"
EXIT_DONE, EXIT_FAILED, EXIT_STOPPED, EXIT_LOST, EXIT_INTERRUPTED = 0, 1, 3, 4, 130
HEARTBEAT_NAME = ".trainyard-orchestrator"


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


HEARTBEAT_EVERY_S = _env_seconds("TRAINYARD_HEARTBEAT_S", 10.0)
HEARTBEAT_STALE_S = max(6 * HEARTBEAT_EVERY_S, 3.0)  # six missed beats: the orchestrator is gone
MIN_RELAUNCH_S = 5.0  # less than this left of the time limit: no relaunch
# SSH gone while the provider says running: reconnect for 5, 10, 20, 20 ... s, asking the provider in between;
# after RECONNECTS failures in a row (about 2 min) the instance is "unreachable"
RECONNECTS, RECONNECT_WAIT_S = 7, 20.0
ORCHESTRATOR_GRACE_S = 900.0
COST_EVERY_S = _env_seconds("TRAINYARD_COST_EVERY_S", 60.0)  # a "cost so far" line this often while following
# Non-secret settings of the launcher that the host needs too (a private Hub endpoint, ...): copied into the
# host's .env when set here.
HOST_ENV_PASSTHROUGH = ("HF_ENDPOINT", "HF_HUB_DISABLE_XET", "HF_HUB_ENABLE_HF_TRANSFER", "RUNPOD_REST_URL")


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


class Provider(Protocol):
    name: str
    price_per_hour: float

    def create(self, job, offer, name: str) -> str: ...

    def get(self, instance_id: str) -> tuple[str, str | None, int | None]: ...

    def terminate(self, instance_id: str, keep_disk: bool = True) -> str | None: ...


@dataclass
class HostSpec:
    """Where and how the job runs on the instance."""

    remote_dir: str
    ssh_key: Path | None
    ssh_user: str = "root"
    python: str = "python3"  # the interpreter that starts the runtime bundle on the host
    skip_setup: bool = False  # the host's Python already has what the framework needs (no venv, no pip)
    extra_files: dict[str, Path] = field(default_factory=dict)  # remote name -> local file, e.g. train.remote.yaml
    machine: dict[str, Any] = field(default_factory=dict)  # how the runtime ends this machine (job.json "machine")
    ledger_fields: dict[str, Any] = field(default_factory=dict)  # extra fields for the ledger line
    boot_timeout_s: float = 1800.0
    ssh_timeout_s: float = 600.0
    deadline_epoch: float | None = None  # the launcher's backstop behind the runtime's time limit: end it then


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


def ask_detach_or_terminate() -> str:
    """After Ctrl-C: 'detach' or 'terminate'. Without a terminal to ask on, terminate (never leave it billing)."""
    if not (sys.stdin and sys.stdin.isatty()):
        return "terminate"
    try:
        answer = input("\nCtrl-C: [d]etach (it keeps running and ends itself when the job ends) or [t]erminate now? [t] ")
    except (EOFError, KeyboardInterrupt):
        return "terminate"
    return "detach" if answer.strip().lower().startswith("d") else "terminate"


class _Terminated(BaseException):
    """SIGTERM reached the orchestrator: end the instance like Ctrl-C + terminate."""


class _DeadlinePassed(Exception):
    """HostSpec.deadline_epoch passed while the run was still going: the launcher ends the instance."""


class Heartbeat:
    """Touches a file on the host while the orchestrator is attached (the runtime's ender reads its age)."""

    def __init__(self, remote, path: str, every_s: float = HEARTBEAT_EVERY_S):
        self.remote, self.path, self.every_s = remote, path, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="trainyard-heartbeat")

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _beat(self) -> None:
        import shlex

        while not self._stop.is_set():
            try:
                self.remote.run(f"touch {shlex.quote(self.path)}", timeout=20, check=False)
            except Exception:  # noqa: BLE001 - a missed beat only makes the host end itself sooner
                pass
            self._stop.wait(self.every_s)

    def stop(self, remove: bool = False) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if remove:
            try:
                self.remote.run(f"rm -f {self.path}", timeout=20, check=False)
            except Exception:  # noqa: BLE001
                pass


def _hours(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def cost_line(price_per_hour: float, since: float) -> str:
    elapsed = max(0.0, time.time() - since)
    return f"cost so far ${price_per_hour * elapsed / 3600:.2f} (${price_per_hour:.2f}/h x {_hours(elapsed)})"


def run_on_instance(provider, job, offer, host_secrets: dict[str, str], spec: HostSpec, *, mode: str = "auto",
                    detach: bool = False, ask=ask_detach_or_terminate,
                    recover: bool | None = False, the_plan: dict | None = None, flow_class: type | None = None) -> int:
    """Create an instance, run the job there, fetch outputs on success, end the instance. Returns the exit code:
    0 done, 1 failed, 3 stopped early (time limit, budget), 4 instance lost (spot preemption), 130 interrupted.
    `recover` (None: on for a spot offer): relaunch after a lost instance (see `supervise`); `the_plan`: the plan
    whose candidate offers a relaunch may use. `flow_class`: how the job runs once the instance exists — `Flow`
    (over SSH, the default) or a subclass (RunPod's start command, polled through the API)."""
    def attempt(launch: Launch) -> int:
        this = replace(spec, ledger_fields={**spec.ledger_fields, **launch.ledger_fields}) if launch.ledger_fields else spec
        return _run_once(launch.provider, launch.job, launch.offer, host_secrets, this, mode=launch.mode,
                         detach=detach, ask=ask, flow_class=flow_class or Flow)

    return supervise(job, provider, offer, attempt, mode=mode, recover=False if detach else recover, the_plan=the_plan)


def _run_once(provider, job, offer, host_secrets: dict[str, str], spec: HostSpec, *, mode: str, detach: bool, ask,
              flow_class: type) -> int:
    """One instance, the one lifecycle of every cloud: stage, ledger line, create, run (flow_class), end."""
    name = instance_name(job.run_id)
    heartbeat_file = posixpath.join(spec.remote_dir, HEARTBEAT_NAME)
    machine = {"heartbeat_file": heartbeat_file, "heartbeat_stale_s": HEARTBEAT_STALE_S,
               "orchestrator_grace_s": ORCHESTRATOR_GRACE_S, "instance_name": name, **spec.machine}
    host_env = {**{k: os.environ[k] for k in HOST_ENV_PASSTHROUGH if os.environ.get(k)}, **host_secrets}
    ledger = current().ledger
    run_dir = flow_class.stage(provider, job, machine, host_env, spec, mode)
    say(f"run {job.run_id}: staged {run_dir}/ -> {spec.remote_dir} on a new {provider.name} instance {name}")

    created = time.time()
    fields = {"created": created, "price_per_hour": provider.price_per_hour, "run_id": job.run_id, "mode": mode,
              "remote_dir": spec.remote_dir, "ssh_key": str(spec.ssh_key) if spec.ssh_key else None,
              **spec.ledger_fields}
    ledger.record(provider.name, name, "creating", **fields)  # before create: a crash from here on is findable
    instance_id = _create(provider, job, offer, name, ledger)
    ledger.record(provider.name, name, "running", instance_id=instance_id)
    say(f"instance {name} ({instance_id}) ordered at ${provider.price_per_hour:.2f}/h")

    flow = flow_class(provider, job, spec, ledger, name, instance_id, created, run_dir)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return flow.run(mode, detach)
    except KeyboardInterrupt:
        if flow.started and ask() == "detach":
            flow.detach()
            return EXIT_DONE
        noun = getattr(provider, "noun", "instance")
        say(f"Ctrl-C: terminating the {noun} ..." if flow.started else
            f"Ctrl-C before the job started: terminating the {noun} ...")
        flow.end(keep_disk=True)
        return EXIT_INTERRUPTED
    except _Terminated:
        say(f"SIGTERM: terminating the {getattr(provider, 'noun', 'instance')} ...")
        flow.end(keep_disk=True)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if isinstance(exc, Exception) and (gone := flow.lost(exc)):
            warn(f"instance {name} went away ({gone}: {str(exc)[:200]}); checkpoints synced so far are in {job.store}")
            flow.end(keep_disk=True)
            return EXIT_LOST
        if not isinstance(exc, TrainyardError):
            warn(f"{type(exc).__name__}: {exc} — terminating the instance so it does not keep billing")
        flow.end(keep_disk=True)
        raise
    finally:
        flow.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise _Terminated()


def _create(provider, job, offer, name: str, ledger) -> str:
    """provider.create with retries; after a Transient failure, look for the instance first (the request may have
    gone through), so a retry never rents a second machine."""
    find = getattr(provider, "find", None)
    attempts = 5
    try:
        for attempt in range(1, attempts + 1):
            try:
                return provider.create(job, offer, name)
            except Transient as exc:
                found = call(find, name, what="looking for the instance") if find else None
                if found:
                    say(f"create answered '{exc}', but instance {name} exists ({found}): using it")
                    return found
                if attempt == attempts:
                    raise ProviderError(f"creating {name} failed {attempts} times: {exc}") from exc
                pause = min(30.0, 2.0 ** attempt)
                warn(f"creating {name}: {exc} — retrying in {pause:.0f}s")
                time.sleep(pause)
    except BaseException as exc:
        # Nothing may be left behind: an instance that exists despite the error is ended now.
        found, looked = None, False
        if find:
            try:
                found, looked = call(find, name, what="looking for the instance", attempts=4), True
            except Exception:  # noqa: BLE001 - cannot tell: the ledger keeps it live for `invoke cleanup`
                pass
        if not looked:
            ledger.record(provider.name, name, "unknown", error=f"{type(exc).__name__}: {exc}"[:300])
            warn(f"could not tell whether {name} was created: `invoke cleanup` looks for it by name")
        elif found:
            try:
                provider.terminate(found, keep_disk=False)
                ledger.record(provider.name, name, "terminated", instance_id=found, ended=time.time())
                _nothing_left(exc)
            except Exception as end_exc:  # noqa: BLE001
                ledger.record(provider.name, name, "unknown", instance_id=found, error=str(end_exc))
                warn(f"instance {found} may still be running: `invoke cleanup` ends it")
        else:
            ledger.record(provider.name, name, "failed", error=f"{type(exc).__name__}: {exc}"[:300])
            _nothing_left(exc)
        raise
    raise AssertionError("unreachable")


def _nothing_left(exc: BaseException) -> None:
    """Mark a refused create whose instance is known not to exist (or was ended): a relaunch may try elsewhere."""
    if isinstance(exc, ProviderError):
        exc.nothing_left = True


BOOT_BURST_S = (1.0, 3.0)  # the first looks after the immediate one, in seconds after the create


def boot_poll_times(poll: float):
    """Seconds after the create at which to ask for a booting instance: 0, the burst (an instance that boots in
    seconds, as a relaunch may, is seen in seconds), then the k-th look at k x poll: the burst is paid back by
    skipping as many regular looks, so no minute holds more calls than one per poll interval plus the immediate
    first (the recovery bench's budget per instance-minute). A boot longer than `poll` is seen within one poll."""
    at, k = 0.0, 0
    while True:
        yield at
        k += 1
        at = max(at, min(BOOT_BURST_S[k - 1], k * poll) if k <= len(BOOT_BURST_S) else k * poll)


class Flow:
    """Everything after create, with what it needs to end the instance from any point: here the job runs over SSH
    (upload the run folder, start the runtime detached, follow its log, fetch the outputs). A subclass changes how
    the job is staged and run (`stage`, `run`, `detach`); ending stays here."""

    @staticmethod
    def stage(provider, job, machine: dict, host_env: dict[str, str], spec: HostSpec, mode: str) -> Path:
        """The run folder the host receives (its .env, mode 0600, holds `host_env`)."""
        from helpers.bundle import stage_run

        return stage_run(job, machine, host_env, provider.price_per_hour)

    def __init__(self, provider, job, spec: HostSpec, ledger, name: str, instance_id: str, created: float, run_dir: Path):
        self.provider, self.job, self.spec, self.ledger = provider, job, spec, ledger
        self.name, self.instance_id, self.created, self.run_dir = name, instance_id, created, run_dir
        self.remote = None
        self.heartbeat: Heartbeat | None = None
        self.started = False  # the runtime runs on the host: only then can it end the machine itself
        self.ended = False
        self.last_step: int | None = None  # the newest training step the launcher saw in the log

    # --- the steps ----------------------------------------------------------------------------------
    def run(self, mode: str, detach: bool) -> int:
        from helpers.remote import Remote

        host, port = self.wait_for_ssh()
        say(f"instance running at {host}:{port}; connecting over SSH ...")
        self.remote = Remote(host, port, self.spec.ssh_user, self.spec.ssh_key).connect(self.spec.ssh_timeout_s)
        self.remote.upload_run(self.run_dir, self.spec.remote_dir, self.spec.extra_files)
        args = ["--mode", mode] + (["--skip-setup"] if self.spec.skip_setup else [])
        heartbeat = posixpath.join(self.spec.remote_dir, HEARTBEAT_NAME)
        if not detach:  # before the start: however short the job, its end sees the launcher attached
            self.remote.run(f"touch {heartbeat}")
        pid = self.remote.start_detached(self.spec.remote_dir, args, self.spec.python)
        self.started = True
        say(f"runtime started (pid {pid}): {self.spec.python} trainyard_runtime.pyz job.json {' '.join(args)}")
        if detach:
            self.detach()
            return EXIT_DONE
        self.heartbeat = Heartbeat(self.remote, heartbeat).start()
        end = self.follow(pid)
        return self.finish(end)

    def wait_for_ssh(self) -> tuple[str, int]:
        """Poll the new instance until it is running with an address: fast at first (a relaunch onto an instance
        that boots in seconds runs again in seconds), and never more calls than one per `poll_seconds` since the
        create, counting that burst (`boot_poll_times`)."""
        poll = float(getattr(self.provider, "poll_seconds", 10.0))
        started = time.monotonic()
        deadline = started + self.spec.boot_timeout_s
        for at in boot_poll_times(poll):
            time.sleep(max(0.0, started + at - time.monotonic()))
            state, host, port = call(self.provider.get, self.instance_id, what="instance status")
            if state == RUNNING and host:
                return host, int(port or 22)
            if state != PENDING:
                raise InstanceLost(f"instance {self.name} is {state} while booting")
            if time.monotonic() > deadline:
                raise ProviderError(f"instance {self.name} not running after {self.spec.boot_timeout_s:.0f}s")
            if self.spec.deadline_epoch and time.time() > self.spec.deadline_epoch:
                raise ProviderError(f"instance {self.name}: the time limit passed before it was reachable")
        raise AssertionError("boot_poll_times never ends")

    def follow(self, pid: int) -> str:
        """Stream the log with the progress bar until the run ends; 'done'/'failed'/'stopped'/'crashed'/'lost'."""
        from helpers.follow import follow
        from helpers.remote import RemoteError

        total = max([r.steps for r in self.job.runs] or [self.job.training.steps])
        last_cost = [time.monotonic()]
        price = self.provider.price_per_hour

        def on_poll() -> None:
            if self.spec.deadline_epoch and time.time() > self.spec.deadline_epoch:
                raise _DeadlinePassed()
            if time.monotonic() - last_cost[0] >= COST_EVERY_S:
                last_cost[0] = time.monotonic()
                say(f"[trainyard] {cost_line(price, self.created)}")

        failures = 0  # SSH failures in a row; a connection that then held for a minute starts the count again
        while True:
            followed_from = time.monotonic()
            try:
                follow(self.steps_seen(self.remote.tail(self.spec.remote_dir, pid=pid, on_poll=on_poll)), total)
            except _DeadlinePassed:
                warn(f"the time limit passed and the run goes on: ending instance {self.name} (launcher backstop)")
                return "stopped"
            end = self.remote.tail_end
            if end != "lost":
                say(f"run {end}; {cost_line(price, self.created)}")
                return end
            if time.monotonic() - followed_from > 60:
                failures = 0
            while True:  # SSH dropped: ask the provider between short reconnect attempts (a dead host is seen soon)
                state, host, port = call(self.provider.get, self.instance_id, what="instance status")
                if state != RUNNING:
                    warn(f"instance {self.name} is {state}: " + ("spot preemption" if state == GONE else "it stopped"))
                    return "lost"
                failures += 1
                if failures > RECONNECTS:
                    warn(f"instance {self.name} is running but SSH keeps failing")
                    return "unreachable"
                warn("SSH connection dropped; the instance is still running — reconnecting")
                self.remote.host, self.remote.port = host, int(port or 22)
                try:
                    self.remote.connect(wait_seconds=RECONNECT_WAIT_S * min(1.0, 2 ** (failures - 3)))
                    break
                except RemoteError as exc:
                    warn(str(exc))

    def steps_seen(self, lines):
        """The log lines, remembering the newest training step (what a loss costs, if no checkpoint was synced)."""
        from helpers.runtime.progress import step_of

        for line in lines:
            if (step := step_of(line)) is not None:
                self.last_step = step
            yield line

    def lost(self, exc: Exception) -> str | None:
        """Why, when `exc` means the instance went away (lost while booting, or SSH failed and the provider says
        it is no longer running); None otherwise."""
        if isinstance(exc, InstanceLost):
            return "lost while booting"
        from helpers.remote import RemoteError

        ssh_errors: tuple[type[BaseException], ...] = (RemoteError, OSError, EOFError)
        try:
            import paramiko

            ssh_errors += (paramiko.SSHException,)
        except ImportError:  # pragma: no cover - paramiko is a dependency
            pass
        if not isinstance(exc, ssh_errors) or isinstance(exc, TrainyardError):
            return None
        try:
            state = call(self.provider.get, self.instance_id, what="instance status", attempts=3, max_wait_s=5)[0]
        except Exception:  # noqa: BLE001 - cannot tell: not lost as far as we know
            return None
        return f"the provider says {state}" if state in (STOPPED, GONE, ERROR) else None

    def finish(self, end: str) -> int:
        # The heartbeat goes on until the end is confirmed (see close): the host must not end itself meanwhile.
        if end in ("lost", "unreachable"):  # unreachable: running but no SSH for minutes; the run there is lost too
            if end == "unreachable":
                self.fetch_logs()
            self.end(keep_disk=True)
            say(f"the instance is gone; checkpoints synced so far are in {self.job.store}. "
                "Resume on a new instance with the backend's resume task.")
            return EXIT_LOST
        keep_disk = True
        code = {"done": EXIT_DONE, "stopped": EXIT_STOPPED}.get(end, EXIT_FAILED)
        self.fetch_logs()
        if end == "done":
            try:
                self.fetch_outputs()
                keep_disk = False
            except Exception as exc:  # noqa: BLE001 - the disk is kept so nothing is lost
                warn(f"could not fetch the outputs ({type(exc).__name__}: {exc}); keeping the instance's disk")
                code = EXIT_FAILED
        elif end == "crashed":
            self.show_runtime_out()
        self.end(keep_disk=keep_disk)
        return code

    def fetch_outputs(self) -> None:
        out = self.job.output_dir
        remote_out = out if posixpath.isabs(out) else posixpath.join(self.spec.remote_dir, out)
        if not self.remote.exists(remote_out):  # resume_local may have resumed another run's output folder
            remote_out = posixpath.join(self.spec.remote_dir, "outputs")
        local = self.run_dir / "outputs"
        files, size = self.remote.fetch(remote_out, local)
        say(f"outputs: {files} files ({size / 1e6:.1f} MB) from {remote_out} -> {local}/")

    def fetch_logs(self) -> None:
        for name in ("runtime.log", "events.jsonl"):
            try:
                self.remote.fetch(posixpath.join(self.spec.remote_dir, name), self.run_dir)
            except Exception:  # noqa: BLE001 - logs are a courtesy
                pass

    def show_runtime_out(self) -> None:
        try:
            text = self.remote.read_text(posixpath.join(self.spec.remote_dir, "runtime.out")).decode(errors="replace")
            warn("the runtime ended without a final status; its output:\n" + text[-3000:])
        except Exception:  # noqa: BLE001
            pass

    # --- ending -------------------------------------------------------------------------------------
    def end(self, keep_disk: bool, stop_only: bool = False) -> None:
        """Terminate (or only stop, with `stop_only`: seed 000's --no-terminate) and mark the ledger once the
        provider confirms. Ctrl-C cannot interrupt this."""
        if self.ended:
            return
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            if stop_only:
                call(self.provider.stop, self.instance_id, what=f"stopping {self.name}")
                self.ledger.record(self.provider.name, self.name, "stopped", instance_id=self.instance_id)
                self.ended = True
                return
            note = call(self.provider.terminate, self.instance_id, keep_disk=keep_disk, what=f"terminating {self.name}")
            seen = {"last_step": self.last_step} if self.last_step is not None else {}
            self.ledger.record(self.provider.name, self.name, "terminated", instance_id=self.instance_id,
                               ended=time.time(), **seen)
            self.ended = True
            say(f"instance {self.name} terminated ({cost_line(self.provider.price_per_hour, self.created)})")
            if note:
                say(note)
        except Exception as exc:  # noqa: BLE001 - say so loudly; the ledger keeps it for `invoke cleanup`
            self.ledger.record(self.provider.name, self.name, "unknown", instance_id=self.instance_id,
                               error=f"{type(exc).__name__}: {exc}"[:300])
            warn(f"could not confirm that instance {self.name} ({self.instance_id}) ended: {exc}. "
                 "Run `invoke cleanup` to end it.")
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def detach(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop(remove=True)
        else:
            try:
                if self.remote is not None:
                    self.remote.run(f"rm -f {posixpath.join(self.spec.remote_dir, HEARTBEAT_NAME)}", check=False)
            except Exception:  # noqa: BLE001
                pass
        self.ended = True  # on purpose: it keeps running
        say(f"detached: instance {self.name} ({self.instance_id}) keeps running at "
            f"${self.provider.price_per_hour:.2f}/h and ends itself when the job ends. "
            f"Follow: invoke {self.provider.name}.logs --run-id {self.job.run_id} --follow; "
            f"end now: invoke {self.provider.name}.terminate --run-id {self.job.run_id}")

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.remote is not None:
            self.remote.close()


# ============================================================================ after the launch: status, logs, fetch, end
# What `<backend>.status / logs / fetch / terminate` do once the ledger knows the instance; each backend passes its
# ledger name, its provider and where its runs live on the host (`remote_dir`).


def ledger_entries(provider_name: str, run_id: str | None = None, live_only: bool = True) -> list[dict]:
    """The provider's instances in the ledger (oldest first): of one run, live only (not yet ended) by default."""
    from helpers.ledger import LIVE_STATES

    entries = [e for (p, _), e in current().ledger.entries().items() if p == provider_name]
    entries = [e for e in entries if (not run_id or e.get("run_id") == run_id)
               and (not live_only or e["state"] in LIVE_STATES)]
    return sorted(entries, key=lambda e: e.get("created", e["time"]))


def newest_entry(provider_name: str, run_id: str, noun: str) -> dict:
    """The run's newest live instance (after relaunches the run has several), or one line saying there is none."""
    live = [e for e in ledger_entries(provider_name, run_id) if e.get("instance_id")]
    if not live:
        raise ConfigError("--run-id", f"no live {noun} for run '{run_id}' in the ledger",
                          f"see `invoke {provider_name}.status` (a finished run fetched its outputs and log already)")
    return live[-1]


def connect(provider, entry: dict, wait_seconds: float = 30.0):
    """An open SSH connection (helpers.remote.Remote) to a running instance of the ledger."""
    from helpers.remote import Remote

    state, host, port = provider.get(entry["instance_id"])
    if state != RUNNING:
        raise ProviderError(f"{entry['id']} ({entry['instance_id']}) is {state}: nothing to connect to")
    return Remote(host, port, "root", entry.get("ssh_key")).connect(wait_seconds)


STATUS_PROBE_S = 2.0  # a status table waits this long for instances' SSH ports, all at once, then says "unreachable"
STATUS_CONNECT_S = 5.0  # and this long for the SSH session of one that answered
STATUS_WORKERS = 16  # SSH sessions at once


def answering(addresses: set[tuple[str, int]], timeout: float = STATUS_PROBE_S) -> set[tuple[str, int]]:
    """The addresses whose TCP port accepts a connection within `timeout`, tried all at once (non-blocking
    connects in one selector): hundreds of instances cost one timeout, not one each."""
    import selectors
    import socket

    pending: dict[socket.socket, tuple[str, int]] = {}
    up: set[tuple[str, int]] = set()
    with selectors.DefaultSelector() as selector:
        for address in addresses:
            sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(address)
            selector.register(sock, selectors.EVENT_WRITE)
            pending[sock] = address
        deadline = time.monotonic() + timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    up.add(pending[sock])
                selector.unregister(sock)
                sock.close()
                del pending[sock]
        for sock in pending:
            sock.close()
    return up


def listed_match(listed: list[dict]):
    """entry -> its instance in the provider's list (or None): by instance id, else by its `ty-` name (a ledger line
    written before the create answered has no id)."""
    by_id, by_name = {i["id"]: i for i in listed}, {i["name"]: i for i in listed}
    return lambda entry: by_id.get(entry.get("instance_id")) or by_name.get(entry["id"])


def status_rows(provider, provider_name: str, run_id: str | None, remote_dir: str, readable) -> list[tuple[dict, str, str]]:
    """(ledger entry, the provider's state, the run's progress) for each live instance of the ledger, from one list
    of the provider's instances (`list_instances`, with each one's `ssh` address when it has one); the instances'
    SSH ports are probed all at once (`answering`: an instance that does not answer is "unreachable" after
    STATUS_PROBE_S), and the run's state, step, loss and synced step are read over SSH from the ones that answer,
    STATUS_WORKERS at a time. `readable(entry, listed)`: whether this instance's run is read over SSH at all.
    `provider` None (no credentials): the ledger's word only."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers.remote import Remote

    entries = ledger_entries(provider_name, run_id)
    if provider is None or not entries:
        return [(e, e["state"], "-") for e in entries]
    try:
        listed = call(provider.list_instances, what=f"{provider_name}: listing instances")
    except Exception as exc:  # noqa: BLE001 - a status table shows what it can
        return [(e, e["state"], f"(provider: {type(exc).__name__})") for e in entries]
    match = listed_match(listed)
    found = {e["id"]: match(e) for e in entries}
    wanted = {f["ssh"] for e in entries if (f := found[e["id"]]) and f.get("ssh") and readable(e, f)}
    up = answering({(h, int(p)) for h, p in wanted})

    def row(entry: dict) -> tuple[dict, str, str]:
        listed_one = found[entry["id"]]
        if listed_one is None:
            return entry, "gone", "-"
        address = listed_one.get("ssh")
        if not (address and readable(entry, listed_one)):
            return entry, listed_one["state"], "-"
        if (address[0], int(address[1])) not in up:
            return entry, listed_one["state"], "unreachable"
        try:
            with Remote(address[0], address[1], "root", entry.get("ssh_key"), connect_timeout=STATUS_CONNECT_S,
                        io_timeout=10).connect(STATUS_CONNECT_S) as remote:
                s = remote.read_status(entry.get("remote_dir") or remote_dir) or {}
        except Exception:  # noqa: BLE001 - one that does not answer must not hold up the table
            return entry, listed_one["state"], "unreachable"
        return entry, listed_one["state"], (f"{s.get('state')} {s.get('step')}/{s.get('total')} loss {s.get('loss')} "
                                            f"synced {s.get('synced_step')}")

    with ThreadPoolExecutor(max_workers=min(STATUS_WORKERS, len(entries))) as pool:
        return list(pool.map(row, entries))


def show_log(provider_name: str, noun: str, run_id: str, open_remote, remote_dir: str, follow_lines: bool) -> None:
    """Print the run's runtime.log from its live instance (`open_remote(entry)` connects), following it with a
    progress bar if asked; after the run, the copy fetched to runs/<run_id>/runtime.log."""
    from helpers.follow import follow

    try:
        entry = newest_entry(provider_name, run_id, noun)
    except ConfigError:
        local = current().runs_dir / run_id / "runtime.log"
        if not local.is_file():
            raise
        say(local.read_text())
        return
    remote_dir = entry.get("remote_dir") or remote_dir
    with open_remote(entry) as remote:
        if follow_lines:
            job = json.loads(remote.read_text(f"{remote_dir}/job.json") or b"{}")
            follow(remote.tail(remote_dir, offset=0), (job.get("config") or {}).get("training", {}).get("steps"))
            say(f"run {remote.tail_end}")
        else:
            say(remote.read_text(f"{remote_dir}/runtime.log").decode(errors="replace"))


def fetch_outputs(provider_name: str, noun: str, run_id: str, open_remote, remote_dir: str,
                  dest: str | Path | None = None) -> Path:
    """Copy the run's output directory from its live instance to runs/<run_id>/outputs (or `dest`)."""
    entry = newest_entry(provider_name, run_id, noun)
    remote_dir = entry.get("remote_dir") or remote_dir
    with open_remote(entry) as remote:
        job = json.loads(remote.read_text(f"{remote_dir}/job.json") or b"{}")
        out = (job.get("derived") or {}).get("output_dir") or "outputs"
        remote_out = out if posixpath.isabs(out) else posixpath.join(remote_dir, out)
        local = Path(dest) if dest else current().runs_dir / run_id / "outputs"
        files, size = remote.fetch(remote_out, local)
    say(f"{files} files ({size / 1e6:.1f} MB) from {remote_out} -> {local}/")
    return local


def end_now(provider, provider_name: str, noun: str, run_id: str | None, instance_id: str | None, **terminate_kw) -> None:
    """`<backend>.terminate`: end the run's live instance(s), or one by id (also one the ledger does not know), and
    mark the ledger. `terminate_kw` goes to provider.terminate (Verda: keep_disk)."""
    if not (run_id or instance_id):
        raise ConfigError("--run-id", f"which {noun}?", f"pass --run-id (see `invoke {provider_name}.status`) or the {noun} id")
    entries = [e for e in ledger_entries(provider_name, run_id) if not instance_id or e.get("instance_id") == instance_id]
    if not entries and instance_id:
        entries = [{"id": instance_id, "instance_id": instance_id}]
    if not entries:
        raise ConfigError("--run-id", f"no live {noun} for run '{run_id}' in the ledger", f"see `invoke {provider_name}.status`")
    for entry in entries:
        iid = entry.get("instance_id") or call(provider.find, entry["id"], what=f"looking for the {noun}")
        if iid:
            note = call(provider.terminate, iid, what=f"terminating {entry['id']}", **terminate_kw)
            say(f"{noun} {entry['id']} ({iid}) terminated. {note or ''}")
        current().ledger.record(provider_name, entry["id"], "terminated", instance_id=iid, ended=time.time())


# ============================================================================================== recovery


@dataclass
class Launch:
    """One launch of a run, as `supervise` hands it to the backend's attempt function."""

    provider: Any
    offer: Any
    job: Any  # the job with what is left of the time limit and budget (a copy, for a relaunch)
    mode: str
    ledger_fields: dict[str, Any] = field(default_factory=dict)  # for the new instance's ledger line


def relaunch_offers(current, the_plan: dict | None, live: list | None) -> list:
    """Where a relaunch may go, in order: the same offer if it is in stock now, then the plan's other offers that
    fit (one that was only out of stock at plan time counts too), in stock now, by today's price. `live`: the
    provider's offers now; without them (no hook, or the call failed) only the same offer, as planned."""
    if live is None:
        return [current]
    keys = [current.key]
    for key in (the_plan or {}).get("relaunch_keys") or []:
        if tuple(key) not in keys:
            keys.append(tuple(key))
    now = {o.key: o for o in live}
    fresh = [now[k] for k in keys if k in now and now[k].in_stock]
    head = [o for o in fresh[:1] if o.key == current.key]
    return head + sorted((o for o in fresh if o not in head), key=lambda o: round(o.price_per_hour, 4))


def supervise(job, provider, offer, attempt: Callable[[Launch], int], *, mode: str = "auto", recover: bool | None = None,
              the_plan: dict | None = None) -> int:
    """Run `attempt(Launch(...))` (one instance: create, run, end; returns the exit code) and, with `recover`
    (None: on for a spot offer), relaunch after EXIT_LOST until the run ends another way or a bound is reached.
    See the module docstring. Returns the exit code of the last launch, or EXIT_STOPPED when the time limit or the
    budget forbids a relaunch."""
    if recover is None:
        recover = job.limits.recover
    return _Supervisor(job, provider, offer, attempt, mode=mode, recover=bool(offer.spot) if recover is None else recover,
                       the_plan=the_plan).run()


class _Supervisor:
    def __init__(self, job, provider, offer, attempt, *, mode, recover, the_plan):
        self.job, self.provider, self.offer, self.attempt, self.mode = job, provider, offer, attempt, mode
        self.recover, self.the_plan, self.ledger = recover, the_plan, current().ledger
        self.started = time.time()
        limit = job.time_limit_seconds
        self.deadline = self.started + limit if limit else None
        self._events = None

    def run(self) -> int:
        code = self.attempt(Launch(self.provider, self.offer, self.job, self.mode))
        recoveries, most = 0, self.job.limits.max_recoveries
        try:
            while code == EXIT_LOST and self.recover:
                lost = next((e["id"] for e in reversed(self.instances()) if e["state"] != "failed"), "?")
                refusal = self.refusal(recoveries, most)
                if refusal is not None:
                    code, message = refusal
                    warn(message)
                    self.emit("recovery_failed", message, recovery=recoveries, lost_instance=lost)
                    return code
                recoveries += 1
                code = self.relaunch(recoveries, most, lost)
            return code
        finally:
            if self._events is not None:
                self._events.close()

    # --- bookkeeping ----------------------------------------------------------------------------------
    def instances(self) -> list[dict]:
        return self.ledger.of_run(self.job.run_id, since=self.started - 1)

    def spent(self) -> float:
        from helpers.ledger import spend_of

        now = time.time()
        return sum(spend_of(e, now) for e in self.instances())

    def emit(self, event: str, message: str, **extra) -> None:
        from helpers.runtime.events import Events

        if self._events is None:
            folder = current().runs_dir / self.job.run_id
            folder.mkdir(parents=True, exist_ok=True)
            notify = self.job.notify
            self._events = Events(folder / "launcher_events.jsonl", notify.webhook_url, notify.project or self.job.run_id,
                                  self.job.store)
        self._events.emit(event, message, stage="recovery", **extra)

    def refusal(self, recoveries: int, most: int) -> tuple[int, str] | None:
        """Why not to relaunch (exit code, message), or None."""
        store = self.job.store
        if recoveries >= most:
            return EXIT_LOST, (f"the instance was lost again and {most} relaunch(es) were made (limits.max_recoveries): "
                               f"giving up; checkpoints are in {store} — launch again to resume from there")
        if self.deadline is not None and time.time() > self.deadline - MIN_RELAUNCH_S:
            return EXIT_STOPPED, f"the time limit (from the first launch) has passed: no relaunch; checkpoints are in {store}"
        budget = self.job.limits.budget_usd
        if budget and self.spent() >= budget:
            return EXIT_STOPPED, (f"the budget ${budget:g} is spent (${self.spent():.2f} over every instance of the run): "
                                  f"no relaunch; checkpoints are in {store}")
        return None

    def remaining(self) -> Any:
        """The job with what is left of the time limit and budget, so the new instance's runtime stops on time."""
        job = self.job.model_copy(deep=True)
        if self.deadline is not None:
            job.limits.time_limit = max(1.0, self.deadline - time.time())
        if self.job.limits.budget_usd:
            job.limits.budget_usd = max(1e-6, self.job.limits.budget_usd - self.spent())
        return job

    def live_offers(self) -> list | None:
        fetch = getattr(self.provider, "live_offers", None)
        if fetch is None:
            return None
        try:
            return call(fetch, what="reading the provider's offers", attempts=4, max_wait_s=10)
        except Exception as exc:  # noqa: BLE001 - without a fresh look, try the plan's offers in order
            warn(f"could not read the provider's offers now ({exc}); trying the plan's offers in order")
            return None

    def provider_for(self, offer):
        make = getattr(self.provider, "for_offer", None)
        if make is not None:
            return make(offer)
        return self.provider if offer.key == self.offer.key else None

    def resume_point(self, n: int, lost: str) -> str:
        """What the relaunch will resume from, said only as far as it is known: the store's newest step (an hf://
        store, read from here), or an error event naming the steps lost when the store has none."""
        store = self.job.store
        if not store.startswith("hf://"):
            return f"the new instance resumes from the newest checkpoint in {store}, if one is there"
        from helpers.runtime.store import open_store

        try:
            step = open_store(store).latest_step()
        except Exception as exc:  # noqa: BLE001 - cannot tell from here: the runtime there will say
            return f"the store {store} could not be read from here ({type(exc).__name__}); the new instance looks itself"
        if step is not None:
            return f"the new instance resumes from step {step} in {store}"
        seen = next((e.get("last_step") for e in reversed(self.instances()) if e.get("last_step") is not None), None)
        what = f"the {seen} steps trained on instance {lost} are" if seen is not None else f"what instance {lost} trained is"
        message = (f"no checkpoint in {store}: relaunch {n} starts at step 0 — {what} lost "
                   "(no checkpoint had reached the store; lower training.save_freq to lose less)")
        warn(f"[trainyard] {message}")
        self.emit("recovery_no_checkpoint", message, level="error", recovery=n, lost_instance=lost, steps_lost=seen)
        entry = next((e for e in self.instances() if e["id"] == lost), None)
        if entry is not None:  # `invoke status` shows it with the run; the entry's state stays what it is
            self.ledger.record(entry["provider"], lost, entry["state"], warning=message)
        return "it starts at step 0"

    # --- the relaunch ---------------------------------------------------------------------------------
    def relaunch(self, n: int, most: int, lost: str) -> int:
        offers = [(o, p) for o in relaunch_offers(self.offer, self.the_plan, self.live_offers())
                  if (p := self.provider_for(o)) is not None]
        job, spent = self.remaining(), self.spent()
        if offers:
            first = offers[0][0]
            where = ("the same offer, " if first.key == self.offer.key else "") + first.label
            more = f" (then {len(offers) - 1} other offer(s) of the plan if that one is refused)" if len(offers) > 1 else ""
            message = (f"instance {lost} was lost: relaunch {n}/{most} on {where}{more}; {self.resume_point(n, lost)} "
                       f"(spent so far ${spent:.2f})")
        else:
            message = f"instance {lost} was lost: relaunch {n}/{most}, but no offer of the plan is in stock now"
        warn(f"[trainyard] {message}")
        self.emit("recovery", message, recovery=n, lost_instance=lost, offers=[o.label for o, _ in offers[:5]],
                  spent_usd=round(spent, 4))
        tried = 0
        for offer, provider in offers:
            tried += 1
            fields = {"recovery": n, "replaces": lost, "spot": offer.spot, "gpu_count": offer.gpu_count}
            fields.update({k: v for k, v in (("gpu", offer.gpu_type_id), ("instance_type", offer.instance_type),
                                            ("location", offer.location), ("cloud", offer.cloud)) if v})
            try:
                return self.attempt(Launch(provider, offer, job, "auto", fields))
            except ProviderError as exc:
                if not getattr(exc, "nothing_left", False):
                    raise
                warn(f"relaunch on {offer.label} refused ({exc})" + ("; trying the next offer" if tried < len(offers) else ""))
        pause = min(60.0, float(getattr(self.provider, "poll_seconds", 10.0)) * 2 ** (n - 1))
        warn(f"no offer could be started for relaunch {n}/{most} ({tried} tried); waiting {pause:.0f}s")
        time.sleep(pause)
        return EXIT_LOST
