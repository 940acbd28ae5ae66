"""What a launch will do, shown before it does it (`--dry-run`, `invoke plan`).

`plan_gpu(job, backend, offers)` is what every cloud or cluster backend's `plan()` calls. In order, cheapest
check first, so nothing that costs money happens for a job that cannot start (and a provider's API is not called
for a job whose input is wrong: `offers` may be a function, called only after steps 1-4):

1. the GPUs named in `resources.gpu` must exist at that provider (`B300` on CHTC is refused here, no network);
2. the Hub check (seed 004): the model and dataset repos exist and HF_TOKEN may read them (gated, private);
   an unreachable Hub is a warning, not an error; `offline=True` skips it and makes no network call at all;
3. the parameter count: the Hub's safetensors metadata, else `model.params`, else the preset of the policy
   type / openpi config (`helpers.vram.PRESETS`);
4. the per-GPU memory estimate (`helpers.vram.estimate`) from the config: method, precision, batch, gradient
   checkpointing, GPU count and sharding, Open R1's generation engine and prompt/completion lengths;
5. `helpers.offers.choose`: the cheapest offer that holds the estimate and meets every `resources.*`
   constraint; nothing fits -> one line with the smallest change that would.

`plan_gpu` and `plan_of` build a backend's Plan; what `invoke plan` and `--backend cloud` ask of every backend is
helpers/backend_choice.py (above the backends: it calls them).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from helpers import gpus as gpu_catalog
from helpers import offers as offers_mod
from helpers import vram
from helpers.console import say, table, warn
from helpers.errors import ConfigError
from helpers.secrets import redact, required_secrets

@dataclass
class Plan:
    """What a launch will do, built once per launch by the backend's `plan` and carried to its `launch`: the offer
    and why, the memory estimate, price, where the checkpoints go, the commands and files, how the machine ends
    without the laptop. `to_json` is `invoke plan --json` (plan_document); the backends' own extras are typed
    fields, and so is the cross-cloud choice of `--backend cloud`."""

    backend: str
    gpu: dict | None = None  # {id, name, memory_gb, provider_id}
    gpu_count: int = 0
    price_per_hour: float | None = None
    spot: bool = False
    why: str = ""
    price_source: str | None = None  # "live", "fallback <date>", or None where nothing is priced
    vram_estimate_gb: float | None = None  # per GPU
    estimate: dict | None = None  # Sizing.as_dict(); None: the backend chose no offer (see with_estimate)
    cloud: str | None = None
    location: str | None = None
    instance_type: str | None = None
    candidates: list[dict] = field(default_factory=list)
    alternatives: list[dict] = field(default_factory=list)
    hub: dict | None = None  # {status, checked}; None: not checked yet
    store: str | None = None
    store_why: str | None = None
    secrets_required: list[str] = field(default_factory=list)  # names, for the plan's "secrets" line
    offer: offers_mod.Offer | None = None  # the chosen offer, to launch
    relaunch_keys: list[tuple] = field(default_factory=list)  # where a relaunch may go (helpers/backends/recovery.py)
    commands: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ends: str | None = None  # how the machine ends without the laptop
    warnings: list[str] = field(default_factory=list)
    secrets_missing: list[str] | None = None
    # the backends' own
    bid_per_gpu: float | None = None  # RunPod spot
    image: str | None = None  # Verda: the OS image, or the OS volume it boots from
    boot_volume: dict | None = None  # Verda resume_local: the detached OS volume (the API's JSON)
    submit: dict | None = None  # CHTC: the submit file's values
    # `--backend cloud`: the winner among the clouds
    clouds: list[str] | None = None
    cloud_why: str | None = None
    cloud_rows: list[dict] | None = None

    def to_json(self, job) -> dict:
        """`invoke plan --json`: the same keys as ever."""
        return plan_document(job, self)


def plan_of(job, backend, **fields) -> Plan:
    """A plan that chooses no offer (this machine, a cluster): where its checkpoints go (`stores.choose`: a directory
    on such backends) and the secrets it needs, with `fields`; `invoke plan` adds the estimate (`with_estimate`)."""
    from helpers import stores

    store = stores.choose(job, backend, recover=job.limits.recover, token=None)
    return Plan(backend.name, store=store.spec, store_why=store.why,
                secrets_required=_secrets_required(job, backend, store.spec), **fields)


def _secrets_required(job, backend, store: str) -> list[str]:
    return sorted({*required_secrets(job, backend), *(["HF_TOKEN"] if store.startswith("hf://") else [])})


HUB_TIMEOUT = 10.0  # seconds per Hub request; the Hub answers in well under one
TABLE_ROWS = 12  # candidate rows in the table output (`--json` has them all)
_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "float32": "fp32", "fp32": "fp32"}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


# ------------------------------------------------------------------------------------------- 1. provider GPUs


def check_offered(job, backend) -> list[str]:
    """Refuse GPUs, or a GPU count, the backend (its Descriptor) never offers (before any API call); warnings for the
    GPUs of a list it lacks."""
    counts, wanted = backend.gpu_counts, job.resources.gpu_count
    if counts and wanted not in counts:
        nearest = min((n for n in counts if n >= wanted), default=max(counts))
        raise ConfigError(key="resources.gpu_count", problem=f"no {backend.name} offer has {wanted} GPUs",
                          fix=f"use gpu_count {nearest} (offered: {', '.join(map(str, counts))})")
    names = _gpu_names(job)
    if not names:
        return []
    provider = backend.name
    offered = backend.gpus()
    keys = {g.key for g in offered}
    missing = [n for n in names if gpu_catalog.resolve(n).key not in keys]
    if len(missing) == len(names):
        listed = ", ".join(g.name for g in sorted(offered, key=lambda g: (g.memory_gb, g.name)))
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError("resources.gpu", f"{', '.join(missing)} {verb} not offered on {provider}",
                          f"{provider} offers: {listed}")
    return [f"resources.gpu: {n} is not offered on {provider}; choosing among the others" for n in missing]


def _gpu_names(job) -> list[str]:
    gpu = job.resources.gpu
    return [gpu] if isinstance(gpu, str) else list(gpu or [])


# --------------------------------------------------------------------------------------------- 2. Hub check


@dataclass
class HubReport:
    """What the Hub said about the job's repos. `checked` is empty when offline or unreachable."""

    checked: list[str] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)  # model repo -> parameter count
    configs: dict[str, dict] = field(default_factory=dict)  # model repo -> its config.json
    warnings: list[str] = field(default_factory=list)
    status: str = "not needed"  # "checked", "offline", "unreachable", "not needed"


