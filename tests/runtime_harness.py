"""Running the real runtime bundle in a temporary folder, as a backend would on a host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.bundle import BUNDLE_NAME, stage_run
from helpers.workspace import opened
from helpers.config import validate

REPO = Path(__file__).resolve().parents[1]
TOY_TRAINER = REPO / "tests" / "toy_trainer.py"


def toy_job(run_id: str = "toy", steps: int = 60, save_freq: int = 10, **sections) -> dict:
    data = {
        "job": {"name": run_id},
        "framework": "command",
        "command": {"run": f"{sys.executable} {TOY_TRAINER}"},
        "training": {"steps": steps, "save_freq": save_freq},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return data


class RuntimeRun:
    """One runtime process started from a staged run folder (bundle + job.json + .env)."""

    def __init__(self, workdir: Path, data: dict, mode: str = "auto", env: dict | None = None, secrets: dict | None = None,
                 machine: dict | None = None, price_per_hour: float | None = None, python: str | None = None,
                 skip_setup: bool = True, root=None, shared: dict[Path, str] | None = None):
        """`skip_setup` False: the runtime builds the trainer's environment itself. `root` (tests.debian_root.DebianRoot):
        run on that host instead, with `workdir` shared as /work (and `shared`: host folder -> path inside) and only
        `env` in its environment."""
        self.workdir = workdir
        job = validate(data)
        self.job = job
        with opened(env_file=None, runs_dir=workdir / "runs"):
            self.run_dir = stage_run(job, machine or {"kind": "local"}, secrets or {}, price_per_hour)
        run_dir = Path("/work") / self.run_dir.relative_to(workdir) if root else self.run_dir
        argv = [python or ("python3" if root else sys.executable), str(run_dir / BUNDLE_NAME), str(run_dir / "job.json"),
                f"--mode={mode}"] + (["--skip-setup"] if skip_setup else [])
        if root:
            argv = root.command(argv, shared={workdir: "/work", **(shared or {})}, cwd="/work",
                                env={"PYTHONUNBUFFERED": "1", **(env or {})})
        self.process = subprocess.Popen(
            argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[str] = []

    def read_until(self, predicate, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.lines.append(line)
            if predicate(line):
                return line
            if time.monotonic() > deadline:
                break
        raise AssertionError("never saw the expected line; output:\n" + "".join(self.lines[-40:]))

    def wait(self, timeout: float = 300) -> int:
        out, _ = self.process.communicate(timeout=timeout)
        self.lines.append(out)
        return self.process.returncode

    def kill_everything(self) -> None:
        """A spot kill: the runtime, the trainer and every uploader die at once, nothing cleans up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def status(self) -> dict:
        return json.loads((self.run_dir / "status.json").read_text())

    def events(self) -> list[dict]:
        path = self.run_dir / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
