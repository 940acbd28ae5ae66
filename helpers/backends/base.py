"""The one contract every place to run a job implements (local, runpod, verda, hfjobs, slurm, chtc), in the spirit of
SkyPilot's provisioners (a router that binds each backend's signatures before dispatch) and submitit's executors. A
backend is a module: it declares itself once (`DESCRIPTOR`) and implements these verbs, with these signatures
exactly (`backend()` binds them, `drift` says how one departs; the CLI and the top-level tasks reach a backend
only through `backend()`):

    plan(job, options=LaunchOptions()) -> Plan   what a launch would do: GPU and why, price, command, files, store
                                                 (helpers.planning.Plan; `to_json` is `invoke plan --json`)
    launch(job, plan, options) -> int            create or submit (the ledger first), ship the runtime, follow it;
                                                 the exit code (0 done, 1 failed, 3 stopped early, 4 lost, 130)
    status(handle=None) -> list[list]            a table of its runs (of one run, given its handle): its rows
    logs(handle, follow=False) -> None           the run's log
    fetch(handle, dest=None) -> Path             where the run's outputs are on this machine (copied home if remote)
    stop(handle) -> None                         end it now (a final checkpoint sync where the runtime can); idempotent

A `RunHandle` is what a run is known by after its launch: the backend, the run id and the backend's own id
(pod or instance id, SLURM or HTCondor job id) when one is meant. `find_run` is the one place that knows where to
look for it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from helpers.config import BACKENDS
from helpers.errors import ConfigError
from helpers.planning import Plan

# What `launch` returns (and the task exits with): done, failed, stopped early (time limit, budget), the machine was
# lost (a spot preemption), interrupted (Ctrl-C, SIGTERM).
EXIT_DONE, EXIT_FAILED, EXIT_STOPPED, EXIT_LOST, EXIT_INTERRUPTED = 0, 1, 3, 4, 130


@dataclass(frozen=True)
class Descriptor:
    """What the rest of Trainyard knows of a backend, declared once in its own module (`DESCRIPTOR`)."""

    name: str
    noun: str  # what one run's machine or job is called there: "pod", "instance", "job"
    cloud: bool = False  # rents machines by the hour: `--backend cloud`, the ledger, `invoke cleanup`
    vanishes: Literal["never", "if_spot_or_relaunched", "always"] = "never"  # its machine can go with its disk
    gpus: Callable[[], list] = lambda: []  # the GPUs it can ever offer (helpers.gpus.Gpu): a GPU outside is refused
    fallback_offers: Callable[[], list] = lambda: []  # the dated price table, for a plan without keys or network
    credentials: dict[str, str] = field(default_factory=dict)  # secrets the launcher needs: name -> what for
    host_credentials: Callable[[object], tuple[str, ...]] | None = None  # of those, what the job's host gets too
    cleanup: Callable[[], object | None] | None = None  # the provider `invoke cleanup` lists and ends (None: no keys)
    multinode: bool = False  # runs one job on several machines (resources.nodes > 1)
    gpu_counts: tuple[int, ...] = ()  # the GPU counts it rents, where they are fixed (RunPod); (): its offers say


def check_nodes(job, described: "Descriptor | None") -> None:
    """resources.nodes > 1 only where a job can span machines (`described` None: the cheapest cloud, none can)."""
    if job.resources.nodes > 1 and not (described and described.multinode):
        where = f"{described.name} runs a job on one machine" if described else "the clouds run a job on one machine"
        raise ConfigError("resources.nodes", f"{where} (resources.nodes is {job.resources.nodes})",
                          "multi-node runs go to SLURM (invoke slurm.submit) until cloud clusters are added; or set "
                          "resources.nodes: 1")


@dataclass(frozen=True)
class LaunchOptions:
    """How to launch, beside the job itself: what the task's flags say that is not a config key."""

    mode: str = "auto"  # the runtime's: auto (resume if a checkpoint exists), fresh, resume, resume_local
    detach: bool = False  # start it and return; the machine ends itself
    offline: bool = False  # plan from the dated price tables, no network at all
    check_hub: bool = True  # the plan checks the model and dataset on the Hub (a rehearsal has its own Hub)
    os_volume_id: str | None = None  # Verda resume_local: the OS volume to boot from (else chosen)
    config_path: str | None = None  # the config file, for backends that ship it as it is (Verda's train.remote.yaml)


