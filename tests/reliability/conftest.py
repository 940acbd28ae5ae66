"""Fixtures of the reliability suite (tests/reliability/harness.py has the World they build)."""

from __future__ import annotations

import pytest

from tests.reliability.harness import World


@pytest.fixture
def world(tmp_path, hub_server, monkeypatch):
    """RunPod and Verda emulators, the local Hub, an SSH key and a work folder (the test's cwd). Every RunPod and
    Verda exchange of the test is checked against the provider's OpenAPI file at the end (tests/openapi_contract.py)."""
    w = World(tmp_path / "world", hub_server)
    monkeypatch.chdir(w.work)
    try:
        yield w
    finally:
        w.stop()
    off_spec = w.contract_violations()
    assert not off_spec, "\n".join(off_spec)


def pytest_collection_modifyitems(config, items):
    """The fault trials run one after another in one test: its time limit grows with --trials (2 min a trial)."""
    for item in items:
        if item.name == "test_fault_trials":
            item.add_marker(pytest.mark.timeout(max(600, 120 * config.getoption("--trials"))))
