"""The one lifecycle of every cloud instance: rent one, run the job on it, bring the results home, end it.

    code = run_on_instance(provider, job, offer, host_secrets, HostSpec(remote_dir=..., ssh_key=...), mode="auto")

The provider is a helpers.backends.provider.Provider (and whichever capability mixins it declares). The host side
(HostSpec): the run folder staged by helpers.bundle.stage_run goes to `remote_dir` over SSH (helpers.remote), the
runtime starts detached (`<python> trainyard_runtime.pyz job.json --mode <mode> [--skip-setup]`), its log is streamed
with the progress bar and the cost so far, and on `done` the job's output_dir comes home to runs/<run_id>/outputs
(plus runtime.log and events.jsonl to runs/<run_id>/). A `Flow` subclass changes how the job is staged and run
(RunPod's start command: no SSH); ending stays here.

Money rules, in the order they happen:
  * the ledger line (`creating`, key = the instance name) is written and fsync'ed BEFORE the create call, and the
    provider's id is added once known; a crash anywhere after leaves the line, so `invoke cleanup` finds it;
  * a create that failed with a Transient error is looked for by name (`FindsByName`) before it is tried again, so a
    retry never rents a second machine; one that exists despite a final error is ended;
  * any exception after create ends the instance; Ctrl-C asks "detach or terminate?" (terminate when stdin is no
    TTY); SIGTERM terminates; while terminating, Ctrl-C is ignored;
  * the ledger says `terminated` only after the provider confirmed it;
  * the launcher's deadline (JobConfig.launcher_deadline: time limit + limits.grace_s) ends the instance if the run
    goes on past it;
  * the job document's `machine` tells the runtime how to end the instance itself (the dead-man, for a closed
    laptop or a detached run). While this flow follows the run it touches a heartbeat file on the host every
    HEARTBEAT_EVERY_S (env TRAINYARD_HEARTBEAT_S, default 10 s; stale after 6 beats); the runtime's ender waits
    while that heartbeat is fresh (the orchestrator is still fetching outputs and will end the machine), at most
    `orchestrator_grace_s`, then ends the machine itself (see helpers/runtime/machine.py `wait_for_orchestrator`).

Every launch runs under the recovery supervisor (helpers/backends/recovery.py).
"""

from __future__ import annotations

import os
import posixpath
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from helpers.backends.base import EXIT_DONE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOST, EXIT_STOPPED
from helpers.backends.provider import (
    GONE, PENDING, RUNNING, ERROR, STOPPED, FindsByName, InstanceLost, Stops, Transient, call, instance_name,
)
from helpers.backends.recovery import Launch, supervise
from helpers.console import say, warn
from helpers.errors import ProviderError, TrainyardError
from helpers.workspace import current

HEARTBEAT_NAME = ".trainyard-orchestrator"


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


