#!/usr/bin/env python3
"""Stands in for `uv run scripts/train.py <config> ...` run inside an openpi checkout: openpi's checkpoint layout
and its rules (a step folder is written under a temporary name and renamed when whole; an existing experiment
folder needs --resume or --overwrite). Installed as `uv` on the PATH of a fake openpi image (tests/test_chtc.py,
tests/test_chtc_pool.py). FAKE_UV_LOG (optional): a JSON line per call; FAKE_UV_PACE: seconds per step."""
import json
import os
import shutil
import sys
import time

argv = sys.argv[1:]
if os.environ.get("FAKE_UV_LOG"):
    with open(os.environ["FAKE_UV_LOG"], "a") as log:
        log.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "pid": os.getpid()}) + "\n")
assert argv[:2] == ["run", "scripts/train.py"], argv
assert os.path.realpath(os.getcwd()) == os.path.realpath(os.environ["OPENPI_DIR"]), "openpi runs from its checkout"
config = argv[2]
opts = dict(a[2:].split("=", 1) for a in argv[3:] if "=" in a)
flags = {a for a in argv[3:] if "=" not in a}
exp_dir = os.path.join(opts["checkpoint-base-dir"], config, opts["exp-name"])
if os.path.isdir(exp_dir) and not flags & {"--resume", "--overwrite"}:
    print(f"FileExistsError: {exp_dir} exists. Use --overwrite or --resume", flush=True)
    sys.exit(1)
if "--overwrite" in flags:
    shutil.rmtree(exp_dir, ignore_errors=True)
steps = sorted(int(n) for n in os.listdir(exp_dir) if n.isdigit()) if os.path.isdir(exp_dir) else []
start = steps[-1] if "--resume" in flags and steps else 0
print(f"resumed from step {start}" if start else "fresh start", flush=True)
total, interval = int(opts["num-train-steps"]), int(opts["save-interval"])
os.makedirs(exp_dir, exist_ok=True)
for step in range(start + 1, total):
    time.sleep(float(os.environ.get("FAKE_UV_PACE", "0.01")))
    print(f"step:{step} loss:{1.0 / step:.4f}", flush=True)
    if step % interval == 0 or step == total - 1:
        tmp = os.path.join(exp_dir, f"{step}.orbax-checkpoint-tmp")
        os.makedirs(os.path.join(tmp, "params"))
        os.makedirs(os.path.join(tmp, "train_state"))
        with open(os.path.join(tmp, "params", "weights.bin"), "wb") as f:
            f.write(os.urandom(2048))
        os.rename(tmp, os.path.join(exp_dir, str(step)))
