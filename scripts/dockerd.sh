#!/usr/bin/env bash
# Make sure a Docker engine is answering, starting one if needed.
#
# The engine runs without a bridge and without iptables rules: containers use
# the host network and services bind to 127.0.0.1, because loopback is the only
# network these machines may use.
#
# Usage: bash scripts/dockerd.sh [LOG_DIR]
#   LOG_DIR  where slipway-dockerd.log goes (default /var/log)
# Env: SLIPWAY_DOCKERD_TIMEOUT  seconds to wait for the engine (default 60)
set -euo pipefail

LOG_DIR="${1:-/var/log}"
LOG_FILE="$LOG_DIR/slipway-dockerd.log"
TIMEOUT_S="${SLIPWAY_DOCKERD_TIMEOUT:-60}"

log() { printf '[dockerd] %s\n' "$*"; }

if docker info >/dev/null 2>&1; then
    log "Docker engine already running"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "[dockerd] ERROR: dockerd not found; run 'bash scripts/system-deps.sh' first" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "[dockerd] ERROR: no Docker engine answers and starting dockerd needs root" >&2
    exit 1
fi

mkdir -p "$LOG_DIR"
log "starting dockerd (log: $LOG_FILE)"
# setsid + nohup: the engine must outlive this script and the CI step's shell.
nohup setsid dockerd --bridge=none --iptables=false >>"$LOG_FILE" 2>&1 </dev/null &
pid=$!

start=$SECONDS
while ! docker info >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "[dockerd] ERROR: dockerd (pid $pid) exited during start-up. Last lines of $LOG_FILE:" >&2
        tail -n 30 "$LOG_FILE" >&2 || true
        exit 1
    fi
    if (( SECONDS - start >= TIMEOUT_S )); then
        echo "[dockerd] ERROR: 'docker info' still failing after ${TIMEOUT_S}s; stopping dockerd (pid $pid). Last lines of $LOG_FILE:" >&2
        tail -n 30 "$LOG_FILE" >&2 || true
        # A half-started engine would hold its pid file and socket and make the next attempt fail too.
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
log "Docker engine ready after $(( SECONDS - start ))s (pid $pid)"
