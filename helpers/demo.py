"""`make demo`: the main job on the embedded default, start to finish, on a fresh machine.

Trains a real LeRobot ACT policy on the CPU (synthetic dataset made on the spot), syncs its checkpoints to
the local store, throws the output folder away as a lost machine would, and resumes from the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.console import say


def run_demo(config: str) -> None:
    from helpers.backends.base import LaunchOptions, backend
    from helpers.config import load_job
    from helpers.errors import ProviderError
    from helpers.workspace import current

    local = backend("local")
    first = load_job(config)
    total = first.training.steps
    half = load_job(config, {"training.steps": total // 2})
    for stale in (Path(first.output_dir), current().runs_dir / first.run_id):
        shutil.rmtree(stale, ignore_errors=True)

    say(f"== 1/3 train {half.training.steps} of {total} steps (ACT on CPU), syncing every {half.training.save_freq}")
    if local.launch(half, local.plan(half), LaunchOptions(mode="fresh")) != 0:
        raise ProviderError("demo: training failed (see runs/%s/runtime.log)" % half.run_id)
    say(f"== 2/3 the machine is lost: deleting {first.output_dir}")
    shutil.rmtree(first.output_dir)
    say(f"== 3/3 resume from the store {first.store} and train to {total}")
    if local.launch(first, local.plan(first), LaunchOptions(mode="resume")) != 0:
        raise ProviderError("demo: resume failed (see runs/%s/runtime.log)" % first.run_id)
    store = Path(first.store)
    say("")
    say("Done. Where everything is:")
    say(f"  dataset      {first.dataset.root}")
    say(f"  outputs      {first.output_dir}/checkpoints (last -> {Path(first.output_dir, 'checkpoints', 'last').resolve().name})")
    say(f"  store        {store} (latest: {(store / 'latest.json').read_text()})")
    say(f"  log, events  runs/{first.run_id}/runtime.log, runs/{first.run_id}/events.jsonl")
