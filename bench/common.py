"""Small shared pieces: timing a command N times, and writing one section of RESULTS.md."""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def time_command(argv: list[str], runs: int, cwd: Path | None = None, env=None) -> float:
    """Median wall seconds of `runs` executions (one warm-up run first, not counted)."""
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def table(columns: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or add) `## name` in RESULTS.md, stamped with the date and the command that produced it."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nEach section: the command, when, and what it printed.\n"
    section = f"## {name}\n\n`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {_machine()}\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)
    print(section)


def _machine() -> str:
    import os

    return f"{os.cpu_count()} cores"