def is_hub_id(value: str | None) -> bool:
    """`org/name`, and not a folder on this machine."""
    if not value or not _HUB_ID.fullmatch(value) or value.startswith((".", "~")):
        return False
    return not Path(value).exists()


def hub_repos(job) -> list[tuple[str, str, str]]:
    """(config key, repo id, "model" | "dataset") for every Hub repo the job downloads, models first."""
    out: list[tuple[str, str, str]] = []

    def add(key: str, repo: str | None, kind: str) -> None:
        if is_hub_id(repo) and not any(r == repo and k == kind for _, r, k in out):
            out.append((key, repo, kind))

    add("model.repo_id", job.model.repo_id, "model")
    if job.framework == "open_r1":
        add("open_r1.model", job.open_r1.model, "model")
    if job.framework == "lerobot":
        add("policy.path", job.policy.path, "model")
        for ptype in _policy_types(job):
            add("policy.pretrained_path", _pretrained(job, ptype), "model")
    # datasets
    if job.framework == "lerobot" and not (job.dataset.root or job.dataset.synthetic):
        add("dataset.repo_id", job.dataset.repo_id, "dataset")
        for i, run in enumerate(job.runs):
            add(f"runs[{i}].dataset_repo_id", run.dataset_repo_id, "dataset")
    if job.framework == "open_r1":
        key = "open_r1.dataset_name" if job.open_r1.dataset_name else "dataset.repo_id"
        add(key, job.open_r1.dataset_name or job.dataset.repo_id, "dataset")
    return out


def check_hub(job, token: str | None = None, offline: bool = False) -> HubReport:
    """Seed 004's gated check, for every model and dataset repo; parameter counts and config.json of models.

    Gated without access, missing or private -> ConfigError (no GPU can fix it). Unreachable Hub or a Hub
    error (5xx) -> a warning, and the plan goes on with what the config says."""
    repos = hub_repos(job)
    report = HubReport()
    if not repos:
        return report
    if offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        report.status = "offline"
        return report
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    api = HfApi(token=token) if token else HfApi()
    endpoint = constants.ENDPOINT.rstrip("/")
    for key, repo, kind in repos:
        page = f"{endpoint}/{'datasets/' if kind == 'dataset' else ''}{repo}"
        try:
            info = (api.model_info if kind == "model" else api.dataset_info)(repo, timeout=HUB_TIMEOUT)
            if getattr(info, "gated", False):
                api.auth_check(repo, repo_type=kind)
        except GatedRepoError:
            who = "the account of HF_TOKEN" if token else "an account, then put its token in .env as HF_TOKEN"
            raise ConfigError(key, f"{kind} '{repo}' is gated and {'HF_TOKEN has' if token else 'you have'} no access",
                              f"accept the license at {page} with {who}") from None
        except RepositoryNotFoundError:
            readable = " and that HF_TOKEN can read it" if token else " (a private repo needs HF_TOKEN in .env)"
            raise ConfigError(key, f"no Hub {kind} '{repo}' (missing, or private to another account)",
                              f"check the repo id{readable}") from None
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if _is_network_error(exc) or (isinstance(exc, HfHubHTTPError) and (status or 0) in (429, *range(500, 600))):
                # network down or Hub failing: say so, and plan from what the config says
                why = f"HTTP {status}" if status else type(exc).__name__
                unchecked = [r for _, r, _ in repos if not any(c.endswith(f" {r}") for c in report.checked)]
                report.warnings.append(f"could not reach the Hub at {endpoint} ({why}): gated/missing check of "
                                       f"{', '.join(unchecked)} skipped; sizing from the config")
                report.status = "unreachable"
                return report
            if isinstance(exc, HfHubHTTPError):  # 401 bad token, 400 bad id, ...: a fix for the user, not a traceback
                said = (str(exc).splitlines() or [""])[0][:200]
                raise ConfigError(key, f"the Hub refused {kind} '{repo}' (HTTP {status}: {said})",
                                  "check HF_TOKEN (valid, not expired) and the repo id") from None
            raise
        report.checked.append(f"{kind} {repo}")
        if kind == "model":
            count = _hub_params(repo, token) or getattr(getattr(info, "safetensors", None), "total", None)
            if count:
                report.params[repo] = int(count)
            siblings = {s.rfilename for s in (info.siblings or [])}
            if "config.json" in siblings:
                cfg = _hub_config(api, repo)
                if cfg:
                    report.configs[repo] = cfg
    report.status = "checked"
    return report


