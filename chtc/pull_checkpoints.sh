#!/usr/bin/env bash
# Bring a run's checkpoints back from CHTC's /staging to this machine, for serving (seed 003, step 5).
#
#   chtc/pull_checkpoints.sh <netid> <config_name> <exp_name>
#
# Copies /staging/<netid>/openpi/checkpoints/<config_name>/<exp_name>/ (where train.sub's transfer_output_remaps
# puts them) to ./checkpoints/<config_name>/<exp_name>/ with rsync over SSH; a second run copies only what changed.
# Then prints the command that serves the newest step.
#
# Environment: CHTC_TRANSFER_HOST (transfer.chtc.wisc.edu), CHTC_SSH_PORT (22), CHTC_SSH_USER (the netid),
# CHTC_SSH_IDENTITY (a private key), CHTC_SSH_OPTS (more ssh options), CHTC_STAGING_ROOT (/staging),
# CHECKPOINTS_DIR (./checkpoints), CHTC_PULL_FOR_INFERENCE=1 (skip train_state/: optimizer state, not needed to serve).
set -euo pipefail

if [ $# -ne 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
  echo "usage: $0 <netid> <config_name> <exp_name>" >&2
  exit 2
fi
netid="$1"
config_name="$2"
exp_name="$3"

host="${CHTC_TRANSFER_HOST:-transfer.chtc.wisc.edu}"
port="${CHTC_SSH_PORT:-22}"
user="${CHTC_SSH_USER:-$netid}"
remote="${CHTC_STAGING_ROOT:-/staging}/$netid/openpi/checkpoints/$config_name/$exp_name/"
local_dir="${CHECKPOINTS_DIR:-checkpoints}/$config_name/$exp_name"

ssh_cmd="ssh -p $port -o BatchMode=${CHTC_SSH_BATCH:-no}"
if [ -n "${CHTC_SSH_IDENTITY:-}" ]; then
  ssh_cmd="$ssh_cmd -i '${CHTC_SSH_IDENTITY}' -o IdentitiesOnly=yes"
fi
if [ -n "${CHTC_SSH_OPTS:-}" ]; then
  ssh_cmd="$ssh_cmd ${CHTC_SSH_OPTS}"
fi
filters=()
if [ "${CHTC_PULL_FOR_INFERENCE:-0}" = "1" ]; then
  filters+=(--exclude "train_state/")
fi

mkdir -p "$local_dir"
echo "copying $user@$host:$remote -> $local_dir/"
rsync -a --partial --progress -e "$ssh_cmd" ${filters[@]+"${filters[@]}"} "$user@$host:$remote" "$local_dir/"

latest=""
for step_dir in "$local_dir"/*/; do
  step="$(basename "$step_dir")"
  case "$step" in
    *[!0-9]*) continue ;;
  esac
  if [ -z "$latest" ] || [ "$step" -gt "$latest" ]; then
    latest="$step"
  fi
done
if [ -z "$latest" ]; then
  echo "no complete checkpoint step in $local_dir yet" >&2
  exit 1
fi
echo "newest checkpoint: $local_dir/$latest"
echo "serve it:  invoke local.serve --checkpoint $local_dir/$latest --config-name $config_name"
