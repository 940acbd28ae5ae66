#!/bin/bash
#SBATCH --job-name=pi0-bridge
#SBATCH --output=log/slurm/train/%x.out
#SBATCH --error=log/slurm/train/%x.err
#SBATCH --time=44:00:00
#SBATCH --nodes=1
#SBATCH --gres=gpu:4
#SBATCH --constraint="a100|h100"
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=54
#SBATCH --mem=440G
##SBATCH --account=...   (set slurm.account; the cluster's default is used)
##SBATCH --partition=...   (set slurm.partition; the cluster's default is used)
#SBATCH --requeue
#SBATCH --signal=B:USR1@90
#SBATCH --open-mode=append

# Trainyard job "pi0-bridge" (lerobot), rendered from configs/pi0.yaml by
#   invoke slurm.render --config configs/pi0.yaml --output slurm/pi0_finetune.sh
# Edit the config, not this file, and render again (a test checks that the two agree).
#
#   sbatch slurm/pi0_finetune.sh
#       on the login node, from the repository root. SLURM does not create the log folder: the first time,
#       mkdir -p log/slurm/train
#   invoke slurm.submit --config configs/pi0.yaml
#       the same, with CLI overrides and --dry-run; then invoke slurm.status / slurm.logs / slurm.cancel
#   bash slurm/pi0_finetune.sh
#       without SLURM (SLURM_JOB_ID unset): the same job on this machine (the #SBATCH lines are comments then)
#
# Every start, also after a requeue, resumes from the newest checkpoint on disk or in the store (runtime --mode auto).
# Before the time limit SLURM sends USR1 (#SBATCH --signal): the runtime stops the trainer, syncs the last checkpoint
# and exits 3; then the job requeues itself. A failed run requeues itself too (at most TRAINYARD_MAX_FAILURES times).
# Secrets are never in this file or in the job's environment: the runtime reads runs/<run_id>/.env (mode 0600).
#
# Set in the environment or in set_path.sh (slurm.set_path; see slurm/set_path.example.sh):
#   TRAINYARD_PYTHON        Python that runs the runtime (default python3); the runtime builds the trainer's venv
#   TRAINYARD_SKIP_SETUP=1  TRAINYARD_PYTHON already has the trainer (a prebuilt venv or the container's Python)
#   TRAINYARD_TOOL_PYTHON   Python of this checkout, stages runs/<run_id>/ (default .venv/bin/python)
#   TRAINYARD_MAX_FAILURES  requeues after failures (default 3; requeues after USR1 are not counted)

cd "${SLURM_SUBMIT_DIR:-.}" || exit 2
set -uo pipefail

RUN_DIR=runs/pi0-bridge
PYTHON="${TRAINYARD_PYTHON:-python3}"
MAX_FAILURES="${TRAINYARD_MAX_FAILURES:-3}"

if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "SLURM job $SLURM_JOB_ID (${SLURM_JOB_NAME:-}) on ${SLURM_NODELIST:-}"
else
    echo "No SLURM here (SLURM_JOB_ID unset): running on $(hostname) without a scheduler"
fi
echo "Job restart count: ${SLURM_RESTART_COUNT:-0}"

# The run folder $RUN_DIR: runtime bundle, job.json (the config, resolved) and .env (mode 0600: only the secrets the job
# needs, from ./.env or the environment). Staged again at every start, so it always follows the config.
CONFIG=configs/pi0.yaml
TOOL_PYTHON="${TRAINYARD_TOOL_PYTHON:-.venv/bin/python}"
if ! command -v "$TOOL_PYTHON" >/dev/null 2>&1; then
    echo "trainyard: $TOOL_PYTHON not found: run 'make setup' in the checkout, or set TRAINYARD_TOOL_PYTHON" >&2
    exit 2
fi
if ! "$TOOL_PYTHON" -m helpers.backends.slurm_jobs stage "$CONFIG" --runs-dir "$(dirname "$RUN_DIR")"; then
    echo "trainyard: could not stage $RUN_DIR from $CONFIG (see the error above)" >&2
    exit 2
