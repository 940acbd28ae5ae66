"""The trainer's environment on the host: a venv per framework (LeRobot release, extras), created once and reused.

Seed 001's setup_env.sh as code. Built with uv (`uv venv` + `uv pip install`; about 4x faster than venv + pip, see
bench/RESULTS.md), which the runtime installs from PyPI into its own tool folder when the host has none; plain
venv + pip only when uv cannot be had, and it says so. When the host's Python is older than the LeRobot release
needs (0.5+ need 3.12), `uv venv --python 3.12` brings one (uv fetches a standalone build). A marker file holds the
install spec, so a second run installs nothing. The runtime re-executes itself with this environment's Python.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.runtime import lerobot_versions

TORCH_NIGHTLY = ["--pre", "torch", "torchvision", "--index-url", "https://download.pytorch.org/whl/nightly/cu128"]
HUB_ONLY = ["huggingface_hub"]


def lerobot_release(config: dict) -> lerobot_versions.Release:
    return lerobot_versions.release((config.get("lerobot") or {}).get("version") or lerobot_versions.DEFAULT)


def install_spec(config: dict) -> list[list[str]]:
    """The install commands' arguments (one list per `pip install`), in order."""
    framework = config["framework"]
    steps: list[list[str]] = []
    if config.get("torch", {}).get("nightly"):
        steps.append(TORCH_NIGHTLY)
    if framework == "lerobot":
        types = {config["policy"].get("type")} | {r.get("policy_type") for r in config.get("runs") or []}
        peft = bool(config.get("policy", {}).get("options", {}).get("peft") or config.get("model", {}).get("method") == "lora")
        lerobot = config.get("lerobot") or {}
        steps.append([lerobot_versions.requirement(lerobot_release(config).version, types - {None}, peft,
                                                   lerobot.get("install"))])
        if (config.get("model") or {}).get("sharding") in ("zero2", "zero3"):
            steps.append(["deepspeed"])  # accelerate launch --use_deepspeed imports it
    elif framework == "open_r1":
        steps.append(["huggingface_hub", "accelerate", "open-r1 @ git+https://github.com/huggingface/open-r1.git"])
    else:  # command and openpi (openpi brings its own uv environment): the runtime only needs the Hub client
        steps.append(HUB_ONLY)
    return steps


def python_needed(config: dict) -> tuple[int, int] | None:
    """The Python the environment needs, when the framework says (LeRobot's Requires-Python)."""
    return lerobot_release(config).python if config["framework"] == "lerobot" else None


def python_for(config: dict, host: tuple[int, int] | None = None) -> str:
    """What the environment's Python will be: this host's, or (older than needed) one uv brings."""
    host = host or sys.version_info[:2]
    need = python_needed(config)
    if need and host < need:
        return f"Python {need[0]}.{need[1]} (uv fetches it: the host has {host[0]}.{host[1]})"
    return f"the host's Python {host[0]}.{host[1]}"


def env_dir(config: dict) -> Path:
    configured = os.environ.get("TRAINYARD_ENV_DIR") or (config.get("local") or {}).get("env_dir")
    if configured:
        return Path(configured).expanduser()
    steps = install_spec(config)
    name = config["framework"]
    if name == "lerobot":
        spec, install = steps[-1][0], (config.get("lerobot") or {}).get("install")
        extras = spec.split("[", 1)[1].split("]")[0] if "[" in spec.split("@")[0] else ""
        source = "-" + hashlib.sha256(install.encode()).hexdigest()[:8] if install else ""  # a fork, a ref, a path
        name = f"lerobot-{lerobot_release(config).version}{source}" + (f"-{extras.replace(',', '-')}" if extras else "")
    if steps[0] == TORCH_NIGHTLY:
        name += "-torch-nightly"
    return cache_dir() / "envs" / name


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainyard"


def find_uv(log=print) -> str | None:
    """uv: on PATH, in the runtime's tool folder, or installed there from PyPI now; None when none can be had."""
    found = shutil.which("uv")
    if found:
        return found
    tools = cache_dir() / "tools" / "uv"
    uv = tools / "bin" / "uv"
    if uv.exists():
        return str(uv)
    log(f"installing uv from PyPI into {tools}")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True, capture_output=True)
        subprocess.run([str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "uv"], check=True,
                       capture_output=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log(f"uv could not be installed ({(detail.decode(errors='replace').strip().splitlines() or [str(exc)])[-1]})")
        return None
    return str(uv) if uv.exists() else None


def ensure(config: dict, log=print) -> Path:
    """Create or reuse the environment; return its bin directory."""
    target = env_dir(config)
    steps = install_spec(config)
    need = python_needed(config)
    digest = hashlib.sha256(repr((steps, need)).encode()).hexdigest()[:16]
    marker = target / ".trainyard-spec"
    python = target / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text().strip() == digest:
        log(f"environment ready: {target} (cached)")
        return target / "bin"
    log(f"creating environment {target} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    uv = find_uv(log)
    host = sys.version_info[:2]
    if uv:
        python_arg, what = sys.executable, "uv venv"
        if need and host < need:
            python_arg = f"{need[0]}.{need[1]}"
            what = (f"fetching Python {python_arg} (uv's standalone builds; the host has {host[0]}.{host[1]}): give "
                    f"the host Python {python_arg} or let uv reach its Python downloads (UV_PYTHON_INSTALL_MIRROR)")
        build_step([uv, "venv", "-q", "--allow-existing", "--python", python_arg, str(target)], what)
        for args in steps:
            build_step([uv, "pip", "install", "-q", "--python", str(python), *args], "uv pip install " + " ".join(args),
                       log)
    else:
        if need and host < need:
            raise SystemExit(f"this needs Python >= {need[0]}.{need[1]} and the host has {host[0]}.{host[1]}; "
                             "without uv none can be fetched: install uv or a newer Python on the host")
        log("building the environment with venv + pip (uv is not available: slower)")
        build_step([sys.executable, "-m", "venv", str(target)], "python -m venv")
        for args in [["--upgrade", "pip"], *steps]:
            build_step([str(python), "-m", "pip", "install", "-q", *args], "pip install " + " ".join(args), log)
    marker.write_text(digest)
    return target / "bin"


def build_step(argv: list[str], what: str, log=None) -> None:
    """One step of the build (`what` logged first when `log`); a failure ends the runtime in one line naming it (the
    tool's own error is just above)."""
    if log:
        log(what)
    if subprocess.run(argv).returncode:
        raise SystemExit(f"the trainer environment could not be built: {what} failed")
