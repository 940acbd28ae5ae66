"""The real LeRobot 0.4.4 trainer environment on this machine's Python 3.11 (built once, cached outside the clone)
and a synthetic dataset. (LeRobot 0.6.1 runs in the Debian 13 root: tests/test_lerobot_current.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers.runtime import environment

DEMO = {"framework": "lerobot", "lerobot": {"version": "0.4.4"}, "policy": {"type": "act"},
        "dataset": {"repo_id": "local/synthetic"}}
TINY_ACT = {"type": "act", "device": "cpu", "options": {"dim_model": 64, "n_heads": 2, "dim_feedforward": 128,
            "n_encoder_layers": 1, "n_decoder_layers": 1, "chunk_size": 10, "n_action_steps": 10}}


@pytest.fixture(scope="session")
def lerobot_bin() -> Path:
    """bin/ of the cached LeRobot environment (the same one `make demo` uses)."""
    return environment.ensure(DEMO, log=lambda m: None)


@pytest.fixture(scope="session")
def synthetic_dataset(lerobot_bin, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lerobot") / "synthetic"
    script = Path(environment.__file__).with_name("synthetic_dataset.py")
    subprocess.run([str(lerobot_bin / "python"), str(script), str(root)], check=True, capture_output=True)
    return root