fi

# CPUs and GPUs. OMP_NUM_THREADS is not set here: the runtime sets it for the trainer (cores / GPUs, at least 1),
# for every backend alike, so it is computed in one place.
case "${CUDA_VISIBLE_DEVICES:-}" in
    "" | -1 | NoDevFiles)
        if command -v nvidia-smi >/dev/null 2>&1; then NUM_GPU="$(nvidia-smi --list-gpus | wc -l)"; else NUM_GPU=0; fi ;;
    *) NUM_GPU="$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)" ;;
esac
export NUM_GPU TRAINYARD_GPU_COUNT="$NUM_GPU"
echo "CPUs: $(nproc) (SLURM_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-unset}); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}; NUM_GPU=$NUM_GPU"

# Distributed training: the first host of the allocation (this script runs there) and a port free on it.
if [ -n "${SLURM_NODELIST:-}" ]; then
    MASTER_ADDR="$(scontrol show hostname "$SLURM_NODELIST" | head -n 1)"
else
    MASTER_ADDR=127.0.0.1
fi
MASTER_PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null)" \
    || MASTER_PORT=$(( 20000 + RANDOM % 20000 ))
export MASTER_ADDR MASTER_PORT
echo "MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT"

# Launcher: the runtime starts lerobot with accelerate, one process per GPU it sees (accelerate.*).
TRAINYARD_LAUNCHER=""
export TRAINYARD_LAUNCHER
echo "Launcher: ${TRAINYARD_LAUNCHER:-accelerate, started by the runtime with one process per GPU}"

# The runtime: resume or start, train, sync checkpoints to the store; exit 0 done, 1 failed, 3 stopped early.
RUNTIME=("$PYTHON" "$RUN_DIR/trainyard_runtime.pyz" "$RUN_DIR/job.json" --mode auto)
if [ "${TRAINYARD_SKIP_SETUP:-0}" = 1 ]; then RUNTIME+=(--skip-setup); fi

# The pre-timeout USR1 (and scancel's TERM, or Ctrl-C) go to the runtime, which stops the trainer cleanly and syncs.
# bash runs traps only between commands, so the runtime runs in the background and the shell waits for it.
child=""
signalled=""
interrupted=0
# shellcheck disable=SC2329  # called by the traps below
forward() {
    signalled="$1"
    interrupted=1
    echo "trainyard: got SIG$1, asking the runtime to stop the trainer and sync the last checkpoint"
    if [ -n "$child" ]; then kill -s "$1" "$child" 2>/dev/null; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT

"${RUNTIME[@]}" &
child=$!
wait "$child"
code=$?
while [ "$interrupted" = 1 ] && [ "$code" -gt 128 ]; do
    interrupted=0
    wait "$child"   # a trap interrupted the wait: the runtime is still syncing; its exit status is kept until then
    code=$?
done
echo "trainyard: runtime exited with code $code"

if [ "$code" = 0 ] || [ -z "${SLURM_JOB_ID:-}" ]; then
    exit "$code"
fi
if [ "$signalled" = USR1 ]; then
    echo "trainyard: stopped before the time limit; requeueing job $SLURM_JOB_ID (the next start resumes)"
    scontrol requeue "$SLURM_JOB_ID"
elif [ -n "$signalled" ]; then
    echo "trainyard: stopped by SIG$signalled (cancelled); not requeued"
else
    FAILURES_FILE="$RUN_DIR/slurm-failures-$SLURM_JOB_ID"
    failures=$(( $(cat "$FAILURES_FILE" 2>/dev/null || echo 0) + 1 ))
    echo "$failures" >"$FAILURES_FILE"
    if [ "$failures" -le "$MAX_FAILURES" ]; then
        echo "trainyard: failed (exit $code); requeueing job $SLURM_JOB_ID, failure $failures of at most $MAX_FAILURES"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "trainyard: failed (exit $code) $failures times; not requeued again (TRAINYARD_MAX_FAILURES=$MAX_FAILURES)"
    fi
fi
exit "$code"
