"""The one job config: schema, YAML loading, and precedence CLI > environment > YAML > defaults.

Every key is documented in configs/README.md. Secrets are never part of the config (see helpers.secrets).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helpers.runtime import lerobot_versions

from helpers.errors import ConfigError
from helpers.seed_formats import MODEL_TYPES, convert as convert_seed_format, loader as seed_loader

Framework = Literal["lerobot", "openpi", "open_r1", "command"]
# Every place to run a job: its name (the `backend` key) -> its module in helpers/backends/, which declares it
# (DESCRIPTOR) and implements the contract (helpers/backends/base.py). A new backend is its module and one line here.
BACKENDS = {
    "local": "local",
    "runpod": "runpod",
    "verda": "verda",
    "hfjobs": "hf_jobs",
    "slurm": "slurm_jobs",
    "chtc": "chtc_condor",
}
BackendName = Literal[(*BACKENDS, "cloud")]  # cloud: the cheapest of the clouds

LEROBOT_POLICY_TYPES = lerobot_versions.ALL_POLICIES  # of every supported release; per release: lerobot.version


class Section(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_duration(value: Any) -> float:
    """Seconds from 3600, "3600", "90m", "2h", "1d" or "1:30:00"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)", text):
        return float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    if m := re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?", text):
        days, a, b, c = int(m[1] or 0), int(m[2]), int(m[3]), m[4]
        hours, minutes, seconds = (a, b, int(c)) if c is not None else (0, a, b)
        return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)
    raise ValueError(f"not a duration: {value!r} (use seconds, '90m', '2h' or 'HH:MM:SS')")


def policy_type(value: str | None) -> str | None:
    """LeRobot policy type from either spelling: the seed's model type (ACT, SmolVLA, ...) or LeRobot's (act, ...)."""
    if value is None or value in LEROBOT_POLICY_TYPES:
        return value
    if value in MODEL_TYPES:
        return MODEL_TYPES[value]
    raise ValueError(_unknown(value, LEROBOT_POLICY_TYPES + tuple(MODEL_TYPES), "policy type"))


class Job(Section):
    name: str = "trainyard"
    run_id: str | None = None
    output_dir: str | None = None


class Dataset(Section):
    repo_id: str | None = None
    root: str | None = None
    revision: str | None = None
    episodes: list[int] | None = None
    synthetic: bool = False


