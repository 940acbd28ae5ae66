"""Multi-node runs on SLURM: how long from `sbatch` until every rank trains, and from a lost node until both nodes
train again after the requeue — on the suite's two-node cluster (tests/slurm/cluster.sh, TRAINYARD_SLURM_NODES=2:
each node its own network and UTS namespace), against the same job on one node of it (the baseline).

The job: tests/toy_ddp_trainer.py (PyTorch DDP over gloo on CPU, one process per node) as a `command` job rendered by
Trainyard (`resources.nodes`), the runtime with --skip-setup, a directory store. Times are read from the job's output
file as it grows (polled every 50 ms).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import table, write_section

REPO = Path(__file__).resolve().parents[1]
RUNS = 3
KNOBS = {"TRAINYARD_SLURM_DIR": "/tmp/trainyard-slurm-bench-2n", "TRAINYARD_SLURM_NODES": "2",
         "TRAINYARD_SLURM_CTLD_PORT": "6837", "TRAINYARD_SLURM_SLURMD_PORT": "6838", "TRAINYARD_SLURM_SUBNET": "10.78.0"}


def cluster(command: str) -> None:
    subprocess.run(["bash", str(REPO / "tests/slurm/cluster.sh"), command], env={**os.environ, **KNOBS}, check=True,
                   capture_output=True, timeout=300)


def submit(work: Path, name: str, nodes: int, python: Path, die_at: int = 0) -> tuple[float, Path]:
    """Submit the toy job; (the time sbatch was called, its output file)."""
    from helpers.backends import slurm_jobs
    from helpers.config import load_job
    from helpers.workspace import opened

    (work / "set_path.sh").write_text(
        f"export TRAINYARD_PYTHON={sys.executable} TRAINYARD_SKIP_SETUP=1 PYTHONPATH={REPO} TOY_STEP_SECONDS=0.05\n"
        + (f"export TOY_DIE_AT_STEP={die_at} TOY_DIE_RANK={nodes - 1}\n" if die_at else ""))
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "job": {"name": name}, "framework": "command",
        "command": {"run": f"{python} {REPO / 'tests/toy_ddp_trainer.py'}"},
        "training": {"steps": 60, "save_freq": 10}, "resources": {"nodes": nodes},
        "slurm": {"set_path": "set_path.sh", "gres": "gpu:1", "time": "00:10:00"},
    }))
    os.chdir(work)
    with opened(env_file=None, runs_dir=work / "runs"):
        started = time.time()
        record = slurm_jobs.submit(load_job(config, environ={}), {})
    return started, Path(record["output"])


def seen(output: Path, pattern: str, after: float, timeout: float = 180, since: int = 0) -> float:
    """The time `pattern` first appears in the output after offset `since` (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output.read_text()[since:] if output.exists() else ""
        if re.search(pattern, text, re.M):
            return time.time() - after
        time.sleep(0.05)
    raise TimeoutError(f"never saw {pattern!r} in {output}")


def wait_done(name: str) -> None:
    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h", "-n", name], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, f"{name} did not end"
        time.sleep(0.2)


def main() -> None:
    from helpers.runtime import environment
    from tests.fixtures_lerobot import DEMO

    python = environment.ensure(DEMO, log=lambda m: None) / "python"  # a Python with torch
    cluster("start")
    os.environ["SLURM_CONF"] = f"{KNOBS['TRAINYARD_SLURM_DIR']}/etc/slurm.conf"
    start_rows, loss_rows = {1: [], 2: []}, []
    try:
        for run in range(RUNS):
            for nodes in (1, 2):
                work = Path(tempfile.mkdtemp(prefix=f"bench-mn-{nodes}-"))
                started, output = submit(work, f"start{nodes}-{run}", nodes, python)
                ranks = [seen(output, rf"^step:1 loss:\S+ rank:{r}$", started) for r in range(nodes)]
                start_rows[nodes].append(max(ranks))
                wait_done(f"start{nodes}-{run}")
            work = Path(tempfile.mkdtemp(prefix="bench-mn-loss-"))
            started, output = submit(work, f"loss-{run}", 2, python, die_at=25)
            died = seen(output, r"^rank 1 dies at step 25$", started) + started
            offset = output.read_text().index("rank 1 dies at step 25")
            both = max(seen(output, rf"^rank {r} resumed from step \d+$", died, since=offset) for r in (0, 1))
            training = max(seen(output, rf"^step:2\d loss:\S+ rank:{r}$", died, since=offset) for r in (0, 1))
            loss_rows.append((both, training))
            wait_done(f"loss-{run}")
    finally:
        cluster("stop")
    one, two = statistics.median(start_rows[1]), statistics.median(start_rows[2])
    rows = [["sbatch -> every rank trains (step 1), 1 node (baseline)", f"{one:.1f} s", "1.00"],
            ["sbatch -> every rank trains (step 1), 2 nodes", f"{two:.1f} s", f"{two / one:.2f}"],
            ["node 1's trainer dies -> both nodes resumed (requeue, node 0 restores)",
             f"{statistics.median(r[0] for r in loss_rows):.1f} s", "-"],
            ["node 1's trainer dies -> both nodes train again (first step after the resume)",
             f"{statistics.median(r[1] for r in loss_rows):.1f} s", "-"]]
    body = (table(["what (median of %d)" % RUNS, "time", "vs 1 node"], rows)
            + "\n\nThe requeue waits for SLURM: a requeued job is held for cred_expire (10 s on this cluster; 120 s by "
              "default) and started by the next scheduler pass (2 s here).")
    write_section("multinode", "python -m bench multinode", body)
