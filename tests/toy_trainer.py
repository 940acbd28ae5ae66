"""A stand-in trainer for the `command` framework: LeRobot's checkpoint layout, resumes from `last`.

Reads TRAINYARD_CHECKPOINT_DIR / TRAINYARD_STEPS / TRAINYARD_SAVE_FREQ (set by the runtime) and
TOY_STEP_SECONDS (pace). Prints LeRobot-style `step:N loss:X` lines; with TOY_BIG_NUMBERS=1 the step as LeRobot's
log writes it from 1,000 on (`step:1K`, format_big_number).
"""

import hashlib
import json
import os
import time
from pathlib import Path

root = Path(os.environ["TRAINYARD_CHECKPOINT_DIR"])
steps = int(os.environ["TRAINYARD_STEPS"])
save_freq = int(os.environ["TRAINYARD_SAVE_FREQ"])
pace = float(os.environ.get("TOY_STEP_SECONDS", "0.01"))
payload_kb = int(os.environ.get("TOY_PAYLOAD_KB", "4"))
work = int(os.environ.get("TOY_STEP_WORK", "0"))  # CPU work per step (sha256 rounds over 64 KiB), for benchmarks
big_numbers = os.environ.get("TOY_BIG_NUMBERS") == "1"

start = 0
if (root / "last").exists():
    start = json.loads((root / "last" / "training_state" / "training_step.json").read_text())["step"]
    print(f"resumed from step {start}", flush=True)
began = time.perf_counter()
block = os.urandom(64 * 1024)
for step in range(start + 1, steps + 1):
    time.sleep(pace)
    for _ in range(work):
        block = hashlib.sha256(block).digest() * 2048
    shown = f"{step / 1000:.0f}K" if big_numbers and step >= 1000 else step
    print(f"step:{shown} loss:{1.0 / step:.4f}", flush=True)
    if step % save_freq == 0 or step == steps:
        ckpt = root / f"{step:06d}"
        (ckpt / "pretrained_model").mkdir(parents=True)
        (ckpt / "training_state").mkdir()
        (ckpt / "pretrained_model" / "model.safetensors").write_bytes(os.urandom(payload_kb * 1024))
        (ckpt / "training_state" / "training_step.json").write_text(json.dumps({"step": step}))
        tmp = root / ".last.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ckpt.name)
        os.replace(tmp, root / "last")
print(f"train_seconds={time.perf_counter() - began:.4f}", flush=True)
