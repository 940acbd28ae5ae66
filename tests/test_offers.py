"""Offers and the choice: fallback price tables, live RunPod/Verda shapes, cheapest-fit, spot, stock, constraints,
and the no-fit suggestion."""

from types import SimpleNamespace

import pytest

from helpers import gpus, offers, vram
from helpers.backends.base import descriptor
from helpers.errors import ConfigError
from helpers.offers import (
    Offer, choose, from_runpod_catalog, from_runpod_gpu_types, from_verda_instance_types,
)


def _offer(key, price, count=1, **kw):
    return Offer(kw.pop("provider", "runpod"), gpus.resolve(key), count, price, **kw)


# ------------------------------------------------------------------------------------------ fallback tables


def test_runpod_fallback_table():
    table = descriptor("runpod").fallback_offers()
    assert {o.gpu_count for o in table} == {1, 2, 4, 6, 8}  # seed 004's pod sizes
    h100 = [o for o in table if o.gpu.key == "H100-SXM" and not o.spot]
    assert {(o.cloud, o.gpu_count, o.price_per_hour) for o in h100 if o.gpu_count in (1, 8)} == {
        ("secure", 1, 3.99), ("community", 1, 2.69), ("secure", 8, 31.92), ("community", 8, 21.52)}
    assert all(o.source.startswith("fallback 20") for o in table)
    assert all(o.gpu_type_id == o.gpu.runpod_id and o.gpu_type_id for o in table)
    rtx4090 = {(o.cloud, o.spot): o.price_per_hour for o in table if o.gpu.key == "RTX-4090" and o.gpu_count == 1}
    assert rtx4090 == {("secure", False): 0.69, ("community", False): 0.34, (None, True): 0.50}


def test_verda_fallback_table():
    table = descriptor("verda").fallback_offers()
    names = {o.instance_type for o in table}
    assert {"1H100.80S.30V", "8H100.80S.176V", "1A100.22V", "4A100.88V", "1A100.40S.22V", "1H200.141S.44V",
            "1B200.30V"} <= names  # names attested in GPU_FACTS §3.2 / CLOUD_APIS §2.4.1
    for o in table:  # every name parses back to the offer's GPU and count
        assert gpus.from_verda_instance_type(o.instance_type) == (o.gpu, o.gpu_count)
    h100 = {o.spot: o.price_per_hour for o in table if o.instance_type == "1H100.80S.30V"}
    assert h100 == {False: 2.29, True: 0.8015}
    assert not {"H100-PCIE", "RTX-4090"} & {o.gpu.key for o in table}  # Verda's H100 is SXM5 only


def test_cluster_fallbacks_cost_nothing():
    chtc = descriptor("chtc").fallback_offers()
    assert {o.gpu.key for o in chtc} >= {"H100-SXM", "H200-SXM", "L40S", "A100-SXM-80GB"}
    assert all(o.price_per_hour == 0 for o in chtc)
    assert max(o.gpu_count for o in chtc if o.gpu.key == "A100-SXM-80GB") == 4  # 4 per server
    assert max(o.gpu_count for o in chtc if o.gpu.key == "L40") == 10
    slurm = descriptor("slurm").fallback_offers()
    assert {o.gpu.key for o in slurm} == {"A100-SXM-80GB", "H100-SXM"} and all(o.price_per_hour == 0 for o in slurm)
    assert descriptor("local").fallback_offers() == []
    local = offers.cluster_offers("local", [("RTX 4090", 1)])
    assert [(o.gpu.key, o.gpu_count, o.price_per_hour) for o in local] == [("RTX-4090", 1, 0.0)]
    with pytest.raises(ConfigError):
        descriptor("lambda").fallback_offers()


# ------------------------------------------------------------------------------------------------- choice


