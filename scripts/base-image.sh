#!/usr/bin/env bash
# Build, or reuse, the local Python base image that Slipway's app images start
# FROM. There is no Docker Hub here, so the image is a debootstrapped Debian 12
# minbase with python3, imported into Docker.
#
# Two caches, cheapest first:
#   1. the image itself (docker image inspect): nothing to do;
#   2. the rootfs tarball in /var/cache/slipway: docker import only (~2 s);
#   otherwise debootstrap from the Debian mirror (~45 s) and fill both caches.
#
# Usage: bash scripts/base-image.sh [IMAGE]
#   IMAGE  default $SLIPWAY_BASE_IMAGE, else local/python-base:bookworm
set -euo pipefail

IMAGE="${1:-${SLIPWAY_BASE_IMAGE:-local/python-base:bookworm}}"
CACHE_DIR="${SLIPWAY_CACHE_DIR:-/var/cache/slipway}"
TARBALL="$CACHE_DIR/python-base-bookworm.tar"
MIRROR="${SLIPWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[base-image] %s\n' "$*"; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already present"
    exit 0
fi

start=$SECONDS

if [ ! -s "$TARBALL" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "[base-image] ERROR: debootstrap not found; run 'bash scripts/system-deps.sh' first" >&2
        exit 1
    fi
    mkdir -p "$CACHE_DIR"
    rootfs="$(mktemp -d /var/tmp/slipway-rootfs.XXXXXX)"
    partial="$TARBALL.partial.$$"
    # Remove the rootfs and any half-written tarball however we leave.
    trap 'rm -rf "$rootfs" "$rootfs.log" "$partial"' EXIT

    log "debootstrapping bookworm minbase + python3 from $MIRROR"
    if ! debootstrap --variant=minbase --include=python3,ca-certificates \
            bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1; then
        echo "[base-image] ERROR: debootstrap failed. Last lines of its log:" >&2
        tail -n 30 "$rootfs.log" >&2 || true
        tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        rm -f "$rootfs.log"
        exit 1
    fi
    rm -f "$rootfs.log"
    # apt lists and caches are dead weight in an image.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

    log "writing rootfs tarball $TARBALL"
    tar -C "$rootfs" --numeric-owner -cf "$partial" .
    # Rename last, so an interrupted run never leaves a truncated cache behind.
    mv "$partial" "$TARBALL"
    rm -rf "$rootfs"
    log "rootfs built in $(( SECONDS - start ))s"
else
    log "reusing cached rootfs tarball $TARBALL"
fi

fail_cached() {
    echo "[base-image] ERROR: $1. If the cached tarball is damaged, delete it and" \
         "run again to rebuild: rm $TARBALL" >&2
    docker image rm "$IMAGE" >/dev/null 2>&1 || true
    exit 1
}

docker import \
    --change 'CMD ["python3"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$TARBALL" "$IMAGE" >/dev/null || fail_cached "docker import of $TARBALL failed"

log "verifying $IMAGE"
docker run --rm --network host "$IMAGE" python3 -c 'import sys; print(sys.version)' \
    || fail_cached "$IMAGE does not run python3"

log "$IMAGE ready in $(( SECONDS - start ))s"
