"""Per-GPU memory estimate for a training or inference job, calibrated never to fall below published figures.

Units: 1 GB = 1e9 bytes. Cards are sold by a nominal size ("80GB") that is really about 80 GiB (an H100 80GB
reports 81559 MiB = 85.5e9 bytes), so comparing a GB estimate with the nominal size leaves ~6% headroom on top of
the allowances below.

Rules (GPU_FACTS.md §1):
- Mixed precision (bf16/fp16) AdamW = 18 B/param (HF "model training anatomy", EleutherAI calculator):
  weights 2 (half-precision working copy) + gradients 4 (fp32) + optimizer 12 (fp32 master copy 4 + Adam m, v 8).
  8-bit AdamW keeps 2 B of state instead of 8; SGD with momentum 4. fp32 training: weights 4 + gradients 4 +
  states (8 | 2 | 4) = 16 B/param for AdamW (Accelerate's fp32 peak). The fp32 master copy is filed under
  "optimizer" because DeepSpeed ZeRO partitions it with the optimizer states.
- Trainers that cast the parameters themselves to 16 bit (LeRobot `policy.dtype: bfloat16`: pi0, pi05, pi0_fast,
  xvla) keep torch AdamW's states in that dtype, with no fp32 master copy: 8 B/param, except what they keep in fp32
  (pi0's vision tower) at 16. Frozen parts (GR00T's VLM backbone) hold only their weights. See `ParamLayout`.
- LoRA: frozen base at 2 B/param (bf16/fp16; 4 for fp32) plus adapters; the adapter budget is `lora_fraction`
  (default 0.6% of the base: rank 16 on every linear layer of a Llama-7B is 40M = 0.6%) at 16 B/param (fp32
  weight, gradient, AdamW: PEFT keeps adapters in fp32).
  QLoRA: 4-bit base at 0.6 B/param (0.5 B plus quantisation constants and layers kept in 16 bit), same adapters.
- Inference: weights x 1.2 (the 20% rule quoted by Accelerate from Transformer Math 101), the 20% growing
  linearly beyond batch 8.
- GRPO: full training of the policy, plus a frozen reference model (weights at the training precision; TRL 0.18,
  which Open R1 pins, keeps one while beta > 0) and the generation engine: `vllm_colocate` holds a second 16-bit copy of the
  weights, a KV cache for the batch and ~1.5 GB of engine state on every training GPU; `vllm_server` puts the same
  on one extra GPU (gpu_count includes it, as Open R1's "8 GPUs = 7 train + 1 vLLM"); "none" keeps only the KV cache.
- Sharding divides per-GPU state by the number of training GPUs: ZeRO-2 divides gradients and optimizer,
  ZeRO-3/FSDP also the weights (plus an allowance for the layer being gathered). "none" is plain DDP.
- CUDA/overhead: 2.0 GB (CUDA context, cuBLAS/cuDNN workspaces, kernels - HF measured ~1.3 GB of kernels alone),
  +0.5 GB for NCCL buffers when gpu_count > 1, +5% of everything else for allocator fragmentation.

Activations, in order of preference:
1. `activation_gb_per_sample` (the presets below carry one, calibrated against published figures) x batch;
2. with `hidden_size` and `layers`: per token per layer 34*h bytes at 16 bit (Korthikanti et al., flash
   attention assumed, so no s^2 term), or with gradient checkpointing 2*h (stored layer input) plus one layer
   recomputed (34*h); x2 in fp32; plus logits when `vocab_size` is known, over `logit_tokens` tokens per
   sample (default seq_len; GRPO trainers keep only the completion's): 10 B per (token, vocab entry) for
   supervised losses (16-bit logits, the fp32 copy HF's causal-LM loss makes, its fp32 gradient), 6 B for GRPO
   (TRL: 16-bit logits, the temperature-scaled copy, the gradient; log-softmax is taken row by row);
3. the coarse heuristic when no hidden size is known: h*L ~= 0.21 * params**0.6 and h ~= 1.6 * params**0.35
   (a fit that lies at or above Qwen2.5 0.5B-7B, Llama 2/3 7B-70B, SmolLM2 1.7B and Gemma 2B), seq_len 1024
   when unknown, and logits for a 262,144-entry vocabulary (Gemma 3's, the largest common one). Checked in
   tests/test_vram.py against the known shapes of those models; it errs high (up to ~4.5x on activations) and
   very high for models without a language head, so robot policies come with a preset.

Calibration: `helpers.calibration` lists the published figures (openpi README, LeRobot hardware guide,
LLaMA-Factory README, Open R1 recipes, ...) with their sources; the estimate must lie in published need .. +35%
(for an envelope such as "24-40 GB": at least its low end, at most 1.35 x its high end), and a configuration
published as running on a GPU must fit that GPU (tests/test_vram.py, `python -m bench planning`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass

from helpers.errors import ConfigError

GB = 1e9
METHODS = ("full", "lora", "qlora", "inference", "grpo")
LIGHT_METHODS = ("lora", "qlora", "inference")  # train adapters or nothing: no LoRA advice for these
PRECISIONS = ("bf16", "fp16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
SHARDINGS = ("none", "zero2", "zero3", "fsdp")
GENERATION_ENGINES = ("none", "vllm_colocate", "vllm_server")

CUDA_CONTEXT_GB = 2.0
NCCL_GB = 0.5
FRAGMENTATION = 0.05
QLORA_BYTES = 0.6
ENGINE_OVERHEAD_GB = 1.5
DEFAULT_SEQ_LEN = 1024
COARSE_VOCAB = 262_144
LOGIT_BYTES = 10.0
LOGIT_BYTES_GRPO = 6.0
SHARDING_LABEL = {"none": "DDP", "zero2": "ZeRO-2", "zero3": "ZeRO-3", "fsdp": "FSDP"}

_OPTIMIZER_STATE_BYTES = {"adamw": 8.0, "adamw8bit": 2.0, "sgd": 4.0}


def _check(value: object, allowed: tuple[str, ...], key: str, what: str) -> str:
    if value in allowed:
        return str(value)
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(key=key, problem=f"unknown {what} '{value}'", fix=f"{hint}use one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Estimate:
    """Per-GPU memory in GB, by part. `total_gb` is what one GPU must hold: the sum of the parts, or the vLLM
    server GPU's `server_gb` if that is larger (vllm_server only)."""

    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    cuda_overhead_gb: float
    generation_gb: float
    total_gb: float
    server_gb: float  # the vLLM server GPU (vllm_server only), else 0
    inputs: dict
    notes: tuple[str, ...] = ()

    def parts(self) -> dict[str, float]:
        return {
            "weights": self.weights_gb, "gradients": self.gradients_gb, "optimizer": self.optimizer_gb,
            "activations": self.activations_gb, "cuda_overhead": self.cuda_overhead_gb,
            "generation": self.generation_gb,
        }

    def replace(self, **changes) -> Estimate:
        """The same estimate with some inputs changed (e.g. gpu_count=2, sharding="zero3")."""
        return estimate(**{**self.inputs, **changes})

    def explain(self) -> str:
        i = self.inputs
        shown = " + ".join(f"{name.replace('_', ' ')} {gb:.1f}" for name, gb in self.parts().items() if gb >= 0.05)
        setup = f"{i['params'] / 1e9:.3g}B params, {i['method']} {i['precision']}"
        if i["method"] not in ("inference",):
            setup += f" {i['optimizer']}"
        setup += f", batch {i['batch_size']}"
        if i["gradient_checkpointing"]:
            setup += ", grad-ckpt"
        setup += f", {i['gpu_count']} GPU" + ("s" if i["gpu_count"] > 1 else "")
        if i["gpu_count"] > 1:
            setup += f" {SHARDING_LABEL[i['sharding']]}"
        if i["generation_engine"] != "none" and i["method"] == "grpo":
            setup += f", {i['generation_engine']}"
        server = f"; vLLM server GPU ~{self.server_gb:.0f} GB" if self.server_gb else ""
        return f"~{sum(self.parts().values()):.0f} GB per GPU = {shown} ({setup}){server}"


