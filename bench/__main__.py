import importlib
import sys

NAMES = ["cold_start", "sync", "recovery"]
for name in sys.argv[1:] or NAMES:
    importlib.import_module(f"bench.{name}").main()