@dataclass(frozen=True)
class RunHandle:
    backend: str
    run_id: str | None
    native_id: str | None = None  # the backend's id of the run's machine or job, when one is meant


def _plan(job, options: LaunchOptions = LaunchOptions()) -> Plan: ...
def _launch(job, plan: Plan, options: LaunchOptions) -> int: ...
def _status(handle: RunHandle | None = None) -> list[list]: ...
def _logs(handle: RunHandle, follow: bool = False) -> None: ...
def _fetch(handle: RunHandle, dest: str | Path | None = None) -> Path: ...
def _stop(handle: RunHandle) -> None: ...


# The contract's verbs, as the backends must define them: parameter names, kinds and defaults.
VERBS: dict[str, inspect.Signature] = {f.__name__[1:]: inspect.signature(f) for f in (_plan, _launch, _status, _logs,
                                                                                        _fetch, _stop)}


def drift(module) -> list[str]:
    """How a backend module departs from the contract: a missing verb or descriptor, or a verb whose parameters
    (names, kinds, defaults) are not the declared ones. Empty when it conforms."""
    problems = []
    described = getattr(module, "DESCRIPTOR", None)
    if not isinstance(described, Descriptor):
        problems.append("no DESCRIPTOR")
    for verb, declared in VERBS.items():
        fn = getattr(module, verb, None)
        if not callable(fn):
            problems.append(f"no {verb}()")
            continue
        have = [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
        want = [(p.name, p.kind, p.default) for p in declared.parameters.values()]
        if have != want:
            problems.append(f"{verb}{inspect.signature(fn)} is not {verb}{declared}")
    return problems


def module_of(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError("backend", f"unknown backend '{name}'", f"use one of {', '.join(BACKENDS)}")
    return f"helpers.backends.{BACKENDS[name]}"


def backend(name: str):
    """The backend module, imported on first use (the cloud SDKs are slow to import) and bound against the contract
    before anything is dispatched to it: a drifted verb fails here, not halfway through a launch."""
    module = importlib.import_module(module_of(name))
    if not getattr(module, "_contract_checked", False):
        problems = drift(module)
        if problems:
            raise TypeError(f"backend {name} ({module.__name__}) breaks the contract: {'; '.join(problems)}")
        module._contract_checked = True
    return module


def descriptor(name: str) -> Descriptor:
    return backend(name).DESCRIPTOR


def clouds() -> tuple[str, ...]:
    """The backends that rent machines by the hour, in declaration order."""
    return tuple(name for name in BACKENDS if descriptor(name).cloud)


def host_secrets(job, backend: Descriptor) -> dict[str, str]:
    """The secrets the job's host gets (checked: one line for the first missing one), from the workspace."""
    from helpers.secrets import check_secrets
    from helpers.workspace import current

    return check_secrets(job, backend, current().secrets)


def find_run(run_id: str) -> RunHandle:
    """Where a run lives: a cloud instance in the ledger (the newest), a SLURM job recorded in runs/<run_id>/, an
    HTCondor job's run folder, else this machine."""
    from helpers.workspace import current

    runs = current().runs_dir
    mine = current().ledger.of_run(run_id)
    if mine:  # every instance of the run is the handle's (after relaunches there are several)
        return RunHandle(mine[-1]["provider"], run_id)
    if (runs / run_id / "slurm.json").is_file():
        return RunHandle("slurm", run_id)
    if sorted(runs.glob(f"chtc/*/{run_id}/train.sub")):
        return RunHandle("chtc", run_id)  # its HTCondor job id is in the run folder (chtc: job_id_of)
    return RunHandle("local", run_id)
