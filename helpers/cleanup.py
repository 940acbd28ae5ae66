"""`invoke cleanup`: end every instance Trainyard started that is still alive, on every provider we have
credentials for — the live entries of the ledger, and the instances at the provider named `ty-*` that the
ledger lost (a crash before the id was written, a deleted runs/ folder, another checkout).

Provider-generic: PROVIDERS maps a ledger provider name to "module:function", a factory
`() -> provider | None` (None: no credentials). The provider has the instance_flow interface
(helpers/backends/instance_flow.py): `get(instance_id)`, `terminate(instance_id, keep_disk=True) -> str | None`,
`find(name)`, `list_instances() -> [{"id", "name", "state", "price_per_hour"}]`, and optionally `leftovers() -> [str]`
(things that still bill but are not instances, e.g. kept volumes: listed, never deleted here).
A provider adds itself with one line below (or `register(...)`).

Note: every `ty-*` instance of the account is a candidate, including one another machine of yours is running
right now; that is why cleanup asks first (unless --yes) and lists each one.
"""

from __future__ import annotations

import importlib
import sys
import time

from helpers.backends.instance_flow import GONE
from helpers.console import say, table, warn

PROVIDERS: dict[str, str] = {
    "verda": "helpers.backends.verda_instances:cleanup_provider",
    "runpod": "helpers.backends.runpod_pods:cleanup_provider",
}


def _provider(name: str):
    module, _, function = PROVIDERS[name].partition(":")
    return getattr(importlib.import_module(module), function)()


def _confirm(count: int) -> bool:
    if not (sys.stdin and sys.stdin.isatty()):
        warn("not asking without a terminal: run `invoke cleanup --yes` to end them")
        return False
    answer = input(f"terminate these {count} instance(s)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cleanup(assume_yes: bool = False, only: str | None = None, ledger=None) -> list[dict]:
    """Find what is alive, show it, ask (unless assume_yes), terminate, mark the ledger. Returns what was ended."""
    from helpers.ledger import Ledger

    ledger = ledger or Ledger()
    if only and only not in PROVIDERS:
        from helpers.errors import ConfigError

        raise ConfigError("--provider", f"unknown provider '{only}'", f"use one of {', '.join(PROVIDERS)}")
    todo: list[dict] = []
    providers = {}
    notes: list[str] = []
    left: list[str] = []  # what may still bill: providers not reached, instances not ended
    for name in [only] if only else list(PROVIDERS):
        live = ledger.live(name)
        try:
            provider = _provider(name)
        except Exception as exc:  # noqa: BLE001 - one provider down must not stop the others
            warn(f"{name}: cannot reach the provider ({exc}); {len(live)} ledger entries left for later")
            left.append(f"{name} (not reachable)")
            continue
        if provider is None:
            if live:
                warn(f"{name}: no credentials; {len(live)} live ledger entries not checked")
            continue
        providers[name] = provider
        todo += _alive(name, provider, live, ledger)
        notes += _leftovers(name, provider)
    if not todo:
        say("nothing to clean up: no live instance found")
    else:
        table("instances to end", ["provider", "name", "instance id", "found in", "state", "price/h"],
              [[t["provider"], t["name"], t["instance_id"] or "(never created)", t["source"], t["state"],
                t["price_per_hour"] if t["price_per_hour"] is not None else "?"] for t in todo])
    ended = _end_all(todo, providers, ledger, left) if todo and (assume_yes or _confirm(len(todo))) else []
    for line in notes:
        say(line)
    if left:
        from helpers.errors import ProviderError

        raise ProviderError(f"cleanup incomplete, may still bill: {', '.join(left)} — run `invoke cleanup` again later")
    return ended


def _alive(name: str, provider, live: list[dict], ledger) -> list[dict]:
    """What still lives at the provider: the ledger's live entries (those already gone are settled here) and the
    `ty-*` instances the ledger never heard of."""
    from helpers.backends.instance_flow import call

    todo, seen = [], set()
    for entry in live:
        instance_id = entry.get("instance_id")
        if not instance_id and hasattr(provider, "find"):
            instance_id = call(provider.find, entry["id"], what=f"{name}: looking for {entry['id']}")
        if instance_id and call(provider.get, instance_id, what=f"{name}: status of {entry['id']}")[0] == GONE:
            # ended already (it ended itself, a spot kill, the console): only the ledger needs to know
            ledger.record(name, entry["id"], "terminated", instance_id=instance_id, ended=time.time(),
                          note="already gone at the provider")
            say(f"{name}: {entry['id']} ({instance_id}) had already ended; ledger updated")
            seen.add(instance_id)
            continue
        todo.append({"provider": name, "name": entry["id"], "instance_id": instance_id, "source": "ledger",
                     "state": entry["state"], "price_per_hour": entry.get("price_per_hour"), "run_id": entry.get("run_id")})
        if instance_id:
            seen.add(instance_id)
    if hasattr(provider, "list_instances"):
        for found in call(provider.list_instances, what=f"{name}: listing instances"):
            if found["id"] not in seen:
                todo.append({"provider": name, "name": found["name"], "instance_id": found["id"],
                             "source": "provider (not in the ledger)", "state": found.get("state"),
                             "price_per_hour": found.get("price_per_hour"), "run_id": None})
    return todo


def _leftovers(name: str, provider) -> list[str]:
    if not hasattr(provider, "leftovers"):
        return []
    try:
        return [f"{name}: {line}" for line in provider.leftovers()]
    except Exception as exc:  # noqa: BLE001
        return [f"{name}: could not list leftovers ({exc})"]


def _end_all(todo: list[dict], providers: dict, ledger, left: list[str]) -> list[dict]:
    """End each one; the ledger says `terminated` only once the provider confirmed. Appends what failed to `left`."""
    from helpers.backends.instance_flow import call

    ended = []
    for item in todo:
        provider = providers[item["provider"]]
        if not item["instance_id"]:  # the create never happened (or is long gone)
            ledger.record(item["provider"], item["name"], "terminated", note="not found at the provider",
                          ended=time.time())
            continue
        try:
            note = call(provider.terminate, item["instance_id"], what=f"terminating {item['name']}")
        except Exception as exc:  # noqa: BLE001 - go on with the others, say which one is left
            warn(f"{item['provider']}: could not end {item['name']} ({item['instance_id']}): {exc}")
            left.append(f"{item['provider']}:{item['name']}")
            continue
        ledger.record(item["provider"], item["name"], "terminated", instance_id=item["instance_id"],
                      ended=time.time(), by="cleanup")
        say(f"{item['provider']}: ended {item['name']} ({item['instance_id']}). {note or ''}")
        ended.append(item)
    return ended
