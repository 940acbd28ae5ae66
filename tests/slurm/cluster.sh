#!/usr/bin/env bash
# A real SLURM cluster on this machine, for the test suite (tests/fixtures_slurm.py) and for humans: one node on this
# host (the default), or TRAINYARD_SLURM_NODES=N >= 2 nodes, each in its own network and UTS namespace (hostname
# tynode<i>, address $TRAINYARD_SLURM_SUBNET.<10+i> on a veth link to a bridge that only this cluster uses; nothing
# routed anywhere else), all sharing this machine's filesystem as a cluster shares NFS; slurmctld on this host at the
# bridge's address (.1), so sbatch/squeue here are the login node's.
#
#   tests/slurm/cluster.sh install   apt-get install slurm-wlm + munge if missing (root; idempotent, quiet)
#   tests/slurm/cluster.sh start     write configs, start munged, slurmctld, slurmd; wait for the node to be idle
#   tests/slurm/cluster.sh stop      cancel jobs, stop the daemons; no process of this cluster is left
#   tests/slurm/cluster.sh status    daemons and `sinfo`; exit 0 only if all three daemons are up
#   tests/slurm/cluster.sh env       print `export SLURM_CONF=...` (use: eval "$(tests/slurm/cluster.sh env)")
#
# WHERE THE CONFIG LIVES: nothing is written under /etc. Everything is under the state dir
#   $TRAINYARD_SLURM_DIR (default /tmp/trainyard-slurm): etc/slurm.conf, etc/gres.conf, munge/ (own key + socket),
#   dev/nvidia0..3 (fake GPU device files), state/, log/, run/.
# So every slurm command (sinfo, sbatch, squeue, scontrol, scancel, ...) must run with
#   SLURM_CONF=$TRAINYARD_SLURM_DIR/etc/slurm.conf
# exported. Jobs inherit it (sbatch's default --export=ALL), so `scontrol requeue` inside a job works too.
# The cluster talks to its own munged through AuthInfo=socket=..., so a system munged, if any, is left alone.
#
# Knobs (environment): TRAINYARD_SLURM_DIR, TRAINYARD_SLURM_CTLD_PORT (6817), TRAINYARD_SLURM_SLURMD_PORT (6818),
#   TRAINYARD_SLURM_START_TIMEOUT (seconds to wait for idle nodes, 60), TRAINYARD_SLURM_NODES (1),
#   TRAINYARD_SLURM_SUBNET (10.77.0: the nodes' /24 when NODES >= 2).
# Daemons run as root (SlurmUser=root); `start` and `install` need root.
set -euo pipefail

DIR="${TRAINYARD_SLURM_DIR:-/tmp/trainyard-slurm}"
CTLD_PORT="${TRAINYARD_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${TRAINYARD_SLURM_SLURMD_PORT:-6818}"
START_TIMEOUT="${TRAINYARD_SLURM_START_TIMEOUT:-60}"
NODES="${TRAINYARD_SLURM_NODES:-1}"
SUBNET="${TRAINYARD_SLURM_SUBNET:-10.77.0}"
CONF="$DIR/etc/slurm.conf"
MUNGE_SOCKET="$DIR/munge/munge.socket"
NODE="$(hostname -s)"
BRIDGE=tynodebr  # NODES >= 2: the bridge, the namespaces tynode<i>, their host-side veth ends tynodeh<i>
if (( NODES >= 2 )); then
    CTLD_ADDR="$SUBNET.1"
    NODE_NAMES=(); for i in $(seq "$NODES"); do NODE_NAMES+=("tynode$i"); done
else
    CTLD_ADDR=127.0.0.1
    NODE_NAMES=("$NODE")
fi
node_addr() { if (( NODES >= 2 )); then echo "$SUBNET.$(( 10 + $1 ))"; else echo 127.0.0.1; fi; }
export SLURM_CONF="$CONF"
# Marks the daemons (and so every slurmstepd) of this cluster, so `stop` can find leftovers by their environment.
export TRAINYARD_SLURM_CLUSTER="$DIR"

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