def estimate(
    params: float,
    method: str = "full",
    precision: str = "bf16",
    optimizer: str = "adamw",
    batch_size: int = 1,
    gradient_checkpointing: bool = False,
    gpu_count: int = 1,
    sharding: str = "none",
    generation_engine: str = "none",
    seq_len: int | None = None,
    hidden_size: int | None = None,
    layers: int | None = None,
    *,
    vocab_size: int | None = None,
    logit_tokens: int | None = None,
    activation_gb_per_sample: float | None = None,
    lora_fraction: float = 0.006,
    frozen_fraction: float = 0.0,
    half_state: bool = False,
    fp32_fraction: float = 0.0,
) -> Estimate:
    """Per-GPU memory for `params` parameters trained (or served) as described. See the module docstring."""
    method = _check(method, METHODS, "model.method", "method")
    precision = _check(precision, PRECISIONS, "model.precision", "precision")
    optimizer = _check(optimizer, OPTIMIZERS, "model.optimizer", "optimizer")
    sharding = _check(sharding, SHARDINGS, "sharding", "sharding")
    generation_engine = _check(generation_engine, GENERATION_ENGINES, "open_r1.vllm_mode", "generation engine")
    if not params or params <= 0:
        raise ConfigError(key="model.params", problem=f"parameter count must be positive, got {params!r}",
                          fix="set model.params (e.g. 3.3e9) or a model repo_id with safetensors weights")
    if batch_size < 1:
        raise ConfigError(key="training.batch_size", problem=f"batch size must be >= 1, got {batch_size}")
    if gpu_count < 1:
        raise ConfigError(key="resources.gpu_count", problem=f"gpu_count must be >= 1, got {gpu_count}")
    inputs = dict(
        params=params, method=method, precision=precision, optimizer=optimizer, batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing, gpu_count=gpu_count, sharding=sharding,
        generation_engine=generation_engine, seq_len=seq_len, hidden_size=hidden_size, layers=layers,
        vocab_size=vocab_size, logit_tokens=logit_tokens, activation_gb_per_sample=activation_gb_per_sample,
        lora_fraction=lora_fraction, frozen_fraction=frozen_fraction, half_state=half_state,
        fp32_fraction=fp32_fraction,
    )
    notes: list[str] = []
    engine = generation_engine if method == "grpo" else "none"
    train_gpus = gpu_count
    if engine == "vllm_server":
        if gpu_count < 2:
            raise ConfigError(key="resources.gpu_count", problem="vllm_server needs a GPU of its own for vLLM",
                              fix="use gpu_count >= 2, or open_r1.vllm_mode colocate")
        train_gpus = gpu_count - 1
    n = train_gpus if sharding != "none" else 1
    half = precision in ("bf16", "fp16")
    seq = seq_len or DEFAULT_SEQ_LEN
    h_l, h, coarse = _shape(float(params), hidden_size, layers)
    layout = ParamLayout(frozen_fraction, half_state and half, fp32_fraction)
    weights, grads, optim = _model_state(float(params), method, half, optimizer, sharding, n, layers, lora_fraction,
                                         layout, notes)
    acts = _activations(float(params), method, half, batch_size, n, gradient_checkpointing, seq, h_l, h, coarse,
                        vocab_size, logit_tokens, activation_gb_per_sample, notes)
    if method != "inference" and activation_gb_per_sample is None and seq_len is None:
        notes.append(f"seq_len assumed {DEFAULT_SEQ_LEN}")
    generation = server = 0.0
    if method == "grpo":
        kv = 4.0 * h_l * seq * batch_size  # K and V, 16 bit, every layer, full-width heads (MHA: errs high for GQA)
        if engine == "vllm_colocate":
            generation = float(params) * 2.0 + kv + ENGINE_OVERHEAD_GB * GB
        elif engine == "vllm_server":
            server = float(params) * 2.0 + kv + (ENGINE_OVERHEAD_GB + CUDA_CONTEXT_GB) * GB
        else:
            generation = kv

    subtotal = weights + grads + optim + acts + generation
    overhead = (CUDA_CONTEXT_GB + (NCCL_GB if gpu_count > 1 else 0.0)) * GB + FRAGMENTATION * subtotal
    total = subtotal + overhead
    return Estimate(
        weights_gb=weights / GB, gradients_gb=grads / GB, optimizer_gb=optim / GB, activations_gb=acts / GB,
        cuda_overhead_gb=overhead / GB, generation_gb=generation / GB, total_gb=max(total, server) / GB,
        server_gb=server / GB, inputs=inputs, notes=tuple(notes),
    )


