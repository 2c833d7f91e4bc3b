#!/usr/bin/env bash
# Bring up a real one-node SLURM cluster with job accounting on this machine, for
# tests/workflow/test_slurm.py and for trying profiles/slurm by hand:
#   munged -> MariaDB -> slurmdbd -> slurmctld -> slurmd, node idle in `sinfo`.
#
#   tests/workflow/slurm/setup.sh [STATE_DIR]      (default /tmp/resnet-recipe-slurm)
#   export SLURM_CONF=STATE_DIR/etc/slurm.conf   # then sbatch, sinfo, sacct, snakemake ...
#   tests/workflow/slurm/teardown.sh [STATE_DIR]
#
# Everything is private to STATE_DIR: its own munge key and socket, its own MariaDB data
# directory, its own config files and ports, so a system SLURM or database is never touched.
# The daemons run as root, without systemd and without cgroups (a container cannot hand
# out a cgroup hierarchy): processes are tracked through /proc, nothing is confined.
# Missing Debian packages are installed first (needs root and apt-get).
#
# Exit status 77 means this machine cannot host the cluster (not root, packages cannot be
# installed, ports taken by other programs); the reason is on stderr and the test skips.
set -euo pipefail

STATE_DIR=${1:-/tmp/resnet-recipe-slurm}
HERE=$(cd "$(dirname "$0")" && pwd)
# Beside the defaults (6817-6819, 3306), so a system SLURM or MySQL can keep running.
CTLD_PORT=17817
SLURMD_PORT=17818
DBD_PORT=17819
DB_PORT=17306
CLUSTER=resnet
ACCOUNT=resnet
PARTITION=debug
URGENT_PARTITION=urgent
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
COMMANDS=(slurmctld slurmd slurmdbd sbatch srun sacct sacctmgr sinfo scontrol munged
    mariadbd mariadb-install-db mariadb mariadb-admin)

started=$SECONDS
say() { echo "setup.sh [$((SECONDS - started))s]: $*" >&2; }
cannot() { echo "setup.sh: this machine cannot host the test cluster: $*" >&2; exit 77; }
fail() { echo "setup.sh: $*" >&2; exit 1; }

# Wait up to $1 seconds for a command to succeed.
wait_for() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

missing_commands() {
    local name
    for name in "${COMMANDS[@]}"; do
        command -v "$name" > /dev/null || echo "$name"
    done
}

install_packages() {
    command -v apt-get > /dev/null || cannot "SLURM is not installed and there is no apt-get"
    say "installing ${PACKAGES[*]}"
    local log="/tmp/resnet-recipe-slurm-apt.log"
    # Package scripts must not start the services: the cluster below runs its own daemons.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local status=0
    {
        apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                "${PACKAGES[@]}"
    } > "$log" 2>&1 || status=$?
    [[ -z $made_policy ]] || rm -f "$policy"
    if ((status != 0)); then
        tail -n 20 "$log" >&2
        cannot "apt-get could not install ${PACKAGES[*]} (log: $log)"
    fi
    say "installed"
}

port_in_use() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

show_log_and_fail() {
    local log=$1
    shift
    [[ ! -f $log ]] || tail -n 30 "$log" >&2
    [[ ! -s ${log%.log}.stderr ]] || cat "${log%.log}.stderr" >&2
    fail "$*"
}

# start_daemon NAME COMMAND...: the daemon keeps no handle on this script's output (a caller
# reading it would wait for the daemon to end); what it prints before its log file is open
# goes to log/NAME.stderr.
start_daemon() {
    local name=$1
    shift
    "$@" < /dev/null > /dev/null 2> "$STATE_DIR/log/$name.stderr" ||
        show_log_and_fail "$STATE_DIR/log/$name.log" "$name did not start"
}

# Whatever fails after this point, nothing stays running.
trap 'status=$?; ((status == 0)) || bash "$HERE/teardown.sh" "$STATE_DIR"; exit $status' EXIT

((EUID == 0)) || cannot "it runs the daemons as root and installs packages: run as root"
missing=$(missing_commands)
if [[ -n $missing ]]; then
    install_packages
    missing=$(missing_commands)
    [[ -z $missing ]] || fail "still missing after installing: $missing"
fi

# A cluster left behind by an interrupted run: stop it (only its recorded processes).
bash "$HERE/teardown.sh" "$STATE_DIR"
for port in $CTLD_PORT $SLURMD_PORT $DBD_PORT $DB_PORT; do
    ! port_in_use "$port" || cannot "port $port is in use by another program"
done

rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR"/{etc,run,log,munge,spool/slurmctld,spool/slurmd}
# munged insists that everyone may traverse its socket's folder.
chmod 755 "$STATE_DIR" "$STATE_DIR/munge"

