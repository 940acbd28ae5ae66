"""Which backend a job runs on, and its plan: `invoke plan` (any backend's own plan, with the estimate and the Hub
check where the backend chose no offer) and `--backend cloud` (every cloud backend with credentials here planned,
one table of what fits, the cheapest wins). Above the backends: it calls their plans through the contract."""

from __future__ import annotations

from dataclasses import replace

from helpers.backends.base import LaunchOptions, backend as backend_of, check_nodes, clouds, descriptor
from helpers.errors import ConfigError
from helpers.planning import Plan, check_hub, check_offered, hf_token, with_estimate
from helpers.workspace import current


def plan_for(job, backend: str, offline: bool = False, token: str | None = None) -> Plan:
    """The plan `invoke plan` prints: the backend's own `plan(job, offline=...)` (live prices unless offline);
    for "cloud", the cheapest over every cloud backend (`plan_clouds`)."""
    check_nodes(job, None if backend == "cloud" else descriptor(backend))
    if backend == "cloud":
        return plan_clouds(job, offline=offline)
    offered_warnings = check_offered(job, descriptor(backend))  # a GPU the backend never has: refused here
    the_plan = backend_of(backend).plan(job, LaunchOptions(offline=offline))
    the_plan.warnings += [w for w in offered_warnings if w not in the_plan.warnings]
    if the_plan.estimate is None:  # e.g. the local backend: add the estimate and check this machine
        the_plan = with_estimate(job, the_plan, token=token, offline=offline)
    elif the_plan.hub is None:  # a backend plan without the Hub check: `invoke plan` still does it
        hub = check_hub(job, token if token is not None or offline else hf_token(), offline)
        the_plan = replace(the_plan, hub={"status": hub.status, "checked": hub.checked},
                           warnings=the_plan.warnings + hub.warnings)
    return the_plan


def usable_clouds() -> tuple[list[str], str | None]:
    """The cloud backends with credentials here; all of them (and a note) when none has any."""
    names = clouds()
    secrets = current().secrets
    keyed = [name for name in names if all(secrets.get(k) for k in descriptor(name).credentials)]
    if keyed:
        return keyed, None
    return list(names), (f"no credentials for any cloud ({', '.join(names)}): ranked from every one; a launch "
                          "needs the winner's key in .env")


def plan_clouds(job, offline: bool = False) -> Plan:
    """SkyPilot's optimizer for these clouds: each cloud backend's own plan (live offers, or its dated table
    offline), one ranked table of what fits, by price for the time limit; the winner's plan is the plan. A cloud
    whose plan fails (nothing fits there, its API refused) is listed with why."""
    names, note = usable_clouds()
    plans: dict[str, Plan] = {}
    refused: dict[str, str] = {}
    for name in names:
        try:
            plans[name] = plan_for(job.model_copy(update={"backend": name}), name, offline=offline)
        except ConfigError as exc:
            refused[name] = str(exc)
    if not plans:
        first = next(iter(refused.values()))
        raise ConfigError("resources", f"no cloud can run it: {'; '.join(f'{n}: {why}' for n, why in refused.items())}"
                          if len(refused) > 1 else first)
    hours = (job.time_limit_seconds or 0) / 3600
    rows = []
    for name, p in plans.items():
        for c in p.candidates:
            if c["fits"]:
                rows.append({**c, "backend": name, "chosen": False,
                             "cost_for_limit": round(c["price_per_hour"] * hours, 2) if hours else None})
    rows.sort(key=lambda r: (r["price_per_hour"], r["spot"], r["backend"]))
    winner = min(plans, key=lambda n: (plans[n].price_per_hour, n))
    best = plans[winner]
    for r in rows:
        if r["backend"] == winner and r["gpu_id"] == best.gpu["id"] and r["price_per_hour"] == best.price_per_hour \
                and r["spot"] == best.spot:
            r["chosen"] = True
            break
    others = [n for n in plans if n != winner]
    why = (f"{winner}: the cheapest of {len(rows)} fitting offers on {', '.join(plans)}" +
           (" ($%.2f/h vs %s)" % (best.price_per_hour, ", ".join("%s $%.2f/h" % (n, plans[n].price_per_hour) for n in others))
            if others else ""))
    warnings = best.warnings + ([note] if note else []) + [f"{n} left out: {why_not}" for n, why_not in refused.items()]
    return replace(best, cloud_why=why, cloud_rows=rows, clouds=list(plans), warnings=warnings)
