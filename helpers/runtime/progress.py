"""Reading trainer output: LeRobot's `step:1K loss:0.12` lines (and any command printing the same)."""

import re

STEP = re.compile(r"\bstep:(\d+(?:\.\d+)?)([KMB]?)\b")
LOSS = re.compile(r"\bloss:([0-9.eE+-]+)")
TQDM = re.compile(r"[\w ]*:\s+\d+%\|[^|]*\|[^\]]*\]")  # "Training:  92%|████▎| 185/200 [00:03<00:00, 57.4step/s]"
SCALE = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}


def step_of(line: str) -> int | None:
    match = STEP.search(line)
    return int(float(match[1]) * SCALE[match[2]]) if match else None


def loss_of(line: str) -> float | None:
    match = LOSS.search(line)
    try:
        return float(match[1]) if match else None
    except ValueError:
        return None


def steps_at_risk(status: dict) -> int | None:
    """Steps trained but not yet in the store (what a lost machine would cost), from a runtime's status.json."""
    if status.get("step") is None:
        return None
    return max(0, status["step"] - (status.get("synced_step") or 0))
