"""GPU offers (what a provider rents at what price) and the choice of the cheapest one that really fits.

Offers come live from the providers' APIs or, without credentials or network, from their dated price tables; each
provider parses its own answers and keeps its own table beside its API (helpers/backends/<name>) and names them in
its DESCRIPTOR. Prices are USD per hour for the whole offer (all its GPUs). Pure functions: nothing here touches the
network, and nothing here knows a particular provider's API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from helpers import gpus as _gpus
from helpers.errors import ConfigError
from helpers.gpus import Gpu

# RunPod pods take these GPU counts (seed 004's choice list); Verda's come from its instance types.
RUNPOD_GPU_COUNTS = (1, 2, 4, 6, 8)
DEFAULT_GPU_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Offer:
    provider: str  # runpod | verda | chtc | slurm | local
    gpu: Gpu
    gpu_count: int
    price_per_hour: float  # the whole offer, USD
    spot: bool = False
    cloud: str | None = None  # RunPod: "secure" | "community"; None elsewhere (or tier unknown)
    location: str | None = None
    in_stock: bool = True
    instance_type: str | None = None  # Verda
    gpu_type_id: str | None = None  # RunPod gpuTypeId
    source: str = "live"  # "live" or "fallback <date>"
    stock: str | None = None  # provider's stock word ("High", "Low", "None") or why it is unavailable

    @property
    def price_per_gpu_hour(self) -> float:
        return self.price_per_hour / self.gpu_count

    @property
    def key(self) -> tuple:
        """What makes two offers the same machine, whatever its price and stock today (a relaunch's lookup)."""
        return (self.provider, self.gpu.key, self.gpu_count, self.spot, self.cloud, self.location, self.instance_type)

    @property
    def label(self) -> str:
        where = self.provider + (f" {self.cloud}" if self.cloud else "") + (" spot" if self.spot else "")
        if self.location:
            where += f" {self.location}"
        what = self.instance_type or f"{self.gpu_count}x {self.gpu.label}"
        return f"{what} ({where}, ${self.price_per_hour:.2f}/h)"


def cluster_offers(provider: str, gpus: Iterable[tuple[str, int]], *, location: str | None = None,
                   source: str = "live") -> list[Offer]:
    """Zero-cost offers for machines you already have: [(gpu name, GPUs per node), ...] -> counts up to that."""
    out = []
    for name, per_node in gpus:
        gpu = _gpus.find(name) or _gpus.resolve(name)
        for n in _counts_up_to(per_node):
            out.append(Offer(provider, gpu, n, 0.0, location=location, source=source))
    return out


def _counts_up_to(limit: int) -> list[int]:
    return [n for n in (1, 2, 4, 8) if n <= limit] + ([limit] if limit not in (1, 2, 4, 8) else [])


def valid_gpu_counts(provider: str, offers: Iterable[Offer] = ()) -> tuple[int, ...]:
    """GPU counts a provider rents: RunPod 1,2,4,6,8; Verda what its instance types hold; clusters what nodes hold."""
    if provider == "runpod":
        return RUNPOD_GPU_COUNTS
    seen = sorted({o.gpu_count for o in offers if o.provider == provider})
    if seen:
        return tuple(seen)
    if provider == "local":
        return (1,)
    return DEFAULT_GPU_COUNTS


# ------------------------------------------------------------------- for the providers' own answer parsers


def first_field(obj: Any, *names: str, default: Any = None) -> Any:
    """First present, non-None field of a dict or an object (SDK dataclass)."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def price_or_none(value: Any) -> float | None:
    """Prices arrive as floats or strings ("2.19"); 0, None and "" mean "not offered"."""
    if value in (None, ""):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if price > 0 else None


# ----------------------------------------------------------------------------------------------- choice


@dataclass(frozen=True)
class Candidate:
    offer: Offer
    fits: bool
    reason: str
    only_out_of_stock: bool = False  # it would fit; stock alone kept it out (a relaunch may find it in stock)


@dataclass(frozen=True)
class Choice:
    offer: Offer
    candidates: tuple[Candidate, ...]
    need_gb_per_gpu: float
    estimate: Any = field(default=None, compare=False)

    def explain(self) -> str:
        o = self.offer
        return (f"{o.gpu_count}x {o.gpu.label} on {o.provider}"
                f"{' ' + o.cloud if o.cloud else ''}{' spot' if o.spot else ''} at ${o.price_per_hour:.2f}/h"
                f" ({o.source}): cheapest that fits ~{_gb(self.need_gb_per_gpu)} GB per GPU")

    def rows(self) -> list[tuple[str, str, str]]:
        """(offer, $/h, reason) rows for a table."""
        return [(c.offer.label, f"{c.offer.price_per_hour:.2f}", c.reason) for c in self.candidates]


def _gb(x: float) -> int:
    return math.ceil(x - 1e-9)


@dataclass(frozen=True)
class Advice:
    """The keys through which the job's trainer can change how it uses memory: advice names only these, so
    applying it gives a plan that fits (None: that trainer has no such key, so no such advice)."""

    sharding: str | None = "zero3"  # model.sharding value to propose with more GPUs
    lora: str | None = "model.method: lora"  # the setting that trains adapters
    checkpointing: str | None = None  # the setting that turns on gradient checkpointing


def choose(
    offers: list[Offer],
    need_gb_per_gpu: Any,
    *,
    gpu_count: int,
    allowed_gpus: str | Iterable[str] | None = None,
    min_vram_gb: float | None = None,
    spot_allowed: bool = False,
    cloud: str | None = None,
    location_key: str = "resources.location",
    location: str | None = None,
    max_price_per_hour: float | None = None,
    advice: Advice = Advice(),
) -> Choice:
    """The cheapest offer whose GPUs hold `need_gb_per_gpu` and that meets every constraint, with every other
    offer at that GPU count and why it lost. `need_gb_per_gpu` may be a number or a `helpers.vram.Estimate`
    (then, if nothing fits, the error suggests the smallest change that would: more GPUs with sharding, or LoRA).
    With `spot_allowed`, spot offers compete on price with on-demand ones (and usually win)."""
    if not offers:
        raise ConfigError(key="resources", problem="no GPU offers to choose from",
                          fix="check the provider's credentials and network, or name a provider with a price table")
    est = need_gb_per_gpu if hasattr(need_gb_per_gpu, "total_gb") else None
    need = float(est.total_gb if est is not None else need_gb_per_gpu)
    allowed = _allowed_keys(allowed_gpus)
    cloud = None if cloud in (None, "", "any") else cloud
    providers = sorted({o.provider for o in offers})
    counts = sorted({n for p in providers for n in valid_gpu_counts(p, offers)})
    at_count = [o for o in offers if o.gpu_count == gpu_count and gpu_count in valid_gpu_counts(o.provider, offers)]
    if not at_count:
        nearest = min((n for n in counts if n >= gpu_count), default=max(counts))
        raise ConfigError(key="resources.gpu_count", problem=f"no {'/'.join(providers)} offer has {gpu_count} GPUs",
                          fix=f"use gpu_count {nearest} (offered: {', '.join(map(str, counts))})")

    def blockers(o: Offer, with_memory: bool = True) -> list[str]:
        why = []
        if allowed is not None and o.gpu.key not in allowed:
            why.append(f"not in resources.gpu ({', '.join(sorted(allowed))})")
        if min_vram_gb is not None and o.gpu.memory_gb < min_vram_gb:
            why.append(f"{o.gpu.memory_gb:g} GB < min_vram_gb {min_vram_gb:g}")
        if with_memory and o.gpu.memory_gb < need:
            why.append(f"{o.gpu.memory_gb:g} GB < {_gb(need)} GB needed")
        if o.spot and not spot_allowed:
            why.append("spot (not allowed: resources.spot is false)")
        if cloud is not None and o.cloud != cloud:
            why.append(f"{o.cloud or 'unknown'} cloud (resources.cloud is {cloud})")
        if location and o.location and o.location.lower() != location.lower():
            why.append(f"location {o.location} ({location_key} is {location})")
        if max_price_per_hour is not None and o.price_per_hour > max_price_per_hour + 1e-9:
            why.append(f"${o.price_per_hour:.2f}/h > max ${max_price_per_hour:.2f}/h")
        if not o.in_stock:
            why.append(f"out of stock ({o.stock})" if o.stock else "out of stock")
        return why

    fitting = sorted((o for o in at_count if not blockers(o)), key=_rank)
    chosen = fitting[0] if fitting else None
    rows = []
    for o in sorted(at_count, key=lambda o: (bool(blockers(o)), _rank(o))):
        why = blockers(o)
        if not why:
            if o is chosen:
                rows.append(Candidate(o, True, "cheapest that fits"))
            else:
                extra = o.price_per_hour - chosen.price_per_hour
                rows.append(Candidate(o, True, f"fits; ${extra:.2f}/h more" if extra > 0.005 else "fits; same price"))
        else:
            rows.append(Candidate(o, False, "; ".join(why), only_out_of_stock=len(why) == 1 and not o.in_stock))
    if chosen is None:
        problem = f"needs ~{_gb(need)} GB per GPU; no offer fits"
        raise ConfigError(key="resources", problem=problem,
                          fix=_no_fit_fix(offers, at_count, need, est, gpu_count, blockers, max_price_per_hour, advice))
    return Choice(chosen, tuple(rows), need, est)


def _rank(o: Offer) -> tuple:
    """Cheapest first; at equal price on-demand before spot, secure before community, more memory first."""
    return (round(o.price_per_hour, 4), o.spot, o.cloud != "secure", -o.gpu.memory_gb, o.gpu.key, o.location or "")


def _allowed_keys(allowed: str | Iterable[str] | None) -> set[str] | None:
    if allowed is None:
        return None
    names = [allowed] if isinstance(allowed, str) else list(allowed)
    return {_gpus.resolve(n).key for n in names} if names else None


_RELAX_TIPS = (
    ("not in resources.gpu", "add {gpu} to resources.gpu"),
    ("spot", "set resources.spot: true"),
    ("$", "raise resources.max_price_per_hour"),
    ("out of stock", "retry later or use another provider"),
)


def _relax_tip(reason: str) -> str:
    if reason.endswith(")") and "cloud (resources.cloud" in reason:
        return "set resources.cloud: any"
    if "min_vram_gb" in reason:
        return "lower resources.min_vram_gb"
    if reason.startswith("location") and (key := re.search(r"\((\S+) is ", reason)):
        return f"drop {key[1]}"  # the key the user set: resources.location or verda.location
    return next((tip for start, tip in _RELAX_TIPS if reason.startswith(start)), reason)


def _no_fit_fix(offers, at_count, need, est, gpu_count, blockers, max_price, advice: Advice) -> str:
    """The smallest change that would make something fit, in words: a bigger configuration within the user's
    constraints (more GPUs with sharding, or LoRA), and/or the constraint that keeps a big-enough GPU out."""
    changes: list[str] = []
    # 1. Within the constraints: GPUs that pass everything but memory (price is re-checked per count).
    pool = [o for o in offers if not [r for r in blockers(o, with_memory=False) if not r.startswith("$")]]
    per_gpu: dict[str, tuple[float, Offer]] = {}
    for o in pool:
        cur = per_gpu.get(o.gpu.key)
        if cur is None or o.price_per_gpu_hour < cur[0]:
            per_gpu[o.gpu.key] = (o.price_per_gpu_hour, o)

    def affordable(price_per_gpu: float, n: int) -> bool:
        return max_price is None or price_per_gpu * n <= max_price + 1e-9

    if est is not None:
        changes += _bigger_configurations(est, pool, per_gpu, offers, gpu_count, affordable, advice)
    # 2. Outside them: the cheapest big-enough offer with the fewest blockers.
    big = [o for o in at_count if o.gpu.memory_gb >= need]
    if big:
        o = min(big, key=lambda o: (len(blockers(o)), _rank(o)))
        tips = []
        for reason in blockers(o):
            tip = _relax_tip(reason).format(gpu=o.gpu.key)
            if tip not in tips:
                tips.append(tip)
        changes.append(f"{' and '.join(tips)} ({o.gpu.label} at ${o.price_per_hour:.2f}/h would hold it)")
    if not changes:
        largest = max(offers, key=lambda o: o.gpu.memory_gb)
        if est is None:
            return (f"pick a GPU with at least {_gb(need)} GB (largest offered: {largest.gpu.label}), "
                    "shard over more GPUs, or use method lora")
        return (f"no offered GPU (largest: {largest.gpu.label}) holds it even sharded; lower training.batch_size, "
                "enable gradient checkpointing, or use a provider with larger GPUs")
    if est is None and not big:
        changes.insert(0, f"pick a GPU with at least {_gb(need)} GB, shard over more GPUs, or use method lora")
    return ", or ".join(changes)


def _bigger_configurations(est, pool, per_gpu, offers, gpu_count, affordable, advice: Advice) -> list[str]:
    """Up to two changes, as the keys to set, that make the job fit a GPU in the pool: sharded over more GPUs (or
    the same ones, when they are not sharded yet), then LoRA; failing both, the same with gradient checkpointing,
    then with batch 1. Each is re-estimated with exactly what it proposes, so applying it converges."""
    from helpers.vram import LIGHT_METHODS  # local import: helpers.vram imports nothing from here

    providers = sorted({o.provider for o in pool})
    counts = sorted({n for p in providers for n in valid_gpu_counts(p, offers)
                     if n > gpu_count or (n == gpu_count > 1 and est.inputs["sharding"] == "none")})
    sharding = est.inputs["sharding"] if est.inputs["sharding"] != "none" else advice.sharding

    def attempts(keys: list[str], **base) -> list[str]:
        found = []
        for n in counts if sharding else []:
            try:
                need_n = est.replace(gpu_count=n, sharding=sharding, **base).total_gb
            except ConfigError:
                continue
            fits = [(price * n, -o.gpu.memory_gb, o) for price, o in per_gpu.values()
                    if o.gpu.memory_gb >= need_n and affordable(price, n)]
            if fits:
                best = min(fits, key=lambda t: t[:2])[2]
                setting = [f"resources.gpu_count: {n}"] if n != gpu_count else []
                setting += [f"model.sharding: {sharding}"] if est.inputs["sharding"] != sharding else []
                found.append(f"set {' and '.join(keys + setting)} ({n}x {best.gpu.label}, ~{_gb(need_n)} GB per GPU)")
                break
        if advice.lora and est.inputs["method"] not in LIGHT_METHODS:
            need_m = est.replace(method="lora", **base).total_gb
            fit = [o for price, o in per_gpu.values() if o.gpu.memory_gb >= need_m and affordable(price, gpu_count)]
            if fit:
                found.append(f"set {' and '.join(keys + [advice.lora])} (~{_gb(need_m)} GB per GPU)")
        return found

    found = attempts([])
    if not found and not est.inputs["gradient_checkpointing"] and advice.checkpointing:
        found = attempts([advice.checkpointing], gradient_checkpointing=True)
    if not found and est.inputs["batch_size"] > 1:
        found = attempts(["training.batch_size: 1"] + ([advice.checkpointing] if advice.checkpointing else []),
                         gradient_checkpointing=est.inputs["gradient_checkpointing"] or bool(advice.checkpointing),
                         batch_size=1)
    return found[:2]
