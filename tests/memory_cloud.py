"""A cloud in memory, for the lifecycle's fast tests (tests/test_lifecycle.py): a Provider with every capability
mixin, whose machines follow a script instead of running a job, so the REAL lifecycle, recovery supervisor and
ledger run against it without root, sshd or a network.

A machine boots for `boot_reads` status reads, then runs; what happens next is its offer's `ending`:
  "finish"   the job ends and the machine with it (the runtime's dead-man): GONE after `run_reads` reads
  "preempt"  a spot interruption: STOPPED after `run_reads` reads, and the flow is told it was taken away
  "hang"     it runs until someone ends it
Faults the tests inject: a create whose answer is lost after the machine was made (`lose_create_answers`), creates
refused (`refuse_creates`), terminates that fail before they succeed (`failing_terminates`) or never do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from helpers import gpus
from helpers.backends.lifecycle import PolledFlow
from helpers.backends.provider import (
    GONE, PENDING, RUNNING, STOPPED, FindsByName, InstanceInfo, Provider, Relaunches, Stops, Transient,
)
from helpers.errors import ProviderError
from helpers.offers import Offer


def offer(gpu: str = "L4", price: float = 1.0, *, spot: bool = True, location: str = "here", in_stock: bool = True) -> Offer:
    return Offer("memcloud", gpus.resolve(gpu), 1, price, spot, location=location, in_stock=in_stock, source="live")


@dataclass
class Machine:
    id: str
    name: str
    offer: Offer
    reads: int = 0
    ended: bool = False
    stopped: bool = False

    @property
    def preempted(self) -> bool:
        return self.stopped and not self.ended


@dataclass
class MemoryCloud:
    boot_reads: int = 2
    run_reads: int = 5
    endings: dict[str, str] = field(default_factory=dict)  # offer location -> "finish" | "preempt" | "hang"
    offers: list[Offer] = field(default_factory=list)  # what live_offers answers
    lose_create_answers: int = 0  # creates that make the machine but raise Transient, as a dropped answer does
    refuse_creates: set[str] = field(default_factory=set)  # offer locations whose creates are refused
    failing_terminates: int = 0  # terminates that raise Transient before one goes through; -1: never goes through
    ssh: tuple[str, int] | None = None  # the address a running machine reports (for the SSH flow)
    ledger: object = None  # the workspace's ledger: create() records what it held when it was called
    machines: dict[str, Machine] = field(default_factory=dict)
    calls: list[tuple] = field(default_factory=list)
    ledger_at_create: list[dict] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def live(self) -> list[Machine]:
        return [m for m in self.machines.values() if not m.ended]


class MemoryProvider(Provider, FindsByName, Stops, Relaunches):
    name, noun, poll_seconds = "memcloud", "machine", 0.01

    def __init__(self, cloud: MemoryCloud, offer: Offer):
        self.cloud, self.offer, self.price_per_hour = cloud, offer, offer.price_per_hour

    def create(self, job, offer, name: str) -> str:
        cloud = self.cloud
        cloud.calls.append(("create", name))
        cloud.ledger_at_create.append(dict(cloud.ledger.entries().get((self.name, name)) or {}))
        if offer.location in cloud.refuse_creates:
            raise ProviderError(f"no capacity for {offer.label}")
        machine = Machine(f"m-{next(cloud._ids)}", name, offer)
        cloud.machines[machine.id] = machine
        if cloud.lose_create_answers:
            cloud.lose_create_answers -= 1
            raise Transient("the create's answer was lost (connection reset)")
        return machine.id

    def get(self, instance_id: str) -> InstanceInfo:
        machine = self.cloud.machines.get(instance_id)
        if machine is None or machine.ended:
            return InstanceInfo(GONE, None, None)
        if machine.stopped:
            return InstanceInfo(STOPPED, None, None)
        machine.reads += 1
        ending = self.cloud.endings.get(machine.offer.location, "finish")
        if machine.reads <= self.cloud.boot_reads:
            return InstanceInfo(PENDING, None, None)
        if ending != "hang" and machine.reads > self.cloud.boot_reads + self.cloud.run_reads:
            if ending == "preempt":
                machine.stopped = True
                return InstanceInfo(STOPPED, None, None)
            machine.ended = True
            return InstanceInfo(GONE, None, None)
        return InstanceInfo(RUNNING, *(self.cloud.ssh or (None, None)))

    def terminate(self, instance_id: str, keep_disk: bool = True) -> str | None:
        cloud = self.cloud
        cloud.calls.append(("terminate", instance_id))
        if cloud.failing_terminates:
            cloud.failing_terminates -= 1 if cloud.failing_terminates > 0 else 0
            raise Transient("terminate: 503 Service Unavailable")
        machine = cloud.machines.get(instance_id)
        if machine is not None:
            machine.ended = True
        return None

    def stop(self, instance_id: str) -> None:
        self.cloud.machines[instance_id].stopped = True

    def find(self, name: str) -> str | None:
        self.cloud.calls.append(("find", name))
        return next((m.id for m in self.cloud.live() if m.name == name), None)

    def live_offers(self) -> list:
        return list(self.cloud.offers)

    def for_offer(self, offer) -> "MemoryProvider":
        return MemoryProvider(self.cloud, offer)


class MemoryFlow(PolledFlow):
    """The machine runs the job by itself (as RunPod's start command does); a stopped one was taken away."""

    def preempted(self) -> bool:
        return self.provider.cloud.machines[self.instance_id].preempted