@dataclass(frozen=True)
class ParamLayout:
    """How a trainer holds the parameters it fully trains (methods full and grpo).

    frozen_fraction: the part it never trains (weights only, at the training precision): GR00T's VLM backbone.
    half_state: the parameters themselves are 16 bit and torch's AdamW keeps its states in their dtype, so no fp32
      master copy: weights 2 + gradients 2 + states 4 (8-bit AdamW 2, SGD 2) = 8 B/param. LeRobot's
      `policy.dtype: bfloat16` does this (`self.to(dtype=torch.bfloat16)` in pi0/pi05/pi0_fast/xvla).
    fp32_fraction: with half_state, the part of the trained parameters kept in fp32 (pi0's vision tower and
      projector: `params_to_keep_float32`), at 16 B/param."""

    frozen_fraction: float = 0.0
    half_state: bool = False
    fp32_fraction: float = 0.0


def _model_state(p: float, method: str, half: bool, optimizer: str, sharding: str, n: int, layers: int | None,
                 lora_fraction: float, layout: ParamLayout, notes: list[str]) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) in bytes per GPU, with sharding over `n` GPUs."""
    wbytes = 2.0 if half else 4.0
    gather = _gathered_layer(p * wbytes, layers) if sharding in ("zero3", "fsdp") and n > 1 else 0.0
    if method in ("full", "grpo"):
        frozen = p * layout.frozen_fraction
        trained = p - frozen
        if layout.half_state:
            wide = trained * layout.fp32_fraction
            narrow = trained - wide
            weights, grads = narrow * 2.0 + wide * 4.0, narrow * 2.0 + wide * 4.0
            optim = narrow * _OPTIMIZER_STATE_BYTES[optimizer] / 2.0 + wide * _OPTIMIZER_STATE_BYTES[optimizer]
            notes.append("16-bit parameters and optimizer states (no fp32 master copy)"
                         + (f", {layout.fp32_fraction:.0%} kept in fp32" if wide else ""))
        else:
            weights, grads = trained * wbytes, trained * 4.0
            optim = trained * ((4.0 if half else 0.0) + _OPTIMIZER_STATE_BYTES[optimizer])
        if frozen:
            notes.append(f"{layout.frozen_fraction:.0%} of the parameters frozen")
        if sharding in ("zero3", "fsdp"):
            weights /= n
        if sharding != "none":
            grads /= n
            optim /= n
        weights += frozen * wbytes / (n if sharding in ("zero3", "fsdp") else 1) + gather
        if method == "grpo":
            weights += p * wbytes / (n if sharding in ("zero3", "fsdp") else 1)  # frozen reference model
            notes.append("weights include a frozen reference model")
        return weights, grads, optim
    if method in ("lora", "qlora"):
        base = p * (QLORA_BYTES if method == "qlora" else wbytes)
        adapters = p * lora_fraction
        weights = (base / n if sharding in ("zero3", "fsdp") else base) + adapters * 4.0 + gather
        return weights, adapters * 4.0 / n, adapters * _OPTIMIZER_STATE_BYTES[optimizer] / n  # fp32 adapters: 16 B
    return p * wbytes / n + gather, 0.0, 0.0  # inference


def _activations(p: float, method: str, half: bool, batch_size: int, n: int, gradient_checkpointing: bool, seq: int,
                 h_l: float, h: float, coarse: bool, vocab_size: int | None, logit_tokens: int | None,
                 activation_gb_per_sample: float | None, notes: list[str]) -> float:
    """Activation bytes per GPU: a preset's measured figure per sample, else from the model's shape."""
    if method == "inference":
        return 0.2 * (p * (2.0 if half else 4.0)) / n * max(1.0, batch_size / 8.0)
    if activation_gb_per_sample is not None:
        notes.append(f"activations {activation_gb_per_sample:g} GB/sample (preset)")
        return activation_gb_per_sample * GB * batch_size
    per_token = (2.0 * h_l + 34.0 * h) if gradient_checkpointing else 34.0 * h_l
    per_token *= (2.0 if half else 4.0) / 2.0
    vocab = vocab_size if vocab_size is not None else (COARSE_VOCAB if coarse else 0)
    logit_bytes = vocab * (LOGIT_BYTES_GRPO if method == "grpo" else LOGIT_BYTES)
    if coarse:
        notes.append("activations: coarse heuristic (hidden size unknown)")
    return (per_token * seq + logit_bytes * min(logit_tokens or seq, seq)) * batch_size


def _shape(params: float, hidden_size: int | None, layers: int | None) -> tuple[float, float, bool]:
    """(hidden*layers, hidden, coarse?) - the real shape when known, else the conservative fit."""
    if hidden_size and layers:
        return float(hidden_size * layers), float(hidden_size), False
    h = float(hidden_size) if hidden_size else 1.6 * params**0.35
    h_l = h * layers if layers else 0.21 * params**0.6
    return max(h_l, h), h, True


def _gathered_layer(weight_bytes: float, layers: int | None) -> float:
    """ZeRO-3/FSDP materialise the layer being computed (and prefetch the next): 2 layers, or 5% without a count."""
    return 2.0 * weight_bytes / layers if layers else 0.05 * weight_bytes


# --------------------------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A model Trainyard knows: parameter count and a calibrated activation allowance at the trainer's defaults."""

    name: str
    params: int
    activation_gb_per_sample: float
    batch_size: int  # the trainer's default batch
    framework: str  # lerobot | openpi
    method: str = "full"
    precision: str = "bf16"
    basis: str = ""
    layout: ParamLayout = ParamLayout()

    def estimate(self, **overrides) -> Estimate:
        kw = dict(params=self.params, method=self.method, precision=self.precision, batch_size=self.batch_size,
                  activation_gb_per_sample=self.activation_gb_per_sample, **dataclasses.asdict(self.layout))
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return estimate(**kw)