def test_cheapest_that_fits_and_why_the_others_lost():
    table = descriptor("runpod").fallback_offers()
    need = vram.PRESETS["openpi/pi0_libero_low_mem_finetune"].estimate()  # ~22.7 GB
    choice = choose(table, need, gpu_count=1, cloud="secure")
    assert (choice.offer.gpu.key, choice.offer.cloud, choice.offer.price_per_hour) == ("RTX-A6000", "secure", 0.49)
    reasons = {(c.offer.gpu.key, c.offer.cloud, c.offer.spot): c.reason for c in choice.candidates}
    assert reasons[("RTX-A6000", "secure", False)] == "cheapest that fits"
    assert reasons[("RTX-4090", "secure", False)] == "fits; $0.20/h more"
    assert reasons[("RTX-2000-ADA", "secure", False)] == "16 GB < 23 GB needed"
    assert reasons[("RTX-4090", "community", False)] == "community cloud (resources.cloud is secure)"
    assert reasons[("L40S", None, True)].startswith("spot (not allowed")
    assert all(c.offer.gpu_count == 1 for c in choice.candidates)
    fits = [c.fits for c in choice.candidates]
    assert fits == sorted(fits, reverse=True)  # fitting rows first
    assert choice.explain().startswith("1x RTX A6000 48GB on runpod secure at $0.49/h (fallback 2025-07-13)")
    assert choice.rows()[0] == ("1x RTX A6000 48GB (runpod secure, $0.49/h)", "0.49", "cheapest that fits")


def test_any_cloud_takes_community_and_spot_wins_when_allowed():
    table = descriptor("runpod").fallback_offers()
    assert choose(table, 10, gpu_count=1).offer.price_per_hour == 0.28  # RTX 2000 Ada secure
    assert choose(table, 10, gpu_count=1, cloud="any").offer.price_per_hour == 0.28
    spot = choose(table, 10, gpu_count=1, spot_allowed=True).offer
    assert (spot.gpu.key, spot.spot, spot.price_per_hour) == ("RTX-2000-ADA", True, 0.18)
    big = choose(table, 70, gpu_count=2, spot_allowed=True).offer  # 80 GB class, 2 GPUs
    assert (big.gpu.key, big.spot, big.price_per_hour) == ("A100-PCIE-80GB", True, 1.64)


def test_equal_price_prefers_on_demand_then_secure_then_more_memory():
    tied = [_offer("RTX 4090", 1.0, spot=True), _offer("RTX 4090", 1.0, cloud="community"),
            _offer("RTX 4090", 1.0, cloud="secure"), _offer("L40S", 1.0, cloud="secure")]
    assert choose(tied, 10, gpu_count=1, spot_allowed=True).offer.gpu.key == "L40S"
    assert choose(tied[:3], 10, gpu_count=1, spot_allowed=True).offer.cloud == "secure"


def test_stock_constraints():
    stocked = [_offer("L40S", 0.5, in_stock=False, stock="None"), _offer("RTX A6000", 0.6),
               _offer("H100", 2.0, in_stock=False)]
    choice = choose(stocked, 30, gpu_count=1)
    assert choice.offer.gpu.key == "RTX-A6000"
    reasons = {c.offer.gpu.key: c.reason for c in choice.candidates}
    assert reasons["L40S"] == "out of stock (None)" and reasons["H100-SXM"] == "out of stock"


def test_gpu_allow_list_min_vram_location_and_price():
    table = descriptor("verda").fallback_offers()
    pinned = choose(table, 20, gpu_count=1, allowed_gpus=["H100", "h200"])
    assert pinned.offer.gpu.key == "H100-SXM"
    assert any(c.reason.startswith("not in resources.gpu (H100-SXM, H200-SXM)") for c in pinned.candidates)
    assert choose(table, 20, gpu_count=1, min_vram_gb=80).offer.gpu.key == "A100-SXM-80GB"
    capped = choose(table, 20, gpu_count=1, max_price_per_hour=0.8)
    assert capped.offer.price_per_hour <= 0.8
    assert any(c.reason == "$0.83/h > max $0.80/h" for c in capped.candidates)
    located = [_offer("L40S", 0.5, provider="verda", location="FIN-01"),
               _offer("L40S", 0.7, provider="verda", location="ICE-01")]
    assert choose(located, 20, gpu_count=1, location="ice-01").offer.location == "ICE-01"
    with pytest.raises(ConfigError) as err:
        choose(table, 20, gpu_count=1, allowed_gpus=["H1000"])
    assert "did you mean 'H100'?" in str(err.value)


