"""GPU offers (what a provider rents at what price) and the choice of the cheapest one that really fits.

Offers come live from the providers' APIs (`from_runpod_catalog`, spot from `from_runpod_gpu_types`,
`from_verda_instance_types`) or, without credentials or network, from the dated fallback tables below (GPU_FACTS.md §3 and §4). Prices are USD per hour
for the whole offer (all its GPUs). Pure functions: nothing here touches the network.
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


# ------------------------------------------------------------------------------------------ fallback tables
# RunPod, USD per GPU-hour: (GPU, secure on-demand, community on-demand, spot, spot tier, as-of date).
# The as-of date is the newest date of the figures used; sources per GPU_FACTS.md §3.1:
# on-demand from datareceipts vendors.json (2026-11-09) where listed, else privum (2026-08-19),
# api-evangelist (2026-10-07) or carsonpo/gpus (2025-07-13); spot from Malaeu/nanoGPT-RH (2026-01-01,
# tier not stated -> None) or the dstack docs example (A100 PCIe community spot, 2025-10-02).
RUNPOD_FALLBACK: tuple[tuple[str, float | None, float | None, float | None, str | None, str], ...] = (
    ("RTX-2000-ADA", 0.28, None, 0.18, None, "2026-01-01"),
    ("RTX-4090", 0.69, 0.34, 0.50, None, "2026-01-01"),
    ("RTX-A6000", 0.49, 0.33, None, None, "2025-07-13"),
    ("RTX-6000-ADA", 0.77, 0.74, 0.63, None, "2026-01-01"),
    ("L40S", 0.86, 0.79, 0.71, None, "2026-01-01"),
    ("A100-PCIE-80GB", 1.79, 1.19, 0.82, "community", "2026-11-09"),
    ("A100-SXM-80GB", 1.79, 1.39, None, None, "2026-11-09"),
    ("H100-PCIE", 2.89, 1.99, 2.03, None, "2026-11-09"),
    ("H100-SXM", 3.99, 2.69, None, None, "2026-11-09"),
    ("H100-NVL", 3.19, 2.59, 2.61, None, "2026-11-09"),
    ("H200-SXM", 4.59, 3.59, 3.05, None, "2026-10-07"),
    ("H200-NVL", 3.39, None, 2.88, None, "2026-01-01"),
    ("B200", 6.79, 5.98, 4.41, None, "2026-08-19"),
    ("B300", 7.89, 6.94, None, None, "2026-08-19"),
)

# Verda, USD per GPU-hour: (GPU, on-demand, spot, as-of, vCPUs per GPU for the instance-type name).
# GPU_FACTS.md §3.2: SkyPilot catalog snapshot B (undated, before 2026-08; the later and higher of the two)
# for most rows; A100 40GB spot from pulsebenchmarks (2026-04-19); RTX A6000 from lanternworks (2026-10-29);
# L40S and RTX 6000 Ada spot from snapshot A (snapshot B lists none). Instance-type names follow Verda's
# "<count><family>.<vCPUs>V" pattern; attested names (1H100.80S.30V, 8H100.80S.176V, 1A100.22V, 4A100.88V,
# 1A100.40S.22V, 1H200.141S.44V, 1B200.30V) are used as is, the rest are derived and replaced by live data.
VERDA_FALLBACK: tuple[tuple[str, float, float | None, str, int], ...] = (
    ("H100-SXM", 2.29, 0.8015, "2026-08", 30),
    ("H200-SXM", 3.39, 1.1865, "2026-08", 44),
    ("B200", 4.89, 1.712, "2026-08", 30),
    ("B300", 6.99, 2.447, "2026-08", 30),
    ("A100-SXM-80GB", 1.29, 0.4515, "2026-08", 22),
    ("A100-SXM-40GB", 0.72, 0.2524, "2026-04-19", 22),
    ("L40S", 0.91, 0.275, "2026-08", 20),
    ("RTX-6000-ADA", 0.8262, 0.25, "2026-08", 10),
    ("RTX-A6000", 0.82, 0.41, "2026-10-29", 10),
    ("RTX-PRO-6000", 1.69, 0.5915, "2026-08", 30),
)
_VERDA_NAME_OVERRIDES = {("H100-SXM", 8): "8H100.80S.176V"}

# CHTC GPU Lab (GPU_FACTS.md §4, CHTC site _data/gpus.yaml of 2025-12-16): GPU -> GPUs per server. Free.
CHTC_INVENTORY: tuple[tuple[str, int], ...] = (
    ("H100-SXM", 8), ("H200-SXM", 8), ("L40S", 8), ("L40", 10), ("A100-SXM-80GB", 4), ("A100-SXM-40GB", 4),
    ("RTX-2080-TI", 8), ("P100-PCIE-16GB", 2),
)
CHTC_AS_OF = "2025-12-16"

# A SLURM cluster's GPUs are site-specific; without better knowledge assume seed 002's `--constraint="a100|h100"`.
SLURM_DEFAULT_GPUS = ("A100-SXM-80GB", "H100-SXM")


def runpod_fallback_offers() -> list[Offer]:
    """RunPod's dated table (RUNPOD_FALLBACK): on-demand per cloud and spot, for every GPU count a pod takes."""
    by = _gpus.BY_KEY
    out: list[Offer] = []
    for key, secure, community, spot, spot_cloud, as_of in RUNPOD_FALLBACK:
        gpu, src = by[key], f"fallback {as_of}"
        for n in RUNPOD_GPU_COUNTS:
            for cloud, price in (("secure", secure), ("community", community)):
                if price is not None:
                    out.append(Offer("runpod", gpu, n, round(price * n, 4), False, cloud,
                                     gpu_type_id=gpu.runpod_id, source=src))
            if spot is not None:
                out.append(Offer("runpod", gpu, n, round(spot * n, 4), True, spot_cloud,
                                 gpu_type_id=gpu.runpod_id, source=src))
    return out


