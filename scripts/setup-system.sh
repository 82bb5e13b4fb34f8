#!/usr/bin/env bash
# The machine-wide part of Slipway's set-up (`make system`, run by `make setup`,
# `make run` and `make test`), in three idempotent steps:
#
#   1. Debian packages: the Docker engine, a local registry, debootstrap,
#      PostgreSQL 15, chromium, bubblewrap, Prometheus with Alertmanager and the
#      blackbox exporter, git and python3-venv. apt runs only when one is missing.
#   2. A Docker engine: started when none answers (systemd where it runs, else
#      dockerd without bridge or iptables: containers use the host's loopback).
#   3. The base image service images build FROM: $SLIPWAY_BASE_IMAGE, else
#      python:3.12-slim. Present: nothing to do. Else pulled; where it cannot be
#      pulled (no Docker Hub), the local Debian 12 image local/python-base:bookworm
#      is built with debootstrap instead, and `slipway up` uses it.
#
# As root it does all three. As another user it does what needs no root, prints
# the one command that does the rest, and exits 0, so `make run` goes on and
# starts what it can (`slipway up` names every part that is missing).
#
# A second run costs well under a second.
#
# Env: SLIPWAY_BASE_IMAGE, SLIPWAY_CACHE_DIR (/var/cache/slipway),
#      SLIPWAY_DEBIAN_MIRROR, SLIPWAY_DOCKERD_TIMEOUT (60), SLIPWAY_PULL_TIMEOUT (120)
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
CHECKOUT="$PWD"

DEFAULT_IMAGE="python:3.12-slim"   # blocks.platform.DEFAULT_BASE_IMAGE
LOCAL_IMAGE="local/python-base:bookworm"   # blocks.platform.LOCAL_BASE_IMAGE
WANTED_IMAGE="${SLIPWAY_BASE_IMAGE:-$DEFAULT_IMAGE}"
CACHE_DIR="${SLIPWAY_CACHE_DIR:-/var/cache/slipway}"
TARBALL="$CACHE_DIR/python-base-bookworm.tar"
MIRROR="${SLIPWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKERD_TIMEOUT="${SLIPWAY_DOCKERD_TIMEOUT:-60}"
PULL_TIMEOUT="${SLIPWAY_PULL_TIMEOUT:-120}"
DOCKERD_LOG=/var/log/slipway-dockerd.log

export DEBIAN_FRONTEND=noninteractive
# needrestart (if installed) would otherwise scan services after every install.
export NEEDRESTART_SUSPEND=1

ROOT=0
[ "$(id -u)" -eq 0 ] && ROOT=1
NEEDS_ROOT=()   # what is left for the root command, when not root

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# dockerd and debootstrap live in /usr/sbin, which a non-root PATH may lack.
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# Each package and how to tell it is there without asking apt (a Docker engine
# from docker.com counts as the engine, so apt never fights it).
package_present() {
    case "$1" in
        docker.io) have dockerd ;;
        docker-registry) have docker-registry ;;
        debootstrap) have debootstrap ;;
        postgresql-15) [ -x /usr/lib/postgresql/15/bin/postgres ] ;;
        chromium) have chromium ;;
        bubblewrap) have bwrap ;;
        prometheus) have prometheus ;;
        prometheus-alertmanager) have prometheus-alertmanager ;;
        prometheus-blackbox-exporter) have prometheus-blackbox-exporter ;;
        git) have git ;;
        python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

PACKAGES=(
    docker.io docker-registry debootstrap postgresql-15 chromium bubblewrap
    prometheus prometheus-alertmanager prometheus-blackbox-exporter git python3-venv
)

