#!/usr/bin/env bash
# A real single-node SLURM cluster for tests, on this machine, in a second:
#   tests/slurm/cluster.sh start DIR   start munged, slurmctld and slurmd (as root)
#                                      with every file under DIR; prints the
#                                      SLURM_CONF to export for sbatch/squeue/scontrol
#   tests/slurm/cluster.sh stop DIR    stop them by the PIDs recorded in DIR/pids
# Settings that make it work in a container and requeue quickly:
# proctrack/linuxproc and task/none (no cgroups), select/cons_tres (one CPU per
# task), MpiDefault=pmix (Debian's OpenMPI under srun), JobRequeue=1, and
# cred_expire=5 + sched_interval=2,bf_interval=1 so that a requeued job starts
# again after ~7 s instead of a minute (slurmd refuses a job id whose
# credential has not expired yet).
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }

# Two free TCP ports (slurmctld, slurmd), so parallel test runs do not collide.
free_ports() {
  /usr/bin/python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

start() {
  local d=$1
  [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs jobs as their owner)"
  for p in munged slurmctld slurmd sbatch; do
    command -v $p >/dev/null || die "$p not found: apt-get install slurm-wlm munge (see shardlm.sh)"
  done
  mkdir -p "$d"/{munge,state,spool,log}
  chmod 700 "$d" "$d/munge"
  d=$(cd "$d" && pwd)
  : > "$d/pids"
  local host; host=$(hostname -s)
  # (nproc would follow OMP_NUM_THREADS.) At least 4 CPUs, so a 2-task job fits
  # a small CI machine: config_overrides lets slurmd believe the configuration.
  local cpus; cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  [ "$cpus" -ge 4 ] || cpus=4
  read -r ctld_port slurmd_port < <(free_ports)

  # munge: a fresh key, its socket and logs under DIR.
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$d/munge/munge.key"
  munged --foreground --force --key-file="$d/munge/munge.key" \
    --socket="$d/munge/munge.socket" --pid-file="$d/munge/munged.pid" \
    --log-file="$d/log/munged.log" --seed-file="$d/munge/seed" > "$d/log/munged.out" 2>&1 &
  echo "munged $!" >> "$d/pids"
  for _ in $(seq 50); do [ -S "$d/munge/munge.socket" ] && break; sleep 0.1; done
  [ -S "$d/munge/munge.socket" ] || die "munged did not start: $(cat "$d/log/munged."* 2>/dev/null)"

  cat > "$d/slurm.conf" <<CONF
ClusterName=shardlmtest
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${d}/munge/munge.socket,cred_expire=5
StateSaveLocation=${d}/state
SlurmdSpoolDir=${d}/spool
SlurmctldPidFile=${d}/slurmctld.pid
SlurmdPidFile=${d}/slurmd.pid
SlurmctldLogFile=${d}/log/slurmctld.log
SlurmdLogFile=${d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
JobRequeue=1
SchedulerParameters=sched_interval=2,bf_interval=1
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=300
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$d/slurm.conf"
  slurmctld -D -i -f "$SLURM_CONF" > "$d/log/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >> "$d/pids"
  slurmd -D -N "$host" -f "$SLURM_CONF" > "$d/log/slurmd.out" 2>&1 &
  echo "slurmd $!" >> "$d/pids"
  # Ready when the node is idle.
  for _ in $(seq 100); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
      echo "SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.2
  done
  echo "--- slurmctld.log" >&2; tail -20 "$d/log/slurmctld.log" >&2 || true
  echo "--- slurmd.log" >&2; tail -20 "$d/log/slurmd.log" >&2 || true
  stop "$d"
  die "the node did not become idle in 20 s (logs above, all under $d/log)"
}

# TERM each daemon, newest first; KILL what is still there after 5 s.
stop() {
  local d=$1
  [ -f "$d/pids" ] || return 0
  local pids; pids=$(awk '{print $2}' "$d/pids" | tac)
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $pids; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -f "$d/pids"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start|stop DIR" ;;
esac