def _hub_params(repo: str, token: str | None) -> int | None:
    try:
        return vram.params_from_hub(repo, token)
    except ConfigError:
        raise
    except Exception:  # a Hub hiccup on the metadata: the count falls back to the model info / the config
        return None


def _hub_config(api, repo: str) -> dict | None:
    """The repo's config.json (a few KB): hidden size, layers and vocabulary, or a LeRobot policy's `type`."""
    try:
        path = api.hf_hub_download(repo, "config.json", etag_timeout=HUB_TIMEOUT)
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else None
    except Exception:
        return None


def _is_network_error(exc: BaseException) -> bool:
    return vram._is_network_error(exc) or type(exc).__name__ in ("OfflineModeIsEnabled",)


# ------------------------------------------------------------------------------------------ 3-4. the estimate


@dataclass
class Sizing:
    """The estimate for the job's largest model, and where each input came from."""

    estimate: vram.Estimate | None
    params: float | None = None
    params_source: str = ""
    model: str = ""  # what is sized: "pi05 (lerobot/pi05_base)", "unsloth/gemma-2b", ...
    preset: str | None = None
    basis: str = ""

    def checkpoint_gb(self) -> float:
        """One checkpoint: the whole model's weights and optimizer state, however training shards them."""
        whole = self.estimate.replace(sharding="none")
        return whole.weights_gb + whole.optimizer_gb

    def as_dict(self) -> dict | None:
        e = self.estimate
        if e is None:
            return None
        i = e.inputs
        return {
            "total_gb": round(e.total_gb, 1),
            "parts": {name: round(gb, 2) for name, gb in e.parts().items()},
            "server_gb": round(e.server_gb, 1) if e.server_gb else None,
            "explain": e.explain(),
            "notes": list(e.notes),
            "model": self.model,
            "params": int(self.params) if self.params else None,
            "params_source": self.params_source,
            "preset": self.preset,
            "basis": self.basis or None,
            "checkpoint_gb": round(self.checkpoint_gb(), 2),
            **{k: i[k] for k in ("method", "precision", "optimizer", "batch_size", "gradient_checkpointing",
                                 "gpu_count", "sharding", "generation_engine", "seq_len")},
        }


def _policy_types(job) -> list[str]:
    types = [job.policy.type] if job.policy.type else []
    types += [r.policy_type for r in job.runs if r.policy_type]
    return list(dict.fromkeys(types))


def _lerobot_preset(ptype: str | None) -> dict:
    from helpers.runtime.trainers import LEROBOT_PRESETS  # stdlib-only module

    return LEROBOT_PRESETS.get(ptype or "", {})


def _pretrained(job, ptype: str | None) -> str | None:
    return job.policy.pretrained_path or _lerobot_preset(ptype).get("pretrained_path")


def _preset(name: str | None, key: str) -> vram.Preset | None:
    if not name:
        return None
    try:
        return vram.preset(name, key=key)
    except ConfigError:
        return None


def _explicit(section, name: str) -> bool:
    return name in section.model_fields_set


def _params(job, hub: HubReport, repo: str | None, pre: vram.Preset | None, what: str, offline: bool,
            required: bool) -> tuple[float | None, str]:
    """Hub safetensors metadata -> model.params -> preset -> ConfigError (or None when not required)."""
    if repo and repo in hub.params:
        return float(hub.params[repo]), f"Hub safetensors metadata of {repo}"
    if job.model.params:
        return float(job.model.params), "model.params"
    if (shape := vram.known_shape(repo)) is not None:
        return float(shape.params), f"the published safetensors count of {repo} (helpers.vram.KNOWN_SHAPES)"
    if pre is not None:
        return float(pre.params), f"preset {pre.name}"
    if not required:
        return None, ""
    hint = " (or plan without --offline to read it from the Hub)" if offline and repo else ""
    raise ConfigError("model.params", f"unknown parameter count for {what}",
                      f"set model.params, e.g. 2.5e9{hint}")


def _common(job, gpu_count: int) -> dict[str, Any]:
    return {"optimizer": job.model.optimizer, "gpu_count": gpu_count, "seq_len": job.model.seq_len,
            "sharding": job.model.sharding or "none"}


def size_job(job, hub: HubReport | None = None, offline: bool = False, required: bool = True) -> Sizing:
    """The per-GPU estimate for the job (the largest of its runs). `required=False`: Sizing(None) instead of
    a ConfigError when nothing tells the parameter count."""
    hub = hub or HubReport()
    n = job.resources.gpu_count
    if job.framework == "lerobot":
        return max((_size_lerobot(job, hub, ptype, n, offline, required) for ptype in _policy_types(job) or [None]),
                   key=lambda s: s.estimate.total_gb if s.estimate else -1)
    if job.framework == "openpi":
        return _size_openpi(job, hub, n, offline, required)
    if job.framework == "open_r1":
        return _size_open_r1(job, hub, n, offline, required)
    repo = job.model.repo_id if is_hub_id(job.model.repo_id) else None
    params, source = _params(job, hub, repo, None, "framework 'command'", offline, required=False)
    if params is None:
        if required and not (job.resources.gpu or job.resources.min_vram_gb):
            raise ConfigError("model.params", "cannot size a GPU for framework 'command' without a model",
                              "set model.params (parameter count), resources.min_vram_gb or resources.gpu")
        return Sizing(None)
    method = job.model.method
    est = vram.estimate(params, method=method, precision=job.model.precision, batch_size=job.training.batch_size,
                        **_shape(hub, repo), **_common(job, n))
    return Sizing(est, params, source, repo or "the command's model")


