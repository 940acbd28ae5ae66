#!/usr/bin/env bash
# The executable of a CHTC job (chtc/train.sub): runs the Trainyard runtime bundle on job.json in the job's sandbox.
#
#   train_wrapper.sh [config_name] [exp_name]
#
# - The submit variables config_name / exp_name override the ones in job.json (openpi), so one run folder serves
#   `condor_submit chtc/train.sub config_name=... exp_name=...`.
# - Resume: after an eviction HTCondor brings the transferred-back checkpoints into the new sandbox. When a complete
#   step is there the runtime resumes from it (openpi `--resume`); it never starts over with `--overwrite` on top of
#   one. A checkpoint folder without a complete step (evicted before the first save) is cleared first, because openpi
#   refuses to start fresh into an existing folder.
# - The time limit counts from the job's start, not from submission: the deadline is set here.
# - A staged dataset archive (*.lerobot.tar.gz, from chtc/stage_data.sh) is unpacked into $HF_LEROBOT_HOME.
# - HTCondor's SIGTERM (eviction, condor_rm) is passed on to the runtime, which stops the trainer cleanly.
# - LeRobot's checkpoints/last symlink leaves the sandbox as last.step (HTCondor transfers no directory symlinks).
#
# Environment (all optional): TRAINYARD_PYTHON (python for the runtime, default python3), TRAINYARD_RUNTIME (bundle
# when none was transferred; the Trainyard images set it), TRAINYARD_SKIP_SETUP (1: use the image's environment,
# the default; 0: let the runtime build one), OPENPI_DIR (openpi checkout in the image).
set -euo pipefail

config_name="${1:-}"
exp_name="${2:-}"

sandbox="${_CONDOR_SCRATCH_DIR:-$PWD}"
cd "$sandbox"

log() { printf '[train_wrapper %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Docker-universe jobs run under the submitter's uid, which may have no writable home in the image.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
  export HOME="$sandbox"
fi
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$sandbox/.cache}"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$sandbox/.cache/uv}"
export HF_LEROBOT_HOME="${HF_LEROBOT_HOME:-$sandbox/lerobot_home}"
export OPENPI_DATA_HOME="${OPENPI_DATA_HOME:-$sandbox/.cache/openpi}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
export PYTHONUNBUFFERED=1

python="${TRAINYARD_PYTHON:-python3}"
bundle="$sandbox/trainyard_runtime.pyz"
if [ ! -f "$bundle" ]; then
  bundle="${TRAINYARD_RUNTIME:-}"
fi
if [ -z "$bundle" ] || [ ! -f "$bundle" ]; then
  log "no trainyard_runtime.pyz in the sandbox and TRAINYARD_RUNTIME is not set: run \`invoke chtc.render\` first"
  exit 2
fi
if [ ! -f job.json ]; then
  log "no job.json in the sandbox: run \`invoke chtc.render --config <yaml> --exp-name <exp>\` and submit its train.sub"
  exit 2
fi

shopt -s nullglob
for archive in ./*.lerobot.tar.gz; do
  log "unpacking dataset $archive into $HF_LEROBOT_HOME"
  mkdir -p "$HF_LEROBOT_HOME"
  tar -xzf "$archive" -C "$HF_LEROBOT_HOME"
  rm -f "$archive"
done
shopt -u nullglob

# Settle job.json for this sandbox: names from the submit, absolute checkpoint folder, openpi checkout, deadline.
"$python" - job.json "$config_name" "$exp_name" <<'PY'
import json, os, shutil, sys, time

path, config_name, exp_name = sys.argv[1:4]
with open(path) as f:
    doc = json.load(f)
cfg, derived, machine = doc["config"], doc["derived"], doc.get("machine") or {}
sandbox = os.getcwd()


def say(message):
    print(f"[train_wrapper] {message}", flush=True)


if cfg["framework"] == "openpi":
    o = cfg["openpi"]
    o["config_name"] = config_name or o["config_name"]
    o["exp_name"] = exp_name or o.get("exp_name") or derived["run_id"]
    base = o.get("checkpoint_base_dir") or "checkpoints"
    root = base.split("/")[0]
    o["checkpoint_base_dir"] = base if os.path.isabs(base) else os.path.join(sandbox, base)
    repo = o.get("repo_dir") or "openpi"
    if not os.path.isabs(repo):
        here = os.path.join(sandbox, repo)
        repo = here if os.path.isdir(here) or not os.environ.get("OPENPI_DIR") else os.environ["OPENPI_DIR"]
    o["repo_dir"] = repo
    exp_dir = os.path.join(o["checkpoint_base_dir"], o["config_name"], o["exp_name"])
    steps = sorted(int(n) for n in os.listdir(exp_dir) if n.isdigit()) if os.path.isdir(exp_dir) else []
    if steps:
        say(f"checkpoint step {steps[-1]} is in {exp_dir} (transferred back): resuming from it")
    elif os.path.isdir(exp_dir):
        say(f"{exp_dir} holds no complete checkpoint: clearing it and starting fresh")
        shutil.rmtree(exp_dir)
    else:
        say(f"no checkpoint in {exp_dir}: starting fresh")
else:
    root = derived["output_dir"].split("/")[0]
# HTCondor holds a job whose transfer_output_files is missing: the folder always exists.
os.makedirs(os.path.join(sandbox, root), exist_ok=True)

limit = machine.get("time_limit_seconds")
derived["deadline_epoch"] = time.time() + float(limit) if limit else None
if limit:
    say(f"the run stops after {float(limit) / 3600:.1f} h (checkpoint synced and transferred back first)")
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
os.replace(tmp, path)
PY

# HTCondor cannot transfer a symlink to a directory back (it holds the job: "Transfer of symlinks to directories is
# not supported"), and LeRobot's layout has one: checkpoints/last -> <step>. It leaves the sandbox as last.step, a
# file naming the step, and is a link again when the checkpoints come back into a sandbox.
link_last() {
  local file
  while IFS= read -r -d '' file; do
    ln -sfn "$(cat "$file")" "${file%.step}" && rm -f "$file"
  done < <(find . -path ./.cache -prune -o -type f -name last.step -print0)
}
unlink_last() {
  local link
  while IFS= read -r -d '' link; do
    basename "$(readlink "$link")" > "$link.step" && rm -f "$link"
  done < <(find . -path ./.cache -prune -o -type l -name last -print0)
}
link_last

args=(job.json --mode=auto)
if [ "${TRAINYARD_SKIP_SETUP:-1}" = "1" ]; then
  args+=(--skip-setup)
fi

log "starting: $python $bundle ${args[*]}"
"$python" "$bundle" "${args[@]}" &
child=$!

# shellcheck disable=SC2329  # called from the traps below
forward() {
  log "received SIG$1: asking the runtime to stop (it syncs the last checkpoint first)"
  kill -s "$1" "$child" 2>/dev/null || true
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward USR1' USR1

status=0
while true; do
  if wait "$child"; then
    status=0
  else
    status=$?
  fi
  # `wait` also returns when a trapped signal arrives; only a finished runtime ends the loop.
  if ! kill -0 "$child" 2>/dev/null; then
    break
  fi
done
if [ "$status" -gt 128 ]; then
  # Interrupted by a signal just as the runtime ended: its own status is still there to collect.
  if wait "$child" 2>/dev/null; then status=0; else late=$?; [ "$late" -eq 127 ] || status=$late; fi
fi
unlink_last
log "runtime exited with status $status"
exit "$status"
