"""A trainer environment from cold: uv vs pip, same packages, same run.

The LeRobot environment the runtime builds on a host (helpers/runtime/environment.py), here for LeRobot 0.4.4 with
ACT (what this machine's Python 3.11 runs). "Same packages": the uv build resolves first and its exact pins
(`uv pip freeze`) are what both timed builds install, each from cold: a new venv and an empty cache folder each,
both from PyPI alone. pip runs as on a GPU host, without this machine's pip configuration (its extra file indexes
and local wheel folder would hand pip some packages from disk that uv downloads). The uv column includes nothing of
uv's own install (timed apart: it is done once per host). Goal: uv <= 0.25x of pip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table, write_section

CONFIG = {"framework": "lerobot", "lerobot": {"version": "0.4.4"}, "policy": {"type": "act"},
          "dataset": {"repo_id": "local/synthetic"}}
PYPI = "https://pypi.org/simple"  # uv's default index, and a GPU host's pip's


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def venv_and_pip(target: Path, pins: Path, env: dict, *flags: str) -> float:
    """Seconds for `python -m venv` + `pip install -r pins` into `target`."""
    return (timed([sys.executable, "-m", "venv", str(target)], env)
            + timed([str(target / "bin/python"), "-m", "pip", "install", "-q", *flags, "-r", str(pins)], env))


def main() -> None:
    from helpers.runtime.environment import find_uv, install_spec

    (requirement,) = install_spec(CONFIG)[-1]
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-envs-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "UV_CACHE_DIR": str(tmp / "uv-cache"), "XDG_CACHE_HOME": str(tmp / "cache"),
               "UV_INDEX_URL": PYPI}
        saved, os.environ["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME"), env["XDG_CACHE_HOME"]
        try:
            started = time.perf_counter()
            uv = find_uv(log=lambda m: None)  # into this run's own cache folder: installing uv is timed too
            uv_install_s = time.perf_counter() - started
        finally:
            os.environ.pop("XDG_CACHE_HOME") if saved is None else os.environ.update(XDG_CACHE_HOME=saved)
        assert uv, "uv could not be installed from PyPI"
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(tmp / "resolve")], check=True, env=env)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(tmp / "resolve/bin/python"), requirement],
                       check=True, env=env)
        pins = subprocess.run([uv, "pip", "freeze", "--python", str(tmp / "resolve/bin/python")], check=True, env=env,
                              capture_output=True, text=True).stdout
        (tmp / "pins.txt").write_text(pins)
        count = len([line for line in pins.splitlines() if line.strip()])

        env["UV_CACHE_DIR"] = str(tmp / "uv-cold")  # cold again: nothing downloaded yet
        uv_s = timed([uv, "venv", "-q", "--python", sys.executable, str(tmp / "uv-env")], env)
        uv_s += timed([uv, "pip", "install", "-q", "--python", str(tmp / "uv-env/bin/python"), "-r", str(tmp / "pins.txt")], env)
        pip_env = {**{k: v for k, v in env.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull,
                   "PIP_CACHE_DIR": str(tmp / "pip-cold"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        pip_s = venv_and_pip(tmp / "pip-env", tmp / "pins.txt", pip_env, "--index-url", PYPI)
        # For reference only (how this table was measured before 2026-12-02): pip with this machine's pip
        # configuration, which serves some of the pins from local disk, and no cache at all.
        local_s = venv_and_pip(tmp / "local-env", tmp / "pins.txt", env, "--no-cache-dir")
    ratio = uv_s / pip_s
    rows = [["venv + pip (empty cache)", count, f"{pip_s:.1f}", "1.00"],
            ["uv venv + uv pip (empty cache)", count, f"{uv_s:.1f}", f"{ratio:.2f}"],
            ["reference, not the baseline: pip with this machine's local wheel indexes, --no-cache-dir", count,
             f"{local_s:.1f}", f"{local_s / pip_s:.2f}"]]
    body = (f"The trainer environment for `{requirement}` (ACT; this machine's Python "
            f"{sys.version_info.major}.{sys.version_info.minor}), built from cold in one run, each installing "
            f"the same {count} pinned packages (resolved once by uv):\n\n"
            + table(["builder", "packages", "seconds", "ratio to pip"], rows)
            + f"\n\nuv <= 0.25x of pip: {'meets' if ratio <= 0.25 else 'MISSES'} ({ratio:.2f}x). Installing uv itself "
              f"from PyPI into the runtime's tool folder, once per host: {uv_install_s:.1f} s. Both timed builds fetch from "
              f"PyPI alone into an empty cache, as on a GPU host; the reference row is pip as this machine is "
              f"configured (file indexes under /opt, no cache), which the table used before: uv is "
              f"{uv_s / local_s:.2f}x of it.")
    write_section("Trainer environment from cold: uv vs pip", "python -m bench envs", body)
