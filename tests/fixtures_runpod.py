"""Fixtures for the RunPod emulator (emulators/runpod_api.py: REST v2, and GraphQL for spot).

`runpod_emulator`   a started RunPodEmulator under tmp_path whose pods are real sshd hosts (root, sshd); when the
                    test ends, every REST exchange it served is checked against RunPod's OpenAPI file
                    (tests/openapi_contract.py)
`runpod_sdk`        the REAL `runpod` SDK module pointed at `runpod_emulator`: HOME isolated before import,
                    RUNPOD_API_BASE_URL set, `runpod.api_key` = the emulator's key (all undone afterwards)
`runpod_ssh_key`    (private key path, public key text) of a fresh ed25519 pair
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.runpod_api import RunPodEmulator
from emulators.sshhost import generate_keypair


@pytest.fixture
def runpod_emulator(tmp_path: Path) -> Iterator[RunPodEmulator]:
    from tests.openapi_contract import RUNPOD, runpod_exchanges

    emu = RunPodEmulator(tmp_path / "runpod").start()
    try:
        yield emu
    finally:
        emu.stop()
    RUNPOD.check(runpod_exchanges(emu.calls))


@pytest.fixture
def runpod_sdk(runpod_emulator: RunPodEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))  # before the first import: the SDK reads ~/.runpod/config.toml then
    monkeypatch.setenv("RUNPOD_API_BASE_URL", runpod_emulator.api_base)  # read on every call
    import runpod

    monkeypatch.setattr(runpod, "api_key", runpod_emulator.api_key)
    return runpod


@pytest.fixture
def runpod_ssh_key(tmp_path: Path) -> tuple[Path, str]:
    return generate_keypair(tmp_path / "runpod-keys")
