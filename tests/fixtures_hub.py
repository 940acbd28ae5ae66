"""Fixtures for the local Hugging Face Hub (emulators/hub_server.py).

`hub_server`       a started HubServer under tmp_path with write token HUB_TOKEN for user HUB_USER. The test's
                   environment gets HF_ENDPOINT / HF_TOKEN / HF_HOME (for subprocesses; uploads go through Xet, as in
                   production: `hub_lfs` switches a test to the LFS path),
                   and the already-imported `huggingface_hub.constants` are pointed at it too (in-process clients
                   read those at import time).
`hub_python_035`   path of a python with huggingface_hub==0.35.3 (the version LeRobot 0.4.4 pins and the GPU
                   host runs), built once into ~/.cache/trainyard/envs/hub-0.35.3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.hub_server import HubServer

HUB_TOKEN = "hf_test_token_writer"
HUB_USER = "trainyard-tests"
HUB_035_VERSION = "0.35.3"
HUB_035_ENV = Path.home() / ".cache" / "trainyard" / "envs" / f"hub-{HUB_035_VERSION}"


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    hub = HubServer(tmp_path / "hub").start()
    hub.add_token(HUB_TOKEN, HUB_USER)
    hf_home = tmp_path / "hf_home"
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    for key, value in {**hub.client_env(HUB_TOKEN), "HF_HOME": str(hf_home)}.items():
        monkeypatch.setenv(key, value)
    from huggingface_hub import constants

    for name, value in {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_DISABLE_XET": False,
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
    }.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub_lfs(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The local Hub for a client without Xet: uploads take the classic LFS batch path."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return hub_server


def _has_hub_035(python: Path) -> bool:
    check = f"import huggingface_hub as h; assert h.__version__ == {HUB_035_VERSION!r}"
    return python.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def hub_python_035() -> Path:
    python = HUB_035_ENV / "bin" / "python"
    if _has_hub_035(python):
        return python
    # Build beside the final place and rename, so an interrupted build is never mistaken for a good one.
    staging = HUB_035_ENV.with_name(f"{HUB_035_ENV.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(staging)],
             [str(staging / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              f"huggingface_hub=={HUB_035_VERSION}"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(f"could not build the huggingface_hub {HUB_035_VERSION} venv: {done.stderr[-2000:]}")
    shutil.rmtree(HUB_035_ENV, ignore_errors=True)
    os.replace(staging, HUB_035_ENV)
    return python
