"""Top-level tasks that span backends: plan, status, cleanup, logs."""

from invoke import task

from helpers.cli.common import CONFIG_HELP, friendly, load, parse_sets


@task(iterable=["set_"], help={
    "config": CONFIG_HELP, "backend": "local, runpod, verda, hfjobs, slurm, chtc, or cloud: the cheapest of the clouds (default: the config's backend)",
    "json": "print one JSON object instead of tables", "offline": "use the dated price table; no network at all",
    "set_": "any key: --set resources.gpu_count=2 (repeatable)", "env_file": "secrets file (default .env)",
})
@friendly
def plan(c, config=None, backend=None, json=False, offline=False, set_=None, env_file=None):
    """What a launch would do: GPU and why, memory estimate, price, cost for the time limit, command, secrets.

    Nothing is created. A job that cannot start (gated model, GPU the backend lacks, nothing fits) exits 2
    with one line saying what to change."""
    import sys

    from helpers.console import console
    from helpers.errors import ConfigError
    from helpers.backend_choice import plan_for
    from helpers.backends.base import descriptor
    from helpers.planning import print_plan
    from helpers.secrets import required_secrets
    from helpers.workspace import current

    job = load(config, backend=backend, **{k.replace(".", "__"): v for k, v in parse_sets(set_).items()})
    secrets = current().secrets  # no network; HF_TOKEN for the Hub check
    out = console()
    saved = out.file
    if json:  # stdout carries exactly one JSON object: whatever planning says goes to stderr
        out.file = sys.stderr
    try:
        the_plan = plan_for(job, job.backend, offline=offline, token=secrets.get("HF_TOKEN"))
    except ConfigError as exc:
        raise (exc if exc.source or not config else exc.with_source(config)) from None
    finally:
        out.file = saved
    chosen = the_plan.backend  # for --backend cloud: the winner
    the_plan.secrets_missing = sorted(n for n in required_secrets(job, descriptor(chosen)) if not secrets.get(n))
    print_plan(job, the_plan, as_json=json)


@task(iterable=["set_"], help={
    "config": CONFIG_HELP, "backend": "runpod, verda, or cloud: the cheapest of the clouds you have keys for "
                                      "(default: the config's backend)",
    "dry_run": "print the plan and the winner only; nothing is created", "offline": "with --dry-run: dated prices",
    "set_": "any key: --set resources.gpu_count=2 (repeatable)", "env_file": "secrets file (default .env)",
})
@friendly
def train(c, config=None, backend=None, dry_run=False, offline=False, set_=None, env_file=None):
    """Launch on a cloud: with `--backend cloud` (or `backend: cloud`), the cheapest fitting offer over every cloud
    backend with credentials here, through that backend's own launch (`invoke <backend>.train`)."""
    from helpers.backends.base import LaunchOptions, clouds
    from helpers.cli.common import launch
    from helpers.console import say
    from helpers.errors import ConfigError
    from helpers.backend_choice import plan_clouds
    from helpers.planning import print_cloud_table

    job = load(config, backend=backend, **{k.replace(".", "__"): v for k, v in parse_sets(set_).items()})
    name = job.backend
    if name == "cloud":
        if offline and not dry_run:
            raise ConfigError("--offline", "a launch needs live offers", "drop --offline, or add --dry-run")
        ranked = plan_clouds(job, offline=offline)
        print_cloud_table(ranked)
        name = ranked.backend
        say(f"launching on {name} (invoke {name}.train)")
    elif name not in clouds():
        raise ConfigError("backend", f"'{name}' is not a cloud backend", f"use invoke {name}.train, or --backend cloud")
    job = job.model_copy(update={"backend": name})
    code = launch(name, job, LaunchOptions(config_path=config), dry_run)
    if code:
        from invoke import Exit

        raise Exit(code=code)


RECENT_RUNS = 20  # runs `invoke status` shows without --all
LIVE_ROWS = 50  # live instances it lists without --all (the rest: counted, with their price per hour)