HEARTBEAT_EVERY_S = _env_seconds("TRAINYARD_HEARTBEAT_S", 10.0)
HEARTBEAT_STALE_S = max(6 * HEARTBEAT_EVERY_S, 3.0)  # six missed beats: the orchestrator is gone
# SSH gone while the provider says running: reconnect for 5, 10, 20, 20 ... s, asking the provider in between;
# after RECONNECTS failures in a row (about 2 min) the instance is "unreachable"
RECONNECTS = 7
RECONNECT_WAIT_S = _env_seconds("TRAINYARD_RECONNECT_WAIT_S", 20.0)  # the longest of them (tests: shorter)
ORCHESTRATOR_GRACE_S = 900.0
COST_EVERY_S = _env_seconds("TRAINYARD_COST_EVERY_S", 60.0)  # a "cost so far" line this often while following
# Non-secret settings of the launcher that the host needs too (a private Hub endpoint, ...): copied into the
# host's .env when set here.
HOST_ENV_PASSTHROUGH = ("HF_ENDPOINT", "HF_HUB_DISABLE_XET", "HF_HUB_ENABLE_HF_TRANSFER", "RUNPOD_REST_URL")


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
    run_dir, provider = flow_class.stage(provider, job, machine, host_env, spec, mode)
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
        say(f"Ctrl-C: terminating the {provider.noun} ..." if flow.started else
            f"Ctrl-C before the job started: terminating the {provider.noun} ...")
        flow.end(keep_disk=True)
        return EXIT_INTERRUPTED
    except _Terminated:
        say(f"SIGTERM: terminating the {provider.noun} ...")
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
    find = provider.find if isinstance(provider, FindsByName) else None
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
    def stage(provider, job, machine: dict, host_env: dict[str, str], spec: HostSpec, mode: str):
        """(the run folder the host receives (its .env, mode 0600, holds `host_env`), the provider to create with)."""
        from helpers.bundle import stage_run

        return stage_run(job, machine, host_env, provider.price_per_hour), provider

    def __init__(self, provider, job, spec: HostSpec, ledger, name: str, instance_id: str, created: float, run_dir: Path):
        self.provider, self.job, self.spec, self.ledger = provider, job, spec, ledger
        self.name, self.instance_id, self.created, self.run_dir = name, instance_id, created, run_dir
        self.remote = None
        self.heartbeat: Heartbeat | None = None
        self.started = False  # the runtime runs on the host: only then can it end the machine itself
        self.ended = False
        self.last_step: int | None = None  # the newest training step the launcher saw in the log
        self.sync_alarm: str | None = None  # the runtime's sync_failed, as the ledger last recorded it

    # --- the steps ----------------------------------------------------------------------------------
    def run(self, mode: str, detach: bool) -> int:
        host, port = self.wait_for_ssh()
        say(f"instance running at {host}:{port}; connecting over SSH ...")
        self.remote = self.connect(host, port)
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
        poll = float(self.provider.poll_seconds)
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

    def connect(self, host: str, port: int):
        """SSH to the new instance for `ssh_timeout_s` at most (a broken image or a dead sshd) and never past the
        launcher's deadline; a machine that does not answer is then ended (by the lifecycle) in one line."""
        from helpers.remote import Remote, RemoteError

        wait = self.spec.ssh_timeout_s
        if self.spec.deadline_epoch:
            wait = max(1.0, min(wait, self.spec.deadline_epoch - time.time()))
        try:
            return Remote(host, port, self.spec.ssh_user, self.spec.ssh_key).connect(wait)
        except RemoteError as exc:
            why = ("the time limit passed" if self.spec.deadline_epoch and time.time() >= self.spec.deadline_epoch
                   else f"no answer in {wait:.0f}s (ssh_timeout_s)")
            raise ProviderError(f"instance {self.name} never answered on SSH at {host}:{port} ({why}): ending it "
                                f"— {str(exc).split(': ', 1)[-1][:200]}") from None

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
            self.note_sync_alarm(self.remote.last_status or {})
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

    def note_sync_alarm(self, status: dict) -> None:
        """A checkpoint that did not reach the store goes into the ledger with the run (`invoke status` shows it), and
        leaves it once a later one does."""
        alarm = status.get("sync_failed")
        if alarm == self.sync_alarm:
            return
        self.sync_alarm = alarm
        if alarm:
            warn(f"SYNC FAILED: {alarm}")
        self.ledger.record(self.provider.name, self.name, "running", instance_id=self.instance_id,
                           warning=f"sync_failed: {alarm}" if alarm else "")

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
            if stop_only and isinstance(self.provider, Stops):
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


