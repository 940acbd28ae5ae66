"""Places to run a job. The contract they all implement, and how to find one, is helpers/backends/base.py; the
names and modules are helpers.config.BACKENDS.

Backends are imported only by the task that uses them (SDK imports are slow).
"""
