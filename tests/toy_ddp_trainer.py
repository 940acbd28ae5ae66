"""A user's own distributed trainer, as a `command` job runs it on several nodes: PyTorch DDP over gloo on CPU, one
process per node, meeting at MASTER_ADDR:MASTER_PORT with RANK / WORLD_SIZE from the environment (what the SLURM
script and the runtime give it). Rank 0 writes checkpoints in LeRobot's layout (`<step>/`, `last` ->) under
TRAINYARD_CHECKPOINT_DIR; every rank resumes from `last`. TOY_DIE_AT_STEP=N with TOY_DIE_RANK=R: rank R dies at step
N on the job's first start (a node lost mid-run)."""

import datetime
import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))  # one node: a group of one
root = Path(os.environ["TRAINYARD_CHECKPOINT_DIR"])
steps, save_freq = int(os.environ["TRAINYARD_STEPS"]), int(os.environ["TRAINYARD_SAVE_FREQ"])
pace = float(os.environ.get("TOY_STEP_SECONDS", "0.05"))
die_at = int(os.environ.get("TOY_DIE_AT_STEP") or 0) if os.environ.get("SLURM_RESTART_COUNT", "0") == "0" else 0
die_rank = int(os.environ.get("TOY_DIE_RANK") or 1)

address = f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=60))
me = socket.gethostname()
peers = [None] * world
dist.all_gather_object(peers, (rank, me, socket.gethostbyname(me)))
print(f"rank {rank} of {world} on {me}; group: {sorted(peers)}", flush=True)

torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
start = 0
if (root / "last").exists():
    start = json.loads((root / "last" / "training_state" / "training_step.json").read_text())["step"]
    model.load_state_dict(torch.load(root / "last" / "pretrained_model" / "model.pt"))
    print(f"rank {rank} resumed from step {start}", flush=True)
ddp = DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
generator = torch.Generator().manual_seed(rank)
for step in range(start + 1, steps + 1):
    x = torch.randn(16, 8, generator=generator)
    loss = ((ddp(x) - x.sum(dim=1, keepdim=True)) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()  # gradients all-reduced across the nodes
    optimizer.step()
    if rank == die_rank and step == die_at:
        print(f"rank {rank} dies at step {step}", flush=True)
        os._exit(9)
    print(f"step:{step} loss:{loss.item():.4f} rank:{rank}", flush=True)
    time.sleep(pace)
    if rank == 0 and (step % save_freq == 0 or step == steps):
        ckpt = root / f"{step:06d}"
        (ckpt / "pretrained_model").mkdir(parents=True, exist_ok=True)
        (ckpt / "training_state").mkdir(exist_ok=True)
        torch.save(model.state_dict(), ckpt / "pretrained_model" / "model.pt")
        (ckpt / "training_state" / "training_step.json").write_text(json.dumps({"step": step}))
        tmp = root / ".last.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ckpt.name)
        os.replace(tmp, root / "last")
weights = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.zeros_like(weights) for _ in range(world)]
dist.all_gather(gathered, weights)
print(f"rank {rank} weights equal on every rank: {all(torch.equal(g, weights) for g in gathered)}", flush=True)
dist.destroy_process_group()
