"""Verda's offers (helpers/backends/verda/catalog.py): its dated price table and the SDK's instance types and
availability parsed into offers, with the real SDK against the emulator."""

from types import SimpleNamespace

import pytest

from helpers import gpus, vram
from helpers.backends.verda.catalog import fallback_offers, from_instance_types
from helpers.offers import choose


def test_verda_fallback_table():
    table = fallback_offers()
    names = {o.instance_type for o in table}
    assert {"1H100.80S.30V", "8H100.80S.176V", "1A100.22V", "4A100.88V", "1A100.40S.22V", "1H200.141S.44V",
            "1B200.30V"} <= names  # names attested in GPU_FACTS §3.2 / CLOUD_APIS §2.4.1
    for o in table:  # every name parses back to the offer's GPU and count
        assert gpus.from_verda_instance_type(o.instance_type) == (o.gpu, o.gpu_count)
    h100 = {o.spot: o.price_per_hour for o in table if o.instance_type == "1H100.80S.30V"}
    assert h100 == {False: 2.29, True: 0.8015}
    assert not {"H100-PCIE", "RTX-4090"} & {o.gpu.key for o in table}  # Verda's H100 is SXM5 only


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
    found = from_instance_types(VERDA_TYPES, avail, spot_availability=spot_avail)
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
    found = from_instance_types(VERDA_TYPES[:1], availability)
    assert {(o.location, o.in_stock) for o in found} == {("FIN-01", True)}


def test_verda_availability_bool_and_unknown():
    assert {o.in_stock for o in from_instance_types(VERDA_TYPES[:1], {"1H100.80S.30V": False})} == {False}
    unknown = from_instance_types(VERDA_TYPES[:1], None)
    assert {(o.location, o.in_stock) for o in unknown} == {(None, True)}


def test_verda_sdk_objects_and_the_emulator(tmp_path):
    """The real `verda` SDK against the project's Verda emulator: instance types and availability as the SDK
    returns them (InstanceType objects, spot_price_per_hour floats) parse into offers Trainyard can choose from."""
    from emulators.verda_api import VerdaEmulator
    from helpers.backends.verda.api import availabilities
    from tests.openapi_contract import VERDA, verda_exchanges
    from verda import VerdaClient

    with VerdaEmulator(tmp_path / "verda", ssh=False) as emu:
        client = VerdaClient("verda_test_id", "verda_test_secret", base_url=emu.base_url)
        types = client.instance_types.get()
        found = from_instance_types(types, availabilities(client, False), spot_availability=availabilities(client, True))
    VERDA.check(verda_exchanges(emu.calls))
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
    found = from_instance_types([obj])
    assert {(o.gpu.key, o.spot, o.price_per_hour) for o in found} == {("L40S", False, 0.9), ("L40S", True, 0.3)}
