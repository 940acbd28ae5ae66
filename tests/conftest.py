"""Shared pytest set-up. Each area registers its fixtures module here."""

import signal

# A background job of a non-interactive shell starts with SIGINT ignored, and its children inherit that: the Ctrl-C
# tests would then signal orchestrators that cannot hear it. A handler here becomes the default in every child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = [
    "fixtures_lerobot",
    "fixtures_slurm",
    "fixtures_verda",
    "fixtures_hub",
    "fixtures_runpod",
    "fixtures_debian",
]


def pytest_addoption(parser):
    group = parser.getgroup("trainyard reliability (tests/reliability)")
    group.addoption("--trials", type=int, default=6,
                    help="fault trials to run (default 6, what CI runs; `make reliability` runs 50)")
    group.addoption("--trial-seed", type=int, default=None,
                    help="seed of the fault trials' RNG (default: new each run, printed with the summary)")