def verda_fallback_offers() -> list[Offer]:
    """Verda's dated table (VERDA_FALLBACK): on-demand and spot per instance type."""
    by = _gpus.BY_KEY
    out: list[Offer] = []
    for key, price, spot, as_of, vcpus in VERDA_FALLBACK:
        gpu, src = by[key], f"fallback {as_of}"
        for n in DEFAULT_GPU_COUNTS:
            name = _VERDA_NAME_OVERRIDES.get((key, n)) or f"{n}{gpu.verda_prefix}.{vcpus * n}V"
            out.append(Offer("verda", gpu, n, round(price * n, 4), False, instance_type=name, source=src))
            if spot is not None:
                out.append(Offer("verda", gpu, n, round(spot * n, 4), True, instance_type=name, source=src))
    return out


def chtc_fallback_offers() -> list[Offer]:
    """The CHTC GPU Lab's inventory (free)."""
    return [Offer("chtc", _gpus.BY_KEY[key], n, 0.0, location="CHTC GPU Lab", source=f"fallback {CHTC_AS_OF}")
            for key, per_server in CHTC_INVENTORY for n in _counts_up_to(per_server)]


def slurm_fallback_offers() -> list[Offer]:
    """A SLURM cluster's GPUs when nothing better is known: seed 002's a100|h100, free."""
    return cluster_offers("slurm", [(key, 8) for key in SLURM_DEFAULT_GPUS], source="fallback seed 002 a100|h100")


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


# ------------------------------------------------------------------------------------------- live parsers


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First present, non-None field of a dict or an object (SDK dataclass)."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def _price(value: Any) -> float | None:
    """Prices arrive as floats or strings ("2.19"); 0, None and "" mean "not offered"."""
    if value in (None, ""):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if price > 0 else None


