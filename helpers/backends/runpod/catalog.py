"""What RunPod offers: its answers (REST v2's catalog, GraphQL's gpuTypes for spot) parsed into offers, and its dated
price table for a plan without a key or network."""

from __future__ import annotations

import re

from helpers import gpus as gpu_catalog
from helpers.backends.runpod.api import RunPodApi
from helpers.gpus import Gpu
from helpers.offers import RUNPOD_GPU_COUNTS, Offer, price_or_none

# RunPod, USD per GPU-hour: (GPU, secure on-demand, community on-demand, spot, spot tier, as-of date).
# The as-of date is the newest date of the figures used; sources per GPU_FACTS.md §3.1:
# on-demand from datareceipts vendors.json (2026-11-09) where listed, else privum (2026-08-19),
# api-evangelist (2026-10-07) or carsonpo/gpus (2025-07-13); spot from Malaeu/nanoGPT-RH (2026-01-01,
# tier not stated -> None) or the dstack docs example (A100 PCIe community spot, 2025-10-02).
FALLBACK: tuple[tuple[str, float | None, float | None, float | None, str | None, str], ...] = (
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


def fallback_offers() -> list[Offer]:
    """RunPod's dated table (FALLBACK): on-demand per cloud and spot, for every GPU count a pod takes."""
    by = gpu_catalog.BY_KEY
    out: list[Offer] = []
    for key, secure, community, spot, spot_cloud, as_of in FALLBACK:
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


def offers(api: RunPodApi | None, job, offline: bool = False) -> tuple[list[Offer], str]:
    """(offers, source): live on-demand offers from REST v2's catalog (list prices per cloud, pod stock for the job's
    GPU count), plus spot offers from GraphQL when the job allows spot (SpotUnavailable once GraphQL is gone); or
    the dated table offline."""
    if api is None or offline:
        return fallback_offers(), "price table"
    count, cloud = job.resources.gpu_count, job.resources.cloud
    pool = from_catalog(api.gpu_catalog(count, cloud), count)
    if job.resources.spot:
        pool += [o for o in from_gpu_types(api.spot_gpu_types(count, cloud), count) if o.spot]
    return pool, "live"


def from_catalog(catalog: dict[str, list[dict]], gpu_count: int) -> list[Offer]:
    """On-demand offers from RunPod's REST v2 catalog (`GET /v2/catalog/gpus?include=AVAILABILITY&product=POD`), one
    answer per cloud tier asked ({"secure": [GpuType], "community": [...]}): list price per GPU-hour for the tier
    (offers carry the whole pod's price); out of stock when the tier's `availability` is NONE or `maxCount` is below
    `gpu_count`. A tier the GPU is not offered in (`secure`/`community` false) gives no offer."""
    out: list[Offer] = []
    for tier, gpu_types in catalog.items():
        for item in gpu_types or []:
            gpu = _gpu({"id": item.get("id"), "displayName": item.get("name"), "memoryInGb": item.get("memory")})
            price = price_or_none((item.get("price") or {}).get(tier))
            if gpu is None or not item.get(tier) or price is None:
                continue
            stock, most = item.get("availability"), (item.get("maxCount") or {}).get(tier)
            in_stock, stock = stock != "NONE", (stock or "").capitalize() or None
            if isinstance(most, int) and gpu_count > most:
                in_stock, stock = False, f"max {most} GPUs per pod"
            out.append(Offer("runpod", gpu, gpu_count, round(price * gpu_count, 4), False, tier, in_stock=in_stock,
                             gpu_type_id=item.get("id"), stock=stock))
    return out


def from_gpu_types(gpu_types: list[dict], gpu_count: int) -> list[Offer]:
    """Offers from RunPod's GraphQL `gpuTypes` (CLOUD_APIS.md §1.3.2/§1.3.7): one per cloud tier and spot/on-demand.

    Prices in the API are per GPU-hour; offers carry the whole pod's price. `lowestPrice.stockStatus` "None",
    `availableGpuCounts` without `gpu_count`, or `maxGpuCount` below it mark the offer out of stock.
    """
    out: list[Offer] = []
    for item in gpu_types or []:
        gpu = _gpu(item)
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
                price = price_or_none(item.get(key))
                if price is not None:
                    out.append(Offer("runpod", gpu, gpu_count, round(price * gpu_count, 4), spot, cloud,
                                     in_stock=in_stock, gpu_type_id=item.get("id"), stock=stock))
        if not any(o.gpu is gpu and o.spot for o in out):
            bid = price_or_none(lowest.get("minimumBidPrice"))
            if bid is not None:
                out.append(Offer("runpod", gpu, gpu_count, round(bid * gpu_count, 4), True, None,
                                 in_stock=in_stock, gpu_type_id=item.get("id"), stock=stock))
        if not any(o.gpu is gpu for o in out):
            od = price_or_none(lowest.get("uninterruptablePrice"))
            if od is not None:
                out.append(Offer("runpod", gpu, gpu_count, round(od * gpu_count, 4), False, None,
                                 in_stock=in_stock, gpu_type_id=item.get("id"), stock=stock))
    return out


def _gpu(item: dict) -> Gpu | None:
    gpu_id, display = item.get("id") or "", item.get("displayName") or ""
    if not gpu_id or gpu_id == "unknown":
        return None
    gpu = gpu_catalog.find(gpu_id) or gpu_catalog.find(display)
    if gpu is not None:
        return gpu
    memory = item.get("memoryInGb") or 0
    if not memory:
        return None
    # A GPU RunPod added after our catalog: usable, with what the API says about it.
    key = re.sub(r"[^A-Za-z0-9]+", "-", display or gpu_id).strip("-").upper()
    return Gpu(key, display or gpu_id, float(memory), None, (), runpod_id=gpu_id)
