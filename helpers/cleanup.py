"""`invoke cleanup`: end every instance Trainyard started that is still alive, on every provider we have
credentials for — the live entries of the ledger, and the instances at the provider named `ty-*` that the
ledger lost (a crash before the id was written, a deleted runs/ folder, another checkout).

Provider-generic: a backend whose machines bill names a factory `() -> provider | None` (None: no credentials)
as `cleanup` in its DESCRIPTOR (helpers/backends/base.py). The provider offers `list_instances() -> [{"id", "name", "state",
"price_per_hour"}]` (its `ty-*` instances, one API call), `end(instance_ids) -> {id: refusal or None}` (sends the
ends, without waiting), `ENDED_STATES` (states that already mean ended), and optionally `leftovers() -> [str]`
(things that still bill but are not instances, e.g. kept volumes: listed, never deleted here).

At lab scale (hundreds of instances, 100 ms per API call) the calls are what costs: one list decides, the ends go
out together (the provider batches or runs them concurrently), one more list confirms, and a ledger line without
an instance id is matched by its `ty-` name against that same list.

Note: every `ty-*` instance of the account is a candidate, including one another machine of yours is running
right now; that is why cleanup asks first (unless --yes) and lists each one.
"""

from __future__ import annotations

import sys
import time

from helpers.config import BACKENDS
from helpers.console import say, table, warn

def _cleanable() -> list[str]:
    """The backends whose machines bill until ended: each names its cleanup provider in its DESCRIPTOR."""
    from helpers.backends.base import descriptor

    return [name for name in BACKENDS if descriptor(name).cleanup is not None]


def _provider(name: str):
    from helpers.backends.base import descriptor

    return descriptor(name).cleanup()


def _confirm(count: int) -> bool:
    if not (sys.stdin and sys.stdin.isatty()):
        warn("not asking without a terminal: run `invoke cleanup --yes` to end them")
        return False
    answer = input(f"terminate these {count} instance(s)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cleanup(assume_yes: bool = False, only: str | None = None, ledger=None) -> list[dict]:
    """Find what is alive, show it, ask (unless assume_yes), terminate, mark the ledger. Returns what was ended."""
    from helpers.workspace import current

    ledger = ledger or current().ledger
    names = _cleanable()
    if only and only not in names:
        from helpers.errors import ConfigError

        raise ConfigError("--provider", f"unknown provider '{only}'", f"use one of {', '.join(names)}")
    todo: list[dict] = []
    providers = {}
    notes: list[str] = []
    left: list[str] = []  # what may still bill: providers not reached, instances not ended
    for name in [only] if only else names:
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
    """What still lives at the provider, from one list: the ledger's live entries (by instance id, else by their
    `ty-` name; those the list lacks have ended and are settled here) and the `ty-*` instances it never heard of."""
    from helpers.backends.after_launch import listed_match
    from helpers.backends.provider import call

    listed = [i for i in call(provider.list_instances, what=f"{name}: listing instances")
              if i.get("state") not in provider.ENDED_STATES]
    match = listed_match(listed)
    todo, seen = [], set()
    for entry in live:
        found = match(entry)
        if found is None:  # ended already (it ended itself, a spot kill, the console), or never created
            note = "already gone at the provider" if entry.get("instance_id") else "not found at the provider"
            ledger.record(name, entry["id"], "terminated", ended=time.time(), note=note,
                          **({"instance_id": entry["instance_id"]} if entry.get("instance_id") else {}))
            say(f"{name}: {entry['id']}" + (f" ({entry['instance_id']}) had already ended" if entry.get("instance_id")
                                             else " was never created") + "; ledger updated")
            continue
        seen.add(found["id"])
        todo.append({"provider": name, "name": entry["id"], "instance_id": found["id"], "source": "ledger",
                     "state": found.get("state") or entry["state"], "run_id": entry.get("run_id"),
                     "price_per_hour": entry.get("price_per_hour") or found.get("price_per_hour")})
    for found in listed:
        if found["id"] not in seen:
            todo.append({"provider": name, "name": found["name"], "instance_id": found["id"],
                         "source": "provider (not in the ledger)", "state": found.get("state"),
                         "price_per_hour": found.get("price_per_hour"), "run_id": None})
    return todo


def _leftovers(name: str, provider) -> list[str]:
    try:
        return [f"{name}: {line}" for line in provider.leftovers()]
    except Exception as exc:  # noqa: BLE001
        return [f"{name}: could not list leftovers ({exc})"]


CONFIRM_S = 15 * 60  # how long cleanup waits for the provider to show an instance ended (a booting one first
                     # has to become deletable: Verda refuses "Can't discontinue a provisioning instance")
POLL_S = (1, 2, 3, 5, 8, 10)  # seconds between confirming lists


def _end_all(todo: list[dict], providers: dict, ledger, left: list[str]) -> list[dict]:
    """Per provider: send every end at once, then confirm from lists (one call each round), asking again for what
    the provider refused (still booting); the ledger says `terminated` only once a list confirms. What is not
    confirmed in time is appended to `left`."""
    from helpers.backends.provider import call

    ended = []
    for name, provider in providers.items():
        items = {t["instance_id"]: t for t in todo if t["provider"] == name}
        pending, deadline, rounds = set(items), time.monotonic() + CONFIRM_S, 0
        to_send = set(pending)
        while pending:
            refused: set[str] = set()
            if to_send:
                try:
                    answers = call(provider.end, sorted(to_send), what=f"{name}: ending {len(to_send)} instance(s)")
                except Exception as exc:  # noqa: BLE001 - confirm what we can, report the rest
                    answers = {i: str(exc) for i in to_send}
                for instance_id, why in answers.items():
                    if why:
                        refused.add(instance_id)
                        if rounds == 0:
                            say(f"{name}: {items[instance_id]['name']} not ended yet ({why}); asking again")
            time.sleep(POLL_S[min(rounds, len(POLL_S) - 1)] if rounds else 0.5)
            rounds += 1
            still = {i["id"]: i for i in call(provider.list_instances, what=f"{name}: confirming")
                     if i.get("state") not in provider.ENDED_STATES}
            for instance_id in sorted(pending - set(still)):
                item = items[instance_id]
                ledger.record(name, item["name"], "terminated", instance_id=instance_id, ended=time.time(), by="cleanup")
                say(f"{name}: ended {item['name']} ({instance_id})")
                ended.append(item)
            pending &= set(still)
            if pending and time.monotonic() > deadline:
                for instance_id in sorted(pending):
                    warn(f"{name}: could not end {items[instance_id]['name']} ({instance_id}): still "
                         f"{still[instance_id].get('state')}")
                    left.append(f"{name}:{items[instance_id]['name']}")
                break
            to_send = refused & pending  # accepted ones only need time; refused ones (still booting) are asked again
    return ended