def from_runpod_catalog(catalog: dict[str, list[dict]], gpu_count: int) -> list[Offer]:
    """On-demand offers from RunPod's REST v2 catalog (`GET /v2/catalog/gpus?include=AVAILABILITY&product=POD`), one
    answer per cloud tier asked ({"secure": [GpuType], "community": [...]}): list price per GPU-hour for the tier
    (offers carry the whole pod's price); out of stock when the tier's `availability` is NONE or `maxCount` is below
    `gpu_count`. A tier the GPU is not offered in (`secure`/`community` false) gives no offer."""
    out: list[Offer] = []
    for tier, gpu_types in catalog.items():
        for item in gpu_types or []:
            gpu = _runpod_gpu({"id": item.get("id"), "displayName": item.get("name"), "memoryInGb": item.get("memory")})
            price = _price((item.get("price") or {}).get(tier))
            if gpu is None or not item.get(tier) or price is None:
                continue
            stock, most = item.get("availability"), (item.get("maxCount") or {}).get(tier)
            in_stock, stock = stock != "NONE", (stock or "").capitalize() or None
            if isinstance(most, int) and gpu_count > most:
                in_stock, stock = False, f"max {most} GPUs per pod"
            out.append(Offer("runpod", gpu, gpu_count, round(price * gpu_count, 4), False, tier, in_stock=in_stock,
                             gpu_type_id=item.get("id"), stock=stock))
    return out


def from_runpod_gpu_types(gpu_types: list[dict], gpu_count: int) -> list[Offer]:
    """Offers from RunPod's GraphQL `gpuTypes` (CLOUD_APIS.md §1.3.2/§1.3.7): one per cloud tier and spot/on-demand.

    Prices in the API are per GPU-hour; offers carry the whole pod's price. `lowestPrice.stockStatus` "None",
    `availableGpuCounts` without `gpu_count`, or `maxGpuCount` below it mark the offer out of stock.
    """
    out: list[Offer] = []
    for item in gpu_types or []:
        gpu = _runpod_gpu(item)
        if gpu is None:
            continue
        lowest = item.get("lowestPrice") or {}
        stock = lowest.get("stockStatus")
        in_stock = not (isinstance(stock, str) and stock.strip().lower() in ("none", "out", "unavailable"))
        counts = lowest.get("availableGpuCounts")
        max_count = item.get("maxGpuCount")
        if isinstance(max_count, int) and max_count and gpu_count > max_count:
            in_stock, stock = False, f"max {max_count} GPUs per pod"
        elif counts is not None and gpu_count not in counts:
            in_stock, stock = False, f"only {', '.join(map(str, counts)) or 'no'} GPUs available"
        for cloud, flag, od_key, spot_key in (("secure", "secureCloud", "securePrice", "secureSpotPrice"),
                                              ("community", "communityCloud", "communityPrice", "communitySpotPrice")):
            if item.get(flag) is False:
                continue
            for spot, key in ((False, od_key), (True, spot_key)):
                price = _price(item.get(key))
                if price is not None:
                    out.append(Offer("runpod", gpu, gpu_count, round(price * gpu_count, 4), spot, cloud,
                                     in_stock=in_stock, gpu_type_id=item.get("id"), stock=stock))
        if not any(o.gpu is gpu and o.spot for o in out):
            bid = _price(lowest.get("minimumBidPrice"))
            if bid is not None:
                out.append(Offer("runpod", gpu, gpu_count, round(bid * gpu_count, 4), True, None,
                                 in_stock=in_stock, gpu_type_id=item.get("id"), stock=stock))
        if not any(o.gpu is gpu for o in out):
            od = _price(lowest.get("uninterruptablePrice"))
            if od is not None:
                out.append(Offer("runpod", gpu, gpu_count, round(od * gpu_count, 4), False, None,
                                 in_stock=in_stock, gpu_type_id=item.get("id"), stock=stock))
    return out


