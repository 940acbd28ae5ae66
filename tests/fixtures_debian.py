"""The Debian 13 root (tests/debian_root.py), built once per machine and shared by the tests that need a newer
host than this one (LeRobot >= 0.5 on Python 3.13, the HTCondor pool)."""

from __future__ import annotations

import os

import pytest

from tests.debian_root import DebianRoot


@pytest.fixture(scope="session")
def debian_root() -> DebianRoot:
    if os.geteuid() != 0:
        pytest.fail("the Debian root needs root (debootstrap, chroot, mount namespaces): run the suite as root")
    return DebianRoot().ensure()
