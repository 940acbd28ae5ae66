"""Seed 001's entry point, kept: `python verda/verda_lerobot_manager.py train|resume|resume_local --gpu-model H100
--gpus-per-instance 4 --env-file .env --train-config configs/train.remote.yaml --run-id first_run`.

A thin shim over Trainyard's Verda backend (helpers/cli/verda.py `seed_main`, the same code as `invoke verda.*`).
This folder has no __init__.py on purpose: it must not shadow the `verda` SDK.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from helpers.cli.verda import seed_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(seed_main())
