"""Verda's provider (helpers/backends/verda/provider.py) with the real `verda` SDK against the emulator: a delete
of an instance that is still booting is asked again while its STATUS is a booting one, whatever words Verda refuses
it with (only "Can't discontinue a provisioning instance" was ever seen [3P]; the other states' words are unknown)."""

from __future__ import annotations

import pytest

from emulators.verda_api import LONG_BOOT

CPU_TYPE = "CPU.4V.16G"

pytestmark = pytest.mark.slow  # instances that take seconds to boot


@pytest.mark.parametrize("words", ["Can't discontinue a {status} instance",  # the words seen [3P]
                                   "Instance {status}: please retry later"])  # another reading [INF]
def test_a_delete_refused_while_booting_is_retried_until_it_is_deleted(verda_emulator_api_only, words):
    from verda import VerdaClient

    from helpers.backends.verda.api import create_instance
    from helpers.backends.verda.provider import VerdaProvider

    emu = verda_emulator_api_only
    emu.boot_states, emu.order_delay_s, emu.booting_refusal = LONG_BOOT, 2.0, words
    client = VerdaClient(emu.client_id, emu.client_secret, base_url=emu.base_url)
    booting = create_instance(client, instance_type=CPU_TYPE, image="ubuntu-24.04", hostname="ty-boot-abc123",
                              description="ty-boot-abc123", location_code="FIN-02")
    assert emu.instance(booting)["status"] in ("new", "ordered", "validating", "pending")
    VerdaProvider(client).terminate(booting, keep_disk=False)
    assert emu.instance(booting)["status"] == "discontinued"
    refusals = [c for c in emu.calls if c.get("status", 0) >= 400 and c.get("path") == "/v1/instances"]
    assert refusals, "the delete was never refused: the instance was not booting"
