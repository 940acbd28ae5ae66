"""Following a run: its log lines streamed with a progress bar (steps done / total, loss, last synced step)."""

from __future__ import annotations

import re
from typing import Iterable

from helpers.runtime.progress import loss_of, step_of
from helpers.secrets import redact

SYNCED = re.compile(r"synced checkpoint step (\d+)")
RESUMED = re.compile(r"resuming from step (\d+)")

def follow(lines: Iterable[str], total: int | None, show_lines: bool = True) -> dict:
    """Print `lines` above a live progress bar; return what was seen (last step, loss, synced step)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from helpers.console import console

    seen = {"step": None, "loss": None, "synced_step": None}
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console(), transient=False) as progress:
        bar = progress.add_task("train", total=total, info="")
        for raw in lines:
            line = redact(raw.rstrip("\n"))
            if show_lines:
                progress.console.print(line, markup=False, highlight=False)
            if (step := step_of(line)) is not None:
                seen["step"] = step
                seen["loss"] = loss_of(line) if loss_of(line) is not None else seen["loss"]
            elif match := SYNCED.search(line) or RESUMED.search(line):
                key = "synced_step" if "synced" in match.re.pattern else "step"
                seen[key] = int(match[1])
            info = f"loss {seen['loss']}" if seen["loss"] is not None else ""
            if seen["synced_step"] is not None:
                info += f"  synced {seen['synced_step']}"
            progress.update(bar, completed=seen["step"] or 0, info=info)
    return seen
