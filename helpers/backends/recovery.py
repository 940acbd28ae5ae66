"""The recovery supervisor: ONE for every cloud backend (the SSH flow and RunPod's start command alike).

With `recover` (the CLI's `--recover`, on by default for spot) a run whose instance is lost — a spot preemption
(RunPod EXITED/interrupted, Verda `discontinued`), SSH gone and the provider saying the instance stopped, or an
instance that stays unreachable — is relaunched: on the same offer if it is in stock, else on the next-cheapest
offer of the plan that fits (`relaunch_offers`, with a provider that `Relaunches`), in mode `auto`, so the runtime
resumes from the newest complete checkpoint in the store. Bounded: at most `limits.max_recoveries` relaunches; the
time limit counts from the first launch (a relaunch gets what is left) and `limits.budget_usd` is the spend of every
instance of the run (from the ledger). Each relaunch is a ledger entry (`recovery: n`, `replaces: <lost instance>`)
and a webhook event (`recovery`, the runtime's payload, from helpers.runtime.events.Events; also in
runs/<run_id>/launcher_events.jsonl). A detached run is not supervised (nobody is there to relaunch it); its
instance still ends itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from helpers.backends.base import EXIT_LOST, EXIT_STOPPED
from helpers.backends.provider import Relaunches, call
from helpers.console import warn
from helpers.errors import ProviderError
from helpers.workspace import current

MIN_RELAUNCH_S = 5.0  # less than this left of the time limit: no relaunch


@dataclass
class Launch:
    """One launch of a run, as `supervise` hands it to the backend's attempt function."""

    provider: Any
    offer: Any
    job: Any  # the job with what is left of the time limit and budget (a copy, for a relaunch)
    mode: str
    ledger_fields: dict[str, Any] = field(default_factory=dict)  # for the new instance's ledger line


def relaunch_offers(offer, the_plan, live: list | None) -> list:
    """Where a relaunch may go, in order: the same offer if it is in stock now, then the plan's other offers that
    fit (one that was only out of stock at plan time counts too), in stock now, by today's price. `live`: the
    provider's offers now; without them (no hook, or the call failed) only the same offer, as planned."""
    if live is None:
        return [offer]
    keys = [offer.key]
    for key in the_plan.relaunch_keys if the_plan else []:
        if tuple(key) not in keys:
            keys.append(tuple(key))
    now = {o.key: o for o in live}
    fresh = [now[k] for k in keys if k in now and now[k].in_stock]
    head = [o for o in fresh[:1] if o.key == offer.key]
    return head + sorted((o for o in fresh if o not in head), key=lambda o: round(o.price_per_hour, 4))


def supervise(job, provider, offer, attempt: Callable[[Launch], int], *, mode: str = "auto", recover: bool | None = None,
              the_plan: dict | None = None) -> int:
    """Run `attempt(Launch(...))` (one instance: create, run, end; returns the exit code) and, with `recover`
    (None: on for a spot offer), relaunch after EXIT_LOST until the run ends another way or a bound is reached.
    See the module docstring. Returns the exit code of the last launch, or EXIT_STOPPED when the time limit or the
    budget forbids a relaunch."""
    if recover is None:
        recover = job.limits.recover
    return _Supervisor(job, provider, offer, attempt, mode=mode, recover=bool(offer.spot) if recover is None else recover,
                       the_plan=the_plan).run()