step_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        package_present "$pkg" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "Debian packages: all present"
        return
    fi
    if [ "$ROOT" -eq 0 ]; then
        log "Debian packages missing: ${missing[*]}"
        NEEDS_ROOT+=("install ${missing[*]}")
        return
    fi
    local began=$SECONDS
    # Wait for, rather than fail on, another apt run holding the dpkg lock.
    log "Debian packages missing: ${missing[*]}; apt-get update ..."
    apt-get -o DPkg::Lock::Timeout=300 update -q || die "apt-get update failed; check the machine's apt sources and network"
    log "apt-get install ${missing[*]} (about a minute) ..."
    # docker.io with its recommends (apparmor, xz-utils, git matter to dockerd on some
    # kernels and build contexts); the rest without: chromium runs headless.
    local with=() without=()
    for pkg in "${missing[@]}"; do
        if [ "$pkg" = docker.io ]; then with+=("$pkg"); else without+=("$pkg"); fi
    done
    if [ ${#with[@]} -gt 0 ]; then
        apt-get -o DPkg::Lock::Timeout=300 install -y -q "${with[@]}" \
            || die "apt-get install ${with[*]} failed; see apt's output above"
    fi
    if [ ${#without[@]} -gt 0 ]; then
        apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${without[@]}" \
            || die "apt-get install ${without[*]} failed; see apt's output above"
    fi
    for pkg in "${missing[@]}"; do
        package_present "$pkg" || die "$pkg was installed but is still not usable"
    done
    log "Debian packages installed in $(( SECONDS - began ))s"
}

docker_answers() { docker info >/dev/null 2>&1; }

step_engine() {
    if docker_answers; then
        log "Docker engine: running"
        return
    fi
    if [ "$ROOT" -eq 0 ]; then
        if [ -S /var/run/docker.sock ]; then
            log "Docker engine: running, but $(id -un) may not use it"
            NEEDS_ROOT+=("add $(id -un) to group docker (log in again after)")
            ROOT_ARGS=" SLIPWAY_DOCKER_USER=$(id -un)"
        else
            log "Docker engine: not running"
            NEEDS_ROOT+=("start the Docker engine")
        fi
        return
    fi
    have dockerd || die "dockerd is not installed (package docker.io)"
    if [ -d /run/systemd/system ]; then
        log "starting the Docker engine with systemd ..."
        systemctl start docker || die "systemctl start docker failed; see journalctl -u docker"
    else
        log "starting dockerd (no systemd here; log: $DOCKERD_LOG) ..."
        # setsid + nohup: the engine must outlive make and the shell that ran it.
        nohup setsid dockerd --bridge=none --iptables=false >>"$DOCKERD_LOG" 2>&1 </dev/null &
        DOCKERD_PID=$!
    fi
    local began=$SECONDS
    until docker_answers; do
        if [ -n "${DOCKERD_PID:-}" ] && ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up; its log is above ($DOCKERD_LOG)"
        fi
        if (( SECONDS - began >= DOCKERD_TIMEOUT )); then
            # A half-started engine would hold its pid file and make the next try fail too.
            [ -n "${DOCKERD_PID:-}" ] && kill "$DOCKERD_PID" 2>/dev/null
            die "the Docker engine did not answer within ${DOCKERD_TIMEOUT}s; see $DOCKERD_LOG"
        fi
        sleep 0.5
    done
    log "Docker engine: started in $(( SECONDS - began ))s"
}

# As root, on behalf of the user the non-root run named: the docker group is
# what Debian's docker.io grants access to the engine with.
step_docker_user() {
    local user="${SLIPWAY_DOCKER_USER:-}"
    [ "$ROOT" -eq 1 ] && [ -n "$user" ] || return 0
    id "$user" >/dev/null 2>&1 || die "SLIPWAY_DOCKER_USER=$user: no such user"
    if id -nG "$user" | tr ' ' '\n' | grep -qx docker; then
        log "Docker engine: $user is in group docker"
    else
        usermod -aG docker "$user" || die "could not add $user to group docker"
        log "Docker engine: added $user to group docker; $user must log in again to use it"
    fi
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

step_base_image() {
    if ! docker_answers; then
        log "base image: not checked, no Docker engine answers"
        NEEDS_ROOT+=("check the base image")
        return
    fi
    if image_present "$WANTED_IMAGE"; then
        log "base image: $WANTED_IMAGE present"
        return
    fi
    # Without a choice of the user's, an earlier fallback stands: no pull attempt each time.
    if [ -z "${SLIPWAY_BASE_IMAGE:-}" ] && image_present "$LOCAL_IMAGE"; then
        log "base image: $LOCAL_IMAGE present (the fallback where $DEFAULT_IMAGE cannot be pulled)"
        return
    fi
    if [ "$WANTED_IMAGE" != "$LOCAL_IMAGE" ]; then
        log "base image: pulling $WANTED_IMAGE ..."
        local err
        if err="$(timeout "$PULL_TIMEOUT" docker pull -q "$WANTED_IMAGE" 2>&1 >/dev/null)"; then
            log "base image: $WANTED_IMAGE pulled"
            return
        fi
        log "base image: $WANTED_IMAGE cannot be pulled here (${err##*$'\n'})"
        if image_present "$LOCAL_IMAGE"; then
            log "base image: using $LOCAL_IMAGE, which is present"
            return
        fi
        log "base image: building $LOCAL_IMAGE instead; \`slipway up\` writes it into new platform settings"
    fi
    if [ "$ROOT" -eq 0 ]; then
        NEEDS_ROOT+=("build the base image $LOCAL_IMAGE")
        return
    fi
    build_local_image
}

# Debian 12 minbase with python3, imported into Docker. Two caches, cheapest
# first: the image itself, then the rootfs tarball (docker import only, ~2 s).
build_local_image() {
    have debootstrap || die "debootstrap is not installed"
    local began=$SECONDS
    if [ ! -s "$TARBALL" ]; then
        mkdir -p "$CACHE_DIR"
        local rootfs partial
        rootfs="$(mktemp -d /var/tmp/slipway-rootfs.XXXXXX)"
        partial="$TARBALL.partial.$$"
        # Remove the rootfs and any half-written tarball however we leave.
        CLEANUP+=("$rootfs" "$rootfs.log" "$partial")
        log "debootstrapping Debian 12 minbase with python3 from $MIRROR (about a minute) ..."
        debootstrap --variant=minbase --include=python3,ca-certificates \
            bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 &
        local pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            sleep 10
            kill -0 "$pid" 2>/dev/null && log "  ... $(( SECONDS - began ))s, $(grep -c '^I: \(Retrieving\|Validating\|Extracting\|Unpacking\|Configuring\)' "$rootfs.log" || true) steps"
        done
        if ! wait "$pid"; then
            tail -n 30 "$rootfs.log" >&2 || true
            tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
            die "debootstrap failed; the last lines of its log are above"
        fi
        # apt lists and caches are dead weight in an image.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" --numeric-owner -cf "$partial" .
        # Rename last, so an interrupted run never leaves a truncated cache behind.
        mv "$partial" "$TARBALL"
        rm -rf "$rootfs" "$rootfs.log"
    else
        log "reusing the cached rootfs $TARBALL"
    fi
    docker import \
        --change 'CMD ["python3"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$TARBALL" "$LOCAL_IMAGE" >/dev/null \
        || die "docker import of $TARBALL failed; if the cache is damaged, rm $TARBALL and run again"
    if ! docker run --rm --network none "$LOCAL_IMAGE" python3 -c 'import sys' >/dev/null; then
        docker image rm "$LOCAL_IMAGE" >/dev/null 2>&1 || true
        die "$LOCAL_IMAGE does not run python3; rm $TARBALL and run again to rebuild it"
    fi
    log "base image: $LOCAL_IMAGE built in $(( SECONDS - began ))s"
}

root_command() {
    local command="make -C $CHECKOUT system${ROOT_ARGS:-}"
    if command -v sudo >/dev/null 2>&1; then
        printf 'sudo %s' "$command"
    else
        printf "su root -c '%s'" "$command"
    fi
}

CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT
step_packages
step_engine
step_docker_user
step_base_image

if [ ${#NEEDS_ROOT[@]} -gt 0 ]; then
    printf '\n[setup] Part of the set-up needs root: %s.\n' "$(IFS=';'; echo "${NEEDS_ROOT[*]}" | sed 's/;/; /g')"
    printf '[setup] Run this once, then run make again:\n\n    %s\n\n' "$(root_command)"
    printf '[setup] Going on with what needs no root; `slipway status` names what is missing.\n'
fi
