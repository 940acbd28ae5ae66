import importlib
import sys

NAMES = ["cold_start", "sync", "recovery", "envs", "planning", "scale", "multinode"]
args = sys.argv[1:]
options = {i for i, a in enumerate(args) if a.startswith("--")} | {i + 1 for i, a in enumerate(args) if a == "--before"}
for name in [a for i, a in enumerate(args) if i not in options] or NAMES:  # `--before REF`: see bench/scale.py
    importlib.import_module(f"bench.{name}").main()
