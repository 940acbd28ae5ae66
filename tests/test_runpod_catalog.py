"""RunPod's offers (helpers/backends/runpod/catalog.py): its dated price table and its answers (REST v2's catalog,
GraphQL's gpuTypes) parsed into offers the choice can use."""

import pytest

from helpers.backends.runpod.catalog import fallback_offers, from_catalog, from_gpu_types
from helpers.errors import ConfigError
from helpers.offers import choose


def test_runpod_fallback_table():
    table = fallback_offers()
    assert {o.gpu_count for o in table} == {1, 2, 4, 6, 8}  # seed 004's pod sizes
    h100 = [o for o in table if o.gpu.key == "H100-SXM" and not o.spot]
    assert {(o.cloud, o.gpu_count, o.price_per_hour) for o in h100 if o.gpu_count in (1, 8)} == {
        ("secure", 1, 3.99), ("community", 1, 2.69), ("secure", 8, 31.92), ("community", 8, 21.52)}
    assert all(o.source.startswith("fallback 20") for o in table)
    assert all(o.gpu_type_id == o.gpu.runpod_id and o.gpu_type_id for o in table)
    rtx4090 = {(o.cloud, o.spot): o.price_per_hour for o in table if o.gpu.key == "RTX-4090" and o.gpu_count == 1}
    assert rtx4090 == {("secure", False): 0.69, ("community", False): 0.34, (None, True): 0.50}


RUNPOD_GPU_TYPES = [  # the gpuTypes shape of CLOUD_APIS.md §1.3.2/§1.3.7 (values made up)
    {"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24, "maxGpuCount": 8,
     "secureCloud": True, "communityCloud": True, "securePrice": 0.69, "communityPrice": 0.34,
     "secureSpotPrice": 0.35, "communitySpotPrice": 0.2,
     "lowestPrice": {"minimumBidPrice": 0.2, "uninterruptablePrice": 0.34, "stockStatus": "High",
                     "availableGpuCounts": [1, 2, 4]}},
    {"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "memoryInGb": 80, "maxGpuCount": 8,
     "secureCloud": True, "communityCloud": False, "securePrice": 2.99, "communityPrice": 2.69,
     "secureSpotPrice": None, "communitySpotPrice": None, "lowestPrice": {"stockStatus": "Low"}},
    {"id": "NVIDIA L40S", "displayName": "L40S", "memoryInGb": 48, "secureCloud": True, "communityCloud": True,
     "securePrice": 0.86, "communityPrice": 0.79, "lowestPrice": {"stockStatus": "None"}},
    {"id": "NVIDIA B300 Ultra", "displayName": "B300 Ultra", "memoryInGb": 288, "securePrice": 9.0},
    {"id": "unknown", "displayName": "unknown", "memoryInGb": 0},
]


def test_from_gpu_types():
    found = from_gpu_types(RUNPOD_GPU_TYPES, gpu_count=2)
    rows = {(o.gpu.key, o.cloud, o.spot): (o.price_per_hour, o.in_stock) for o in found}
    assert rows[("RTX-4090", "secure", False)] == (1.38, True)  # per-GPU price x 2
    assert rows[("RTX-4090", "community", True)] == (0.4, True)
    assert ("H100-SXM", "community", False) not in rows  # communityCloud false
    assert rows[("H100-SXM", "secure", False)] == (5.98, True)
    assert rows[("L40S", "secure", False)] == (1.72, False)  # stockStatus "None"
    new = [o for o in found if o.gpu.name == "B300 Ultra"]
    assert new and new[0].gpu.memory_gb == 288 and new[0].gpu_type_id == "NVIDIA B300 Ultra"
    assert all(o.source == "live" and o.gpu_count == 2 for o in found)
    assert all(o.gpu_type_id for o in found)
    eight = {o.gpu.key: o for o in from_gpu_types(RUNPOD_GPU_TYPES, gpu_count=8) if not o.spot}
    assert not eight["RTX-4090"].in_stock and eight["RTX-4090"].stock == "only 1, 2, 4 GPUs available"
    choice = choose(found, 30, gpu_count=2)
    assert choice.offer.gpu.key == "H100-SXM"  # L40S is cheaper but out of stock
    assert {c.reason for c in choice.candidates if c.offer.gpu.key == "L40S"} == {"out of stock (None)"}


def _gpu_type(gid, name, memory, secure, community, most=8, availability="HIGH"):
    """A REST v2 GpuType (listGpuTypes with include=AVAILABILITY): a tier not offered has its flag false."""
    return {"id": gid, "name": name, "pool": None, "manufacturer": "NVIDIA", "memory": memory,
            "secure": secure is not None, "community": community is not None,
            "price": {"secure": secure or 0.0, "community": community or 0.0},
            "maxCount": {"secure": most if secure else 0, "community": most if community else 0},
            "availability": availability}


def test_from_catalog():
    catalog = {"secure": [_gpu_type("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, most=4),
                          _gpu_type("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, None, availability="LOW"),
                          _gpu_type("NVIDIA L40S", "L40S", 48, 0.86, 0.79, availability="NONE"),
                          _gpu_type("NVIDIA B300 Ultra", "B300 Ultra", 288, 9.0, None)],
               "community": [_gpu_type("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, most=4),
                             _gpu_type("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, None, availability="NONE"),
                             _gpu_type("NVIDIA L40S", "L40S", 48, 0.86, 0.79, availability="MEDIUM")]}
    found = from_catalog(catalog, gpu_count=2)
    rows = {(o.gpu.key, o.cloud): (o.price_per_hour, o.in_stock, o.stock) for o in found}
    assert rows[("RTX-4090", "secure")] == (1.38, True, "High")  # per-GPU list price x 2, the tier's own stock
    assert rows[("RTX-4090", "community")] == (0.68, True, "High")
    assert ("H100-SXM", "community") not in rows  # community false: no offer, whatever its stock says
    assert rows[("H100-SXM", "secure")] == (5.98, True, "Low")
    assert rows[("L40S", "secure")] == (1.72, False, "None") and rows[("L40S", "community")][1]
    assert not any(o.spot for o in found) and all(o.gpu_type_id and o.source == "live" for o in found)
    new = [o for o in found if o.gpu.name == "B300 Ultra"]
    assert new and new[0].gpu.memory_gb == 288
    eight = {(o.gpu.key, o.cloud): o for o in from_catalog(catalog, gpu_count=8)}
    assert not eight[("RTX-4090", "secure")].in_stock and eight[("RTX-4090", "secure")].stock == "max 4 GPUs per pod"
    choice = choose(found, 30, gpu_count=2)
    assert (choice.offer.gpu.key, choice.offer.cloud) == ("L40S", "community")  # secure L40S is out of stock


def test_runpod_pod_sizes_are_enforced_even_for_live_offers():
    live = from_gpu_types(RUNPOD_GPU_TYPES, gpu_count=3)
    with pytest.raises(ConfigError) as err:
        choose(live, 10, gpu_count=3)
    assert err.value.key == "resources.gpu_count" and "use gpu_count 4" in err.value.fix
