"""CLI cold start: `invoke --list` against `python -c pass`, and `sky --help` / `dstack --help` from throwaway venvs.

`python -m bench cold_start` uses SkyPilot and dstack when they are installed in ~/.cache/trainyard/bench-venvs/<tool>;
with BENCH_INSTALL_COMPETITORS=1 it creates those venvs first (pip install skypilot / dstack; a few minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import table, time_command, write_section

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.25
COMPETITORS = {"sky": "skypilot", "dstack": "dstack"}
VENVS = Path.home() / ".cache" / "trainyard" / "bench-venvs"


def competitor(tool: str) -> str | None:
    """The tool's executable: on PATH, or in its throwaway venv (created on request)."""
    exe = VENVS / tool / "bin" / tool
    if not exe.exists() and os.environ.get("BENCH_INSTALL_COMPETITORS") == "1":
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / tool)], check=True)
        subprocess.run([str(VENVS / tool / "bin" / "pip"), "install", "-q", COMPETITORS[tool]], check=True)
    return str(exe) if exe.exists() else shutil.which(tool)


def main(runs: int = 15) -> None:
    python = sys.executable
    invoke = str(Path(python).with_name("invoke"))
    baseline = time_command([python, "-c", "pass"], runs)
    rows = [["python -c pass", f"{baseline:.3f}", "1.0x"]]
    ours = time_command([invoke, "--list"], runs, cwd=REPO)
    rows.append(["invoke --list (Trainyard)", f"{ours:.3f}", f"{ours / baseline:.1f}x"])
    for tool in COMPETITORS:
        exe = competitor(tool)
        if exe:
            other = time_command([exe, "--help"], max(3, runs // 3))
            rows.append([f"{tool} --help", f"{other:.3f}", f"{other / baseline:.1f}x"])
        else:
            rows.append([f"{tool} --help", "not installed", "-"])
    verdict = "meets" if ours <= TARGET_SECONDS else "MISSES"
    body = table(["command", f"median s ({runs} runs)", "vs python"], rows) + f"\n\nTarget `invoke --list` <= {TARGET_SECONDS} s: {verdict} ({ours:.3f} s)."
    write_section("CLI cold start", "python -m bench cold_start", body)


if __name__ == "__main__":
    main()