class _Supervisor:
    def __init__(self, job, provider, offer, attempt, *, mode, recover, the_plan):
        self.job, self.provider, self.offer, self.attempt, self.mode = job, provider, offer, attempt, mode
        self.recover, self.the_plan, self.ledger = recover, the_plan, current().ledger
        self.started = time.time()
        limit = job.time_limit_seconds
        self.deadline = self.started + limit if limit else None
        self._events = None

    def run(self) -> int:
        code = self.attempt(Launch(self.provider, self.offer, self.job, self.mode))
        recoveries, most = 0, self.job.limits.max_recoveries
        try:
            while code == EXIT_LOST and self.recover:
                lost = next((e["id"] for e in reversed(self.instances()) if e["state"] != "failed"), "?")
                refusal = self.refusal(recoveries, most)
                if refusal is not None:
                    code, message = refusal
                    warn(message)
                    self.emit("recovery_failed", message, recovery=recoveries, lost_instance=lost)
                    return code
                recoveries += 1
                code = self.relaunch(recoveries, most, lost)
            return code
        finally:
            if self._events is not None:
                self._events.close()

    # --- bookkeeping ----------------------------------------------------------------------------------
    def instances(self) -> list[dict]:
        return self.ledger.of_run(self.job.run_id, since=self.started - 1)

    def spent(self) -> float:
        from helpers.ledger import spend_of

        now = time.time()
        return sum(spend_of(e, now) for e in self.instances())

    def emit(self, event: str, message: str, **extra) -> None:
        from helpers.runtime.events import Events

        if self._events is None:
            folder = current().runs_dir / self.job.run_id
            folder.mkdir(parents=True, exist_ok=True)
            notify = self.job.notify
            self._events = Events(folder / "launcher_events.jsonl", notify.webhook_url, notify.project or self.job.run_id,
                                  self.job.store)
        self._events.emit(event, message, stage="recovery", **extra)

    def refusal(self, recoveries: int, most: int) -> tuple[int, str] | None:
        """Why not to relaunch (exit code, message), or None."""
        store = self.job.store
        if recoveries >= most:
            return EXIT_LOST, (f"the instance was lost again and {most} relaunch(es) were made (limits.max_recoveries): "
                               f"giving up; checkpoints are in {store} — launch again to resume from there")
        if self.deadline is not None and time.time() > self.deadline - MIN_RELAUNCH_S:
            return EXIT_STOPPED, f"the time limit (from the first launch) has passed: no relaunch; checkpoints are in {store}"
        budget = self.job.limits.budget_usd
        if budget and self.spent() >= budget:
            return EXIT_STOPPED, (f"the budget ${budget:g} is spent (${self.spent():.2f} over every instance of the run): "
                                  f"no relaunch; checkpoints are in {store}")
        return None

    def remaining(self) -> Any:
        """The job with what is left of the time limit and budget, so the new instance's runtime stops on time."""
        job = self.job.model_copy(deep=True)
        if self.deadline is not None:
            job.limits.time_limit = max(1.0, self.deadline - time.time())
        if self.job.limits.budget_usd:
            job.limits.budget_usd = max(1e-6, self.job.limits.budget_usd - self.spent())
        return job

    def live_offers(self) -> list | None:
        if not isinstance(self.provider, Relaunches):
            return None
        try:
            return call(self.provider.live_offers, what="reading the provider's offers", attempts=4, max_wait_s=10)
        except Exception as exc:  # noqa: BLE001 - without a fresh look, try the plan's offers in order
            warn(f"could not read the provider's offers now ({exc}); trying the plan's offers in order")
            return None

    def provider_for(self, offer):
        if isinstance(self.provider, Relaunches):
            return self.provider.for_offer(offer)
        return self.provider if offer.key == self.offer.key else None

    def resume_point(self, n: int, lost: str) -> str:
        """What the relaunch will resume from, said only as far as it is known: the store's newest step (an hf://
        store, read from here), or an error event naming the steps lost when the store has none."""
        store = self.job.store
        if not store.startswith("hf://"):
            return f"the new instance resumes from the newest checkpoint in {store}, if one is there"
        from helpers.runtime.store import open_store

        try:
            step = open_store(store).latest_step()
        except Exception as exc:  # noqa: BLE001 - cannot tell from here: the runtime there will say
            return f"the store {store} could not be read from here ({type(exc).__name__}); the new instance looks itself"
        if step is not None:
            return f"the new instance resumes from step {step} in {store}"
        seen = next((e.get("last_step") for e in reversed(self.instances()) if e.get("last_step") is not None), None)
        what = f"the {seen} steps trained on instance {lost} are" if seen is not None else f"what instance {lost} trained is"
        message = (f"no checkpoint in {store}: relaunch {n} starts at step 0 — {what} lost "
                   "(no checkpoint had reached the store; lower training.save_freq to lose less)")
        warn(f"[trainyard] {message}")
        self.emit("recovery_no_checkpoint", message, level="error", recovery=n, lost_instance=lost, steps_lost=seen)
        entry = next((e for e in self.instances() if e["id"] == lost), None)
        if entry is not None:  # `invoke status` shows it with the run; the entry's state stays what it is
            self.ledger.record(entry["provider"], lost, entry["state"], warning=message)
        return "it starts at step 0"

    # --- the relaunch ---------------------------------------------------------------------------------
    def relaunch(self, n: int, most: int, lost: str) -> int:
        offers = [(o, p) for o in relaunch_offers(self.offer, self.the_plan, self.live_offers())
                  if (p := self.provider_for(o)) is not None]
        job, spent = self.remaining(), self.spent()
        if offers:
            first = offers[0][0]
            where = ("the same offer, " if first.key == self.offer.key else "") + first.label
            more = f" (then {len(offers) - 1} other offer(s) of the plan if that one is refused)" if len(offers) > 1 else ""
            message = (f"instance {lost} was lost: relaunch {n}/{most} on {where}{more}; {self.resume_point(n, lost)} "
                       f"(spent so far ${spent:.2f})")
        else:
            message = f"instance {lost} was lost: relaunch {n}/{most}, but no offer of the plan is in stock now"
        warn(f"[trainyard] {message}")
        self.emit("recovery", message, recovery=n, lost_instance=lost, offers=[o.label for o, _ in offers[:5]],
                  spent_usd=round(spent, 4))
        tried = 0
        for offer, provider in offers:
            tried += 1
            fields = {"recovery": n, "replaces": lost, "spot": offer.spot, "gpu_count": offer.gpu_count}
            fields.update({k: v for k, v in (("gpu", offer.gpu_type_id), ("instance_type", offer.instance_type),
                                            ("location", offer.location), ("cloud", offer.cloud)) if v})
            try:
                return self.attempt(Launch(provider, offer, job, "auto", fields))
            except ProviderError as exc:
                if not exc.nothing_left:
                    raise
                warn(f"relaunch on {offer.label} refused ({exc})" + ("; trying the next offer" if tried < len(offers) else ""))
        pause = min(60.0, float(self.provider.poll_seconds) * 2 ** (n - 1))
        warn(f"no offer could be started for relaunch {n}/{most} ({tried} tried); waiting {pause:.0f}s")
        time.sleep(pause)
        return EXIT_LOST
