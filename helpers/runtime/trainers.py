"""How each framework is started, where it writes checkpoints, and how it resumes.

One `Trainer` per framework: `command(resume)` renders the exact command line; `checkpoints()` lists complete
checkpoints as (step, directory); `restore_into(step)` says where a restored checkpoint must go.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.runtime import lerobot_versions

# LeRobot presets for the seed's model types: what a user would otherwise have to remember.
LEROBOT_PRESETS: dict[str, dict[str, Any]] = {
    "pi0": {"pretrained_path": "lerobot/pi0_base", "compile_model": True, "gradient_checkpointing": True, "dtype": "bfloat16"},
    "pi05": {"pretrained_path": "lerobot/pi05_base", "compile_model": True, "gradient_checkpointing": True, "dtype": "bfloat16"},
    "pi0_fast": {"compile_model": True, "gradient_checkpointing": True, "dtype": "bfloat16"},
    "smolvla": {"pretrained_path": "lerobot/smolvla_base"},
    "groot": {},  # base_model_path: the release's own GR00T (lerobot_versions: N1.5 to 0.5.1, N1.7 from 0.6)
    "xvla": {"dtype": "bfloat16"},
    "act": {},
}
SHARDING_FLAGS = {"none": [], "zero2": ["--use_deepspeed", "--zero_stage=2"], "zero3": ["--use_deepspeed", "--zero_stage=3"],
                  "fsdp": ["--use_fsdp"]}
SHARDING_ENV = {"none": {}, "zero2": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
                "zero3": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
                "fsdp": {"ACCELERATE_USE_FSDP": "true"}}
# Open R1's own accelerate configs (recipes/accelerate_configs/)
OPEN_R1_ACCELERATE = {"none": "ddp", "zero2": "zero2", "zero3": "zero3", "fsdp": "fsdp"}
POLICY_FLAGS = ("device", "dtype", "compile_model", "gradient_checkpointing", "empty_cameras", "optimizer_lr")


def flag(key: str, value: Any) -> str:
    """`--key=value` in the form draccus parses (booleans lowercase, dicts/lists as JSON)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"--{key}={text}"


@dataclass
class Run:
    """One training run on this machine: the job itself, or one entry of `runs:`."""

    policy_type: str | None
    dataset_repo_id: str | None
    steps: int
    job_name: str
    output_dir: Path
    policy_repo_id: str | None
    overrides: dict[str, Any] = field(default_factory=dict)


def runs_of(doc) -> list[Run]:
    cfg = doc.config
    base = Run(
        policy_type=cfg["policy"].get("type"),
        dataset_repo_id=cfg["dataset"].get("repo_id"),
        steps=cfg["training"]["steps"],
        job_name=cfg["job"]["name"],
        output_dir=doc.output_dir,
        policy_repo_id=cfg["policy"].get("repo_id"),
    )
    if not cfg.get("runs"):
        return [base]
    return [
        Run(
            policy_type=r.get("policy_type") or base.policy_type,
            dataset_repo_id=r.get("dataset_repo_id") or base.dataset_repo_id,
            steps=r.get("steps") or base.steps,
            job_name=r.get("job_name") or base.job_name,
            output_dir=Path(r["output_dir"]) if r.get("output_dir") else base.output_dir,
            policy_repo_id=r.get("policy_repo_id") or base.policy_repo_id,
        )
        for r in cfg["runs"]
    ]


