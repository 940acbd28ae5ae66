"""Places to run a job. Each module implements the same verbs, in the spirit of SkyPilot's provisioners:

    plan(job) -> Plan            what would happen: machine, price, command, files, secrets (no side effects)
    launch(job, ...) -> handle   create/submit (recorded in the ledger first), ship the runtime, start it
    wait / logs / fetch          follow it, stream its log, bring outputs home
    terminate(...)               end it; idempotent

Backends are imported only by the task that uses them (SDK imports are slow).
"""

import importlib

MODULES = {
    "local": "helpers.backends.local",
    "runpod": "helpers.backends.runpod_pods",
    "verda": "helpers.backends.verda_instances",
    "slurm": "helpers.backends.slurm_jobs",
    "chtc": "helpers.backends.chtc_condor",
}


def backend(name: str):
    return importlib.import_module(MODULES[name])
