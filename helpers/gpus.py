"""GPU catalog: one entry per GPU model, with the names each place to run uses for it.

Sources (the project's reference notes GPU_FACTS.md and CLOUD_APIS.md, and the seeds):
- RunPod ids, display names and memory: `runpod.get_gpus()` of 2026-01-29 as listed in seed 000, plus
  `NVIDIA RTX PRO 4500 Blackwell` from the RunPod docs (CLOUD_APIS.md §1.3.1).
- Verda (formerly DataCrunch): the instance-type families of GPU_FACTS §3.2 and CLOUD_APIS.md §2.4.1
  (`1H100.80S.30V`, `1A100.22V`, `1A100.40S.22V`, `8V100.48V`, ...); `model` is the API's `model` field.
- CHTC GPU Lab: `_data/gpus.yaml` of the CHTC site (GPU_FACTS §4). `chtc_device_name` is a regular-expression
  fragment for `regexp("<fragment>", TARGET.GPUs_DeviceName)`, the way seed 003's submit file selects GPUs.

Memory is the nominal size a card is sold with ("80GB"), which is what cloud price lists use; compute capability
is NVIDIA's ("9.0"), None for AMD. Pure data and functions: importing this module does no I/O.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from helpers.errors import ConfigError


@dataclass(frozen=True)
class Gpu:
    key: str  # canonical short name, e.g. "H100-SXM"
    name: str  # human name, e.g. "H100 SXM"
    memory_gb: float
    compute_capability: str | None
    aliases: tuple[str, ...] = ()
    runpod_id: str | None = None  # gpuTypeId, e.g. "NVIDIA H100 80GB HBM3"
    verda_model: str | None = None  # the instance type's `model`, e.g. "H100"
    chtc_device_name: str | None = None  # regexp fragment matched against GPUs_DeviceName
    verda_prefix: str | None = field(default=None, compare=False)  # instance-type family, e.g. "H100.80S"

    @property
    def label(self) -> str:
        """Name with memory, for messages: "H100 SXM 80GB"."""
        mem = f"{self.memory_gb:g}GB"
        return self.name if mem.lower() in self.name.lower().replace(" ", "") else f"{self.name} {mem}"

    def names(self) -> tuple[str, ...]:
        """Every spelling that resolves to this GPU."""
        return tuple(n for n in (self.name, self.key, self.runpod_id, *self.aliases) if n)


def _g(key, name, mem, cc, aliases=(), runpod=None, verda=None, chtc=None, verda_prefix=None) -> Gpu:
    return Gpu(key, name, float(mem), cc, tuple(aliases), runpod, verda, chtc, verda_prefix)


# fmt: off
CATALOG: tuple[Gpu, ...] = (
    # Data-centre Hopper / Blackwell
    _g("H100-SXM", "H100 SXM", 80, "9.0",
       ("H100", "H100 80GB", "h100-80gb", "H100 SXM", "H100 SXM5", "H100 SXM5 80GB", "NVIDIA H100 SXM5 80GB",
        "H100 80GB HBM3"),
       runpod="NVIDIA H100 80GB HBM3", verda="H100", chtc="H100", verda_prefix="H100.80S"),
    _g("H100-PCIE", "H100 PCIe", 80, "9.0", ("H100 PCIe 80GB",), runpod="NVIDIA H100 PCIe"),
    _g("H100-NVL", "H100 NVL", 94, "9.0", ("H100 NVL 94GB",), runpod="NVIDIA H100 NVL"),
    _g("H200-SXM", "H200 SXM", 141, "9.0",
       ("H200", "H200 141GB", "H200 SXM5", "H200 SXM5 141GB", "NVIDIA H200 SXM5 141GB"),
       runpod="NVIDIA H200", verda="H200", chtc="H200", verda_prefix="H200.141S"),
    _g("H200-NVL", "H200 NVL", 143, "9.0", ("NVIDIA H200 NVL",), runpod="NVIDIA H200 NVL"),
    _g("B200", "B200", 180, "10.0", ("B200 SXM6", "B200 SXM6 180GB", "NVIDIA B200 SXM6 180GB", "B200 180GB"),
       runpod="NVIDIA B200", verda="B200", verda_prefix="B200"),
    _g("B300", "B300", 288, "10.3", ("B300 SXM6", "B300 SXM6 AC", "B300 288GB"),
       runpod="NVIDIA B300 SXM6 AC", verda="B300", verda_prefix="B300"),
    # Ampere data-centre
    _g("A100-SXM-80GB", "A100 SXM", 80, "8.0",
       ("A100", "A100 80GB", "A100 SXM", "A100 SXM 80GB", "A100 SXM4", "A100 SXM4 80GB", "A100-SXM4-80GB",
        "NVIDIA A100 SXM4 80GB"),
       runpod="NVIDIA A100-SXM4-80GB", verda="A100", chtc="A100-SXM4-80GB", verda_prefix="A100"),
    _g("A100-PCIE-80GB", "A100 PCIe", 80, "8.0", ("A100 PCIe", "A100 PCIe 80GB", "A100 80GB PCIe"),
       runpod="NVIDIA A100 80GB PCIe"),
    _g("A100-SXM-40GB", "A100 SXM 40GB", 40, "8.0",
       ("A100 40GB", "A100-40GB", "A100 SXM4 40GB", "A100-SXM4-40GB", "NVIDIA A100 SXM4 40GB"),
       chtc="A100-SXM4-40GB", verda_prefix="A100.40S"),
    _g("A30", "A30", 24, "8.0", runpod="NVIDIA A30"),
    _g("A40", "A40", 48, "8.6", runpod="NVIDIA A40"),
    # Ada / Ampere server and workstation
    _g("L4", "L4", 24, "8.9", runpod="NVIDIA L4"),
    _g("L40", "L40", 48, "8.9", ("L40 48GB",), runpod="NVIDIA L40", chtc="L40$"),
    _g("L40S", "L40S", 48, "8.9", ("L40S 48GB", "NVIDIA L40S 48GB"),
       runpod="NVIDIA L40S", verda="L40S", chtc="L40S", verda_prefix="L40S"),
    _g("RTX-2000-ADA", "RTX 2000 Ada", 16, "8.9", ("RTX 2000 Ada Generation",),
       runpod="NVIDIA RTX 2000 Ada Generation"),
    _g("RTX-4000-ADA", "RTX 4000 Ada", 20, "8.9", ("RTX 4000 Ada Generation",),
       runpod="NVIDIA RTX 4000 Ada Generation"),
    _g("RTX-4000-ADA-SFF", "RTX 4000 Ada SFF", 20, "8.9", ("RTX 4000 SFF Ada Generation",),
       runpod="NVIDIA RTX 4000 SFF Ada Generation"),
    _g("RTX-5000-ADA", "RTX 5000 Ada", 32, "8.9", ("RTX 5000 Ada Generation",),
       runpod="NVIDIA RTX 5000 Ada Generation"),
    _g("RTX-6000-ADA", "RTX 6000 Ada", 48, "8.9",
       ("RTX 6000 Ada Generation", "RTX6000 Ada", "RTX6000ADA", "RTX 6000 Ada 48GB", "NVIDIA RTX 6000 Ada 48GB"),
       runpod="NVIDIA RTX 6000 Ada Generation", verda="RTX6000Ada", verda_prefix="RTX6000ADA"),
    _g("RTX-A2000", "RTX A2000", 6, "8.6", runpod="NVIDIA RTX A2000"),
    _g("RTX-A4000", "RTX A4000", 16, "8.6", runpod="NVIDIA RTX A4000"),
    _g("RTX-A4500", "RTX A4500", 20, "8.6", runpod="NVIDIA RTX A4500"),
    _g("RTX-A5000", "RTX A5000", 24, "8.6", runpod="NVIDIA RTX A5000"),
    _g("RTX-A6000", "RTX A6000", 48, "8.6", ("A6000", "RTX A6000 48GB", "NVIDIA RTX A6000 48GB"),
       runpod="NVIDIA RTX A6000", verda="A6000", verda_prefix="A6000"),
    # Blackwell workstation / server
    _g("RTX-PRO-6000", "RTX PRO 6000", 96, "12.0",
       ("RTX PRO 6000 Server", "RTX PRO 6000 Blackwell", "RTX PRO 6000 96GB", "RTXPRO6000"),
       runpod="NVIDIA RTX PRO 6000 Blackwell Server Edition", verda="RTXPRO6000", verda_prefix="RTXPRO6000"),
    _g("RTX-PRO-6000-MAXQ", "RTX PRO 6000 MaxQ", 96, "12.0", ("RTX PRO 6000 Max-Q",),
       runpod="NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition"),
    _g("RTX-PRO-6000-WK", "RTX PRO 6000 WK", 96, "12.0", ("RTX PRO 6000 Workstation",),
       runpod="NVIDIA RTX PRO 6000 Blackwell Workstation Edition"),
    _g("RTX-PRO-4500", "RTX PRO 4500", 32, "12.0", ("RTX PRO 4500 Blackwell",),
       runpod="NVIDIA RTX PRO 4500 Blackwell"),
    # GeForce
    _g("RTX-3070", "RTX 3070", 8, "8.6", runpod="NVIDIA GeForce RTX 3070"),
    _g("RTX-3080", "RTX 3080", 10, "8.6", runpod="NVIDIA GeForce RTX 3080"),
    _g("RTX-3080-TI", "RTX 3080 Ti", 12, "8.6", runpod="NVIDIA GeForce RTX 3080 Ti"),
    _g("RTX-3090", "RTX 3090", 24, "8.6", runpod="NVIDIA GeForce RTX 3090"),
    _g("RTX-3090-TI", "RTX 3090 Ti", 24, "8.6", runpod="NVIDIA GeForce RTX 3090 Ti"),
    _g("RTX-4070-TI", "RTX 4070 Ti", 12, "8.9", runpod="NVIDIA GeForce RTX 4070 Ti"),
    _g("RTX-4080", "RTX 4080", 16, "8.9", runpod="NVIDIA GeForce RTX 4080"),
    _g("RTX-4080-SUPER", "RTX 4080 SUPER", 16, "8.9", runpod="NVIDIA GeForce RTX 4080 SUPER"),
    _g("RTX-4090", "RTX 4090", 24, "8.9", ("4090",), runpod="NVIDIA GeForce RTX 4090"),
    _g("RTX-5080", "RTX 5080", 16, "12.0", runpod="NVIDIA GeForce RTX 5080"),
    _g("RTX-5090", "RTX 5090", 32, "12.0", ("5090",), runpod="NVIDIA GeForce RTX 5090"),
    _g("RTX-2080-TI", "RTX 2080 Ti", 11, "7.5", ("GeForce RTX 2080 Ti",), chtc="2080 Ti"),
    # Volta / Pascal
    _g("V100-PCIE-16GB", "Tesla V100", 16, "7.0", ("V100", "V100 PCIe", "Tesla V100-PCIE-16GB"),
       runpod="Tesla V100-PCIE-16GB"),
    _g("V100-SXM2-16GB", "V100 SXM2", 16, "7.0",
       ("V100 SXM2 16GB", "V100 16GB", "Tesla V100 16GB", "Tesla V100-SXM2-16GB"),
       runpod="Tesla V100-SXM2-16GB", verda="V100", verda_prefix="V100"),
    _g("V100-SXM2-32GB", "V100 SXM2 32GB", 32, "7.0", ("V100 32GB", "Tesla V100-SXM2-32GB"),
       runpod="Tesla V100-SXM2-32GB"),
    _g("P100-PCIE-16GB", "Tesla P100", 16, "6.0", ("P100", "Tesla P100-PCIE-16GB"), chtc="P100"),
    # AMD
    _g("MI300X", "MI300X", 192, None, ("AMD Instinct MI300X", "MI300X OAM"), runpod="AMD Instinct MI300X OAM"),
)
# fmt: on

_DROP_WORDS = ("nvidia", "geforce", "tesla", "amd", "instinct")


def normalize(name: str) -> str:
    """Lower-case, without spaces, dashes, underscores, dots or vendor words: "NVIDIA H100-80GB" -> "h10080gb"."""
    text = name.lower()
    for word in _DROP_WORDS:
        text = re.sub(rf"\b{word}\b", " ", text)
    return re.sub(r"[\s\-_./]+", "", text)


def _build_index() -> tuple[dict[str, Gpu], dict[str, str]]:
    index: dict[str, Gpu] = {}
    display: dict[str, str] = {}  # normalized -> the spelling to suggest
    for gpu in CATALOG:
        for spelling in gpu.names():
            norm = normalize(spelling)
            if norm and norm not in index:  # first GPU to claim a spelling keeps it ("A100" -> SXM 80GB)
                index[norm] = gpu
                display[norm] = spelling
    return index, display


_INDEX, _DISPLAY = _build_index()
BY_KEY: dict[str, Gpu] = {gpu.key: gpu for gpu in CATALOG}


def find(name: str) -> Gpu | None:
    """The GPU a name means, or None."""
    return _INDEX.get(normalize(name)) if name else None


def suggest(name: str, n: int = 1) -> list[str]:
    """Closest known spellings to an unknown GPU name (for did-you-mean)."""
    matches = difflib.get_close_matches(normalize(name), list(_INDEX), n=n, cutoff=0.6)
    return [_DISPLAY[m] for m in matches]


def resolve(name: str, key: str = "resources.gpu") -> Gpu:
    """The GPU a name means, case/space/dash-insensitive; unknown names raise ConfigError with a suggestion."""
    gpu = find(str(name))
    if gpu is not None:
        return gpu
    close = suggest(str(name))
    fix = f"did you mean '{close[0]}'? (see `invoke runpod.gpus`)" if close else "see `invoke runpod.gpus` for known GPUs"
    raise ConfigError(key=key, problem=f"unknown GPU '{name}'", fix=fix)


def having(field_name: str) -> list[Gpu]:
    """The GPUs whose `field_name` (runpod_id, verda_prefix, chtc_device_name) is set: what that provider offers."""
    return [g for g in CATALOG if getattr(g, field_name)]


def with_keys(keys) -> list[Gpu]:
    wanted = set(keys)
    return [g for g in CATALOG if g.key in wanted]


def every() -> list[Gpu]:
    """A cluster or a workstation can hold any GPU."""
    return list(CATALOG)


def from_verda_instance_type(instance_type: str) -> tuple[Gpu, int] | None:
    """(GPU, count) from a Verda instance-type name: "4H100.80S.176V" -> (H100-SXM, 4); CPU types -> None."""
    m = re.fullmatch(r"(\d+)([A-Za-z0-9.]+?)\.(\d+)V", instance_type.strip())
    if not m:
        return None
    count, family = int(m[1]), m[2].upper()
    for gpu in CATALOG:
        if gpu.verda_prefix and gpu.verda_prefix.upper() == family:
            return gpu, count
    return None


def chtc_requirement(gpus: list[Gpu]) -> str:
    """HTCondor expression selecting these GPUs, e.g. 'regexp("H100|H200", TARGET.GPUs_DeviceName)'."""
    parts = [g.chtc_device_name for g in gpus if g.chtc_device_name]
    if not parts:
        raise ConfigError(key="resources.gpu", problem="none of these GPUs is in the CHTC GPU Lab",
                          fix="use one of " + ", ".join(g.key for g in having("chtc_device_name")))
    return f'regexp("{"|".join(parts)}", TARGET.GPUs_DeviceName)'
