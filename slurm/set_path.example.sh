#!/bin/bash
# Paths for a SLURM job (the seed's set_path.sh). Copy it next to where you run sbatch, edit it, and name it in the
# job config:
#
#   cp slurm/set_path.example.sh set_path.sh         # slurm: {set_path: set_path.sh}
#
# The batch script sources it first (and again inside the container, with slurm.container). Paths only: secrets
# (HF_TOKEN, WANDB_API_KEY) go in .env, which the job reads at run time from runs/<run_id>/.env (mode 0600).
# shellcheck disable=SC2034  # everything here is for the processes the job starts

# Big, shared, not backed up: most clusters call it scratch.
SCRATCH_ROOT="${SCRATCH:-/scratch/$USER}"

# Models and datasets from the Hugging Face Hub (pretrained weights such as lerobot/pi0_base: several GB).
export HF_HOME="$SCRATCH_ROOT/hf"
# LeRobot datasets (default ~/.cache/huggingface/lerobot; home quotas are small).
export HF_LEROBOT_HOME="$SCRATCH_ROOT/lerobot"
# The trainer's virtual environment, built once by the runtime and reused by every job (a few GB).
export TRAINYARD_ENV_DIR="$SCRATCH_ROOT/trainyard/envs/lerobot"
# Caches: pip, uv, torch hub, triton / torch.compile kernels, wandb.
export XDG_CACHE_HOME="$SCRATCH_ROOT/cache"
export PIP_CACHE_DIR="$XDG_CACHE_HOME/pip"
export UV_CACHE_DIR="$XDG_CACHE_HOME/uv"
export TORCH_HOME="$XDG_CACHE_HOME/torch"
export TRITON_CACHE_DIR="$XDG_CACHE_HOME/triton"
export WANDB_DIR="$SCRATCH_ROOT/wandb"
# Training outputs and logs stay where the job's config puts them (job.output_dir, relative to the submit directory;
# the SLURM logs: slurm.output / slurm.error, default log/slurm/train/%x.out / .err).

# Which Python runs what (all optional):
# export TRAINYARD_PYTHON=python3                 # runs the runtime bundle (stdlib only; it builds the trainer's venv)
# export TRAINYARD_PYTHON="$TRAINYARD_ENV_DIR/bin/python" TRAINYARD_SKIP_SETUP=1   # a prebuilt trainer venv
# export TRAINYARD_TOOL_PYTHON=.venv/bin/python   # the checkout's tool venv: stages runs/<run_id>/ (sbatch slurm/x.sh)
# export TRAINYARD_MAX_FAILURES=3                 # requeues after a failure (the seed requeued without end)
# export TORCHRUN=torchrun                        # `command` jobs on 2+ GPUs start under it

# Cluster modules and containers (examples):
# module load python/3.11 cuda/12.4
# export OVERLAY_EXT3=/scratch/$USER/overlay-50G-10M.ext3   # slurm: {overlay: "${OVERLAY_EXT3}"}
# export PATH="/ext3/uv:$PATH"                              # inside the container, as in the seed
