#!/usr/bin/env bash
# Stage a LeRobot dataset to CHTC's /staging, for jobs to read (seed 003, step 3).
#
#   chtc/stage_data.sh <netid> [dataset_dir]
#
# dataset_dir defaults to $HF_LEROBOT_HOME/local/collab (what the seed's converter writes). It is packed into one
# archive, <owner>__<name>.lerobot.tar.gz (CHTC asks for few large files in /staging), and copied with rsync over
# SSH to /staging/<netid>/openpi/data/ on the transfer host; an interrupted copy resumes. Submit with
#   condor_submit <train.sub> ... dataset=<archive name>
# and the wrapper unpacks it into $HF_LEROBOT_HOME/<owner>/<name> in the job.
#
# Environment: CHTC_TRANSFER_HOST (transfer.chtc.wisc.edu), CHTC_SSH_PORT (22), CHTC_SSH_USER (the netid),
# CHTC_SSH_IDENTITY (a private key), CHTC_SSH_OPTS (more ssh options), CHTC_STAGING_ROOT (/staging).
set -euo pipefail

usage() { echo "usage: $0 <netid> [dataset_dir]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
netid="$1"
[ -n "$netid" ] || usage
lerobot_home="${HF_LEROBOT_HOME:-$HOME/.cache/huggingface/lerobot}"
dataset_dir="${2:-$lerobot_home/local/collab}"

if [ ! -d "$dataset_dir" ]; then
  echo "error: no dataset folder $dataset_dir — convert it first (invoke data.convert) or pass its path" >&2
  exit 2
fi
if [ ! -f "$dataset_dir/meta/info.json" ]; then
  echo "warning: $dataset_dir has no meta/info.json; is it a LeRobot dataset?" >&2
fi

host="${CHTC_TRANSFER_HOST:-transfer.chtc.wisc.edu}"
port="${CHTC_SSH_PORT:-22}"
user="${CHTC_SSH_USER:-$netid}"
remote_dir="${CHTC_STAGING_ROOT:-/staging}/$netid/openpi/data"

dataset_dir="$(cd "$dataset_dir" && pwd)"
name="$(basename "$dataset_dir")"
owner_dir="$(dirname "$dataset_dir")"
owner="$(basename "$owner_dir")"
archive_name="${owner}__${name}.lerobot.tar.gz"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "packing $dataset_dir -> $archive_name"
tar -C "$(dirname "$owner_dir")" -czf "$work/$archive_name" "$owner/$name"

ssh_cmd="ssh -p $port -o BatchMode=${CHTC_SSH_BATCH:-no}"
if [ -n "${CHTC_SSH_IDENTITY:-}" ]; then
  ssh_cmd="$ssh_cmd -i '${CHTC_SSH_IDENTITY}' -o IdentitiesOnly=yes"
fi
if [ -n "${CHTC_SSH_OPTS:-}" ]; then
  ssh_cmd="$ssh_cmd ${CHTC_SSH_OPTS}"
fi

echo "copying to $user@$host:$remote_dir/"
rsync -a --partial --progress -e "$ssh_cmd" --rsync-path="mkdir -p '$remote_dir' && rsync" \
  "$work/$archive_name" "$user@$host:$remote_dir/"

echo "staged: $remote_dir/$archive_name"
echo "submit with: condor_submit <train.sub> config_name=<config> exp_name=<exp> dataset=$archive_name"
