"""A trainer environment from cold: uv vs pip, same packages, same run.

The LeRobot environment the runtime builds on a host (helpers/runtime/environment.py), here for LeRobot 0.4.4 with
ACT (what this machine's Python 3.11 runs). "Same packages": the uv build resolves first and its exact pins
(`uv pip freeze`) are what both timed builds install, each from cold: an empty uv cache, pip with no cache
(`--no-cache-dir`), a new venv each. The uv column includes nothing of uv's own install (timed apart: it is done
once per host). Goal: uv <= 0.25x of pip.
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


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    from helpers.runtime.environment import find_uv, install_spec

    (requirement,) = install_spec(CONFIG)[-1]
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-envs-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "UV_CACHE_DIR": str(tmp / "uv-cache"), "XDG_CACHE_HOME": str(tmp / "cache")}
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
        pip_s = timed([sys.executable, "-m", "venv", str(tmp / "pip-env")], env)
        pip_s += timed([str(tmp / "pip-env/bin/python"), "-m", "pip", "install", "-q", "--no-cache-dir", "-r",
                        str(tmp / "pins.txt")], env)
    ratio = uv_s / pip_s
    rows = [["venv + pip (--no-cache-dir)", count, f"{pip_s:.1f}", "1.00"],
            ["uv venv + uv pip (empty cache)", count, f"{uv_s:.1f}", f"{ratio:.2f}"]]
    body = (f"The trainer environment for `{requirement}` (ACT; this machine's Python "
            f"{sys.version_info.major}.{sys.version_info.minor}), built from cold twice in one run, both installing "
            f"the same {count} pinned packages (resolved once by uv):\n\n"
            + table(["builder", "packages", "seconds", "ratio to pip"], rows)
            + f"\n\nuv <= 0.25x of pip: {'meets' if ratio <= 0.25 else 'MISSES'} ({ratio:.2f}x). Installing uv itself "
              f"from PyPI into the runtime's tool folder, once per host: {uv_install_s:.1f} s.")
    write_section("Trainer environment from cold: uv vs pip", "python -m bench envs", body)
