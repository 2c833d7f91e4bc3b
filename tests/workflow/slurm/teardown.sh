#!/usr/bin/env bash
# Stop the test cluster that tests/workflow/slurm/setup.sh started in STATE_DIR: cancel its jobs, then
# stop slurmd, slurmctld, slurmdbd, MariaDB and munged. Only the processes recorded in
# STATE_DIR/run/*.pid are signalled, and only while they still run the program recorded
# there. Logs stay in STATE_DIR/log. Safe to run when nothing is up.
#
#   tests/workflow/slurm/teardown.sh [STATE_DIR]      (default /tmp/resnet-recipe-slurm)
set -uo pipefail

STATE_DIR=${1:-/tmp/resnet-recipe-slurm}
RUN=$STATE_DIR/run

# The recorded pid if that process is alive and is the named program.
live_pid() {
    local pid_file=$RUN/$1.pid pid
    [[ -f $pid_file ]] || return 1
    pid=$(tr -dc 0-9 < "$pid_file")
    [[ -n $pid && $(cat "/proc/$pid/comm" 2> /dev/null) == "$1" ]] || return 1
    echo "$pid"
}

# Whether a process still runs: an exited daemon stays a zombie until init reaps it.
running() {
    local state
    state=$(cut -d' ' -f3 "/proc/$1/stat" 2> /dev/null) && [[ $state != Z ]]
}

stop() {
    local name=$1 pid
    pid=$(live_pid "$name") || return 0
    kill -TERM "$pid"
    # Daemons flush their state on SIGTERM; give them time, then insist.
    for _ in $(seq 150); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        echo "teardown.sh: $name (pid $pid) ignored SIGTERM, killing it" >&2
        kill -KILL "$pid"
    fi
    rm -f "$RUN/$name.pid"
}

if live_pid slurmctld > /dev/null; then
    export SLURM_CONF=$STATE_DIR/etc/slurm.conf
    scancel --full --quiet --user=root 2> /dev/null
    for _ in $(seq 50); do
        [[ -z $(squeue --noheader --format=%i 2> /dev/null) ]] && break
        sleep 0.2
    done
fi
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    stop "$name"
done
exit 0
