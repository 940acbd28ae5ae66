"""The one contract every place to run a job implements (local, runpod, verda, hfjobs, slurm, chtc), in the spirit of
SkyPilot's provisioners and submitit's executors. A backend is a module (a module satisfies a Protocol, PEP 544);
the CLI and the top-level tasks reach it only through these verbs:

    plan(job, offline=False) -> dict        what a launch would do: GPU and why, price, command, files, store
    launch(job, host_secrets, mode, ...)    create or submit (the ledger first), ship the runtime, follow it;
                                            returns the exit code (0 done, 1 failed, 3 stopped early, 4 lost, 130)
    status(handle=None)                     a table of its runs (of one run, given its handle)
    logs(handle, follow=False)              the run's log
    fetch(handle, dest=None) -> Path        where the run's outputs are on this machine (copied home if remote)
    stop(handle)                            end it now (a final checkpoint sync where the runtime can); idempotent

A `RunHandle` is what a run is known by after its launch: the backend, the run id and the backend's own id
(pod or instance id, SLURM or HTCondor job id). `find_run` is the one place that knows where to look for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

MODULES = {
    "local": "helpers.backends.local",
    "runpod": "helpers.backends.runpod_pods",
    "verda": "helpers.backends.verda_instances",
    "slurm": "helpers.backends.slurm_jobs",
    "chtc": "helpers.backends.chtc_condor",
    "hfjobs": "helpers.backends.hf_jobs",
}
# The cloud backends: `--backend cloud` plans over every one of these the user has credentials for, and
# `invoke train` launches the winner through its own `helpers.cli.<name>.train_job`. A cloud backend added later
# joins here (and names its credentials in helpers.secrets.BACKEND_SECRETS).
CLOUDS = ("runpod", "verda", "hfjobs")


@dataclass(frozen=True)
class RunHandle:
    backend: str
    run_id: str | None
    native_id: str | None = None  # the backend's id of the run's machine or job, when one is meant


@runtime_checkable
class Backend(Protocol):
    def plan(self, job, offline: bool = False) -> dict: ...

    def launch(self, job, host_secrets: dict[str, str], mode: str = "auto") -> int: ...

    def status(self, handle: RunHandle | None = None) -> object: ...

    def logs(self, handle: RunHandle, follow: bool = False) -> object: ...

    def fetch(self, handle: RunHandle, dest: str | Path | None = None) -> Path: ...

    def stop(self, handle: RunHandle) -> object: ...


def backend(name: str) -> Backend:
    """The backend module (imported on first use: the cloud SDKs are slow to import)."""
    return importlib.import_module(MODULES[name])


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
    condor = sorted(runs.glob(f"chtc/*/{run_id}/train.sub"))
    if condor:
        return RunHandle("chtc", run_id)
    return RunHandle("local", run_id)
