"""The nodes of a multi-node job (SLURM: one runtime per node, `TRAINYARD_NODE_RANK` = SLURM_NODEID).

Every node shares the run folder (a cluster's shared filesystem). Node 0 decides where the run starts — it restores
the newest checkpoint from the store into the shared output folder, or starts fresh — and says so in
`nodes/start-<restart>-<run index>.json`; the other nodes wait for that file and start their trainers from the same
step, so no node begins before the checkpoint it resumes from is whole. A start after a requeue has its own file
(SLURM_RESTART_COUNT), so no node reads the decision of an earlier start.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

WAIT_S = float(os.environ.get("TRAINYARD_NODE_WAIT_S") or 1800)  # node 0 may build its environment, then restore


def _decision(run_dir: Path, index: int) -> Path:
    return run_dir / "nodes" / f"start-{os.environ.get('SLURM_RESTART_COUNT') or 0}-{index}.json"


def node_0_ready(run_dir: Path, index: int, resume_step: int | None) -> None:
    """Node 0: the run starts at `resume_step` (None: from scratch); its checkpoint is in place."""
    path = _decision(run_dir, index)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"resume_step": resume_step, "time": time.time()}))
    os.replace(tmp, path)


def wait_for_node_0(run_dir: Path, index: int, log: Callable[[str], None]) -> int | None:
    """Another node: the step node 0 starts from, once it has restored (SystemExit after WAIT_S without a word)."""
    path = _decision(run_dir, index)
    log(f"waiting for node 0 to restore or start ({path.name})")
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"node 0 did not start within {WAIT_S:.0f}s ({path} missing)")
        time.sleep(0.5)
    step = json.loads(path.read_text())["resume_step"]
    log(f"node 0 starts from {'step %d' % step if step is not None else 'scratch'}")
    return step
