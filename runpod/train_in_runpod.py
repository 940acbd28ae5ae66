"""Seed 000's entry point, kept: `python runpod/train_in_runpod.py -c config.yaml [--spot] [--no-terminate] ...`.

A thin shim over Trainyard's RunPod backend (helpers/cli/runpod.py `seed_main`, the same code as
`invoke runpod.train`). This folder has no __init__.py on purpose: it must not shadow the `runpod` SDK.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from helpers.cli.runpod import seed_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(seed_main())
