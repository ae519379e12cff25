#!/usr/bin/env bash
# A one-node SLURM cluster on this (Debian) machine, for the tests and `make cluster-smoke`:
# munged, slurmctld and slurmd, all on 127.0.0.1, state/logs/munge socket under one folder.
#
#   bash engines/slurm_cluster.sh up       # installs slurm-wlm + munge if missing (apt, root), starts the
#                                          # daemons, waits for the node to be idle; prints
#                                          # `export SLURM_CONF=...` (eval it) and writes $STATE/env
#   bash engines/slurm_cluster.sh status   # exit 0 when the cluster answers and its node is up
#   bash engines/slurm_cluster.sh down     # cancels the jobs, stops the daemons, removes $STATE
#
# `up` is idempotent: a running cluster (same STATE) is reused as it is; daemons that died are started
# again. Exit status 3: SLURM cannot be installed or started here (not root, no apt-get); the cluster
# tests skip with that line.
#
# Environment, [default]:
#   A100M_SLURM_STATE   state folder [/tmp/a100m-slurm]
#   A100M_SLURM_PORT    slurmctld port; slurmd takes PORT+1, srun PORT+2..PORT+21 [16817]
#   A100M_SLURM_CPUS    CPUs of the node [2]
#   A100M_SLURM_MEMORY  memory of the node in MB [20000]
#   A100M_SLURM_WAIT    seconds to wait for the node to be idle [30]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${A100M_SLURM_STATE:-/tmp/a100m-slurm}
PORT=${A100M_SLURM_PORT:-16817}
CPUS=${A100M_SLURM_CPUS:-2}
MEMORY=${A100M_SLURM_MEMORY:-20000}
WAIT=${A100M_SLURM_WAIT:-30}
CONF=$STATE/slurm.conf
SOCKET=$STATE/munge/munge.socket
PACKAGES=(slurm-wlm munge)

fail() {  # fail MESSAGE [STATUS]
    echo "engines/slurm_cluster.sh: error: $1" >&2
    exit "${2:-2}"
}

say() { echo "slurm_cluster: $*" >&2; }

for number in PORT CPUS MEMORY WAIT; do
    [[ "${!number}" =~ ^[1-9][0-9]*$ ]] || fail "A100M_SLURM_$number must be a positive number, got '${!number}'"
done

installed() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null
}

install() {
    installed && return
    [[ $(id -u) == 0 ]] || fail "SLURM is not installed and installing it needs root (apt-get install ${PACKAGES[*]})" 3
    command -v apt-get >/dev/null || fail "SLURM is not installed and there is no apt-get to install it" 3
    say "installing ${PACKAGES[*]} (apt-get)"
    local started=$SECONDS
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
        || fail "apt-get update failed" 3
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null \
        || fail "apt-get install ${PACKAGES[*]} failed" 3
    installed || fail "apt-get installed ${PACKAGES[*]} but slurmctld/slurmd/munged are not on PATH" 3
    say "installed in $((SECONDS - started)) s"
}

alive() {  # alive PIDFILE: the process in it runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() {  # the node's state as sinfo says it, empty when the controller does not answer
    SLURM_CONF=$CONF timeout 5 sinfo --noheader --node="$(hostname)" --format=%T 2>/dev/null | head -n 1 || true
}

write_conf() {
    [[ -f "$HERE/slurm.conf.in" ]] || fail "$HERE/slurm.conf.in is missing"
    mkdir -p "$STATE"/{ctld,spool,log,munge}
    chmod 700 "$STATE/munge"
    sed -e "s|@HOST@|$(hostname)|g" -e "s|@STATE@|$STATE|g" -e "s|@CTLD_PORT@|$PORT|g" \
        -e "s|@SLURMD_PORT@|$((PORT + 1))|g" -e "s|@SRUN_PORTS@|$((PORT + 2))-$((PORT + 21))|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY@|$MEMORY|g" "$HERE/slurm.conf.in" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    echo "export SLURM_CONF=$CONF" >"$STATE/env"
}

start_munge() {
    alive "$STATE/munged.pid" && return
    if [[ ! -s "$STATE/munge/munge.key" ]]; then
        head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
        chmod 400 "$STATE/munge/munge.key"
    fi
    rm -f "$SOCKET" "$SOCKET.lock"
    # --force: munged refuses to run as root otherwise; its socket is a unix socket, no network
    munged --force --socket="$SOCKET" --key-file="$STATE/munge/munge.key" --pid-file="$STATE/munged.pid" \
        --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munge.seed" \
        || fail "munged did not start (see $STATE/log/munged.log)"
    local _
    for _ in $(seq 50); do
        munge --socket="$SOCKET" --no-input >/dev/null 2>&1 && return
        sleep 0.1
    done
    fail "munged does not answer on $SOCKET after 5 s (see $STATE/log/munged.log)"
}

start_daemon() {  # start_daemon NAME
    alive "$STATE/$1.pid" && return
    rm -f "$STATE/$1.pid"
    SLURM_CONF=$CONF "$1" || fail "$1 did not start (see $STATE/log/$1.log)"
}

up() {
    install
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && [[ $(node_state) == idle* || $(node_state) == mixed* || $(node_state) == allocated* ]]; then
        say "reusing the running cluster under $STATE"
        echo "export SLURM_CONF=$CONF"
        return
    fi
    local started=$SECONDS
    write_conf
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    local deadline=$((SECONDS + WAIT)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        if [[ "$state" == idle* ]]; then
            say "node $(hostname) idle after $((SECONDS - started)) s (state under $STATE)"
            echo "export SLURM_CONF=$CONF"
            return
        fi
        sleep 0.25
    done
    fail "the node is not idle after $WAIT s (state '${state:-no answer}'; see $STATE/log/)" 3
}

stop() {  # stop PIDFILE: TERM, then KILL after 10 s
    alive "$1" || return 0
    local pid _
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    if [[ -f "$CONF" ]] && alive "$STATE/slurmctld.pid"; then
        SLURM_CONF=$CONF timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
        local _
        for _ in $(seq 50); do
            [[ -z $(SLURM_CONF=$CONF timeout 5 squeue --noheader 2>/dev/null || echo busy) ]] && break
            sleep 0.2
        done
    fi
    stop "$STATE/slurmd.pid"
    stop "$STATE/slurmctld.pid"
    stop "$STATE/munged.pid"
    rm -rf "$STATE"
    say "stopped; removed $STATE"
}

status() {
    local state
    state=$(node_state)
    [[ -n "$state" && "$state" != down* && "$state" != drain* ]] || fail "no running cluster under $STATE" 1
    echo "node $(hostname): $state (SLURM_CONF=$CONF)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) fail "usage: bash engines/slurm_cluster.sh up|down|status" ;;
esac
