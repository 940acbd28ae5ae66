import importlib
import sys

NAMES = ["cold_start", "sync", "recovery", "envs", "planning"]
for name in sys.argv[1:] or NAMES:
    importlib.import_module(f"bench.{name}").main()
