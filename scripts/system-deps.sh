#!/usr/bin/env bash
# Install the Debian packages Slipway's tests and `make run` need on a fresh
# Debian 12 machine: the Docker engine, a local registry, debootstrap (to build
# the base image without Docker Hub), Prometheus, Alertmanager and the blackbox
# exporter (monitoring), PostgreSQL 15 and chromium (UI checks).
#
# Idempotent: it checks for each tool first and only touches apt when something
# is missing, so a second run costs a few milliseconds.
#
# Usage: bash scripts/system-deps.sh
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
# needrestart (if installed) would otherwise scan services after every install.
export NEEDRESTART_SUSPEND=1

PG_INITDB=/usr/lib/postgresql/15/bin/initdb

log() { printf '[system-deps] %s\n' "$*"; }
warn() { printf '[system-deps] WARNING: %s\n' "$*" >&2; }

# dockerd and debootstrap live in /usr/sbin, which a non-root PATH may lack.
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# Required packages: a missing one fails the script.
required=()
have dockerd || required+=(docker.io)
have docker-registry || required+=(docker-registry)
have debootstrap || required+=(debootstrap)
# Monitoring: `slipway up` runs them; the alerting tests need them (promtool, amtool too).
have prometheus || required+=(prometheus)
have prometheus-alertmanager || required+=(prometheus-alertmanager)
have prometheus-blackbox-exporter || required+=(prometheus-blackbox-exporter)

# Optional packages: only some tests need them, so a failed install warns.
optional=()
have chromium || optional+=(chromium)
[ -x "$PG_INITDB" ] || optional+=(postgresql-15)

if [ ${#required[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
    log "all system dependencies present; nothing to do"
    exit 0
fi

missing=("${required[@]}" "${optional[@]}")
if [ "$(id -u)" -ne 0 ]; then
    echo "[system-deps] ERROR: missing Debian packages: ${missing[*]}" >&2
    echo "[system-deps] Installing them needs root. Run as root:" >&2
    echo "    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
    exit 1
fi

# Wait for, rather than fail on, another apt run holding the dpkg lock.
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }

log "missing: ${missing[*]}; running apt-get update"
if ! apt_get update -q; then
    if [ ${#required[@]} -gt 0 ]; then
        echo "[system-deps] ERROR: apt-get update failed; cannot install ${required[*]}" >&2
        exit 1
    fi
    warn "apt-get update failed; trying to install ${optional[*]} from the current lists"
fi

if [ ${#required[@]} -gt 0 ]; then
    log "installing required: ${required[*]}"
    # With recommends: docker.io's (apparmor, xz-utils, git) matter to dockerd
    # on kernels with AppArmor enabled and to some import and build contexts.
    apt_get install -y -q "${required[@]}"
fi

for pkg in "${optional[@]}"; do
    log "installing optional: $pkg"
    # Without recommends: we run chromium with --no-sandbox, headless.
    apt_get install -y -q --no-install-recommends "$pkg" \
        || warn "could not install $pkg; tests that need it will be skipped or fail"
done

log "done"
