"""Offers and the choice (helpers/offers.py): the clusters' free offers, cheapest-fit, spot, stock, constraints, and
the no-fit suggestion. Each cloud's own answers and price table: tests/test_<cloud>_catalog.py."""

import pytest

from helpers import gpus, offers, vram
from helpers.backends.base import descriptor
from helpers.errors import ConfigError
from helpers.offers import Offer, choose


def _offer(key, price, count=1, **kw):
    return Offer(kw.pop("provider", "runpod"), gpus.resolve(key), count, price, **kw)


# ------------------------------------------------------------------------------------------ fallback tables


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
