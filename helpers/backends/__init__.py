"""Places to run a job. The contract they all implement, and how to find one, is helpers/backends/base.py.

Backends are imported only by the task that uses them (SDK imports are slow).
"""

from helpers.backends.base import MODULES, RunHandle, backend, find_run

__all__ = ["MODULES", "RunHandle", "backend", "find_run"]