def test_gpu_counts_per_provider():
    with pytest.raises(ConfigError) as err:
        choose(descriptor("runpod").fallback_offers(), 10, gpu_count=3)
    assert err.value.key == "resources.gpu_count"
    assert str(err.value).endswith("use gpu_count 4 (offered: 1, 2, 4, 6, 8)")
    assert offers.valid_gpu_counts("runpod") == (1, 2, 4, 6, 8)
    assert offers.valid_gpu_counts("verda", descriptor("verda").fallback_offers()) == (1, 2, 4, 8)
    assert choose(descriptor("runpod").fallback_offers(), 10, gpu_count=6).offer.gpu_count == 6


def test_no_fit_suggests_more_gpus_with_zero3_or_lora():
    # ~140 GB per GPU (7B full fine-tune), pinned to H100: 2 GPUs with ZeRO-3 fit, so does LoRA on one.
    est = vram.estimate(7e9, "full", batch_size=1, gradient_checkpointing=True, seq_len=1024,
                        hidden_size=4096, layers=32, vocab_size=32000)
    assert 130 < est.total_gb < 150
    with pytest.raises(ConfigError) as err:
        choose(descriptor("runpod").fallback_offers(), est, gpu_count=1, allowed_gpus="H100")
    e = err.value
    assert e.key == "resources" and e.problem == f"needs ~{int(est.total_gb) + 1} GB per GPU; no offer fits"
    assert e.fix.startswith("set resources.gpu_count: 2 and model.sharding: zero3 (2x H100 SXM 80GB, ~71 GB per GPU), "
                            "or set model.method: lora")
    # and the constraint that keeps a big-enough GPU out: the cheapest GPU that would hold it on its own
    assert e.fix.endswith("or add H200-NVL to resources.gpu (H200 NVL 143GB at $3.39/h would hold it)")


def test_no_fit_when_only_constraints_block_big_enough_gpus():
    with pytest.raises(ConfigError) as err:
        choose(descriptor("runpod").fallback_offers(), 61, gpu_count=1, cloud="secure", max_price_per_hour=1.5)
    assert err.value.fix == "set resources.cloud: any (A100 PCIe 80GB at $1.19/h would hold it)"
    with pytest.raises(ConfigError) as err:
        choose([_offer("H100", 2.0, spot=True)], 61, gpu_count=1)
    assert err.value.fix.startswith("set resources.spot: true")


def test_no_fit_falls_back_to_gradient_checkpointing_and_batch():
    est = vram.estimate(8e9, "full", batch_size=8, seq_len=4096, hidden_size=4096, layers=32, vocab_size=128256)
    with pytest.raises(ConfigError) as err:  # a trainer with a checkpointing key: that first
        choose(descriptor("chtc").fallback_offers(), est, gpu_count=1,
               advice=offers.Advice(checkpointing="policy.gradient_checkpointing: true"))
    assert err.value.fix.startswith("set policy.gradient_checkpointing: true and resources.gpu_count: 2 and "
                                    "model.sharding: zero3 (2x H200 SXM 141GB")
    with pytest.raises(ConfigError) as err:  # one without: the batch
        choose(descriptor("chtc").fallback_offers(), est, gpu_count=1)
    assert err.value.fix.startswith("set training.batch_size: 1 and resources.gpu_count: 2 and model.sharding: zero3")
    with pytest.raises(ConfigError) as err:
        choose(descriptor("chtc").fallback_offers(), 5000, gpu_count=1)
    assert err.value.fix.startswith("pick a GPU with at least 5000 GB (largest offered: H200 SXM 141GB)")


def test_no_offers_at_all():
    with pytest.raises(ConfigError) as err:
        choose([], 10, gpu_count=1)
    assert err.value.problem == "no GPU offers to choose from"