def _size_lerobot(job, hub, ptype, n, offline, required) -> Sizing:
    repo = None
    if is_hub_id(job.model.repo_id):
        repo = job.model.repo_id
    elif is_hub_id(job.policy.path):
        repo = job.policy.path
        ptype = ptype or (hub.configs.get(repo) or {}).get("type")  # a saved policy names its type
    elif is_hub_id(_pretrained(job, ptype)):
        repo = _pretrained(job, ptype)
    pre = _preset(ptype, "policy.type")
    what = f"policy {ptype or job.policy.path}"
    params, source = _params(job, hub, repo, pre, what, offline, required)
    if params is None:
        return Sizing(None)
    lp = _lerobot_preset(ptype)
    if _explicit(job.model, "precision"):
        precision = job.model.precision
    else:
        precision = _DTYPES.get(str(job.policy.dtype or lp.get("dtype") or "").lower(), pre.precision if pre else "bf16")
    checkpointing = job.policy.gradient_checkpointing
    if checkpointing is None:
        checkpointing = bool(lp.get("gradient_checkpointing", False))
    method = job.model.method if _explicit(job.model, "method") else (pre.method if pre else "full")
    kw = dict(params=params, method=method, precision=precision, batch_size=job.training.batch_size,
              gradient_checkpointing=checkpointing, **_common(job, n))
    if pre is not None:
        est = pre.estimate(**kw)
    else:
        est = vram.estimate(**kw, **_shape(hub, repo))
    label = f"{ptype or 'policy'}" + (f" ({repo})" if repo else "")
    return Sizing(est, params, source, label, pre.name if pre else None, pre.basis if pre else "")


def _size_openpi(job, hub, n, offline, required) -> Sizing:
    name = job.openpi.config_name
    pre = _preset(f"openpi/{name}", "openpi.config_name")
    repo = job.model.repo_id if is_hub_id(job.model.repo_id) else None
    params, source = _params(job, hub, repo, pre, f"openpi config '{name}'", offline, required)
    if params is None:
        return Sizing(None)
    # *_low_mem_finetune configs train LoRA adapters (the preset says so); model.method, when given, wins.
    method = job.model.method if _explicit(job.model, "method") else (pre.method if pre else "full")
    kw = dict(params=params, method=method, precision=job.model.precision, batch_size=job.training.batch_size,
              **_common(job, n))
    est = pre.estimate(**kw) if pre else vram.estimate(**kw)
    return Sizing(est, params, source, f"openpi {name}", pre.name if pre else None, pre.basis if pre else "")


def _size_open_r1(job, hub, n, offline, required) -> Sizing:
    r1 = job.open_r1
    recipe = r1.recipe_options or {}
    repo = next((r for r in (job.model.repo_id, r1.model) if is_hub_id(r)), None)
    params, source = _params(job, hub, repo, None, f"model {r1.model or job.model.repo_id}", offline, required)
    if params is None:
        return Sizing(None)
    method = job.model.method if _explicit(job.model, "method") else "grpo"
    if method == "full":
        method = "grpo"  # full fine-tuning with GRPO: + reference model + generation engine
    if recipe.get("use_peft"):
        method = "lora"  # the recipe trains adapters, whatever model.method says
    use_vllm = recipe.get("use_vllm", r1.use_vllm)
    engine = f"vllm_{recipe.get('vllm_mode', r1.vllm_mode)}" if use_vllm else "none"
    prompt = int(recipe.get("max_prompt_length", r1.max_prompt_length))
    completion = int(recipe.get("max_completion_length", r1.max_completion_length))
    config_file = str(job.accelerate.config_file or "recipes/accelerate_configs/zero2.yaml").lower()
    sharding = job.model.sharding or ("zero3" if "zero3" in config_file else "fsdp" if "fsdp" in config_file else
                                      "none" if "ddp" in config_file else "zero2")  # the runtime's default: zero2.yaml
    common = _common(job, n)
    common["seq_len"] = job.model.seq_len or prompt + completion
    common["sharding"] = sharding if n > 1 else "none"
    est = vram.estimate(
        params, method=method, precision=job.model.precision,
        batch_size=int(recipe.get("per_device_train_batch_size", job.training.batch_size)),
        gradient_checkpointing=bool(recipe.get("gradient_checkpointing", True)),  # the runtime's recipe turns it on
        generation_engine=engine, logit_tokens=completion,
        **_shape(hub, repo), **common,
    )
    return Sizing(est, params, source, repo or str(r1.model))