say "starting munged"
dd if=/dev/urandom of="$STATE_DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE_DIR/munge/munge.key"
MUNGE_SOCKET=$STATE_DIR/munge/munge.sock
start_daemon munged munged --socket="$MUNGE_SOCKET" --key-file="$STATE_DIR/munge/munge.key" \
    --log-file="$STATE_DIR/log/munged.log" --pid-file="$STATE_DIR/run/munged.pid" \
    --seed-file="$STATE_DIR/munge/munged.seed"

say "starting MariaDB"
DB_DIR=$STATE_DIR/mysql
DB_SOCKET=$STATE_DIR/run/mysqld.sock
mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root --skip-test-db \
    --auth-root-authentication-method=socket > "$STATE_DIR/log/mariadb-install.log" 2>&1 ||
    show_log_and_fail "$STATE_DIR/log/mariadb-install.log" "mariadb-install-db failed"
# Started in the background by this shell; it records its own pid for teardown.sh.
mariadbd --no-defaults --datadir="$DB_DIR" --socket="$DB_SOCKET" --port=$DB_PORT \
    --bind-address=127.0.0.1 --user=root --pid-file="$STATE_DIR/run/mariadbd.pid" \
    --log-error="$STATE_DIR/log/mariadb.log" --skip-log-bin --innodb-buffer-pool-size=64M \
    < /dev/null > /dev/null 2>&1 &
wait_for 60 mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping ||
    show_log_and_fail "$STATE_DIR/log/mariadb.log" "MariaDB did not start"
DB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
mariadb --no-defaults --socket="$DB_SOCKET" -u root <<SQL
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# Node size: what slurmd finds on this machine, less 1 GiB of memory for the daemons.
read -r CPUS REAL_MEMORY < <(
    slurmd -C | sed -n 's/.* CPUs=\([0-9]*\) .* RealMemory=\([0-9]*\).*/\1 \2/p')
[[ -n ${CPUS:-} && -n ${REAL_MEMORY:-} ]] || fail "no CPUs and RealMemory in slurmd -C"
NODE_MEMORY=$((REAL_MEMORY - 1024))
HOST=$(uname -n | cut -d. -f1) # the name slurmd gives itself

cat > "$STATE_DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE_DIR/run/slurmdbd.pid
LogFile=$STATE_DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
chmod 600 "$STATE_DIR/etc/slurmdbd.conf" # slurmdbd refuses a config others can read

cat > "$STATE_DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long (+1 s) before it may start again; SLURM's
# default of 120 s would make each requeue of the tests' train jobs cost two minutes.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=5
CredType=cred/munge
StateSaveLocation=$STATE_DIR/spool/slurmctld
SlurmdSpoolDir=$STATE_DIR/spool/slurmd
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
# No systemd and no cgroup hierarchy of our own: follow job processes through /proc,
# bind and confine nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# sacct, which the Snakemake executor plugin polls for job states, reads slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Talking to slurmdbd, SLURM takes the munge socket from here, not from AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# A requeued job starts at the next scheduling pass after its wait (default passes: every
# 60 s, backfill every 30 s).
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$NODE_MEMORY State=UNKNOWN
# Preemption as on a preemptible partition: a job of the urgent partition requeues the
# jobs of the default one whose CPUs it needs (the tests preempt a train job with it).
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=$URGENT_PARTITION Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
export SLURM_CONF=$STATE_DIR/etc/slurm.conf

say "starting slurmdbd"
start_daemon slurmdbd slurmdbd
wait_for 60 sacctmgr --noheader list cluster ||
    show_log_and_fail "$STATE_DIR/log/slurmdbd.log" "slurmdbd does not answer sacctmgr"
sacctmgr --immediate add cluster "$CLUSTER" > /dev/null
sacctmgr --immediate add account "$ACCOUNT" Cluster="$CLUSTER" \
    Description="resnet-recipe tests" Organization=tests > /dev/null
sacctmgr --immediate add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" \
    Cluster="$CLUSTER" > /dev/null

say "starting slurmctld and slurmd"
start_daemon slurmctld slurmctld
wait_for 60 scontrol ping ||
    show_log_and_fail "$STATE_DIR/log/slurmctld.log" "slurmctld does not answer"
start_daemon slurmd slurmd

node_idle() { [[ $(sinfo --noheader --nodes="$HOST" --format=%t) == idle ]]; }
if ! wait_for 60 node_idle; then
    sinfo --long --Node >&2 || true
    show_log_and_fail "$STATE_DIR/log/slurmd.log" "node $HOST did not become idle"
fi
say "cluster $CLUSTER up: node $HOST with $CPUS CPUs and $NODE_MEMORY MiB, partition $PARTITION"
echo "SLURM_CONF=$SLURM_CONF"
