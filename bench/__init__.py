"""Benchmarks: `python -m bench [name ...]` prints tables and rewrites bench/RESULTS.md."""
