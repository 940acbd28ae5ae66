"""Top-level tasks that span backends: plan, status, cleanup, logs."""

from invoke import task

from helpers.cli.common import CONFIG_HELP, friendly, load, parse_sets


@task(iterable=["set_"], help={
    "config": CONFIG_HELP, "backend": "local, runpod, verda, slurm or chtc (default: the config's backend)",
    "json": "print one JSON object instead of tables", "offline": "use the dated price table; no network at all",
    "set_": "any key: --set resources.gpu_count=2 (repeatable)",
})
@friendly
def plan(c, config, backend=None, json=False, offline=False, set_=None):
    """What a launch would do: GPU and why, memory estimate, price, cost for the time limit, command, secrets."""
    from helpers.backends import backend as backend_module
    from helpers.planning import print_plan

    job = load(config, backend=backend, **{k.replace(".", "__"): v for k, v in parse_sets(set_).items()})
    module = backend_module(job.backend)
    the_plan = module.plan(job, offline=offline) if "offline" in module.plan.__code__.co_varnames else module.plan(job)
    print_plan(job, the_plan, as_json=json)


@task
@friendly
def status(c):
    """Every live instance Trainyard created (from the ledger), with cost so far, and the local runs."""
    import time

    from helpers.backends import local
    from helpers.console import table
    from helpers.ledger import Ledger

    rows = []
    for entry in Ledger().live():
        hours = (time.time() - entry.get("created", entry["time"])) / 3600
        price = entry.get("price_per_hour") or 0
        rows.append([entry["provider"], entry["id"], entry.get("instance_id", ""), entry.get("run_id", ""), entry["state"],
                     f"${price:.2f}/h", f"${price * hours:.2f}"])
    table("live instances", ["provider", "name", "instance id", "run", "state", "price", "cost so far"], rows)
    local.status()


@task(help={"yes": "do not ask (for scripts)", "provider": "only this provider"})
@friendly
def cleanup(c, yes=False, provider=None):
    """Find and end every instance Trainyard started that is still alive (ledger, plus name match at the provider)."""
    from helpers.cleanup import cleanup as run_cleanup

    run_cleanup(assume_yes=yes, only=provider)


@task(help={"run_id": "the run", "follow": "keep following"})
@friendly
def logs(c, run_id, follow=False):
    """A run's log, wherever it runs (local runs; remote runs through their backend)."""
    from helpers.backends import local

    local.logs(run_id, follow)