# Parameter counts: ACT with ResNet-18 ~52M and SmolVLA ~450M (LeRobot); diffusion 263M (LeRobot default
# U-Net with down_dims 512/1024/2048 + ResNet-18); LeRobot's pi0/pi05 checkpoint lerobot/pi0 is 14 GB of fp32
# (3.5B; openpi's own count is ~3.3B: SigLIP 0.4B + Gemma 2B 2.5B + 0.3B action expert); lerobot/pi0fast_base is
# 11.7 GB of fp32 (2.9B); GR00T is "3B"; X-VLA 0.9B (Hub metadata of lerobot/xvla-*).
# How LeRobot 0.6.1 holds them (its source): pi0/pi05/pi0_fast with `dtype: bfloat16` cast the model to bf16 and
# keep the vision tower, projector and norms in fp32 (`params_to_keep_float32`; SigLIP ~0.42B of 3.5B = 12%,
# of 2.9B = 14%); xvla casts all of it (`self.to(dtype)`); GR00T loads its VLM backbone in bf16 and frozen
# (`tune_llm`/`tune_visual` false) and trains the action head and projectors in fp32 (`trainable_params_fp32`):
# the N1.6/N1.7 backbone is the 2B Cosmos-Reason VLM of the "3B" model, so two thirds frozen.
# Activation allowances (GB per sample, at the trainer's default precision and checkpointing) were set against
# LeRobot's published "Peak VRAM (BS 8, AdamW)" envelopes (hardware_guide: light BC 2-6, diffusion 8-14, small VLA
# 10-16, large VLA / multimodal 24-40 GB) and, for openpi, so that batch 32 clears the README's ">22.5 GB LoRA" and
# ">70 GB full"; helpers/calibration.py holds each figure and tests/test_vram.py the band.
_LEROBOT_ENVELOPE = "LeRobot hardware guide, BS 8 AdamW"
_PI_LAYOUT = ParamLayout(half_state=True, fp32_fraction=0.12)
PRESETS: dict[str, Preset] = {
    "act": Preset("act", 52_000_000, 0.45, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: light BC ~2-6 GB"),
    "diffusion": Preset("diffusion", 263_000_000, 1.0, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: diffusion ~8-14 GB"),
    "smolvla": Preset("smolvla", 450_000_000, 0.75, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: small VLA ~10-16 GB"),
    "pi0": Preset("pi0", 3_500_000_000, 0.40, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: large VLA ~24-40 GB",
                  layout=_PI_LAYOUT),
    "pi05": Preset("pi05", 3_500_000_000, 0.40, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: large VLA ~24-40 GB",
                   layout=_PI_LAYOUT),
    "pi0_fast": Preset("pi0_fast", 2_900_000_000, 0.60, 8, "lerobot",
                       basis=f"{_LEROBOT_ENVELOPE}: large VLA ~24-40 GB (+257k-vocab logits)",
                       layout=ParamLayout(half_state=True, fp32_fraction=0.14)),
    "groot": Preset("groot", 3_000_000_000, 0.40, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: multimodal ~24-40 GB",
                    layout=ParamLayout(frozen_fraction=2 / 3, half_state=True, fp32_fraction=1.0)),
    "xvla": Preset("xvla", 900_000_000, 2.60, 8, "lerobot", basis=f"{_LEROBOT_ENVELOPE}: large VLA ~24-40 GB",
                   layout=ParamLayout(half_state=True)),
    "openpi/pi0": Preset("openpi/pi0", 3_300_000_000, 0.40, 32, "openpi",
                         basis="openpi README: LoRA > 22.5 GB, full > 70 GB, inference > 8 GB"),
    "openpi/pi05": Preset("openpi/pi05", 3_300_000_000, 0.40, 32, "openpi",
                          basis="openpi README: LoRA > 22.5 GB, full > 70 GB, inference > 8 GB"),
    "openpi/pi0_fast": Preset("openpi/pi0_fast", 2_900_000_000, 0.43, 32, "openpi",
                              basis="openpi README (same table; + 257k-vocab logits)"),
}

# openpi's training configs (src/openpi/training/config.py `_CONFIGS`); each maps to its base model,
# and the *_low_mem_finetune ones train LoRA adapters.
OPENPI_CONFIGS = (
    "pi0_aloha", "pi05_aloha", "pi0_aloha_towel", "pi0_aloha_tupperware", "pi0_droid", "pi0_fast_droid",
    "pi05_droid", "pi0_libero", "pi0_libero_low_mem_finetune", "pi0_fast_libero", "pi0_fast_libero_low_mem_finetune",
    "pi05_libero", "pi0_aloha_pen_uncap", "pi05_aloha_pen_uncap", "pi0_fast_full_droid_finetune",
    "pi05_full_droid_finetune", "pi05_droid_finetune", "pi0_aloha_sim",
)


def _openpi_preset(config_name: str) -> Preset:
    base = "pi0_fast" if config_name.startswith("pi0_fast") else "pi05" if config_name.startswith("pi05") else "pi0"
    p = PRESETS[f"openpi/{base}"]
    method = "lora" if "low_mem_finetune" in config_name else "full"
    return dataclasses.replace(p, name=f"openpi/{config_name}", method=method)


for _name in OPENPI_CONFIGS:
    PRESETS[f"openpi/{_name}"] = _openpi_preset(_name)

PRESET_PARAMS: dict[str, int] = {name: p.params for name, p in PRESETS.items()}

# The seeds' spellings (seed 000's !MODEL_TYPE values) and a few common ones.
_PRESET_ALIASES = {"pi0.5": "pi05", "pi0fast": "pi0_fast", "gr00t": "groot", "x-vla": "xvla", "x_vla": "xvla"}


def preset(name: str, key: str = "policy.type") -> Preset:
    """A preset by name: "act", "ACT", "SmolVLA", "pi0_fast", "GROOT", "openpi/pi05_libero" or "pi05_libero"."""
    text = str(name).strip()
    low = text.lower()
    low = _PRESET_ALIASES.get(low, low)
    if low in PRESETS:
        return PRESETS[low]
    if f"openpi/{low}" in PRESETS:
        return PRESETS[f"openpi/{low}"]
    if low.startswith("openpi/") and re.fullmatch(r"openpi/pi0(5|_fast)?[a-z0-9_]*", low):
        return _openpi_preset(low.split("/", 1)[1])
    close = difflib.get_close_matches(low, list(PRESETS), n=1)
    fix = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(key=key, problem=f"unknown model preset '{name}'",
                      fix=f"{fix}or set model.params (parameter count) instead")


# ------------------------------------------------------------------------------------------- known LLM shapes


@dataclass(frozen=True)
class Shape:
    """A model's size and shape as its config.json and safetensors metadata publish them: what `--offline` plans
    use instead of the coarse heuristic (the Hub's own config wins when the plan can read it)."""

    params: int
    hidden_size: int
    layers: int
    vocab_size: int


# config.json (hidden_size, num_hidden_layers, vocab_size) and the safetensors parameter count of each repo.
KNOWN_SHAPES: dict[str, Shape] = {
    "qwen/qwen2.5-0.5b": Shape(494_032_768, 896, 24, 151936),
    "qwen/qwen2.5-1.5b": Shape(1_543_714_304, 1536, 28, 151936),
    "qwen/qwen2.5-3b": Shape(3_085_938_688, 2048, 36, 151936),
    "qwen/qwen2.5-7b": Shape(7_615_616_512, 3584, 28, 152064),
    "qwen/qwen2.5-math-7b": Shape(7_615_616_512, 3584, 28, 152064),
    "qwen/qwen2.5-14b": Shape(14_770_033_664, 5120, 48, 152064),
    "google/gemma-2b": Shape(2_506_172_416, 2048, 18, 256000),
    "unsloth/gemma-2b": Shape(2_506_172_416, 2048, 18, 256000),
    "meta-llama/llama-2-7b-hf": Shape(6_738_415_616, 4096, 32, 32000),
    "meta-llama/llama-3.1-8b": Shape(8_030_261_248, 4096, 32, 128256),
    "huggingfacetb/smollm2-1.7b": Shape(1_711_376_384, 2048, 24, 49152),
}


def known_shape(repo_id: str | None) -> Shape | None:
    """The published shape of a common base model (its -Instruct variant has the same)."""
    if not repo_id:
        return None
    key = re.sub(r"-instruct$", "", repo_id.strip().lower())
    return KNOWN_SHAPES.get(key)


# ------------------------------------------------------------------------------------------- Hub param count


def params_from_hub(repo_id: str, token: str | None, endpoint: str | None = None) -> int | None:
    """Parameter count from a Hub repo's safetensors headers (a few KB of range requests, no weights downloaded).

    None when the Hub cannot be reached or the repo has no safetensors weights; a gated or missing repo raises
    ConfigError, since no GPU choice can fix that.
    """
    from huggingface_hub import HfApi  # lazy: keeps `import helpers.vram` fast and offline
    from huggingface_hub.errors import (
        GatedRepoError,
        NotASafetensorsRepoError,
        RepositoryNotFoundError,
        SafetensorsParsingError,
    )

    api = HfApi(endpoint=endpoint, token=token)
    missing = ConfigError(
        key="model.repo_id", problem=f"no Hub repo '{repo_id}' (or it is private to another account)",
        fix="check the repo id and that HF_TOKEN can read it, or set model.params",
    )
    try:
        meta = api.get_safetensors_metadata(repo_id)
    except GatedRepoError as exc:
        raise ConfigError(
            key="model.repo_id", problem=f"'{repo_id}' is gated and this token has no access",
            fix=f"accept the licence on the Hub page of {repo_id} with the account of HF_TOKEN, or set model.params",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise missing from exc
    except (NotASafetensorsRepoError, SafetensorsParsingError):
        # The client reports a missing repo as "no safetensors file" (file_exists swallows the 404): ask.
        try:
            exists = api.repo_exists(repo_id)
        except Exception as exc:
            if _is_network_error(exc):
                return None
            raise
        if not exists:
            raise missing from None
        return None
    except Exception as exc:
        if _is_network_error(exc):
            return None
        raise
    counts = getattr(meta, "parameter_count", None) or {}
    total = sum(int(v) for v in counts.values())
    return total or None


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    root = type(exc).__module__.split(".")[0]
    return root in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}