def _runpod_gpu(item: dict) -> Gpu | None:
    gpu_id, display = item.get("id") or "", item.get("displayName") or ""
    if not gpu_id or gpu_id == "unknown":
        return None
    gpu = _gpus.find(gpu_id) or _gpus.find(display)
    if gpu is not None:
        return gpu
    memory = item.get("memoryInGb") or 0
    if not memory:
        return None
    # A GPU RunPod added after our catalog: usable, with what the API says about it.
    key = re.sub(r"[^A-Za-z0-9]+", "-", display or gpu_id).strip("-").upper()
    return Gpu(key, display or gpu_id, float(memory), None, (), runpod_id=gpu_id)


def from_verda_instance_types(types: list, availability: Any = None, *, spot_availability: Any = None) -> list[Offer]:
    """Offers from Verda's instance types (SDK `InstanceType` objects or the raw JSON of GET /instance-types).

    `availability` says where each type can start now; accepted shapes: the SDK's
    `[{"location_code": "FIN-01", "availabilities": ["1H100.80S.30V", ...]}]`, `{location: [types]}`,
    `{type: [locations]}` or `{type: bool}`. None means unknown (offers count as in stock, location None).
    `spot_availability` is the same for spot (`get_availabilities(is_spot=True)`); it defaults to `availability`.
    """
    on_demand = _verda_availability(availability)
    spot_avail = _verda_availability(spot_availability) if spot_availability is not None else on_demand
    out: list[Offer] = []
    for item in types or []:
        name = str(_get(item, "instance_type", default="") or "")
        parsed = _gpus.from_verda_instance_type(name) if name else None
        count = _get(item, "gpu", default={})
        count = (count.get("number_of_gpus") if isinstance(count, dict) else None) or (parsed[1] if parsed else 0)
        if not count:
            continue  # CPU instance
        gpu = parsed[0] if parsed else _verda_gpu(item, int(count))
        if gpu is None:
            continue
        price = _price(_get(item, "price_per_hour"))
        spot_price = _price(_get(item, "spot_price", "spot_price_per_hour"))
        for spot, p, avail in ((False, price, on_demand), (True, spot_price, spot_avail)):
            if p is None:
                continue
            locations = [None] if avail is None else sorted(avail.get(name, set()), key=str)
            if avail is not None and not locations:
                out.append(Offer("verda", gpu, int(count), p, spot, in_stock=False, instance_type=name,
                                 stock="not available in any location"))
            for loc in locations:
                out.append(Offer("verda", gpu, int(count), p, spot, location=loc, instance_type=name))
    return out


def _verda_gpu(item: Any, count: int) -> Gpu | None:
    """The GPU of an instance type whose name we could not parse, from its descriptive fields."""
    memory = _get(item, "gpu_memory", default={})
    memory = memory.get("size_in_gigabytes") if isinstance(memory, dict) else None  # all GPUs together
    memory = float(memory) / count if memory else None
    for field_name in ("name", "display_name", "model"):
        gpu = _gpus.find(str(_get(item, field_name, default="") or ""))
        if gpu is not None and (not memory or abs(gpu.memory_gb - float(memory)) <= 8):
            return gpu
    return None


def _verda_availability(raw: Any) -> dict[str, set] | None:
    """Normalise the availability shapes to {instance_type: {locations}} ({None} = available, place unknown)."""
    if raw is None:
        return None
    result: dict[str, set] = {}
    if isinstance(raw, list):
        for entry in raw:
            loc = _get(entry, "location_code", "location")
            for t in _get(entry, "availabilities", default=[]) or []:
                result.setdefault(t, set()).add(loc)
        return result
    if isinstance(raw, dict):
        for key, value in raw.items():
            if _gpus.from_verda_instance_type(str(key)) is not None or re.match(r"^\d+[A-Za-z]", str(key)):
                if isinstance(value, bool):
                    if value:
                        result.setdefault(key, set()).add(None)
                else:
                    result.setdefault(key, set()).update(value or [])
            else:  # location -> types
                for t in value or []:
                    result.setdefault(t, set()).add(key)
        return result
    raise TypeError(f"unsupported Verda availability shape: {type(raw).__name__}")


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