def _shape(hub: HubReport, repo: str | None) -> dict[str, int]:
    """hidden_size / layers / vocab_size from the model's config.json on the Hub (or its text_config), else from
    the published shape of a known model (offline)."""
    config = hub.configs.get(repo or "")
    if not config:
        shape = vram.known_shape(repo)
        return {"hidden_size": shape.hidden_size, "layers": shape.layers, "vocab_size": shape.vocab_size} if shape else {}
    c = config.get("text_config") if isinstance(config.get("text_config"), dict) and "hidden_size" not in config else config
    out = {"hidden_size": c.get("hidden_size") or c.get("n_embd") or c.get("d_model"),
           "layers": c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers"),
           "vocab_size": c.get("vocab_size")}
    return {k: int(v) for k, v in out.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


# ----------------------------------------------------------------------------------------------- 5. choice


def plan_gpu(job, backend, offers: list[offers_mod.Offer] | Callable[[], list[offers_mod.Offer]] | None = None,
             token: str | None = None, offline: bool = False) -> Plan:
    """Hub check, memory estimate and the cheapest offer that fits, on `backend` (its Descriptor, which a backend's
    plan passes as its own). `offers`: the backend's live offers, or a function that reads them (called after the
    input checks), None: its dated price table (`backend.fallback_offers`).
    `token`: HF_TOKEN (None: from .env / the environment). `offline`: no network call at all.

    Returns the Plan; its candidates are [{gpu, gpu_id, memory_gb, gpu_count, price_per_hour, spot, cloud, location,
    instance_type, in_stock, fits, chosen, reason}]. A job that fits nothing, a gated/missing repo or a GPU the provider lacks raise ConfigError (one line)."""
    from helpers import stores

    provider = backend.name
    warnings = check_offered(job, backend)
    # where the checkpoints go (refused here, before any network call, when they would not survive the instance)
    store = stores.choose(job, backend, recover=job.limits.recover, token=token if token is not None else hf_token())
    if token is None and not offline:
        token = hf_token()
    hub = check_hub(job, token, offline)
    warnings += hub.warnings
    sizing = size_job(job, hub, offline)
    est = sizing.estimate
    offers = list(backend.fallback_offers() if offers is None else offers() if callable(offers) else offers)
    _check_priced(job, provider, offers)
    r = job.resources
    location = r.location or (job.verda.location if provider == "verda" else None)
    location_key = "resources.location" if r.location or not location else "verda.location"
    constraints = dict(allowed_gpus=_gpu_names(job) or None, min_vram_gb=r.min_vram_gb, spot_allowed=r.spot,
                       cloud=r.cloud, location=location, location_key=location_key,
                       max_price_per_hour=r.max_price_per_hour)
    advice = advice_keys(job)
    choice = offers_mod.choose(offers, est if est is not None else (r.min_vram_gb or 0.0), gpu_count=r.gpu_count,
                               advice=advice, **constraints)
    chosen, rows = _prefer_smallest_free(choice.offer, list(choice.candidates))
    fitting = sum(1 for c in rows if c.fits)
    o = chosen
    where = f"{o.gpu_count}x {o.gpu.label} on {o.provider}{' ' + o.cloud if o.cloud else ''}{' spot' if o.spot else ''}"
    if o.location:
        where += f" {o.location}"
    if o.price_per_hour:
        why = f"{where} at ${o.price_per_hour:.2f}/h ({o.source}): the cheapest of {fitting} offers that fit"
    else:
        why = f"{where}, free ({o.source}): the smallest of {fitting} GPUs that fit"
    why += f" ~{math.ceil(est.total_gb - 1e-9)} GB per GPU" if est is not None else \
        " (no memory estimate: set model.params for one)"
    if r.spot and not o.spot:
        kind = "the dated price table" if o.source != "live" else f"{provider} now"
        warnings.append(f"resources.spot is true but {kind} has no spot offer that fits: this plan is ON-DEMAND "
                        f"(${o.price_per_hour:.2f}/h); plan online for live spot prices, or set resources.spot: false")
    return Plan(
        backend=provider, secrets_required=_secrets_required(job, backend, store.spec),
        gpu={"id": o.gpu.key, "name": o.gpu.label, "memory_gb": o.gpu.memory_gb, "provider_id": o.gpu_type_id or o.instance_type},
        gpu_count=o.gpu_count, vram_estimate_gb=round(est.total_gb, 1) if est is not None else None,
        estimate=sizing.as_dict(), price_per_hour=o.price_per_hour, spot=o.spot, cloud=o.cloud, location=o.location,
        instance_type=o.instance_type, price_source=o.source, why=why, candidates=[_row(c, o) for c in rows],
        warnings=warnings, hub={"status": hub.status, "checked": hub.checked}, store=store.spec, store_why=store.why,
        offer=o,
        # where a relaunch may go, in plan order: what fits, and what only stock kept out
        relaunch_keys=[c.offer.key for c in rows if c.fits or c.only_out_of_stock],
        alternatives=alternatives(est, o, offers, r.gpu_count, advice, constraints) if est is not None else [],
    )


VERY_LARGE_GB = 100  # a chosen card above this (H200, B200, MI300X) is worth comparing with other ways to fit


def alternatives(est, chosen, offers, gpu_count: int, advice: offers_mod.Advice, constraints: dict) -> list[dict]:
    """When the cheapest fit is one very large card: the cheapest plans that fit differently (sharded over more,
    smaller GPUs; LoRA), each with the keys to set and its price, so the user sees the trade."""
    if chosen.gpu.memory_gb <= VERY_LARGE_GB:
        return []
    tries: list[tuple[list[str], dict, int]] = []
    if advice.sharding:
        counts = sorted({o.gpu_count for o in offers if o.gpu_count > gpu_count})
        tries += [([f"resources.gpu_count: {n}", f"model.sharding: {advice.sharding}"],
                   {"gpu_count": n, "sharding": advice.sharding}, n) for n in counts]
    if advice.lora and est.inputs["method"] not in vram.LIGHT_METHODS:
        tries.append(([advice.lora], {"method": "lora"}, gpu_count))
    found: dict[str, dict] = {}
    for keys, change, n in tries:
        try:
            other = est.replace(**change)
            pick = offers_mod.choose(offers, other, gpu_count=n, **constraints).offer
        except ConfigError:
            continue
        if pick.gpu.memory_gb > VERY_LARGE_GB or pick.price_per_hour <= 0:
            continue
        kind = "lora" if "method" in change else "sharded"
        if kind not in found or pick.price_per_hour < found[kind]["price_per_hour"]:
            found[kind] = {"set": keys, "gpu": pick.gpu.label, "gpu_count": pick.gpu_count,
                           "price_per_hour": pick.price_per_hour, "spot": pick.spot,
                           "vram_estimate_gb": round(other.total_gb, 1)}
    return sorted(found.values(), key=lambda a: a["price_per_hour"])


def advice_keys(job) -> offers_mod.Advice:
    """What this job's trainer really receives (helpers/runtime/trainers.py), so a refused plan proposes only that."""
    if job.framework == "lerobot":
        from helpers.runtime import lerobot_versions

        sharded = lerobot_versions.release(job.lerobot.version).version >= "0.6"  # older: no DeepSpeed/FSDP flags
        return offers_mod.Advice("zero3" if sharded else None, None, "policy.gradient_checkpointing: true")
    if job.framework == "openpi":
        return offers_mod.Advice("fsdp", None, None)  # JAX: --fsdp-devices; LoRA is another openpi config
    if job.framework == "open_r1":
        return offers_mod.Advice("zero3", "open_r1.recipe_options.use_peft: true",
                                 "open_r1.recipe_options.gradient_checkpointing: true")
    return offers_mod.Advice("zero3", "model.method: lora", None)  # command: the ACCELERATE_* environment


def _check_priced(job, provider: str, offers: list[offers_mod.Offer]) -> None:
    """resources.gpu names GPUs the provider has, but none of them has an offer (price table or live list)."""
    names = _gpu_names(job)
    if not names or not offers:
        return
    allowed = {gpu_catalog.resolve(n).key for n in names}
    if allowed & {o.gpu.key for o in offers}:
        return
    priced = sorted({o.gpu for o in offers}, key=lambda g: (g.memory_gb, g.name))
    where = "in the dated price table" if all(o.source.startswith("fallback") for o in offers) else "right now"
    raise ConfigError("resources.gpu", f"no {provider} offer for {', '.join(names)} {where}",
                      f"use one of {', '.join(g.name for g in priced)}")


def _prefer_smallest_free(offer, rows):
    """On free machines (CHTC, SLURM, local) the cheapest is a tie: take the smallest GPU that fits, so a small
    job does not wait for (or hold) an H200."""
    if offer.price_per_hour != 0:
        return offer, rows
    free = [c for c in rows if c.fits and c.offer.price_per_hour == 0]
    best = min(free, key=lambda c: (c.offer.gpu.memory_gb, c.offer.spot, c.offer.gpu.key)).offer
    relabel = [offers_mod.Candidate(c.offer, c.fits, ("smallest free GPU that fits" if c.offer is best else "fits; free, larger")
                                    if c.fits and c.offer.price_per_hour == 0 else c.reason) for c in rows]
    relabel.sort(key=lambda c: (not c.fits, c.offer is not best, c.offer.gpu.memory_gb if c.fits else 0))
    return best, relabel


def _row(c: offers_mod.Candidate, chosen) -> dict:
    o = c.offer
    return {"gpu": o.gpu.label, "gpu_id": o.gpu.key, "memory_gb": o.gpu.memory_gb, "gpu_count": o.gpu_count,
            "price_per_hour": o.price_per_hour, "spot": o.spot, "cloud": o.cloud, "location": o.location,
            "instance_type": o.instance_type, "in_stock": o.in_stock, "fits": c.fits, "chosen": o is chosen,
            "reason": c.reason}


def hf_token() -> str | None:
    from helpers.workspace import current

    return current().secrets.get("HF_TOKEN")


def with_estimate(job, the_plan: Plan, token: str | None = None, offline: bool = False) -> Plan:
    """Add the Hub check and the memory estimate to a plan that has none (this machine: no offers to choose)."""
    if token is None and not offline:
        token = hf_token()
    hub = check_hub(job, token, offline)
    sizing = size_job(job, hub, offline, required=False)
    est = sizing.estimate
    warnings = the_plan.warnings + hub.warnings
    gpu = dict(the_plan.gpu) if the_plan.gpu else None
    known = gpu_catalog.find(str(gpu.get("name") or gpu.get("id") or "")) if gpu else None
    if gpu and known and not gpu.get("memory_gb"):
        gpu["memory_gb"] = known.memory_gb
    backend = the_plan.backend
    where = "this machine's" if backend == "local" else f"{backend}'s"
    if est is not None and known and gpu.get("memory_gb") and gpu["memory_gb"] < est.total_gb:
        warnings.append(f"{where} {gpu['name']} has {gpu['memory_gb']:g} GB; the job needs ~"
                        f"{math.ceil(est.total_gb)} GB per GPU and will likely run out of memory")
    if backend == "local" and not gpu and est is not None and (job.policy.device or "").lower() != "cpu":
        warnings.append(f"no CUDA GPU on this machine: the job (~{math.ceil(est.total_gb)} GB per GPU) would train "
                        "on the CPU; plan another backend with --backend")
    return replace(the_plan, gpu=gpu, vram_estimate_gb=round(est.total_gb, 1) if est is not None else None,
                   estimate=sizing.as_dict(), warnings=warnings, hub={"status": hub.status, "checked": hub.checked})


# ---------------------------------------------------------------------------------------------- output


def plan_document(job, the_plan: Plan) -> dict:
    """The plan as one JSON-ready object (what `invoke plan --json` prints)."""
    backend = the_plan.backend
    hours = (job.time_limit_seconds or 0) / 3600
    price = the_plan.price_per_hour
    budget = job.limits.budget_usd
    commands = the_plan.commands
    return {
        "backend": backend,
        "run_id": job.run_id,
        "gpu": the_plan.gpu,
        "gpu_count": the_plan.gpu_count,
        "nodes": job.resources.nodes,
        "vram_estimate_gb": the_plan.vram_estimate_gb,
        "estimate": the_plan.estimate,
        "price_per_hour": price,
        "spot": the_plan.spot,
        "spot_requested": bool(job.resources.spot),
        "cloud": the_plan.cloud,
        "location": the_plan.location,
        "instance_type": the_plan.instance_type,
        "price_source": the_plan.price_source,
        "time_limit_hours": round(hours, 2) if hours else None,
        "estimated_cost_usd": round(price * hours, 2) if price is not None and hours else None,
        "budget_usd": budget,
        "budget_hours": round(budget / price, 1) if budget and price else None,
        "why": the_plan.why,
        "trainer": trainer_line(job, backend),
        "candidates": the_plan.candidates,
        "alternatives": the_plan.alternatives,
        "clouds": the_plan.clouds,
        "cloud_why": the_plan.cloud_why,
        "cloud_offers": the_plan.cloud_rows,
        "command": commands[0] if len(commands) == 1 else commands,
        "files": the_plan.files,
        "secrets_required": the_plan.secrets_required,
        "secrets_missing": the_plan.secrets_missing,
        "ends": the_plan.ends,
        "store": the_plan.store,
        "store_why": the_plan.store_why,
        "store_size_gb": store_size_gb(job, the_plan),
        "hub": the_plan.hub,
        "warnings": the_plan.warnings,
    }


def store_size_gb(job, the_plan: Plan) -> float | None:
    """What the store will hold: checkpoint size (from the estimate) x `checkpoint.keep` — older versions are freed
    (helpers/runtime/store.py), so this is also what a Hub store counts against the account's storage."""
    size = (the_plan.estimate or {}).get("checkpoint_gb")
    return round(size * job.checkpoint.keep, 1) if size else None


def trainer_line(job, backend: str) -> str | None:
    """Which trainer release the host will get, from which install, on which Python (LeRobot only)."""
    if job.framework != "lerobot":
        return None
    from helpers.runtime import environment

    config = job.model_dump(mode="json")
    release = environment.lerobot_release(config)
    python = (environment.python_for(config) if backend == "local" else
              f"Python >= {release.python_text} (the host's, or one uv fetches where it is older)")
    return f"LeRobot {release.version}: {environment.install_spec(config)[-1][0]} on {python}"


_EXCLUSIONS = (("GB needed", "too small"), ("not in resources.gpu", "not in resources.gpu"),
               ("min_vram_gb", "below resources.min_vram_gb"), ("spot (not allowed", "spot"),
               ("cloud (resources.cloud", "other cloud"), ("location", "other location"), ("> max $", "over max price"),
               ("out of stock", "out of stock"))


def excluded_summary(rows: list[dict]) -> str:
    """'16 too small, 8 not in resources.gpu': each offer counted once, under its first reason."""
    counts: dict[str, int] = {}
    for row in rows:
        label = next((name for marker, name in _EXCLUSIONS if marker in row["reason"]), "other")
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def print_cloud_table(the_plan: Plan) -> None:
    rows = the_plan.cloud_rows
    shown = rows[:TABLE_ROWS]
    table(f"offers that fit, over {', '.join(the_plan.clouds)} (cheapest first)",
          ["", "backend", "gpu", "$/h", "for the limit", "spot", "stock", "where"],
          [["→" if r["chosen"] else "", r["backend"], f"{r['gpu_count']}x {r['gpu']}", f"{r['price_per_hour']:.2f}",
            f"${r['cost_for_limit']:.2f}" if r["cost_for_limit"] is not None else "-", "spot" if r["spot"] else "on-demand",
            "yes" if r["in_stock"] else "no", r.get("instance_type") or r.get("cloud") or r.get("location") or ""]
           for r in shown])
    if len(rows) > len(shown):
        say(f"  {len(rows) - len(shown)} more that fit (`invoke plan --json` lists them all)")
    say(f"  chosen: {the_plan.cloud_why}")


def print_plan(job, the_plan: Plan, as_json: bool = False) -> dict:
    doc = the_plan.to_json(job)
    if as_json:
        print(json.dumps(doc, indent=2))
        for line in doc["warnings"]:  # stdout stays one JSON object; people still see these
            print(f"warning: {redact(line)}", file=sys.stderr)
        return doc
    if the_plan.cloud_rows:
        print_cloud_table(the_plan)
    rows = [] if the_plan.cloud_rows else doc["candidates"]
    fitting = [c for c in rows if c["fits"]]
    if rows:
        shown = (fitting or rows)[:TABLE_ROWS]
        count = doc["gpu_count"] or 1
        table(f"{doc['backend']} offers for {count} GPU{'s' if count > 1 else ''} (cheapest that fits first)",
              ["", "gpu", "$/h", "spot", "where", "fits", "why"],
              [["→" if c.get("chosen") else "", c["gpu"], f"{c['price_per_hour']:.2f}", "spot" if c["spot"] else "",
                c.get("instance_type") or c.get("cloud") or c.get("location") or "", "yes" if c["fits"] else "no",
                re.sub(r" \([^)]*\)", "", c["reason"])] for c in shown])  # details are in --json
        left = len(rows) - len(shown)
        if left:
            say(f"  {left} more{' that fit' if len(fitting) > len(shown) else ''}" +
                (f": {excluded_summary([c for c in rows if not c['fits']])}" if fitting else "") +
                " (`invoke plan --json` lists them all, with reasons in full)")
    gpu = doc["gpu"]
    what = f"{doc['gpu_count']}x {gpu['name']}" if gpu else "no GPU"
    why = doc["why"] or ""
    say(f"plan for {job.run_id} on {doc['backend']}: " + (why if why.startswith(what) else f"{what} — {why}"))
    if doc["nodes"] > 1:
        say(f"  nodes: {doc['nodes']} x {job.resources.gpu_count} GPU(s), one runtime per node (srun); the trainers meet "
            "at the first node (MASTER_ADDR, MASTER_PORT, NODE_RANK, WORLD_SIZE in their environment); node 0 syncs")
    for alt in doc.get("alternatives") or []:
        say(f"  or: {alt['gpu_count']}x {alt['gpu']} at ${alt['price_per_hour']:.2f}/h"
            f"{' spot' if alt['spot'] else ''} (~{alt['vram_estimate_gb']:g} GB per GPU) — set {', '.join(alt['set'])}")
    est = doc.get("estimate")
    if isinstance(est, dict):
        say(f"  memory: {est['explain']}")
        say(f"  params: {est['params'] / 1e9:.3g}B from {est['params_source']}" + (f"; preset basis: {est['basis']}" if est.get("basis") else ""))
        for note in est.get("notes") or []:
            say(f"  note: {note}")
    elif doc["vram_estimate_gb"]:
        say(f"  memory estimate: {doc['vram_estimate_gb']} GB per GPU")
    price = doc["price_per_hour"]
    if price:
        line = f"  price: ${price:.2f}/h{' (spot: may be interrupted, resumes from the last checkpoint)' if doc['spot'] else ''}"
        if doc["estimated_cost_usd"] is not None:
            line += f"; up to ${doc['estimated_cost_usd']:.2f} for the {doc['time_limit_hours']:g} h time limit"
        else:
            off = " (limits.timeout is false)" if job.limits.time_limit else " (set limits.time_limit)"
            line += f"; no time limit{off}: it bills until the job ends"
        if doc["budget_hours"]:
            line += f"; budget ${doc['budget_usd']:g} stops it after {doc['budget_hours']:g} h"
        say(line)
    elif price == 0 and gpu:
        say("  price: free (no charge on this backend)")
    if doc.get("trainer"):
        say(f"  trainer: {doc['trainer']}")
    for command in the_plan.commands:
        say(f"  command: {command}")
    say(f"  files: {', '.join(doc['files']) or '-'}")
    missing = doc.get("secrets_missing") or []
    secrets = ", ".join(f"{s} (missing)" if s in missing else s for s in doc["secrets_required"]) or "none"
    say(f"  secrets: {secrets}")
    say(f"  checkpoints: {doc['store']}" + (f" — {doc['store_why']}" if doc.get("store_why") else ""))
    if doc.get("store_size_gb"):
        each = doc["estimate"]["checkpoint_gb"]
        quota = (" against the account's private storage (its quota is not in the Hub's API: a full one refuses "
                 "uploads, and the run raises sync_failed)") if (doc["store"] or "").startswith("hf://") else ""
        say(f"  store size: ~{doc['store_size_gb']:g} GB = ~{each:.1f} GB per checkpoint x checkpoint.keep "
            f"{job.checkpoint.keep}, older versions freed at each save{quota}")
    if doc.get("ends"):
        say(f"  without the laptop: {doc['ends']}")
    hub = doc.get("hub") or {}
    if hub.get("checked"):
        say(f"  Hub: readable with this token: {', '.join(hub['checked'])}")
    elif hub.get("status") == "offline":
        say("  Hub: not checked (--offline)")
    for line in doc["warnings"]:
        warn(f"  warning: {line}")
    return doc
