"""The published memory figures the estimator is held to, each with its source (tests/test_vram.py asserts the
band, `python -m bench planning` prints the table).

The rule: an estimate is never below the published need and at most 35% above it. A need is a figure ("> 22.5
GB") or an envelope ("~24-40 GB"): then the estimate is at least its low end and at most 1.35 x its high end. A
configuration published as running on a GPU ("8 x H100 80GB") must fit that GPU and hold at least its state bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from helpers import vram

BAND = 1.35


@dataclass(frozen=True)
class Case:
    label: str
    source: str
    low_gb: float  # the published need (or the low end of an envelope; for a GPU it runs on, the state bytes)
    high_gb: float  # = low_gb for a single figure; the envelope's top
    estimate: Callable[[], vram.Estimate]
    runs_on_gb: float | None = None  # published as running on a GPU of this size

    def upper_gb(self) -> float:
        return self.runs_on_gb if self.runs_on_gb is not None else BAND * self.high_gb

    def check(self) -> tuple[float, bool]:
        """(estimate in GB, inside the band?)"""
        total = self.estimate().total_gb
        return total, self.low_gb <= total <= self.upper_gb()

    def published(self) -> str:
        if self.runs_on_gb is not None:
            return f"runs on {self.runs_on_gb:g} GB"
        return f"{self.low_gb:g} GB" if self.low_gb == self.high_gb else f"{self.low_gb:g}-{self.high_gb:g} GB"


def _preset(name: str, **kw) -> Callable[[], vram.Estimate]:
    return lambda: vram.PRESETS[name].estimate(**kw)


def _shaped(repo: str, method: str, **kw) -> Callable[[], vram.Estimate]:
    s = vram.known_shape(repo)
    return lambda: vram.estimate(s.params, method, hidden_size=s.hidden_size, layers=s.layers, vocab_size=s.vocab_size,
                                 **kw)


def _planned(config: dict) -> Callable[[], vram.Estimate]:
    """Through the plan, as `invoke plan --offline` sizes a config (policy presets, dtype, checkpointing)."""
    def run() -> vram.Estimate:
        from helpers.config import validate
        from helpers.planning import size_job

        return size_job(validate(config), offline=True).estimate
    return run


def _lerobot(policy: str, **sections) -> dict:
    return {"job": {"name": f"cal-{policy}"}, "framework": "lerobot", "dataset": {"repo_id": "lab/data"},
            "policy": {"type": policy}, "training": {"batch_size": 8}, **sections}


GUIDE = "LeRobot docs, hardware guide: Peak VRAM (BS 8, AdamW)"
OPENPI = "openpi README, Requirements (default batch 32)"
FACTORY = "LLaMA-Factory README, Hardware Requirement (estimated)"
OPEN_R1 = "Open R1 README and recipes: 8 x H100 80GB, 7 training + 1 vLLM server"

CASES: list[Case] = [
    Case("openpi pi0 LoRA (pi0_libero_low_mem_finetune)", OPENPI, 22.5, 22.5, _preset("openpi/pi0_libero_low_mem_finetune")),
    Case("openpi pi05 LoRA", OPENPI, 22.5, 22.5, _preset("openpi/pi05_libero", method="lora")),
    Case("openpi pi0-FAST LoRA", OPENPI, 22.5, 22.5, _preset("openpi/pi0_fast_libero_low_mem_finetune")),
    Case("openpi pi0 full (pi0_libero)", OPENPI, 70, 70, _preset("openpi/pi0_libero")),
    Case("openpi pi05 full (pi05_libero)", OPENPI, 70, 70, _preset("openpi/pi05_libero")),
    Case("openpi pi0-FAST full (pi0_fast_libero)", OPENPI, 70, 70, _preset("openpi/pi0_fast_libero")),
    Case("openpi pi0 inference", OPENPI, 8, 8, _preset("openpi/pi0", method="inference", batch_size=1)),
    Case("openpi pi05 inference", OPENPI, 8, 8, _preset("openpi/pi05", method="inference", batch_size=1)),
    Case("LeRobot act", f"{GUIDE}: light BC ~2-6 GB", 2, 6, _planned(_lerobot("act"))),
    Case("LeRobot diffusion", f"{GUIDE}: diffusion ~8-14 GB", 8, 14, _planned(_lerobot("diffusion"))),
    Case("LeRobot smolvla", f"{GUIDE}: small VLA ~10-16 GB", 10, 16, _planned(_lerobot("smolvla"))),
    Case("LeRobot pi0 (bf16, grad-ckpt: configs/pi0.yaml's policy)", f"{GUIDE}: large VLA ~24-40 GB", 24, 40,
         _planned(_lerobot("pi0"))),
    Case("LeRobot pi05 (bf16, grad-ckpt)", f"{GUIDE}: large VLA ~24-40 GB", 24, 40, _planned(_lerobot("pi05"))),
    Case("LeRobot pi0_fast (bf16, grad-ckpt)", f"{GUIDE}: large VLA ~24-40 GB", 24, 40, _planned(_lerobot("pi0_fast"))),
    Case("LeRobot xvla (bf16)", f"{GUIDE}: large VLA ~24-40 GB", 24, 40, _planned(_lerobot("xvla"))),
    Case("LeRobot groot (N1.7, frozen backbone)", f"{GUIDE}: multimodal ~24-40 GB", 24, 40, _planned(_lerobot("groot"))),
    # the issue's GRPO case, offline: Qwen2.5-0.5B's published shape, TRL's default batch 8, Open R1's 512 + 1024
    Case("Open R1 GRPO Qwen2.5-0.5B-Instruct, 1 GPU, vLLM colocate", "trains on a 24 GB card (issue 18's reference)",
         24, 24, _planned({"job": {"name": "cal-grpo"}, "framework": "open_r1",
                           "open_r1": {"model": "Qwen/Qwen2.5-0.5B-Instruct", "dataset_name": "open-r1/OpenR1-Math-220k"}})),
    # LLaMA-Factory: batch 1 with gradient checkpointing (its default), 1024 tokens; its "30B" column is 18 x 33B.
    *[Case(f"LLaMA-Factory {label} {method}", FACTORY, need, need,
           _shaped(repo, method, batch_size=1, gradient_checkpointing=True, seq_len=1024))
      for label, repo, needs in [("7B (Llama-2-7B)", "meta-llama/Llama-2-7b-hf", (120, 16, 6)),
                                 ("14B (Qwen2.5-14B)", "Qwen/Qwen2.5-14B", (240, 32, 12))]
      for method, need in zip(("full", "lora", "qlora"), needs, strict=True)],
    *[Case(f"LLaMA-Factory {label} {method}", FACTORY, need, need,
           (lambda shape=shape, method=method: vram.estimate(shape[0], method, batch_size=1, gradient_checkpointing=True,
                                                             seq_len=1024, hidden_size=shape[1], layers=shape[2],
                                                             vocab_size=shape[3])))
      for label, shape, needs in [("30B (Qwen2.5-32B)", (32.8e9, 5120, 64, 152064), (600, 64, 24)),
                                  ("70B (Llama-3-70B)", (70.6e9, 8192, 80, 128256), (1200, 160, 48))]
      for method, need in zip(("full", "lora", "qlora"), needs, strict=True)],
    # Open R1: recipes/Qwen2.5-Math-7B/grpo/config_simple_rl.yaml (batch 16, 650 + 1024 tokens, ZeRO-2) and
    # recipes/Qwen2.5-1.5B-Instruct/grpo/config_demo.yaml (512 + 1024); floor: 16-bit policy + reference + 16 B/param / 7
    Case("Open R1 Qwen2.5-Math-7B GRPO, 8x H100", OPEN_R1, 7.6e9 * (4 + 16 / 7) / 1e9, 0,
         _shaped("Qwen/Qwen2.5-Math-7B", "grpo", batch_size=16, gradient_checkpointing=True, gpu_count=8,
                 sharding="zero2", generation_engine="vllm_server", seq_len=650 + 1024, logit_tokens=1024), runs_on_gb=80),
    Case("Open R1 Qwen2.5-1.5B GRPO, 8x H100", OPEN_R1, 1.54e9 * (4 + 16 / 7) / 1e9, 0,
         _shaped("Qwen/Qwen2.5-1.5B", "grpo", batch_size=16, gradient_checkpointing=True, gpu_count=8,
                 sharding="zero2", generation_engine="vllm_server", seq_len=512 + 1024, logit_tokens=1024), runs_on_gb=80),
    Case("openpi pi0 full on A100 80GB", "openpi README: full fine-tuning on A100 (80GB) / H100", 70, 0,
         _preset("openpi/pi0_libero"), runs_on_gb=80),
    Case("openpi pi0 LoRA on RTX 4090", "openpi README: LoRA on RTX 4090", 22.5, 0,
         _preset("openpi/pi0_libero_low_mem_finetune"), runs_on_gb=24),
]