@task(help={"all": "every run in the ledger's history, not only the newest", "env_file": "secrets file (default .env)"})
@friendly
def status(c, all=False, env_file=None):
    """Live instances, the newest runs on rented machines (instances, relaunches, spend so far; --all: every run),
    and the local runs. A long ledger is compacted first (ended instances folded into its history)."""
    import time

    from helpers.backends.base import backend
    from helpers.console import say, table
    from helpers.ledger import LIVE_STATES, spend_of
    from helpers.workspace import current

    now = time.time()
    ledger = current().ledger
    ledger.maybe_compact()
    entries = sorted(ledger.entries().values(), key=lambda e: e.get("created") or e["time"])
    runs: dict[tuple[str, str], list[dict]] = {}
    for entry in entries:
        runs.setdefault((entry.get("run_id") or "?", entry["provider"]), []).append(entry)
    newest_first = sorted(runs.items(), key=lambda item: -max(e["time"] for e in item[1]))
    shown = newest_first if all else newest_first[:RECENT_RUNS]
    rows = []
    for (run_id, provider), mine in shown:
        live = [e for e in mine if e["state"] in LIVE_STATES]
        newest = mine[-1]
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(mine[0].get("created") or mine[0]["time"]))
        warning = next((e["warning"] for e in reversed(mine) if e.get("warning")), "")
        rows.append([run_id, provider, started, f"{len(live)} live / {len(mine)}", sum(1 for e in mine if e.get("recovery")),
                     newest["state"], f"${sum(spend_of(e, now) for e in mine):.2f}", warning])
    table("runs, newest first (from the ledger; spend = price x time of every instance of the run)",
          ["run", "provider", "started", "instances", "relaunches", "newest instance", "spend so far", "warning"], rows)
    if len(newest_first) > len(shown):
        say(f"  {len(newest_first) - len(shown)} older runs, ${sum(spend_of(e, now) for _, m in newest_first[len(shown):] for e in m):.2f} "
            "spent: `invoke status --all` lists them")
    live = sorted((e for e in entries if e["state"] in LIVE_STATES), key=lambda e: -e["time"])
    listed = live if all else live[:LIVE_ROWS]
    live_rows = [[e["provider"], e["id"], e.get("instance_id", ""), e.get("run_id", ""), e["state"],
                  f"${e.get('price_per_hour') or 0:.2f}/h", f"${spend_of(e, now):.2f}"] for e in listed]
    table("live instances, newest first", ["provider", "name", "instance id", "run", "state", "price", "cost so far"],
          live_rows)
    if len(live) > len(listed):
        rest = live[len(listed):]
        say(f"  {len(rest)} more live instances, ${sum(e.get('price_per_hour') or 0 for e in rest):.2f}/h together: "
            "`invoke status --all` lists them (`invoke cleanup` ends what should not run)")
    backend("local").status()


@task(help={"yes": "do not ask (for scripts)", "provider": "only this provider", "env_file": "secrets file (default .env)"})
@friendly
def cleanup(c, yes=False, provider=None, env_file=None):
    """Find and end every instance Trainyard started that is still alive (ledger, plus name match at the provider)."""
    from helpers.cleanup import cleanup as run_cleanup

    run_cleanup(assume_yes=yes, only=provider)


@task(help={"run_id": "the run", "follow": "keep following", "env_file": "secrets file (default .env)"})
@friendly
def logs(c, run_id, follow=False, env_file=None):
    """A run's log, wherever it runs: a pod or instance from the ledger, a SLURM job, or here."""
    from helpers.backends.base import backend, find_run

    handle = find_run(run_id)
    backend(handle.backend).logs(handle, follow)


@task(help={"run_id": "the run", "env_file": "secrets file (default .env)"})
@friendly
def stop(c, run_id, env_file=None):
    """End a run now, wherever it runs (its instances, its SLURM or HTCondor job, or the local runtime)."""
    from helpers.backends.base import backend, find_run

    handle = find_run(run_id)
    backend(handle.backend).stop(handle)


@task(help={"run_id": "the run", "dest": "local folder (default: the backend's)", "env_file": "secrets file (default .env)"})
@friendly
def fetch(c, run_id, dest=None, env_file=None):
    """A run's outputs on this machine, wherever it ran (copied home from a pod or instance)."""
    from helpers.backends.base import backend, find_run

    handle = find_run(run_id)
    backend(handle.backend).fetch(handle, dest)