# --------------------------------------------------------------------------------------------- live RunPod

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


def test_from_runpod_gpu_types():
    found = from_runpod_gpu_types(RUNPOD_GPU_TYPES, gpu_count=2)
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
    eight = {o.gpu.key: o for o in from_runpod_gpu_types(RUNPOD_GPU_TYPES, gpu_count=8) if not o.spot}
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


def test_from_runpod_catalog():
    catalog = {"secure": [_gpu_type("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, most=4),
                          _gpu_type("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, None, availability="LOW"),
                          _gpu_type("NVIDIA L40S", "L40S", 48, 0.86, 0.79, availability="NONE"),
                          _gpu_type("NVIDIA B300 Ultra", "B300 Ultra", 288, 9.0, None)],
               "community": [_gpu_type("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, most=4),
                             _gpu_type("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, None, availability="NONE"),
                             _gpu_type("NVIDIA L40S", "L40S", 48, 0.86, 0.79, availability="MEDIUM")]}
    found = from_runpod_catalog(catalog, gpu_count=2)
    rows = {(o.gpu.key, o.cloud): (o.price_per_hour, o.in_stock, o.stock) for o in found}
    assert rows[("RTX-4090", "secure")] == (1.38, True, "High")  # per-GPU list price x 2, the tier's own stock
    assert rows[("RTX-4090", "community")] == (0.68, True, "High")
    assert ("H100-SXM", "community") not in rows  # community false: no offer, whatever its stock says
    assert rows[("H100-SXM", "secure")] == (5.98, True, "Low")
    assert rows[("L40S", "secure")] == (1.72, False, "None") and rows[("L40S", "community")][1]
    assert not any(o.spot for o in found) and all(o.gpu_type_id and o.source == "live" for o in found)
    new = [o for o in found if o.gpu.name == "B300 Ultra"]
    assert new and new[0].gpu.memory_gb == 288
    eight = {(o.gpu.key, o.cloud): o for o in from_runpod_catalog(catalog, gpu_count=8)}
    assert not eight[("RTX-4090", "secure")].in_stock and eight[("RTX-4090", "secure")].stock == "max 4 GPUs per pod"
    choice = choose(found, 30, gpu_count=2)
    assert (choice.offer.gpu.key, choice.offer.cloud) == ("L40S", "community")  # secure L40S is out of stock


# ---------------------------------------------------------------------------------------------- live Verda

VERDA_TYPES = [  # GET /instance-types shape (CLOUD_APIS.md §2.4.1): prices as strings
    {"instance_type": "1H100.80S.30V", "model": "H100", "name": "H100 SXM5 80GB", "price_per_hour": "2.19",
     "spot_price": "1.09", "gpu": {"number_of_gpus": 1}, "gpu_memory": {"size_in_gigabytes": 80}},
    {"instance_type": "4H100.80S.176V", "model": "H100", "name": "H100 SXM5 80GB", "price_per_hour": "8.76",
     "spot_price": "4.36", "gpu": {"number_of_gpus": 4}, "gpu_memory": {"size_in_gigabytes": 320}},
    {"instance_type": "1L40S.20V", "model": "L40S", "name": "L40S 48GB", "price_per_hour": "0.91",
     "spot_price": "0", "gpu": {"number_of_gpus": 1}, "gpu_memory": {"size_in_gigabytes": 48}},
    {"instance_type": "CPU.4V.16G", "model": "CPU Node", "price_per_hour": "0.05", "spot_price": "0.02",
     "gpu": {"number_of_gpus": 0}},
]


def test_from_verda_instance_types_with_sdk_availability_shape():
    avail = [{"location_code": "FIN-01", "availabilities": ["1H100.80S.30V", "1L40S.20V"]},
             {"location_code": "ICE-01", "availabilities": ["1H100.80S.30V"]}]
    spot_avail = [{"location_code": "FIN-01", "availabilities": ["1H100.80S.30V"]}]
    found = from_verda_instance_types(VERDA_TYPES, avail, spot_availability=spot_avail)
    rows = {(o.instance_type, o.spot, o.location): (o.price_per_hour, o.in_stock, o.gpu.key, o.gpu_count)
            for o in found}
    assert rows[("1H100.80S.30V", False, "FIN-01")] == (2.19, True, "H100-SXM", 1)
    assert rows[("1H100.80S.30V", False, "ICE-01")] == (2.19, True, "H100-SXM", 1)
    assert rows[("1H100.80S.30V", True, "FIN-01")] == (1.09, True, "H100-SXM", 1)
    assert rows[("4H100.80S.176V", False, None)] == (8.76, False, "H100-SXM", 4)  # in no location
    assert ("1L40S.20V", True, "FIN-01") not in rows  # spot price "0": no spot offer
    assert not any(o.instance_type == "CPU.4V.16G" for o in found)
    choice = choose(found, 30, gpu_count=1, spot_allowed=True, location="FIN-01")
    assert (choice.offer.instance_type, choice.offer.spot) == ("1L40S.20V", False)
    assert choose(found, 60, gpu_count=1, spot_allowed=True).offer.price_per_hour == 1.09


@pytest.mark.parametrize("availability", [
    {"FIN-01": ["1H100.80S.30V"]},  # location -> types
    {"1H100.80S.30V": ["FIN-01"]},  # type -> locations
])
def test_verda_availability_dict_shapes(availability):
    found = from_verda_instance_types(VERDA_TYPES[:1], availability)
    assert {(o.location, o.in_stock) for o in found} == {("FIN-01", True)}


def test_verda_availability_bool_and_unknown():
    assert {o.in_stock for o in from_verda_instance_types(VERDA_TYPES[:1], {"1H100.80S.30V": False})} == {False}
    unknown = from_verda_instance_types(VERDA_TYPES[:1], None)
    assert {(o.location, o.in_stock) for o in unknown} == {(None, True)}


def test_verda_sdk_objects_and_the_emulator(tmp_path):
    """The real `verda` SDK against the project's Verda emulator: instance types and availability as the SDK
    returns them (InstanceType objects, spot_price_per_hour floats) parse into offers Trainyard can choose from."""
    from emulators.verda_api import VerdaEmulator
    from verda import VerdaClient

    with VerdaEmulator(tmp_path / "verda", ssh=False) as emu:
        client = VerdaClient("verda_test_id", "verda_test_secret", base_url=emu.base_url)
        types = client.instance_types.get()
        found = from_verda_instance_types(types, client.instances.get_availabilities(is_spot=False),
                                          spot_availability=client.instances.get_availabilities(is_spot=True))
    assert {type(t).__name__ for t in types} == {"InstanceType"}
    by_type = {o.instance_type for o in found}
    assert "1H100.80S.30V" in by_type and "CPU.4V.16G" not in by_type
    assert all(o.provider == "verda" and o.location for o in found)
    choice = choose(found, vram.PRESETS["openpi/pi0_libero"].estimate(), gpu_count=1, spot_allowed=True)
    assert choice.offer.gpu.memory_gb >= 80 and choice.offer.spot


def test_verda_sdk_like_objects_without_parseable_names():
    obj = SimpleNamespace(instance_type="1NEWGPU.12V", model="L40S", name="L40S 48GB", display_name="NVIDIA L40S",
                          price_per_hour=0.9, spot_price_per_hour=0.3, gpu={"number_of_gpus": 1},
                          gpu_memory={"size_in_gigabytes": 48})
    found = from_verda_instance_types([obj])
    assert {(o.gpu.key, o.spot, o.price_per_hour) for o in found} == {("L40S", False, 0.9), ("L40S", True, 0.3)}


def test_runpod_pod_sizes_are_enforced_even_for_live_offers():
    live = from_runpod_gpu_types(RUNPOD_GPU_TYPES, gpu_count=3)
    with pytest.raises(ConfigError) as err:
        choose(live, 10, gpu_count=3)
    assert err.value.key == "resources.gpu_count" and "use gpu_count 4" in err.value.fix
