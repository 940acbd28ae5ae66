"""Fixtures for the Verda REST API emulator (helpers/emulators/verda_api.py).

`verda_emulator`  a started VerdaEmulator (instances are real sshd hosts) under tmp_path, stopped afterwards
`verda_client`    the REAL `verda.VerdaClient` pointed at it
`verda_ssh_key`   (private key path, public key text) of a fresh ed25519 pair
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # `helpers` is not installed in .venv; pytest only puts tests/ on sys.path
    sys.path.insert(0, str(_REPO))

from helpers.emulators.sshhost import generate_keypair  # noqa: E402
from helpers.emulators.verda_api import VerdaEmulator  # noqa: E402


@pytest.fixture
def verda_emulator(tmp_path: Path) -> Iterator[VerdaEmulator]:
    emu = VerdaEmulator(tmp_path / "verda", boot_delay_s=0.3, order_delay_s=0.1).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def verda_client(verda_emulator: VerdaEmulator):
    from verda import VerdaClient

    return VerdaClient(verda_emulator.client_id, verda_emulator.client_secret, base_url=verda_emulator.base_url)


@pytest.fixture
def verda_ssh_key(tmp_path: Path) -> tuple[Path, str]:
    return generate_keypair(tmp_path / "keys")
