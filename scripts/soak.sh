#!/usr/bin/env bash
# Soak-and-fault run of the local server (not part of the test command): two
# `user-service serve` processes on one throwaway deployment (database, Redis key prefix
# and key file on the local Postgres and Redis, removed at the end), both reaching Postgres
# and Redis through TCP proxies; N concurrent clients register, log in, call /me, refresh
# (plain, twice with one token, a stolen spent token, two at once) and log out (one session
# or all) on random instances, while Redis and then Postgres are cut for a few seconds.
# Every answer is checked against the contract (documented status, never 500, problem
# shape, 503 only as `unavailable` with Retry-After, no answer slower than 6 s, the status
# the story expects; a 503 is repeated as docs/retrying.md says). At the end: every
# registered user logs in, every ended session is revoked in Postgres and refused by both
# instances, no Redis marker names a session Postgres calls live. Prints throughput,
# p50/p99 per route outside the outages, answers per outage window, recovery times and
# peak RSS; exits 1 on any violation or failed check. docs/soak.md explains the report.
#
#   scripts/soak.sh                                  # release build; 100 clients, 60 s
#   scripts/soak.sh --clients 20 --duration 30 --fault-seconds 4     # a quick one
#   scripts/soak.sh --debug --grace 0               # debug build, no refresh grace
#   SOAK_BIN_DIR=path scripts/soak.sh               # the binaries in path (no build)
#
# Other arguments go to the `soak` binary (tests/src/bin/soak.rs; `--help`). Traffic goes
# to 127.0.0.1 only.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PROFILE=release
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --debug) PROFILE=debug ;;
        *) ARGS+=("$arg") ;;
    esac
done

ensure_services

if [[ -n "${SOAK_BIN_DIR:-}" ]]; then
    BIN_DIR="$SOAK_BIN_DIR"
    log "using the binaries in SOAK_BIN_DIR=$BIN_DIR (no build)"
else
    BUILD=(cargo build -p user-service --bin user-service -p user-service-tests --bin soak)
    [[ "$PROFILE" == release ]] && BUILD+=(--release)
    log "==> ${BUILD[*]}"
    "${BUILD[@]}"
    BIN_DIR="$CARGO_TARGET_DIR/$PROFILE"
fi
[[ -x "$BIN_DIR/user-service" && -x "$BIN_DIR/soak" ]] ||
    die "$BIN_DIR has no user-service and soak binaries"

# Many connections at once: the clients' and the servers'.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$BIN_DIR/soak" --server-bin "$BIN_DIR/user-service" "${ARGS[@]+"${ARGS[@]}"}"
