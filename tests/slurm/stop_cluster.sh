#!/usr/bin/env bash
# Stop the test cluster started by tests/slurm/start_cluster.sh.
#
# Only processes recorded in $MSID_SLURM_DIR/pids/<daemon>.pid are signalled, and only if
# the live process still has the expected name (guards against a recycled PID). Jobs still
# queued/running on this cluster are cancelled first so no slurmstepd is left behind.
#   tests/slurm/stop_cluster.sh           stop the daemons, keep the state dir (DB, logs)
#   tests/slurm/stop_cluster.sh --purge   also delete the state dir
set -uo pipefail

STATE=${MSID_SLURM_DIR:-/tmp/msid-slurm}
PIDS=$STATE/pids
export SLURM_CONF=$STATE/etc/slurm.conf
purge=0
[[ ${1:-} == --purge ]] && purge=1

say() { echo "[msid-slurm stop] $*"; }

# pid_of <name> <expected comm>: print the recorded pid if it is alive and is that program
pid_of() {
  local f=$PIDS/$1.pid pid comm
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$2" ]] || { say "$1: pid $pid is now '$comm', not $2; leaving it alone"; return 1; }
  echo "$pid"
}

# cancel this cluster's jobs while slurmctld is still up
if pid_of slurmctld slurmctld >/dev/null; then
  jobs=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [[ -n ${jobs// /} ]]; then
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs || true
    sleep 2
  fi
fi

# reverse start order; name:comm
for entry in slurmd:slurmd slurmctld:slurmctld slurmdbd:slurmdbd mariadb:mariadbd munged:munged; do
  name=${entry%%:*} comm=${entry#*:}
  if pid=$(pid_of "$name" "$comm"); then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not exit after 30 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$PIDS/$name.pid"
done

if ((purge)); then
  say "removing $STATE"
  rm -rf "$STATE"
  # drop the /etc/slurm/slurm.conf symlink if it points into the removed state dir
  [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$STATE/"* ]] && rm -f /etc/slurm/slurm.conf
fi
say "done"
