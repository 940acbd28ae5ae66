"""GPU catalog: every RunPod id of seed 000, Verda families, CHTC device names, aliases and did-you-mean."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import gpus
from helpers.backends.base import descriptor
from helpers.errors import ConfigError

# `runpod.get_gpus()` of 2026-01-29, as listed in seed 000 (id, displayName, memoryInGb), minus 'unknown'.
SEED_000_RUNPOD = [
    ("AMD Instinct MI300X OAM", "MI300X", 192), ("NVIDIA A100 80GB PCIe", "A100 PCIe", 80),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM", 80), ("NVIDIA A30", "A30", 24), ("NVIDIA A40", "A40", 48),
    ("NVIDIA B200", "B200", 180), ("NVIDIA B300 SXM6 AC", "B300", 288),
    ("NVIDIA GeForce RTX 3070", "RTX 3070", 8), ("NVIDIA GeForce RTX 3080", "RTX 3080", 10),
    ("NVIDIA GeForce RTX 3080 Ti", "RTX 3080 Ti", 12), ("NVIDIA GeForce RTX 3090", "RTX 3090", 24),
    ("NVIDIA GeForce RTX 3090 Ti", "RTX 3090 Ti", 24), ("NVIDIA GeForce RTX 4070 Ti", "RTX 4070 Ti", 12),
    ("NVIDIA GeForce RTX 4080", "RTX 4080", 16), ("NVIDIA GeForce RTX 4080 SUPER", "RTX 4080 SUPER", 16),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 24), ("NVIDIA GeForce RTX 5080", "RTX 5080", 16),
    ("NVIDIA GeForce RTX 5090", "RTX 5090", 32), ("NVIDIA H100 80GB HBM3", "H100 SXM", 80),
    ("NVIDIA H100 NVL", "H100 NVL", 94), ("NVIDIA H100 PCIe", "H100 PCIe", 80), ("NVIDIA H200", "H200 SXM", 141),
    ("NVIDIA H200 NVL", "NVIDIA H200 NVL", 143), ("NVIDIA L4", "L4", 24), ("NVIDIA L40", "L40", 48),
    ("NVIDIA L40S", "L40S", 48), ("NVIDIA RTX 2000 Ada Generation", "RTX 2000 Ada", 16),
    ("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20),
    ("NVIDIA RTX 4000 SFF Ada Generation", "RTX 4000 Ada SFF", 20),
    ("NVIDIA RTX 5000 Ada Generation", "RTX 5000 Ada", 32), ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 48),
    ("NVIDIA RTX A2000", "RTX A2000", 6), ("NVIDIA RTX A4000", "RTX A4000", 16),
    ("NVIDIA RTX A4500", "RTX A4500", 20), ("NVIDIA RTX A5000", "RTX A5000", 24),
    ("NVIDIA RTX A6000", "RTX A6000", 48),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "RTX PRO 6000 MaxQ", 96),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000", 96),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "RTX PRO 6000 WK", 96),
    ("Tesla V100-PCIE-16GB", "Tesla V100", 16), ("Tesla V100-SXM2-16GB", "V100 SXM2", 16),
    ("Tesla V100-SXM2-32GB", "V100 SXM2 32GB", 32),
]


@pytest.mark.parametrize("gpu_id, display, memory", SEED_000_RUNPOD)
def test_every_runpod_id_of_seed_000_is_in_the_catalog(gpu_id, display, memory):
    by_id = gpus.resolve(gpu_id)
    assert by_id.runpod_id == gpu_id
    assert by_id.memory_gb == memory
    assert gpus.resolve(display) is by_id  # RunPod's displayName resolves to the same GPU


def test_runpod_catalog_is_exactly_seed_000_plus_documented_additions():
    ids = {g.runpod_id for g in descriptor("runpod").gpus()}
    assert ids == {row[0] for row in SEED_000_RUNPOD} | {"NVIDIA RTX PRO 4500 Blackwell"}


@pytest.mark.parametrize("spelling", [
    "H100", "h100", "h100-80gb", "H100 80GB", "NVIDIA H100 80GB HBM3", "H100 SXM", "H100_SXM", "h100 sxm5",
    "H100-SXM", "  nvidia h100 80gb hbm3 ",
])
def test_h100_aliases_resolve_case_space_dash_insensitively(spelling):
    assert gpus.resolve(spelling).key == "H100-SXM"


@pytest.mark.parametrize("spelling, key", [
    ("A100", "A100-SXM-80GB"), ("A100 80GB", "A100-SXM-80GB"), ("A100 PCIe", "A100-PCIE-80GB"),
    ("a100-40gb", "A100-SXM-40GB"), ("H200", "H200-SXM"), ("H200 NVL", "H200-NVL"), ("rtx4090", "RTX-4090"),
    ("NVIDIA GeForce RTX 4090", "RTX-4090"), ("RTX 6000 Ada", "RTX-6000-ADA"), ("RTX A6000", "RTX-A6000"),
    ("RTX PRO 6000", "RTX-PRO-6000"), ("l40", "L40"), ("L40S", "L40S"), ("V100 32GB", "V100-SXM2-32GB"),
    ("MI300X", "MI300X"), ("B300", "B300"),
])
def test_other_aliases(spelling, key):
    assert gpus.resolve(spelling).key == key


def test_no_spelling_is_claimed_by_two_gpus_except_known_ambiguities():
    owners: dict[str, set[str]] = {}
    for gpu in gpus.CATALOG:
        for spelling in gpu.names():
            owners.setdefault(gpus.normalize(spelling), set()).add(gpu.key)
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}


def test_unknown_gpu_raises_config_error_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        gpus.resolve("H1000")
    e = err.value
    assert (e.key, e.problem) == ("resources.gpu", "unknown GPU 'H1000'")
    assert e.fix == "did you mean 'H100'? (see `invoke runpod.gpus`)"
    assert str(e) == "resources.gpu: unknown GPU 'H1000' — did you mean 'H100'? (see `invoke runpod.gpus`)"


def test_unknown_gpu_with_no_close_name_still_points_at_the_list():
    with pytest.raises(ConfigError) as err:
        gpus.resolve("Voodoo2")
    assert "did you mean" not in err.value.fix and "invoke runpod.gpus" in err.value.fix


def test_typo_suggestions():
    assert gpus.suggest("L40SS") == ["L40S"]
    assert gpus.suggest("RTX 4900") == ["RTX 4090"]


def test_verda_families_and_instance_type_names():
    assert {g.verda_model for g in descriptor("verda").gpus()} >= {"H100", "H200", "B200", "A100", "L40S"}
    for name, key, count in [("1H100.80S.30V", "H100-SXM", 1), ("4H100.80S.176V", "H100-SXM", 4),
                             ("8H100.80S.176V", "H100-SXM", 8), ("1A100.22V", "A100-SXM-80GB", 1),
                             ("4A100.88V", "A100-SXM-80GB", 4), ("1A100.40S.22V", "A100-SXM-40GB", 1),
                             ("8V100.48V", "V100-SXM2-16GB", 8), ("1H200.141S.44V", "H200-SXM", 1),
                             ("1B200.30V", "B200", 1), ("1RTX6000ADA.10V", "RTX-6000-ADA", 1),
                             ("2L40S.40V", "L40S", 2)]:
        gpu, n = gpus.from_verda_instance_type(name)
        assert (gpu.key, n) == (key, count), name
    assert gpus.from_verda_instance_type("CPU.4V.16G") is None
    # Verda's H100 is SXM5 only (GPU_FACTS §3.2): no PCIe/NVL H100 in its families
    assert not {"H100-PCIE", "H100-NVL", "RTX-4090"} & {g.key for g in descriptor("verda").gpus()}


def test_chtc_device_names_match_what_htcondor_reports():
    # GPUs_DeviceName values on the CHTC GPU Lab (nvidia-smi names) and the GPU each one must select
    reported = {"NVIDIA H100 80GB HBM3": "H100-SXM", "NVIDIA H200": "H200-SXM", "NVIDIA L40S": "L40S",
                "NVIDIA L40": "L40", "NVIDIA A100-SXM4-80GB": "A100-SXM-80GB",
                "NVIDIA A100-SXM4-40GB": "A100-SXM-40GB"}
    chtc = descriptor("chtc").gpus()
    assert {"H100-SXM", "H200-SXM", "L40S", "A100-SXM-80GB"} <= {g.key for g in chtc}
    for device, key in reported.items():
        matching = [g.key for g in chtc if re.search(g.chtc_device_name, device)]
        assert matching == [key], (device, matching)
    assert gpus.chtc_requirement([gpus.resolve("H100"), gpus.resolve("H200")]) == \
        'regexp("H100|H200", TARGET.GPUs_DeviceName)'  # seed 003's own expression
    with pytest.raises(ConfigError):
        gpus.chtc_requirement([gpus.resolve("RTX 4090")])


def test_catalog_facts():
    h100 = gpus.resolve("H100")
    assert (h100.memory_gb, h100.compute_capability, h100.label) == (80, "9.0", "H100 SXM 80GB")
    assert gpus.resolve("L40S").compute_capability == "8.9"
    assert gpus.resolve("MI300X").compute_capability is None
    assert all(g.memory_gb > 0 for g in gpus.CATALOG)
    assert len({g.key for g in gpus.CATALOG}) == len(gpus.CATALOG)
    with pytest.raises(ConfigError):
        descriptor("aws").gpus()
    assert descriptor("slurm").gpus() == list(gpus.CATALOG)


def test_planning_modules_import_fast_and_offline():
    root = Path(__file__).resolve().parents[1]
    code = ("import sys, time; t = time.perf_counter(); import helpers.gpus, helpers.vram, helpers.offers; "
            "dt = time.perf_counter() - t; "
            "heavy = [m for m in ('huggingface_hub', 'pydantic', 'httpx', 'requests', 'yaml') if m in sys.modules]; "
            "print(heavy, dt)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 0.5