alive() {  # alive PID -> 0 if PID is a live process (a zombie, dead but not yet reaped, answers kill -0 too)
    kill -0 "$1" 2>/dev/null || return 1
    [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

pid_alive() {  # pid_alive FILE -> 0 if the pid in FILE is a live process
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid"
}

cmd_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "slurm is not installed and installing it needs root: apt-get install slurm-wlm munge"
    local out; out="$(mktemp)"
    log "installing slurm-wlm and munge with apt-get"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge; } >"$out" 2>&1; then
        cat "$out" >&2; rm -f "$out"; die "apt-get install slurm-wlm munge failed"
    fi
    rm -f "$out"
}

write_configs() {
    local cpus mem_mb
    cpus="$(nproc)"
    mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    mem_mb=$(( mem_mb * 90 / 100 ))   # a bit below the real memory, or slurmd would drain the node
    mkdir -p "$DIR"/{etc,munge,dev,state/ctld,state/d,log,run}
    chmod 0755 "$DIR" "$DIR"/etc "$DIR"/dev
    chmod 0700 "$DIR"/munge
    # Fake GPUs: slurmd wants character devices ("is not a valid character or block device" otherwise). They are
    # clones of /dev/null (major 1, minor 3): harmless to open, and nothing to constrain without cgroups.
    # Where mknod is not allowed, symlinks to /dev/null do the same.
    local i
    for i in 0 1 2 3; do
        [[ -c "$DIR/dev/nvidia$i" ]] && continue
        rm -f "$DIR/dev/nvidia$i"
        mknod -m 0666 "$DIR/dev/nvidia$i" c 1 3 2>/dev/null || ln -s /dev/null "$DIR/dev/nvidia$i"
    done

    cat >"$CONF.new" <<EOF
# Written by tests/slurm/cluster.sh -- edits are overwritten on the next start.
ClusterName=trainyard
SlurmctldHost=$NODE($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s; 5 is the minimum).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Re-run the schedulers every 2 s (defaults 60 s / 30 s), so a requeued job starts soon after it is eligible.
SchedulerParameters=sched_interval=2,bf_interval=2
GresTypes=gpu
ReturnToService=2
JobRequeue=1
MessageTimeout=5
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
$(for i in "${!NODE_NAMES[@]}"; do
    echo "NodeName=${NODE_NAMES[$i]} NodeAddr=$(node_addr $(( i + 1 ))) CPUs=$cpus RealMemory=$mem_mb Gres=gpu:4 Features=a100,h100 State=UNKNOWN"
done)
PartitionName=debug Nodes=$(IFS=,; echo "${NODE_NAMES[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
    {
        echo "# Written by tests/slurm/cluster.sh: four fake GPUs per node."
        for name in "${NODE_NAMES[@]}"; do echo "NodeName=$name Name=gpu File=$DIR/dev/nvidia[0-3]"; done
    } >"$DIR/etc/gres.conf.new"
    # The nodes' names, as a cluster's DNS would give them (bind-mounted over /etc/hosts inside each node only).
    {
        echo "127.0.0.1 localhost"
        echo "$CTLD_ADDR $NODE"
        for i in "${!NODE_NAMES[@]}"; do echo "$(node_addr $(( i + 1 ))) ${NODE_NAMES[$i]}"; done
    } >"$DIR/etc/hosts"
    mv -f "$CONF.new" "$CONF"
    mv -f "$DIR/etc/gres.conf.new" "$DIR/etc/gres.conf"
    # An empty cgroup.conf keeps slurmd from reading the system's.
    [[ -e "$DIR/etc/cgroup.conf" ]] || echo "# unused: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none" \
        >"$DIR/etc/cgroup.conf"
}

start_munged() {
    local key="$DIR/munge/munge.key"
    if [[ ! -s "$key" ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key" >/dev/null 2>&1 || true
        fi
        [[ -s "$key" ]] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chmod 0600 "$key"
    if pid_alive "$DIR/run/munged.pid" && [[ -S "$MUNGE_SOCKET" ]]; then return 0; fi
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    munged --force --socket="$MUNGE_SOCKET" --key-file="$key" --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start; see $DIR/log/munged.log"
    local i
    for i in $(seq 50); do
        if munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "munged does not answer on $MUNGE_SOCKET; see $DIR/log/munged.log"
}

slurmd_registered_at() {  # slurmd_registered_at NAME: epoch of its SlurmdStartTime as the controller knows it, 0 if none
    local t
    t="$(scontrol -o show node "$1" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)"
    date -d "$t" +%s 2>/dev/null || echo 0
}

node_state() { sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n1; }

show_logs() {
    local f
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd-*.log "$DIR"/log/munged.log; do
        [[ -f "$f" ]] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
    done
    return 0
}

setup_network() {  # NODES >= 2: the bridge (this host: $CTLD_ADDR) and one namespace per node on a veth link to it
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr show dev "$BRIDGE" | grep -q "inet $CTLD_ADDR/" || ip addr add "$CTLD_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i
    for i in $(seq "$NODES"); do
        [[ -e "/run/netns/tynode$i" ]] || ip netns add "tynode$i"
        if ! ip link show "tynodeh$i" >/dev/null 2>&1; then
            ip link add "tynodeh$i" type veth peer name eth0 netns "tynode$i"
            ip -n "tynode$i" addr add "$(node_addr "$i")/24" dev eth0
        fi
        ip link set "tynodeh$i" master "$BRIDGE" up
        ip -n "tynode$i" link set lo up
        ip -n "tynode$i" link set eth0 up
    done
}

teardown_network() {
    local i
    for i in $(seq "$NODES"); do
        ip link del "tynodeh$i" 2>/dev/null || true
        [[ -e "/run/netns/tynode$i" ]] && ip netns del "tynode$i" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

start_slurmd() {  # start_slurmd INDEX: this host's slurmd, or node INDEX's in its namespaces (own hostname, /etc/hosts)
    local name="${NODE_NAMES[$(( $1 - 1 ))]}"
    if (( NODES >= 2 )); then
        mkdir -p "$DIR/state/d-$name"
        # nsenter, not `ip netns exec`: that one mounts a sysfs of its own, without /sys/fs/cgroup, which slurmd needs
        nsenter --net="/run/netns/tynode$1" unshare --uts --mount --propagation private /bin/sh -c \
            "hostname $name && mount --bind $DIR/etc/hosts /etc/hosts && exec slurmd -c -f $CONF -N $name"
    else
        mkdir -p "$DIR/state/d-$name"
        slurmd -c -f "$CONF" -N "$name"
    fi
}

cmd_start() {
    command -v slurmctld >/dev/null || die "slurm is not installed: run '$0 install' first"
    [[ "$(id -u)" == 0 ]] || die "start needs root (the daemons run as SlurmUser=root)"
    local ctld_up=0 slurmd_up=0 name i
    pid_alive "$DIR/run/slurmctld.pid" && ctld_up=1
    slurmd_up=1
    for name in "${NODE_NAMES[@]}"; do pid_alive "$DIR/run/slurmd-$name.pid" || slurmd_up=0; done
    if (( ctld_up && slurmd_up )) && pid_alive "$DIR/run/munged.pid" && all_idle; then
        return 0   # already running
    fi
    if (( ! ctld_up )); then
        # (Re)write configs only when nothing runs, so a live cluster never sees its config change underneath;
        # and start the logs afresh, so an error shown is from this start.
        write_configs
        : >"$DIR/log/slurmctld.log"; rm -f "$DIR"/log/slurmd-*.log
    fi
    if (( NODES >= 2 )); then setup_network; fi
    start_munged
    if (( ! ctld_up )); then
        # -c: a fresh controller each start (no jobs left from an earlier session).
        slurmctld -c -f "$CONF" || { show_logs; die "slurmctld did not start"; }
    fi
    local slurmd_t0; slurmd_t0="$(date +%s)"
    for i in $(seq "${#NODE_NAMES[@]}"); do
        pid_alive "$DIR/run/slurmd-${NODE_NAMES[$(( i - 1 ))]}.pid" && continue
        start_slurmd "$i" || { show_logs; die "slurmd of ${NODE_NAMES[$(( i - 1 ))]} did not start"; }
    done
    local deadline=$(( SECONDS + START_TIMEOUT )) state="" ready resumed=""
    while (( SECONDS < deadline )); do
        ready=1
        for name in "${NODE_NAMES[@]}"; do
            state="$(node_state "$name")"
            case "$state" in
                idle|mixed|allocated)
                    # The controller may report a node idle from its saved state before its slurmd registered.
                    (( "$(slurmd_registered_at "$name")" >= slurmd_t0 - 1 || slurmd_up )) || ready=0 ;;
                drained*|draining*|down)
                    ready=0
                    # A node left drained/down by an earlier run: bring it back once.
                    if [[ " $resumed " != *" $name "* ]]; then
                        scontrol update NodeName="$name" State=RESUME >/dev/null 2>&1 || true; resumed="$resumed $name"
                    fi ;;
                *) ready=0 ;;
            esac
        done
        (( ready )) && return 0
        sleep 0.5
    done
    show_logs
    die "nodes ${NODE_NAMES[*]} not all idle after ${START_TIMEOUT}s (last state: '${state:-no answer}')"
}

all_idle() {
    local name
    for name in "${NODE_NAMES[@]}"; do
        case "$(node_state "$name")" in idle|mixed|allocated) ;; *) return 1 ;; esac
    done
}

