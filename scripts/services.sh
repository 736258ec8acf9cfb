#!/usr/bin/env bash
# Bring up PostgreSQL 15 and Redis on 127.0.0.1 for tests and local development.
#
# Idempotent: a service that already answers is left alone. Quiet on success;
# on failure it says which service did not come up and exits non-zero.
# Expects root on Debian with PostgreSQL 15 installed (cluster 15/main);
# installs redis-server with apt-get only when the binary is missing.
set -euo pipefail

PG_VERSION=15
PG_CLUSTER=main
PG_DB=gateway_test
REDIS_PORT=6379
WAIT_S=30

log_fail() { echo "services.sh: $*" >&2; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
redis_up() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

wait_for() {  # wait_for NAME CHECK_FUNCTION
    local name=$1 check=$2 i
    for ((i = 0; i < WAIT_S * 5; i++)); do
        "$check" && return 0
        sleep 0.2
    done
    log_fail "$name did not answer on 127.0.0.1 within ${WAIT_S}s"
    return 1
}

# Run a command as the postgres OS user; its output is shown only on failure.
as_postgres() {
    local out
    if ! out=$(su postgres -c "$1" 2>&1); then
        printf '%s\n' "$out"
        return 1
    fi
}

# --- PostgreSQL -------------------------------------------------------------
if ! pg_up; then
    if ! out=$(pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start 2>&1); then
        # "already running" races with another caller are fine; anything else is reported.
        pg_up || { printf '%s\n' "$out" >&2; }
    fi
fi
wait_for PostgreSQL pg_up

as_postgres "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null || {
    log_fail "could not set the postgres password"
    exit 1
}
if ! out=$(as_postgres "createdb $PG_DB"); then
    if [[ "$out" != *"already exists"* ]]; then
        printf '%s\n' "$out" >&2
        log_fail "could not create database $PG_DB"
        exit 1
    fi
fi

# --- Redis --------------------------------------------------------------------
if ! redis_up; then
    if ! command -v redis-server >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        if ! out=$(apt-get update -qq 2>&1 && apt-get install -y -qq redis-server 2>&1); then
            printf '%s\n' "$out" >&2
            log_fail "could not install redis-server"
            exit 1
        fi
        # The Debian package may start its own instance; the check below then passes.
    fi
    if ! redis_up; then
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
            --save "" --appendonly no >/dev/null
    fi
fi
wait_for Redis redis_up
