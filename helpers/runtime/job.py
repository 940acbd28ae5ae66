"""The job document the runtime receives: the validated config plus what the launcher decided."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class JobDoc:
    config: dict[str, Any]
    derived: dict[str, Any]
    machine: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "JobDoc":
        data = json.loads(Path(path).read_text())
        return cls(data["config"], data["derived"], data.get("machine", {"kind": "local"}))

    def section(self, name: str) -> dict[str, Any]:
        return self.config.get(name) or {}

    @property
    def framework(self) -> str:
        return self.config["framework"]

    @property
    def run_id(self) -> str:
        return self.derived["run_id"]

    @property
    def output_dir(self) -> Path:
        return Path(self.derived["output_dir"])

    @property
    def store(self) -> str:
        return self.derived["store"]

    @property
    def deadline(self) -> float | None:
        """Absolute epoch seconds at which the machine must end (time limit or budget), set at launch."""
        return self.derived.get("deadline_epoch")

    def gpu_count(self) -> int:
        """GPUs this machine really has (CUDA_VISIBLE_DEVICES, then the provider's hint), else the config's count."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if visible and visible not in ("-1", "NoDevFiles"):
            return len([d for d in visible.split(",") if d.strip()])
        for name in ("RUNPOD_GPU_COUNT", "TRAINYARD_GPU_COUNT"):
            if os.environ.get(name, "").isdigit():
                return int(os.environ[name])
        return int(self.section("resources").get("gpu_count") or 1) if self.machine.get("kind") != "local" else 0