# Processes of this cluster that outlive their daemon (slurmstepd, job processes): found by the
# TRAINYARD_SLURM_CLUSTER / SLURM_CONF in their environment, never by name alone.
cluster_leftovers() {
    local f pid
    grep -lzxsF -e "TRAINYARD_SLURM_CLUSTER=$DIR" -e "SLURM_CONF=$CONF" /proc/[0-9]*/environ 2>/dev/null \
    | while read -r f; do
        pid="${f#/proc/}"; pid="${pid%/environ}"
        [[ "$pid" == "$$" || "$(cat "/proc/$pid/comm" 2>/dev/null)" == cluster.sh ]] && continue
        alive "$pid" || continue
        # Only slurm's own processes and jobs (SLURM_JOB_ID set), not a shell that merely exported SLURM_CONF.
        if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == slurm* ]] || grep -qzs '^SLURM_JOB_ID=' "$f"; then
            echo "$pid"
        fi
    done
    return 0
}

stop_pidfile() {  # stop_pidfile NAME: TERM, wait up to 10 s, then KILL
    local f="$DIR/run/$1.pid" pid i
    pid_alive "$f" || { rm -f "$f"; return 0; }
    pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$f"
}

cmd_stop() {
    if pid_alive "$DIR/run/slurmctld.pid" && command -v squeue >/dev/null; then
        local jobs i
        jobs="$(squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')" || jobs=""
        if [[ -n "${jobs// /}" ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for i in $(seq 40); do
                [[ -z "$(squeue -h -o '%i' 2>/dev/null)" ]] && break; sleep 0.25
            done
        fi
    fi
    local name
    for name in "${NODE_NAMES[@]}"; do stop_pidfile "slurmd-$name"; done
    stop_pidfile slurmctld
    local pids i
    pids="$(cluster_leftovers)"
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for i in $(seq 30); do [[ -z "$(cluster_leftovers)" ]] && break; sleep 0.1; done
        pids="$(cluster_leftovers)"
        # shellcheck disable=SC2086
        [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    fi
    stop_pidfile munged
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    if (( NODES >= 2 )); then teardown_network; fi
}

cmd_status() {
    local name rc=0
    for name in munged slurmctld "${NODE_NAMES[@]/#/slurmd-}"; do
        if pid_alive "$DIR/run/$name.pid"; then
            echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"
        else
            echo "$name: stopped"; rc=3
        fi
    done
    echo "SLURM_CONF=$CONF"
    if (( rc == 0 )); then sinfo -N -o '%N %T %c %m %G %f' 2>&1 || rc=3; fi
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
