"""Fixtures for the Verda REST API emulator (emulators/verda_api.py).

`verda_emulator`           a started VerdaEmulator under tmp_path whose instances are real sshd hosts (root, sshd);
                           when the test ends, every exchange it served is checked against Verda's OpenAPI file
                           (tests/openapi_contract.py), as for RunPod
`verda_client`             the REAL `verda.VerdaClient` pointed at `verda_emulator`
`verda_emulator_api_only`  the same emulator with `ssh=False`: instances go through every state but run nothing
`verda_ssh_key`            (private key path, public key text) of a fresh ed25519 pair
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.sshhost import generate_keypair
from emulators.verda_api import VerdaEmulator


def _started(root: Path, ssh: bool) -> VerdaEmulator:
    return VerdaEmulator(root, boot_delay_s=0.3, order_delay_s=0.1, ssh=ssh).start()


def _checked(emu: VerdaEmulator) -> Iterator[VerdaEmulator]:
    from tests.openapi_contract import VERDA, verda_exchanges

    try:
        yield emu
    finally:
        emu.stop()
    VERDA.check(verda_exchanges(emu.calls))


@pytest.fixture
def verda_emulator(tmp_path: Path) -> Iterator[VerdaEmulator]:
    yield from _checked(_started(tmp_path / "verda", ssh=True))


@pytest.fixture
def verda_emulator_api_only(tmp_path: Path) -> Iterator[VerdaEmulator]:
    yield from _checked(_started(tmp_path / "verda-api", ssh=False))


@pytest.fixture
def verda_client(verda_emulator: VerdaEmulator):
    from verda import VerdaClient

    return VerdaClient(verda_emulator.client_id, verda_emulator.client_secret, base_url=verda_emulator.base_url)


@pytest.fixture
def verda_ssh_key(tmp_path: Path) -> tuple[Path, str]:
    return generate_keypair(tmp_path / "keys")
