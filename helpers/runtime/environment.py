"""The trainer's environment on the host: a venv per framework (and extras), created once and reused.

Seed 001's setup_env.sh as code. A marker file holds the install spec, so a second run installs nothing.
The runtime re-executes itself with this environment's Python (which always has huggingface_hub).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

LEROBOT_VERSION = "0.4.4"
# The `pi` extra is stripped from the PyPI wheel (direct-URL dependency), so pi policies install from the tag.
LEROBOT_GIT = f"git+https://github.com/huggingface/lerobot.git@v{LEROBOT_VERSION}"
LEROBOT_EXTRAS = {"smolvla": "smolvla", "groot": "groot", "xvla": "xvla", "wall_x": "wallx", "sarm": "sarm"}
PI_POLICIES = ("pi0", "pi05", "pi0_fast")
TORCH_NIGHTLY = ["--pre", "torch", "torchvision", "--index-url", "https://download.pytorch.org/whl/nightly/cu128"]


def install_spec(config: dict) -> list[list[str]]:
    """The pip install commands (argument lists) the framework needs, in order."""
    framework = config["framework"]
    steps: list[list[str]] = [["--upgrade", "pip"]]
    if config.get("torch", {}).get("nightly"):
        steps.append(TORCH_NIGHTLY)
    if framework == "lerobot":
        types = {config["policy"].get("type")} | {r.get("policy_type") for r in config.get("runs") or []}
        extras = sorted({LEROBOT_EXTRAS[t] for t in types if t in LEROBOT_EXTRAS})
        if config.get("policy", {}).get("options", {}).get("peft") or config.get("model", {}).get("method") == "lora":
            extras.append("peft")
        if types & set(PI_POLICIES):
            steps.append([f"lerobot[{','.join(sorted(set(extras) | {'pi'}))}] @ {LEROBOT_GIT}"])
        else:
            steps.append([f"lerobot[{','.join(extras)}]=={LEROBOT_VERSION}" if extras else f"lerobot=={LEROBOT_VERSION}"])
    elif framework == "open_r1":
        steps.append(["huggingface_hub", "accelerate", "open-r1 @ git+https://github.com/huggingface/open-r1.git"])
    else:  # command and openpi (openpi brings its own uv environment): the runtime only needs the Hub client
        steps.append(["huggingface_hub"])
    return steps


def env_dir(config: dict) -> Path:
    configured = os.environ.get("TRAINYARD_ENV_DIR") or (config.get("local") or {}).get("env_dir")
    if configured:
        return Path(configured).expanduser()
    steps = install_spec(config)
    name = config["framework"]
    if name == "lerobot":
        extras = steps[-1][0].split("[", 1)[1].split("]")[0] if "[" in steps[-1][0] else ""
        name = f"lerobot-{LEROBOT_VERSION}" + (f"-{extras.replace(',', '-')}" if extras else "")
    if len(steps) > 2 and steps[1] == TORCH_NIGHTLY:
        name += "-torch-nightly"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "trainyard" / "envs" / name


def ensure(config: dict, log=print) -> Path:
    """Create or reuse the environment; return its bin directory."""
    target = env_dir(config)
    steps = install_spec(config)
    digest = hashlib.sha256(repr(steps).encode()).hexdigest()[:16]
    marker = target / ".trainyard-spec"
    python = target / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text().strip() == digest:
        log(f"environment ready: {target} (cached)")
        return target / "bin"
    log(f"creating environment {target} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    for args in steps:
        log("pip install " + " ".join(args))
        subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
    marker.write_text(digest)
    return target / "bin"

