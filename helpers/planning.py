"""What a launch will do, shown before it does it (`--dry-run`, `invoke plan`)."""

from __future__ import annotations

import json

from helpers.console import say, table
from helpers.secrets import required_secrets


def plan_document(job, backend: str, the_plan: dict) -> dict:
    """The plan as one JSON-ready object (what `invoke plan --json` prints)."""
    hours = (job.time_limit_seconds or 0) / 3600
    price = the_plan.get("price_per_hour")
    return {
        "backend": backend,
        "run_id": job.run_id,
        "gpu": the_plan.get("gpu"),
        "gpu_count": the_plan.get("gpu_count"),
        "vram_estimate_gb": the_plan.get("vram_estimate_gb"),
        "estimate": the_plan.get("estimate"),
        "price_per_hour": price,
        "spot": the_plan.get("spot", False),
        "estimated_cost_usd": round(price * hours, 2) if price is not None and hours else None,
        "why": the_plan.get("why"),
        "candidates": the_plan.get("candidates", []),
        "command": the_plan["commands"][0] if len(the_plan["commands"]) == 1 else the_plan["commands"],
        "files": the_plan.get("files", []),
        "secrets_required": sorted(required_secrets(job, backend)),
        "store": job.store,
    }


def print_plan(job, the_plan: dict, as_json: bool = False) -> dict:
    doc = plan_document(job, the_plan["backend"], the_plan)
    if as_json:
        print(json.dumps(doc, indent=2))
        return doc
    if doc["candidates"]:
        table("offers", ["gpu", "count", "price/h", "spot", "fits?", "why"],
              [[c["gpu"], c["gpu_count"], c["price_per_hour"], c["spot"], "yes" if c["fits"] else "no", c["reason"]] for c in doc["candidates"]])
    gpu = doc["gpu"]
    say(f"plan for {job.run_id} on {doc['backend']}: " + (f"{doc['gpu_count']} x {gpu['name']}" if gpu else "no GPU") + f" — {doc['why']}")
    if doc["vram_estimate_gb"]:
        say(f"  memory estimate: {doc['vram_estimate_gb']} GB per GPU ({doc.get('estimate') or ''})")
    if doc["price_per_hour"]:
        cost = f", up to ${doc['estimated_cost_usd']} for the time limit" if doc["estimated_cost_usd"] else ""
        say(f"  price: ${doc['price_per_hour']}/h{' (spot)' if doc['spot'] else ''}{cost}")
    for command in the_plan["commands"]:
        say(f"  command: {command}")
    say(f"  files: {', '.join(doc['files']) or '-'}")
    say(f"  secrets: {', '.join(doc['secrets_required']) or 'none'}; checkpoints to {doc['store']}")
    return doc
