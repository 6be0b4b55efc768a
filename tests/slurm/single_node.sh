#!/usr/bin/env bash
# A real single-node SLURM on this machine, listening on 127.0.0.1 only, for the slow test
# tests/test_slurm.py (Debian's slurm-wlm and munge; run as root):
#   tests/slurm/single_node.sh start    # install if needed, configure, start munged, slurmctld, slurmd
#   tests/slurm/single_node.sh stop     # stop the three daemons
# The node is this machine: its CPUs and memory, one partition "debug", no accounting database.
set -euo pipefail

NODE=$(hostname -s)
CONF=/etc/slurm/slurm.conf

install() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
    fi
}

configure() {
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    chown munge:munge /run/munge
    local cpus memory
    cpus=$(nproc)
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat > "$CONF" <<CONFIG
# Written by tests/slurm/single_node.sh: one node, this machine, 127.0.0.1 only.
ClusterName=hyperexp
SlurmctldHost=$NODE(127.0.0.1)
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
KillWait=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONFIG
}

start() {
    install
    configure
    running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
    running /run/slurmctld.pid || slurmctld
    running /run/slurmd.pid || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            sinfo
            return 0
        fi
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "single_node.sh: the node did not come up; see /var/log/slurm/" >&2
    sinfo >&2 || true
    return 1
}

stop() {  # by the pids the daemons wrote
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        if [ -s "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
}

running() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