class PolledFlow(Flow):
    """A job that runs by itself once its machine boots (the machine's start command runs the runtime): no SSH; the
    launcher polls the provider until the machine ends, with the deadline backstop, and a stopped machine is lost
    (`preempted`), ended (limits.terminate_on_stop) or kept. RunPod's start_command mode is one."""

    def run(self, mode: str, detach: bool) -> int:
        self.started = True  # the start command runs the job: from now on the pod can end itself
        if detach:
            self.detach()
            return EXIT_DONE
        return self.watch()

    def watch(self) -> int:
        """One status call per poll interval (429/5xx: backoff in `call`) until the machine ends."""
        job, provider, pod_id, noun = self.job, self.provider, self.instance_id, self.provider.noun
        last_state, last_cost = None, time.monotonic()
        while True:
            state, _, _ = call(provider.get, pod_id, what=f"{noun} status")
            if state != last_state:
                say(f"{noun} {pod_id}: {self.status_text(state)} ({cost_line(provider.price_per_hour, self.created)})")
                last_state = state
            if state == GONE:  # the runtime ended its machine (seed 000: !CMD STOP), or someone else did
                self.ledger.record(provider.name, self.name, "terminated", instance_id=pod_id, ended=time.time(),
                                   by=f"the {noun} itself")
                self.ended = True
                say(f"{noun} {pod_id} ended itself (or was terminated elsewhere); checkpoints are in {job.store} "
                    f"({cost_line(provider.price_per_hour, self.created)})")
                return EXIT_DONE
            if state == STOPPED:
                return self.stopped()
            if state == ERROR:
                warn(f"{noun} {pod_id} is {self.status_text(state)}: terminating it")
                self.end(keep_disk=True)
                return EXIT_FAILED
            if self.spec.deadline_epoch and time.time() > self.spec.deadline_epoch:
                verb = "terminating" if job.limits.terminate_on_stop else "stopping"
                warn(f"time limit ({job.time_limit_seconds:.0f}s + {job.grace_seconds:.0f}s grace) passed and the {noun} "
                     f"still runs: {verb} it (launcher backstop)")
                self.end(keep_disk=True, stop_only=not job.limits.terminate_on_stop)
                return EXIT_STOPPED
            if time.monotonic() - last_cost >= COST_EVERY_S:
                last_cost = time.monotonic()
                say(f"[trainyard] {noun} {pod_id} {state}; {cost_line(provider.price_per_hour, self.created)}")
                if (code := self.check_in()) is not None:
                    return code
            time.sleep(provider.poll_seconds)

    def stopped(self) -> int:
        """The machine stopped: a spot interruption (lost), or it stopped itself (terminated, or kept with
        --no-terminate)."""
        job, pod_id, noun = self.job, self.instance_id, self.provider.noun
        if self.preempted():
            warn(f"spot {noun} {pod_id} was interrupted; checkpoints synced so far are in {job.store}. "
                 "Launch again to resume from there.")
            self.end(keep_disk=True)
            return EXIT_LOST
        if job.limits.terminate_on_stop:  # seed 000 --terminate
            say(f"{noun} {pod_id} stopped itself: terminating it (limits.terminate_on_stop)")
            self.end(keep_disk=True)
            return EXIT_DONE
        self.ledger.record(self.provider.name, self.name, "stopped", instance_id=pod_id)
        self.ended = True
        warn(f"{noun} {pod_id} is stopped and kept (--no-terminate): its volume bills until "
             f"`invoke {self.provider.name}.stop --run-id {job.run_id}`")
        return EXIT_DONE

    def detach(self) -> None:
        self.ended = True  # on purpose: it keeps running
        ends = "ends itself when the job ends" if self.job.limits.end_when_done else \
            "keeps running after the job (limits.end_when_done is false)"
        name = self.provider.name
        say(f"detached: {self.provider.noun} {self.instance_id} runs at ${self.provider.price_per_hour:.2f}/h and {ends}. "
            f"Status: invoke {name}.status; end now: invoke {name}.stop --run-id {self.job.run_id}")

    def status_text(self, state: str) -> str:
        """The machine's state as the provider words it (the lifecycle's state by default)."""
        return state

    def check_in(self) -> int | None:
        """Once per cost line: anything the machine says that ends the watch (an exit code), else None."""
        return None

    def preempted(self) -> bool:
        """Whether the machine that stopped was taken away (a spot interruption): lost, to be relaunched."""
        return False