class Policy(Section):
    type: str | None = None
    path: str | None = None
    pretrained_path: str | None = None
    repo_id: str | None = None
    push_to_hub: bool = False
    private: bool = True
    device: str | None = None
    dtype: str | None = None
    compile_model: bool | None = None
    gradient_checkpointing: bool | None = None
    empty_cameras: int | None = None
    optimizer_lr: float | None = None
    rename_map: dict[str, str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        return policy_type(value)


class LeRobotSection(Section):
    version: str = lerobot_versions.DEFAULT
    install: str | None = None

    @field_validator("version")
    @classmethod
    def _supported(cls, value: str) -> str:
        lerobot_versions.release(value)  # ValueError: one line naming the supported releases
        return value


class Model(Section):
    repo_id: str | None = None
    params: float | None = None
    method: Literal["full", "lora", "qlora", "inference", "grpo"] = "full"
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    optimizer: Literal["adamw", "adamw8bit", "sgd"] = "adamw"
    seq_len: int | None = None
    sharding: Literal["none", "zero2", "zero3", "fsdp"] | None = None


class Training(Section):
    steps: int = Field(default=100_000, gt=0)
    batch_size: int = Field(default=8, gt=0)
    save_freq: int = Field(default=20_000, gt=0)
    save_checkpoint: bool = True
    log_freq: int = Field(default=200, gt=0)
    num_workers: int | None = Field(default=None, ge=0)
    seed: int | None = None
    extra_args: list[str] = Field(default_factory=list)


class Checkpoint(Section):
    store: str | None = None
    repo_id: str | None = None
    upload_every_save: bool = True
    upload_poll_seconds: float = Field(default=60, gt=0)
    keep: int = Field(default=1, ge=1)
    private: bool = True

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        from helpers.stores import check_spec

        return check_spec(value)

    @model_validator(mode="after")
    def _store_from_repo_id(self) -> "Checkpoint":
        # Seed 001 names the Hub repo `checkpoint.repo_id`; it means the store hf://<repo_id>.
        if self.repo_id and not self.store:
            object.__setattr__(self, "store", f"hf://{self.repo_id}")
        return self


class Wandb(Section):
    enable: bool = False
    project: str | None = None
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None


class Accelerate(Section):
    use: bool | None = None
    num_processes: int | None = Field(default=None, gt=0)
    num_machines: int = Field(default=1, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16", "fp8"] | None = None
    config_file: str | None = None


class Torch(Section):
    nightly: bool = False
    index_url: str | None = None


class Resources(Section):
    gpu: str | list[str] | None = None
    gpu_count: int = Field(default=1, gt=0)  # per node
    nodes: int = Field(default=1, gt=0)  # machines one job spans (SLURM); the clouds run one
    min_vram_gb: float | None = Field(default=None, gt=0)
    spot: bool = False
    cloud: Literal["secure", "community", "any"] = "any"
    location: str | None = None
    max_price_per_hour: float | None = Field(default=None, gt=0)

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_number(cls, value: Any) -> Any:
        # `gpu: 4090` is a YAML integer; it names a GPU like "4090" does.
        number = lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # noqa: E731
        return [number(v) for v in value] if isinstance(value, list) else number(value)

    @field_validator("gpu")
    @classmethod
    def _known_gpus(cls, value: str | list[str] | None) -> str | list[str] | None:
        """Every name must mean a GPU of the catalog (any alias); the user's spelling is kept."""
        from helpers import gpus

        for name in [value] if isinstance(value, str) else value or []:
            gpus.resolve(name, key="resources.gpu")  # unknown: ConfigError with "did you mean"
        return value


class Limits(Section):
    time_limit: float | None = Field(default=None, gt=0)
    timeout: bool = True
    end_when_done: bool = True
    terminate_on_stop: bool = True
    budget_usd: float | None = Field(default=None, gt=0)
    max_recoveries: int = Field(default=5, ge=0)
    grace_s: float = Field(default=300, ge=0)
    recover: bool | None = None

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


class Notify(Section):
    webhook_url: str | None = None
    project: str | None = None


class Command(Section):
    run: str | list[str] | None = None
    resume_run: str | list[str] | None = None
    workdir: str | None = None


class OpenPI(Section):
    config_name: str | None = None
    exp_name: str | None = None
    checkpoint_base_dir: str = "checkpoints"
    repo_dir: str = "openpi"
    overwrite: bool = False


class OpenR1(Section):
    model: str | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    system_prompt: str | None = None
    reasoning_tag: str = "<think>"
    reasoning_end_tag: str = "</think>"
    answer_tag: str | None = None
    answer_end_tag: str | None = None
    reward_funcs: list[str] | None = None
    hub_model_id: str | None = None
    push_to_hub: bool = True
    report_to: list[str] = Field(default_factory=list)
    learning_rate: float = 1e-6
    num_generations: int = Field(default=8, gt=0)
    max_prompt_length: int = 512
    max_completion_length: int = 1024
    use_vllm: bool = True
    vllm_mode: Literal["colocate", "server"] = "colocate"
    num_train_epochs: float = 1
    recipe_options: dict[str, Any] = Field(default_factory=dict)


class Run(Section):
    """One entry of `runs:` — several trainings run one after another on one machine (seed 000's TRAIN list)."""

    policy_type: str | None = None
    dataset_repo_id: str | None = None
    steps: int | None = Field(default=None, gt=0)
    job_name: str | None = None
    output_dir: str | None = None
    policy_repo_id: str | None = None

    @field_validator("policy_type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        return policy_type(value)


class RunpodSection(Section):
    name: str | None = None
    template_id: str | None = None
    image: str | None = None
    mode: Literal["ssh", "start_command"] = "ssh"
    volume_gb: int = Field(default=50, ge=0)
    container_disk_gb: int = Field(default=50, ge=1)
    bid_per_gpu: float | None = Field(default=None, gt=0)
    skip_setup: bool = False
    remote_dir: str = "/workspace/trainyard"
    poll_seconds: float = Field(default=10, gt=0)
    python: str = "python3"
    ssh_private_key: str | None = None
    time_limit_grace_s: float | None = Field(default=None, ge=0)

    @field_validator("volume_gb")
    @classmethod
    def _rentable_volume(cls, value: int) -> int:
        if 0 < value < 10:  # REST v2 PersistentMount.size: "Upstream enforces a 10 GB floor"
            raise ValueError("RunPod's smallest pod volume is 10 GB: use 0 (no volume) or 10 or more")
        return value


class VerdaSection(Section):
    image: str = "ubuntu-24.04-cuda-12.8-open-docker"
    location: str | None = None
    ssh_key_name: str | None = None
    ssh_private_key: str | None = None
    os_volume_id: str | None = None
    os_volume_gb: int = Field(default=200, gt=0)
    hostname: str | None = None
    remote_dir: str = "/root/lerobot_run"
    poll_seconds: float = Field(default=10, gt=0)
    python: str = "python3"
    skip_setup: bool = False
    deadman: Literal["account", "launcher"] = "account"


class SlurmSection(Section):
    job_name: str | None = None
    output: str = "log/slurm/train/%x.out"
    error: str = "log/slurm/train/%x.err"
    time: str = "44:00:00"
    nodes: int = 1
    gres: str | None = None
    constraint: str | None = None
    ntasks_per_node: int = 1
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    partition: str | None = None
    requeue: bool = True
    signal: str = "B:USR1@90"
    set_path: str | None = None
    container: str | None = None
    overlay: str | None = None
    launcher: Literal["torchrun", "accelerate", "auto"] = "auto"
    extra_directives: list[str] = Field(default_factory=list)


class HfjobsSection(Section):
    image: str = "python:3.12"
    namespace: str | None = None
    attempts: int = Field(default=1, ge=1, le=10)  # HF's default; more: the budget split (undocumented semantics)
    python: str = "python3"
    skip_setup: bool = False
    poll_seconds: float = Field(default=5.0, gt=0)


class ChtcSection(Section):
    universe: Literal["docker", "vanilla"] = "docker"
    netid: str | None = None
    image: str | None = None
    request_cpus: int = 8
    request_memory: str = "64GB"
    request_disk: str = "200GB"
    gpus_minimum_capability: float = 9.0
    gpus_minimum_memory: int | None = None
    gpu_names: list[str] | None = None
    job_length: Literal["short", "medium", "long"] | None = None
    staging_dir: str | None = None
    transfer_host: str = "transfer.chtc.wisc.edu"


class LocalSection(Section):
    env_dir: str | None = None


class DockerSection(Section):
    stack: Literal["lerobot", "openpi", "open_r1"] | None = None
    tag: str | None = None
    platform: str = "linux/amd64"


class JobConfig(Section):
    job: Job = Field(default_factory=Job)
    framework: Framework = "lerobot"
    backend: BackendName = "local"
    dataset: Dataset = Field(default_factory=Dataset)
    policy: Policy = Field(default_factory=Policy)
    lerobot: LeRobotSection = Field(default_factory=LeRobotSection)
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    wandb: Wandb = Field(default_factory=Wandb)
    accelerate: Accelerate = Field(default_factory=Accelerate)
    torch: Torch = Field(default_factory=Torch)
    resources: Resources = Field(default_factory=Resources)
    limits: Limits = Field(default_factory=Limits)
    notify: Notify = Field(default_factory=Notify)
    command: Command = Field(default_factory=Command)
    openpi: OpenPI = Field(default_factory=OpenPI)
    open_r1: OpenR1 = Field(default_factory=OpenR1)
    runs: list[Run] = Field(default_factory=list)
    runpod: RunpodSection = Field(default_factory=RunpodSection)
    verda: VerdaSection = Field(default_factory=VerdaSection)
    slurm: SlurmSection = Field(default_factory=SlurmSection)
    chtc: ChtcSection = Field(default_factory=ChtcSection)
    hfjobs: HfjobsSection = Field(default_factory=HfjobsSection)
    local: LocalSection = Field(default_factory=LocalSection)
    docker: DockerSection = Field(default_factory=DockerSection)

    @model_validator(mode="after")
    def _framework_needs(self) -> "JobConfig":
        needs = {
            "lerobot": ("dataset.repo_id", self.dataset.repo_id or self.runs, "set dataset.repo_id (Hub id, or a label with dataset.root)"),
            "openpi": ("openpi.config_name", self.openpi.config_name, "set openpi.config_name, e.g. pi05_libero"),
            "open_r1": ("open_r1.model", self.open_r1.model or self.model.repo_id, "set open_r1.model, e.g. Qwen/Qwen2.5-1.5B-Instruct"),
            "command": ("command.run", self.command.run, "set command.run to the command line to run"),
        }[self.framework]
        key, present, fix = needs
        if not present:
            raise ConfigError(key, f"required for framework '{self.framework}'", fix)
        if self.framework == "lerobot" and not self.runs and not (self.policy.type or self.policy.path):
            raise ConfigError("policy.type", "required for framework 'lerobot'", "set policy.type (act, smolvla, pi0, pi05, ...) or policy.path")
        if self.policy.type and self.policy.path:
            raise ConfigError("policy.path", "policy.path and policy.type are mutually exclusive in LeRobot", "keep one of them")
        if self.framework == "lerobot":
            self._fits_lerobot_release()
        self._shardable()
        if self.resources.nodes > 1 and self.framework != "command":
            raise ConfigError("resources.nodes", f"several nodes are wired for `command` jobs so far, not {self.framework}",
                              "set resources.nodes: 1, or run your own launcher as a command job (MASTER_ADDR, "
                              "MASTER_PORT, NODE_RANK, WORLD_SIZE are in its environment)")
        return self

    def _shardable(self) -> None:
        """model.sharding only where the trainer receives it (helpers/runtime/trainers.py renders it)."""
        sharding = self.model.sharding
        if sharding in (None, "none"):
            return
        if self.framework == "openpi" and sharding != "fsdp":
            raise ConfigError("model.sharding", f"openpi (JAX) has no {sharding}", "use model.sharding: fsdp (openpi's --fsdp-devices)")
        if self.framework == "lerobot" and lerobot_versions.release(self.lerobot.version).version < "0.6":
            raise ConfigError("model.sharding", f"LeRobot {self.lerobot.version} is launched without DeepSpeed or FSDP",
                              "set lerobot.version: 0.6.1, or model.sharding: none")
        if self.framework == "open_r1" and self.accelerate.config_file:
            raise ConfigError("model.sharding", "both model.sharding and accelerate.config_file say how to shard",
                              "keep one (model.sharding picks Open R1's recipes/accelerate_configs/<ddp|zero2|zero3|fsdp>.yaml)")

    def _fits_lerobot_release(self) -> None:
        """Refuse, before launch, a policy or a flag the chosen LeRobot release lacks (renamed flags are translated
        by the runtime; here only what has no name in this release)."""
        release = lerobot_versions.release(self.lerobot.version)
        for ptype in sorted({self.policy.type, *(r.policy_type for r in self.runs)} - {None}):
            if ptype not in release.policies:
                having = [v for v, r in lerobot_versions.RELEASES.items() if ptype in r.policies]
                raise ConfigError("policy.type", f"LeRobot {release.version} has no policy '{ptype}'",
                                  f"set lerobot.version to {' or '.join(having)}")
        try:
            lerobot_versions.translate_flags(release.version, self.training.extra_args)
        except ValueError as exc:
            raise ConfigError("training.extra_args", str(exc), "set lerobot.version: 0.6.1, or drop the flag") from None

    # Derived values every backend and the runtime agree on.
    @property
    def run_id(self) -> str:
        """Safe for paths, host names and Hub repo names."""
        name = self.job.run_id or self.job.name
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode())
        slug = slug.strip("-")
        if not name.isascii():  # "ロボット" and "机器人" must not both become "run": the name's own hash tells them apart
            slug = f"{slug or 'run'}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
        return slug or "run"

    @property
    def output_dir(self) -> str:
        return self.job.output_dir or f"outputs/train/{self.run_id}"

    @property
    def store(self) -> str:
        return self.checkpoint.store or f"runs/{self.run_id}/store"

    @property
    def time_limit_seconds(self) -> float | None:
        return self.limits.time_limit if self.limits.timeout else None

    @property
    def grace_seconds(self) -> float:
        """How long after the time limit a launcher ends an instance the runtime has not ended (its backstop; the
        runtime stops and syncs at the limit itself). Seed 000's `runpod.time_limit_grace_s` wins when given."""
        return self.limits.grace_s if self.runpod.time_limit_grace_s is None else self.runpod.time_limit_grace_s

    def launcher_deadline(self, started: float) -> float | None:
        """The one deadline policy of every launcher: `started` + time limit + grace (None without a limit)."""
        limit = self.time_limit_seconds
        return started + limit + self.grace_seconds if limit else None


# --- loading ---------------------------------------------------------------------------------------

# The seeds' environment variables, and the config key each one sets (environment beats YAML).
ENV_KEYS = {
    "LEROBOT_CHECKPOINT_REPO_ID": "checkpoint.repo_id",
    "LEROBOT_WANDB_ENABLE": "wandb.enable",
    "LEROBOT_USE_ACCELERATE": "accelerate.use",
    "LEROBOT_ACCELERATE_NUM_PROCESSES": "accelerate.num_processes",
    "LEROBOT_ACCELERATE_MIXED_PRECISION": "accelerate.mixed_precision",
    "LEROBOT_ACCELERATE_CONFIG_FILE": "accelerate.config_file",
    "WANDB_PROJECT": "wandb.project",
    "WANDB_ENTITY": "wandb.entity",
    "PROGRESS_WEBHOOK_URL": "notify.webhook_url",
}


def _unknown(value: str, choices, what: str) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else "choices: " + ", ".join(choices)
    return f"unknown {what} '{value}' — {hint}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into a dict; the seed formats (RunPod !CMD tags, Verda train.remote.yaml) are converted."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config ({exc.strerror or exc})", "check the --config path", str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not a text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8)",
                          "pass a YAML job config (examples in configs/)", str(path)) from None
    try:
        data = yaml.load(text, Loader=seed_loader())
    except ConfigError as exc:
        raise exc.with_source(str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(where, f"unreadable YAML ({problem})", "fix the YAML syntax", str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", "the top level must be a mapping of sections", "see configs/README.md", str(path))
    try:
        return convert_seed_format(data)
    except ConfigError as exc:
        raise exc.with_source(str(path)) from None


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating sections as needed."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def environment_overrides(environ: dict[str, str]) -> dict[str, Any]:
    return {key: environ[name] for name, key in ENV_KEYS.items() if environ.get(name, "") != ""}


def load_job(path: str | Path | None, overrides: dict[str, Any] | None = None, environ=None) -> JobConfig:
    """Load and validate a job: CLI overrides > environment (LEROBOT_* etc.) > YAML > defaults."""
    environ = os.environ if environ is None else environ
    data = read_yaml(path) if path else {}
    layered = {**environment_overrides(environ), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    for key, value in layered.items():
        set_key(data, key, value)
    return validate(data, source=str(path or "<defaults>"))


def validate(data: dict[str, Any], source: str = "") -> JobConfig:
    try:
        return JobConfig.model_validate(data)
    except ConfigError as exc:
        raise exc.with_source(source) from None
    except ValidationError as exc:
        raise _first_error(exc, data).with_source(source) from None


def _first_error(exc: ValidationError, data: dict[str, Any]) -> ConfigError:
    """Turn pydantic's report into one line naming the key path and the fix."""
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc)
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        model: Any = JobConfig
        for part in loc[:-1]:
            field = getattr(model, "model_fields", {}).get(part)
            model = field.annotation if field is not None else None
        names = list(getattr(model, "model_fields", {}))
        close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
        fix = f"did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else "remove it (every key is listed in configs/README.md)"
        return ConfigError(key, "unknown key", fix)
    if isinstance(err.get("ctx", {}).get("error"), ConfigError):
        return err["ctx"]["error"]
    if kind == "value_error" and " — " in msg:
        problem, fix = msg.removeprefix("Value error, ").split(" — ", 1)
        return ConfigError(key, problem, fix)
    got = err.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    if kind == "literal_error":
        return ConfigError(key, f"{shown} is not allowed", msg.replace("Input should be", "use"))
    if kind.endswith("_type") or kind.endswith("_parsing"):
        wanted = msg.replace("Input should be", "").replace("a valid", "").strip().split(",")[0].strip()
        return ConfigError(key, f"expected {wanted or 'another type'}, got {shown}", f"give {key} {('an ' if wanted[:1] in 'aeiou' else 'a ')}{wanted}")
    return ConfigError(key, f"{msg.removeprefix('Value error, ')} (got {shown})", "see configs/README.md")
