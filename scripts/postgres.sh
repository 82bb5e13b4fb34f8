#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1, for tests and benchmarks of
# Slipway's scale-out mode (Prefect on PostgreSQL). Not for production: see
# docs/operations/scale-out.md for a real database.
#
# Usage:
#   bash scripts/postgres.sh start DIR PORT   initdb DIR (once), start it, create
#                                             role and database `slipway`
#   bash scripts/postgres.sh stop DIR         stop it (the files stay; rm -rf DIR)
#
# Env:
#   SLIPWAY_PG_PASSWORD  password of the `slipway` role (required for start; it is
#                        never printed nor written to disk)
#   SLIPWAY_PG_BIN       PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   SLIPWAY_PG_FAST=1    fsync off: faster, and lost on a power cut (tests only)
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the
# `postgres` system user and DIR is handed to it. The server listens on
# 127.0.0.1 only, with its socket in DIR.
set -euo pipefail

BIN="${SLIPWAY_PG_BIN:-/usr/lib/postgresql/15/bin}"
log() { printf '[postgres] %s\n' "$*"; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

[ -x "$BIN/postgres" ] || die "no PostgreSQL in $BIN; install it with 'apt-get install postgresql-15' or set SLIPWAY_PG_BIN"

cmd="${1:-}"
dir="${2:-}"
[ -n "$dir" ] || die "usage: $0 start DIR PORT | stop DIR"
dir="$(readlink -f "$dir")"
data="$dir/data"

case "$cmd" in
start)
    port="${3:-}"
    [ -n "$port" ] || die "usage: $0 start DIR PORT"
    [ -n "${SLIPWAY_PG_PASSWORD:-}" ] || die "set SLIPWAY_PG_PASSWORD to the password of the slipway role"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "as root the cluster runs as user postgres, which does not exist; run as a normal user"
        chown postgres: "$dir"
        runuser -u postgres -- test -w "$dir" \
            || die "user postgres cannot reach $dir; use a directory whose parents it can search (e.g. made by mktemp -d in /tmp)"
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$BIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || die "initdb failed: $(tail -5 "$dir/initdb.log")"
    fi
    extra=()
    if [ "${SLIPWAY_PG_FAST:-0}" = 1 ]; then
        extra=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
    fi
    if as_owner "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "already running: $data"
    else
        as_owner "$BIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start -o \
            "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir ${extra[*]}" \
            >/dev/null || die "the server did not start: $(tail -5 "$dir/postgres.log")"
    fi
    # The password travels on stdin, never on a command line other users can read.
    as_owner "$BIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -v "pw=$SLIPWAY_PG_PASSWORD" >/dev/null <<'SQL' || die "could not create the slipway role and database"
SELECT format('CREATE ROLE slipway LOGIN PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'slipway') \gexec
SELECT 'CREATE DATABASE slipway OWNER slipway'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'slipway') \gexec
SQL
    log "PostgreSQL ready on 127.0.0.1:$port, database slipway, role slipway"
    ;;
stop)
    if [ -f "$data/postmaster.pid" ]; then
        as_owner "$BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
        log "stopped $data"
    else
        log "not running: $data"
    fi
    ;;
*)
    die "usage: $0 start DIR PORT | stop DIR"
    ;;
esac
