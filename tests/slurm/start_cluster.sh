#!/usr/bin/env bash
# Single-node Slurm test cluster for msid CI (Debian 12 / Slurm 22.05, root, no systemd).
#
# Brings up, in this order, each as a plain background daemon:
#   munged -> mariadbd (private datadir) -> slurmdbd -> slurmctld -> slurmd
# Everything the cluster writes lives in one state dir (default /tmp/msid-slurm):
#   etc/    slurm.conf gres.conf slurmdbd.conf      log/   daemon logs (munged's and mariadbd's: in munge/, mysql/)
#   munge/  key + socket + log     mysql/  MariaDB datadir + socket     spool/  ctld + slurmd
#   pids/   <daemon>.pid for every daemon started by this script (stop_cluster.sh reads them)
#   env.sh  `source` it to point Slurm clients at this cluster (export SLURM_CONF=...)
# /etc/slurm/slurm.conf becomes a symlink to etc/slurm.conf, because the jobstep
# executor strips SLURM_* (incl. SLURM_CONF) before its nested `srun` inside each job.
#
# Idempotent: daemons that are already running (pid file alive) are left alone; a changed
# slurm.conf/gres.conf restarts only slurmctld + slurmd. Exits 0 once `sinfo` shows the
# node idle and `sacct` answers.
#
# Cluster: partitions `cpu` (default) and `gpu`, one node with the machine's CPUs and
# ~90% of its memory, one fake GPU (GRES gpu:1 backed by /dev/null) counted in accounting
# (AccountingStorageTRES=gres/gpu => `sacct -o AllocTRES` shows gres/gpu=1), job comments
# stored (snakemake puts `rule_<name>...` there; `sacct -o Comment`).
#
# Knobs (environment): MSID_SLURM_DIR, MSID_SLURM_CLUSTER (msid), MSID_SLURM_DB_PORT (3307),
#   MSID_SLURM_PORT (6817; slurmd/slurmdbd use +1/+2), MSID_SLURM_TIMEOUT (60 s per wait).
set -euo pipefail

