"""The local backend: this workstation. The runtime runs here, in the foreground, with a progress bar.

It is also the embedded default that `make demo` uses: same bundle, same job document as a pod gets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from helpers import gpus as gpu_catalog
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.bundle import BUNDLE_NAME, outputs_here, render_commands, stage_run
from helpers.console import say, table
from helpers.follow import follow
from helpers.planning import Plan, plan_of
from helpers.runtime.progress import steps_at_risk
from helpers.workspace import current



DESCRIPTOR = Descriptor("local", noun="run", gpus=gpu_catalog.every)


def local_gpus() -> list[str]:
    """GPU names from nvidia-smi, or none."""
    if not shutil.which("nvidia-smi"):
        return []
    result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def plan(job, options: LaunchOptions = LaunchOptions()) -> Plan:
    """This machine: no offers to choose (`options.offline` changes nothing here); `invoke plan` adds the estimate."""
    gpus = local_gpus()
    return plan_of(job, DESCRIPTOR, gpu={"id": gpus[0], "name": gpus[0], "memory_gb": None} if gpus else None,
                   gpu_count=len(gpus), price_per_hour=0.0,
                   why=f"this machine ({len(gpus)} GPU)" if gpus else "this machine (CPU only)",
                   commands=render_commands(job, len(gpus)),
                   files=[f"runs/{job.run_id}/{BUNDLE_NAME}", f"runs/{job.run_id}/job.json", f"runs/{job.run_id}/.env"])


def launch(job, plan: Plan, options: LaunchOptions) -> int:
    """Stage runs/<run_id>/ and run the runtime here; Ctrl-C stops training cleanly (final sync first)."""
    mode = options.mode
    run_dir = stage_run(job, {"kind": "local"}, host_secrets(job, DESCRIPTOR))
    say(f"run {job.run_id}: {run_dir}/ (log: runtime.log, status: status.json)")
    process = subprocess.Popen(
        [sys.executable, str(run_dir / BUNDLE_NAME), str(run_dir / "job.json"), f"--mode={mode}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    (run_dir / "runtime.pid").write_text(str(process.pid))
    total = max([r.steps for r in job.runs] or [job.training.steps])
    try:
        follow(process.stdout, total)
    except KeyboardInterrupt:
        say("Ctrl-C: stopping training after a final checkpoint sync ...")
        os.killpg(process.pid, signal.SIGINT)
        follow(process.stdout, total)
    code = process.wait()
    (run_dir / "runtime.pid").unlink(missing_ok=True)
    return code


def status(handle: RunHandle | None = None) -> list[list]:
    """Local runs (or one): state, step, loss, last synced step."""
    rows = []
    for path in sorted(current().runs_dir.glob(f"{handle.run_id if handle else '*'}/status.json")):
        s = json.loads(path.read_text())
        running = (path.parent / "runtime.pid").exists()
        at_risk = steps_at_risk(s)
        rows.append([s.get("run_id"), "running" if running and s["state"] == "training" else s["state"],
                     f"{s.get('step')}/{s.get('total')}", s.get("loss"), s.get("synced_step"),
                     f"{at_risk} (SYNC FAILED: {s['sync_failed']})" if s.get("sync_failed") else at_risk])
    table("local runs", ["run", "state", "step", "loss", "synced step", "steps at risk"], rows)
    return rows


def _run_dir(handle) -> Path:
    run_dir = current().runs_dir / handle.run_id
    if not (run_dir / "runtime.log").exists():
        from helpers.errors import ConfigError

        raise ConfigError("run_id", f"no local run '{handle.run_id}'", "see `invoke local.status`")
    return run_dir


def logs(handle: RunHandle, follow: bool = False) -> None:
    log = _run_dir(handle) / "runtime.log"
    if follow:
        subprocess.run(["tail", "-n", "+1", "-F", str(log)])
    else:
        say(log.read_text())


def fetch(handle: RunHandle, dest: str | Path | None = None) -> Path:
    """The run's outputs are already here: their folder (copied to `dest` if asked)."""
    return outputs_here(_run_dir(handle), Path("."), dest, f"run {handle.run_id}")


def stop(handle: RunHandle) -> None:
    """Stop training cleanly: the runtime syncs its last checkpoint first."""
    pid_file = current().runs_dir / handle.run_id / "runtime.pid"
    if pid_file.exists():
        os.killpg(int(pid_file.read_text()), signal.SIGINT)
        say(f"asked run {handle.run_id} to stop (it syncs its last checkpoint first)")
