"""What Verda offers: its instance types and availability (the SDK's answers) parsed into offers, and its dated price
table for a plan without credentials or network."""

from __future__ import annotations

import re
from typing import Any

from helpers import gpus as gpu_catalog
from helpers.backends.provider import call
from helpers.backends.verda.api import api, availabilities
from helpers.gpus import Gpu
from helpers.offers import DEFAULT_GPU_COUNTS, Offer, first_field, price_or_none

# Verda, USD per GPU-hour: (GPU, on-demand, spot, as-of, vCPUs per GPU for the instance-type name).
# GPU_FACTS.md §3.2: SkyPilot catalog snapshot B (undated, before 2026-08; the later and higher of the two)
# for most rows; A100 40GB spot from pulsebenchmarks (2026-04-19); RTX A6000 from lanternworks (2026-10-29);
# L40S and RTX 6000 Ada spot from snapshot A (snapshot B lists none). Instance-type names follow Verda's
# "<count><family>.<vCPUs>V" pattern; attested names (1H100.80S.30V, 8H100.80S.176V, 1A100.22V, 4A100.88V,
# 1A100.40S.22V, 1H200.141S.44V, 1B200.30V) are used as is, the rest are derived and replaced by live data.
FALLBACK: tuple[tuple[str, float, float | None, str, int], ...] = (
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
_NAME_OVERRIDES = {("H100-SXM", 8): "8H100.80S.176V"}


def fallback_offers() -> list[Offer]:
    """Verda's dated table (FALLBACK): on-demand and spot per instance type."""
    by = gpu_catalog.BY_KEY
    out: list[Offer] = []
    for key, price, spot, as_of, vcpus in FALLBACK:
        gpu, src = by[key], f"fallback {as_of}"
        for n in DEFAULT_GPU_COUNTS:
            name = _NAME_OVERRIDES.get((key, n)) or f"{n}{gpu.verda_prefix}.{vcpus * n}V"
            out.append(Offer("verda", gpu, n, round(price * n, 4), False, instance_type=name, source=src))
            if spot is not None:
                out.append(Offer("verda", gpu, n, round(spot * n, 4), True, instance_type=name, source=src))
    return out


def offers(verda_client=None, offline: bool = False) -> tuple[list[Offer], str]:
    """(offers, source): live from the API, or the dated table without credentials/network."""
    if verda_client is not None and not offline:
        # 429/5xx are repeated with backoff here too: a plan (or a relaunch) must not fail on one bad answer
        types = call(api, verda_client.instance_types.get, what="listing instance types", attempts=5, max_wait_s=20)
        on_demand = call(api, availabilities, verda_client, False, what="reading availability", attempts=5, max_wait_s=20)
        spot = call(api, availabilities, verda_client, True, what="reading availability", attempts=5, max_wait_s=20)
        return from_instance_types(types, on_demand, spot_availability=spot), "live"
    return fallback_offers(), "price table"


def from_instance_types(types: list, availability: Any = None, *, spot_availability: Any = None) -> list[Offer]:
    """Offers from Verda's instance types (SDK `InstanceType` objects or the raw JSON of GET /instance-types).

    `availability` says where each type can start now; accepted shapes: the SDK's
    `[{"location_code": "FIN-01", "availabilities": ["1H100.80S.30V", ...]}]`, `{location: [types]}`,
    `{type: [locations]}` or `{type: bool}`. None means unknown (offers count as in stock, location None).
    `spot_availability` is the same for spot (`get_availabilities(is_spot=True)`); it defaults to `availability`.
    """
    on_demand = _availability(availability)
    spot_avail = _availability(spot_availability) if spot_availability is not None else on_demand
    out: list[Offer] = []
    for item in types or []:
        name = str(first_field(item, "instance_type", default="") or "")
        parsed = gpu_catalog.from_verda_instance_type(name) if name else None
        count = first_field(item, "gpu", default={})
        count = (count.get("number_of_gpus") if isinstance(count, dict) else None) or (parsed[1] if parsed else 0)
        if not count:
            continue  # CPU instance
        gpu = parsed[0] if parsed else _gpu(item, int(count))
        if gpu is None:
            continue
        price = price_or_none(first_field(item, "price_per_hour"))
        spot_price = price_or_none(first_field(item, "spot_price", "spot_price_per_hour"))
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


def _gpu(item: Any, count: int) -> Gpu | None:
    """The GPU of an instance type whose name we could not parse, from its descriptive fields."""
    memory = first_field(item, "gpu_memory", default={})
    memory = memory.get("size_in_gigabytes") if isinstance(memory, dict) else None  # all GPUs together
    memory = float(memory) / count if memory else None
    for field_name in ("name", "display_name", "model"):
        gpu = gpu_catalog.find(str(first_field(item, field_name, default="") or ""))
        if gpu is not None and (not memory or abs(gpu.memory_gb - float(memory)) <= 8):
            return gpu
    return None


def _availability(raw: Any) -> dict[str, set] | None:
    """Normalise the availability shapes to {instance_type: {locations}} ({None} = available, place unknown)."""
    if raw is None:
        return None
    result: dict[str, set] = {}
    if isinstance(raw, list):
        for entry in raw:
            loc = first_field(entry, "location_code", "location")
            for t in first_field(entry, "availabilities", default=[]) or []:
                result.setdefault(t, set()).add(loc)
        return result
    if isinstance(raw, dict):
        for key, value in raw.items():
            if gpu_catalog.from_verda_instance_type(str(key)) is not None or re.match(r"^\d+[A-Za-z]", str(key)):
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