STATE=${MSID_SLURM_DIR:-/tmp/msid-slurm}
CLUSTER=${MSID_SLURM_CLUSTER:-msid}
DB_PORT=${MSID_SLURM_DB_PORT:-3307}
CTLD_PORT=${MSID_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
TIMEOUT=${MSID_SLURM_TIMEOUT:-60}
NODE=$(hostname -s)
DB_PASS=msid-slurm-db

ETC=$STATE/etc LOG=$STATE/log PIDS=$STATE/pids
MUNGE_DIR=$STATE/munge MUNGE_SOCK=$STATE/munge/munged.socket
MYSQL_DIR=$STATE/mysql MYSQL_SOCK=$STATE/mysql/mysqld.sock
export SLURM_CONF=$ETC/slurm.conf

T0=$(date +%s)
say() { printf '[msid-slurm +%ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

# running <name>: true if pids/<name>.pid names a live process that is still that daemon
declare -A COMM=([munged]=munged [mariadb]=mariadbd [slurmdbd]=slurmdbd [slurmctld]=slurmctld [slurmd]=slurmd)
running() {
  local f=$PIDS/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${COMM[$1]}" ]]
}

# until_ok <what> <cmd...>: retry cmd every 0.5 s for up to $TIMEOUT s
# (gives up early if $WATCH_PID is set and that process has died)
WATCH_PID=
until_ok() {
  local what=$1; shift
  local deadline=$(($(date +%s) + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || die "timed out waiting for $what (logs: $LOG)"
    if [[ -n $WATCH_PID ]] && ! kill -0 "$WATCH_PID" 2>/dev/null; then
      die "process $WATCH_PID died while waiting for $what (logs: $LOG)"
    fi
    sleep 0.5
  done
}

# wait_pidfile <name>: wait for a daemon to write its pid file, then check it is alive
wait_pidfile() { until_ok "$1 pid file" running "$1"; say "$1 running (pid $(<"$PIDS/$1.pid"))"; }

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
need_port() { port_free "$1" || die "port $1 (for $2) is already in use by a process this script did not start"; }

[[ $(id -u) == 0 ]] || die "must run as root (starts munged, mariadbd and the Slurm daemons)"
mkdir -p "$ETC" "$LOG" "$PIDS" "$STATE/spool/ctld" "$STATE/spool/d" "$MUNGE_DIR" "$MYSQL_DIR"

# --- 1. packages -------------------------------------------------------------------
PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server iproute2)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  # keep apt from starting the packaged services (we run our own instances)
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG/apt.log" 2>&1 \
    || { tail -20 "$LOG/apt.log"; die "apt-get install failed"; }
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
fi

# --- 2. config files ---------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
AUTH="AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK"

# install_conf <file>: move <file>.new into place; returns 0 if the content changed
install_conf() {
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; return 1; fi
  mv "$1.new" "$1"; return 0
}

cat >"$ETC/slurm.conf.new" <<EOF
# generated by tests/slurm/start_cluster.sh -- do not edit
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
$AUTH
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=500
ReturnToService=2
KillWait=5
MailProg=/bin/true
MinJobAge=300
InactiveLimit=0
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for slurmdbd connections the munge socket comes from here, not from AuthInfo
AccountingStoragePass=$MUNGE_SOCK
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
JobCompType=jobcomp/none
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
# File= is mandatory: a count-only gpu GRES leaves the node INVAL
echo "NodeName=$NODE Name=gpu Count=1 File=/dev/null" >"$ETC/gres.conf.new"
cat >"$ETC/slurmdbd.conf.new" <<EOF
# generated by tests/slurm/start_cluster.sh -- do not edit
$AUTH
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
LogFile=$LOG/slurmdbd.log
PidFile=$PIDS/slurmdbd.pid
EOF

slurm_changed=0
install_conf "$ETC/slurm.conf" && slurm_changed=1
install_conf "$ETC/gres.conf" && slurm_changed=1
dbd_changed=0
install_conf "$ETC/slurmdbd.conf" && dbd_changed=1
chmod 600 "$ETC/slurmdbd.conf"   # slurmdbd refuses a world-readable config
chmod 644 "$ETC/slurm.conf" "$ETC/gres.conf"

# Nested srun inside jobs reads the default config path (SLURM_CONF is stripped there).
mkdir -p /etc/slurm
if [[ -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
  say "backing up existing /etc/slurm/slurm.conf to /etc/slurm/slurm.conf.msid-backup"
  mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.msid-backup
fi
ln -sfn "$ETC/slurm.conf" /etc/slurm/slurm.conf
printf 'export SLURM_CONF=%q\n' "$ETC/slurm.conf" >"$STATE/env.sh"

# restart <name>: stop a daemon we started earlier (config changed)
restart() {
  running "$1" || return 0
  say "config changed: restarting $1"
  local pid; pid=$(<"$PIDS/$1.pid")
  kill "$pid"
  until_ok "$1 to exit" bash -c "! kill -0 $pid"
  rm -f "$PIDS/$1.pid"
}

# --- 3. munge ----------------------------------------------------------------------
if ! running munged; then
  if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
  fi
  chown -R munge:munge "$MUNGE_DIR"
  chmod 700 "$MUNGE_DIR"; chmod 400 "$MUNGE_DIR/munge.key"
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  say "starting munged"
  # --force: tolerate the world-writable (sticky) /tmp above the state dir
  runuser -u munge -- /usr/sbin/munged --force --key-file="$MUNGE_DIR/munge.key" \
    --socket="$MUNGE_SOCK" --pid-file="$MUNGE_DIR/munged.pid" \
    --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" </dev/null >>"$LOG/munged.out" 2>&1 \
    || { cat "$LOG/munged.out" "$MUNGE_DIR/munged.log" 2>/dev/null | tail -5; die "munged failed to start"; }
  until_ok "munged pid file" test -s "$MUNGE_DIR/munged.pid"
  cp "$MUNGE_DIR/munged.pid" "$PIDS/munged.pid"
  wait_pidfile munged
fi
until_ok "munge round trip" bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"

# --- 4. MariaDB (private instance, TCP on 127.0.0.1:$DB_PORT) ------------------------
mysql_root() { mariadb --no-defaults -S "$MYSQL_SOCK" -u root "$@"; }
if ! running mariadb; then
  need_port "$DB_PORT" mariadb
  if [[ ! -d $MYSQL_DIR/data/mysql ]]; then
    say "initialising MariaDB datadir"
    mkdir -p "$MYSQL_DIR/data"; chown -R mysql:mysql "$MYSQL_DIR"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MYSQL_DIR/data" \
      --skip-test-db --skip-name-resolve >"$LOG/mariadb-install.log" 2>&1 \
      || { tail -20 "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
  fi
  chown -R mysql:mysql "$MYSQL_DIR"
  say "starting mariadbd"
  # TMPDIR may point to a dir the mysql user cannot write
  # (pid file and error log must be writable by the mysql user: keep them in mysql/)
  setsid env -u TMPDIR mariadbd --no-defaults --user=mysql --datadir="$MYSQL_DIR/data" \
    --socket="$MYSQL_SOCK" --pid-file="$MYSQL_DIR/mariadbd.pid" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=48M --innodb-lock-wait-timeout=900 \
    --log-error="$MYSQL_DIR/mariadbd.log" </dev/null >>"$LOG/mariadbd.out" 2>&1 &
  WATCH_PID=$!
  until_ok "mariadb" mysql_root -e 'SELECT 1'
  WATCH_PID=
  cp "$MYSQL_DIR/mariadbd.pid" "$PIDS/mariadb.pid"
  wait_pidfile mariadb
fi
mysql_root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

# --- 5. slurmdbd ---------------------------------------------------------------------
((dbd_changed)) && restart slurmdbd
if ! running slurmdbd; then
  need_port "$DBD_PORT" slurmdbd
  say "starting slurmdbd"
  slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1
  wait_pidfile slurmdbd
fi
until_ok "slurmdbd (sacctmgr)" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=Cluster | grep -qx "$CLUSTER"; then
  say "registering cluster $CLUSTER"
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# --- 6. slurmctld + slurmd -----------------------------------------------------------
if ((slurm_changed)); then restart slurmd; restart slurmctld; fi
if ! running slurmctld; then
  need_port "$CTLD_PORT" slurmctld
  say "starting slurmctld"
  slurmctld </dev/null >>"$LOG/slurmctld.log" 2>&1
  wait_pidfile slurmctld
fi
until_ok "slurmctld (scontrol ping)" bash -c "scontrol ping | grep -q UP"
if ! running slurmd; then
  need_port "$SLURMD_PORT" slurmd
  say "starting slurmd"
  slurmd </dev/null >>"$LOG/slurmd.log" 2>&1
  wait_pidfile slurmd
fi

node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -1; }
deadline=$(($(date +%s) + TIMEOUT))
while :; do
  st=$(node_state)
  case $st in
    idle|mix|alloc) break ;;
    drain*|drng|down*|inval*|fail*)
      # e.g. DOWN after an unclean restart: ReturnToService=2 usually fixes it, nudge it
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if (($(date +%s) >= deadline)); then
    sinfo -N -o '%N %t %E' >&2
    die "node $NODE not ready (state '$st'), see $LOG/slurmd.log"
  fi
  sleep 0.5
done
until_ok "sacct" sacct -n -X -S now-1minutes

say "cluster '$CLUSTER' up (SLURM_CONF=$SLURM_CONF)"
sinfo -o '%10P %5a %6t %4c %8m %G'