class Trainer:
    """Shared parts: multi-GPU launch and LeRobot-style `checkpoints/<step>` discovery."""

    def __init__(self, doc, run: Run, bin_dir: Path, gpus: int):
        self.doc, self.run, self.bin_dir, self.gpus = doc, run, bin_dir, gpus
        self.cfg = doc.config

    def checkpoint_root(self) -> Path:
        return self.run.output_dir / "checkpoints"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first. LeRobot moves `last` only after a save is whole."""
        root = self.checkpoint_root()
        if not (root / "last").exists():
            return []
        newest = int(Path(os.path.realpath(root / "last")).name)
        return sorted((int(p.name), p) for p in root.iterdir() if p.name.isdigit() and int(p.name) <= newest)

    def restore_into(self, step: int) -> Path:
        return self.checkpoint_root() / f"{step:06d}"

    def after_restore(self, step: int) -> None:
        last = self.checkpoint_root() / "last"
        if last.is_symlink() or last.exists():
            last.unlink()
        last.symlink_to(f"{step:06d}")

    def processes(self) -> int:
        """Trainer processes on this machine: accelerate.num_processes, else one per GPU."""
        return (self.cfg.get("accelerate") or {}).get("num_processes") or self.gpus or 1

    def multi_gpu_prefix(self, program: list[str]) -> list[str]:
        acc = self.cfg.get("accelerate") or {}
        processes = self.processes()
        use = acc.get("use")
        if use is False or (use is None and processes < 2):
            return program
        prefix = [str(self.bin_dir / "accelerate"), "launch"]
        if processes > 1:
            prefix += ["--multi_gpu", f"--num_processes={processes}"]
        if (acc.get("num_machines") or 1) > 1:
            prefix.append(f"--num_machines={acc['num_machines']}")
        if acc.get("mixed_precision"):
            prefix.append(f"--mixed_precision={acc['mixed_precision']}")
        if acc.get("config_file"):
            prefix.append(f"--config_file={acc['config_file']}")
        port = [f"--main_process_port={self.main_process_port()}"] if processes > 1 and (acc.get("num_machines") or 1) == 1 else []
        return prefix + self.sharding_flags() + port + program

    def main_process_port(self) -> str:
        """A port free on this machine now, for the processes' rendezvous: torch's default 29500 can still be held
        by what a killed run left (a relaunch on the same host then fails with EADDRINUSE). A plan shows the rule."""
        if self.doc.machine.get("kind") == "plan":
            return "<a free port, chosen at start>"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return str(probe.getsockname()[1])

    def sharding(self) -> str:
        """model.sharding where several processes train; "none" on one."""
        chosen = (self.cfg.get("model") or {}).get("sharding") or "none"
        return chosen if self.processes() > 1 else "none"

    def sharding_flags(self) -> list[str]:
        """`accelerate launch` flags for model.sharding (the launcher sets ACCELERATE_USE_DEEPSPEED /
        ACCELERATE_DEEPSPEED_ZERO_STAGE / ACCELERATE_USE_FSDP for the Accelerator it starts)."""
        return SHARDING_FLAGS[self.sharding()]

    def notes(self) -> list[str]:
        """What the runtime should say about how this trainer was set up (LeRobot: release, renamed flags)."""
        return []

    def prepare(self) -> None:
        """Write what the command refers to (Open R1's recipe); nothing for the others."""

    def workdir(self) -> str | None:
        """Where the trainer runs (None: where the runtime runs)."""
        return self.cfg["command"].get("workdir")

    def environment(self) -> dict[str, str]:
        cores = len(os.sched_getaffinity(0))  # the CPUs this job may use (a SLURM allocation), not the whole node
        return {"OMP_NUM_THREADS": str(max(1, cores // self.processes()))}  # more threads than cores stalls gloo


class LeRobotTrainer(Trainer):
    @functools.cached_property
    def installed(self) -> str | None:
        """The LeRobot release in the trainer's environment (a prebuilt image may hold another than the config's)."""
        try:
            done = subprocess.run([str(self.bin_dir / "python"), "-c", "import importlib.metadata as m; "
                                   "print(m.version('lerobot'))"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() or None if done.returncode == 0 else None

    @property
    def configured(self) -> str:
        return (self.cfg.get("lerobot") or {}).get("version") or lerobot_versions.DEFAULT

    @property
    def release(self) -> lerobot_versions.Release:
        """The installed release's names and presets when it is one Trainyard knows, else the config's."""
        try:
            return lerobot_versions.release(self.installed or self.configured)
        except ValueError:
            return lerobot_versions.release(self.configured)

    def notes(self) -> list[str]:
        installed, configured = self.installed, self.configured
        out = []
        if installed and installed != configured:
            out.append(f"LeRobot {installed} is installed here (lerobot.version says {configured}): "
                       f"using LeRobot {self.release.version}'s flag names and presets")
        out += lerobot_versions.translate_flags(self.release.version, list(self.cfg["training"].get("extra_args") or []))[1]
        return out

    def command(self, resume: bool) -> list[str]:
        train, run = self.cfg["training"], self.run
        program = [str(self.bin_dir / "lerobot-train")]
        if resume:
            config = self.checkpoint_root() / "last" / "pretrained_model" / "train_config.json"
            if config.is_file():
                problem = lerobot_versions.resume_problem(json.loads(config.read_text()), self.release.version)
                if problem:
                    raise SystemExit(f"cannot resume: {problem} — finish this run with lerobot.version set to the "
                                     "release that wrote it, or start it again (--mode fresh)")
            args = [flag("config_path", config), "--resume=true", flag("output_dir", run.output_dir), flag("steps", run.steps)]
            if self.cfg["dataset"].get("root"):
                args.append(flag("dataset.root", self.cfg["dataset"]["root"]))
            return self.multi_gpu_prefix(program + args)
        policy = self.cfg["policy"]
        args = [flag("dataset.repo_id", run.dataset_repo_id)]
        for key in ("root", "revision", "episodes"):
            if self.cfg["dataset"].get(key) is not None:
                args.append(flag(f"dataset.{key}", self.cfg["dataset"][key]))
        preset = dict(LEROBOT_PRESETS.get(run.policy_type or "", {}))
        if run.policy_type == "groot":
            preset["base_model_path"] = self.release.groot_base
        preset_pretrained = preset.pop("pretrained_path", None)
        pretrained = policy.get("pretrained_path") or preset_pretrained
        if policy.get("path"):  # fine-tune a saved policy: its config is loaded, other flags override it
            args.append(flag("policy.path", policy["path"]))
        else:
            args.append(flag("policy.type", run.policy_type))
            if pretrained:
                args.append(flag("policy.pretrained_path", pretrained))
        settings = {**preset, **{k: policy[k] for k in POLICY_FLAGS if policy.get(k) is not None}, **policy.get("options", {})}
        args += [flag(f"policy.{k}", v) for k, v in settings.items()]
        args.append("--policy.push_to_hub=false")  # the runtime uploads checkpoints and the final policy itself
        if policy.get("rename_map"):
            args.append(flag("rename_map", policy["rename_map"]))
        args += [
            flag("output_dir", run.output_dir),
            flag("job_name", run.job_name),
            flag("steps", run.steps),
            flag("batch_size", train["batch_size"]),
            flag("save_freq", train["save_freq"]),
            flag("save_checkpoint", train["save_checkpoint"]),
            flag("log_freq", train["log_freq"]),
        ]
        if train.get("num_workers") is not None:
            args.append(flag("num_workers", train["num_workers"]))
        if train.get("seed") is not None:
            args.append(flag("seed", train["seed"]))
        wandb = self.cfg["wandb"]
        args.append(flag("wandb.enable", bool(wandb.get("enable"))))
        for key in ("project", "entity", "mode"):
            if wandb.get("enable") and wandb.get(key):
                args.append(flag(f"wandb.{key}", wandb[key]))
        extra, _renamed = lerobot_versions.translate_flags(self.release.version, list(train.get("extra_args") or []))
        return self.multi_gpu_prefix(program + args + extra)


class CommandTrainer(Trainer):
    """Any command. It is told where to write checkpoints and whether to resume through the environment."""

    def command(self, resume: bool) -> list[str]:
        spec = self.cfg["command"]
        line = (spec.get("resume_run") if resume else None) or spec["run"]
        return ["bash", "-c", line if isinstance(line, str) else shlex.join(line)]

    def environment(self) -> dict[str, str]:
        nodes = int((self.cfg.get("resources") or {}).get("nodes") or 1)
        local = max(1, self.gpus)  # processes per node: one per GPU behind $TRAINYARD_LAUNCHER, else one
        rank = int(os.environ.get("TRAINYARD_NODE_RANK") or 0)
        spanning = {  # what torchrun would set for one process per node; a launcher sets its own per process
            "NODE_RANK": str(rank), "WORLD_SIZE": str(nodes * local), "LOCAL_WORLD_SIZE": str(local),
            "RANK": str(rank * local), "LOCAL_RANK": "0",
        } if nodes > 1 else {}
        return {
            **super().environment(),
            **spanning,
            "TRAINYARD_OUTPUT_DIR": str(self.run.output_dir),
            "TRAINYARD_CHECKPOINT_DIR": str(self.checkpoint_root()),
            "TRAINYARD_STEPS": str(self.run.steps),
            "TRAINYARD_SAVE_FREQ": str(self.cfg["training"]["save_freq"]),
            **SHARDING_ENV[self.sharding()],  # what `accelerate launch --use_deepspeed ...` would set for the script
        }


class OpenPITrainer(Trainer):
    """openpi `scripts/train.py <config> --exp-name X`; resumes when a checkpoint exists instead of --overwrite."""

    def checkpoint_root(self) -> Path:
        o = self.cfg["openpi"]
        return Path(o["checkpoint_base_dir"]).absolute() / o["config_name"] / self.exp_name

    def workdir(self) -> str | None:
        # openpi's scripts/ and ./assets (norm stats) are relative to its checkout.
        return self.cfg["command"].get("workdir") or self.cfg["openpi"]["repo_dir"]

    @property
    def exp_name(self) -> str:
        return self.cfg["openpi"].get("exp_name") or self.doc.run_id

    def checkpoints(self) -> list[tuple[int, Path]]:
        # Orbax writes into a temporary name and renames when whole: only plain numeric dirs are complete.
        root = self.checkpoint_root()
        return sorted((int(p.name), p) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []

    def restore_into(self, step: int) -> Path:
        return self.checkpoint_root() / str(step)

    def after_restore(self, step: int) -> None:
        pass

    def command(self, resume: bool) -> list[str]:
        o = self.cfg["openpi"]
        args = ["uv", "run", "scripts/train.py", o["config_name"], f"--exp-name={self.exp_name}"]
        args.append(f"--checkpoint-base-dir={Path(o['checkpoint_base_dir']).absolute()}")
        if resume:
            args.append("--resume")
        elif o.get("overwrite"):
            args.append("--overwrite")
        args += [f"--num-train-steps={self.run.steps}", f"--save-interval={self.cfg['training']['save_freq']}"]
        args.append(f"--batch-size={self.cfg['training']['batch_size']}")
        if (self.cfg.get("model") or {}).get("sharding") == "fsdp" and self.gpus > 1:
            args.append(f"--fsdp-devices={self.gpus}")  # openpi's TrainConfig.fsdp_devices
        args.append("--wandb-enabled" if self.cfg["wandb"].get("enable") else "--no-wandb-enabled")
        return args


class OpenR1Trainer(Trainer):
    """Open R1 GRPO: a generated recipe YAML launched with accelerate (seed 004)."""

    DEFAULT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

    def checkpoint_root(self) -> Path:
        return self.run.output_dir

    def checkpoints(self) -> list[tuple[int, Path]]:
        root = self.run.output_dir
        found = []
        for p in root.glob("checkpoint-*") if root.is_dir() else []:
            if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").exists():
                found.append((int(p.name.split("-")[1]), p))
        return sorted(found)

    def restore_into(self, step: int) -> Path:
        return self.run.output_dir / f"checkpoint-{step}"

    def after_restore(self, step: int) -> None:
        pass

    def reward_funcs(self) -> list[str]:
        r1 = self.cfg["open_r1"]
        if r1.get("reward_funcs"):
            return r1["reward_funcs"]
        tags = (r1["reasoning_tag"], r1["reasoning_end_tag"], r1.get("answer_tag"), r1.get("answer_end_tag"))
        default_think = tags[:2] == self.DEFAULT_TAGS[:2]
        if tags[2] is None and tags[3] is None:
            return ["accuracy"] if default_think else ["accuracy", "reasoning_steps"]
        if default_think and tags[2:] == self.DEFAULT_TAGS[2:]:
            return ["accuracy", "format", "tag_count"]
        # Open R1's format rewards hard-code the default tags: custom tags fall back to the safe rewards.
        return ["accuracy", "reasoning_steps"]

    def recipe(self) -> dict[str, Any]:
        r1, cfg = self.cfg["open_r1"], self.cfg
        think, end_think, answer, end_answer = r1["reasoning_tag"], r1["reasoning_end_tag"], r1.get("answer_tag"), r1.get("answer_end_tag")
        answer_part = f" and the final answer between {answer} and {end_answer}" if answer and end_answer else ""
        prompt = r1.get("system_prompt") or (
            f"You are a helpful assistant. Think step by step between {think} and {end_think}{answer_part}."
        )
        recipe = {
            "model_name_or_path": r1.get("model") or cfg["model"].get("repo_id"),
            "model_revision": "main",
            "torch_dtype": "bfloat16",
            "attn_implementation": "flash_attention_2",
            "dataset_name": r1.get("dataset_name") or cfg["dataset"].get("repo_id"),
            "system_prompt": prompt,
            "bf16": True,
            "use_vllm": r1["use_vllm"],
            "vllm_mode": r1["vllm_mode"],
            "do_eval": False,
            "gradient_accumulation_steps": 4,
            "gradient_checkpointing": True,
            "hub_model_id": r1.get("hub_model_id") or self.run.policy_repo_id,
            "hub_strategy": "every_save",
            "learning_rate": r1["learning_rate"],
            "log_completions": True,
            "logging_steps": 1,
            "lr_scheduler_type": "cosine",
            "max_prompt_length": r1["max_prompt_length"],
            "max_completion_length": r1["max_completion_length"],
            "max_steps": self.run.steps,
            "num_generations": r1["num_generations"],
            "num_train_epochs": r1["num_train_epochs"],
            "output_dir": str(self.run.output_dir),
            "overwrite_output_dir": False,
            "per_device_train_batch_size": cfg["training"]["batch_size"],
            "push_to_hub": r1["push_to_hub"],
            "report_to": r1["report_to"] or (["wandb"] if cfg["wandb"].get("enable") else []),
            "reward_funcs": self.reward_funcs(),
            "save_strategy": "steps",
            "save_steps": cfg["training"]["save_freq"],
            "save_total_limit": cfg["checkpoint"]["keep"],
            "seed": cfg["training"].get("seed") or 42,
            "warmup_ratio": 0.1,
        }
        if r1.get("dataset_config"):
            recipe["dataset_config"] = r1["dataset_config"]
        recipe.update(r1.get("recipe_options") or {})
        return recipe

    def recipe_path(self) -> Path:
        return self.run.output_dir.parent / f"{self.doc.run_id}.grpo.json"

    def prepare(self) -> None:
        path = self.recipe_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML, and TrlParser reads the --config file as YAML.
        path.write_text(json.dumps(self.recipe(), indent=2))

    def command(self, resume: bool) -> list[str]:
        path = self.recipe_path()
        processes = (self.cfg["accelerate"] or {}).get("num_processes") or max(1, self.gpus)
        accelerate = [str(self.bin_dir / "accelerate"), "launch"]
        sharding = (self.cfg.get("model") or {}).get("sharding") or "zero2"  # Open R1's recipes use zero2.yaml
        config_file = ((self.cfg["accelerate"] or {}).get("config_file")
                       or f"recipes/accelerate_configs/{OPEN_R1_ACCELERATE[sharding]}.yaml")
        accelerate += [f"--config_file={config_file}", f"--num_processes={processes}"]
        args = accelerate + ["src/open_r1/grpo.py", f"--config={path}"]
        if resume:
            args.append("--resume_from_checkpoint=true")
        return args


TRAINERS = {"lerobot": LeRobotTrainer, "command": CommandTrainer, "openpi": OpenPITrainer, "open_r1": OpenR1Trainer}


def trainer_for(doc, run: Run, bin_dir: Path, gpus: int) -> Trainer:
    return TRAINERS[doc.framework](doc, run, bin_dir, gpus)
