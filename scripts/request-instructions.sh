#!/usr/bin/env bash
# Instructions the local server executes per `GET /v1/users/me`, counted by valgrind's
# callgrind (not part of the test command). Instruction counts, unlike req/s, barely move
# with whatever else the machine is doing, so two builds can be compared to a few percent on
# a busy or noisy VM; `scripts/load.sh` remains the measure of throughput.
#
#   scripts/request-instructions.sh                          # builds the release binary
#   USER_SERVICE_BIN=path scripts/request-instructions.sh    # measures that binary instead
#   REQUESTS=5000 scripts/request-instructions.sh
#
# Starts `user-service serve` under `valgrind --tool=callgrind` on 127.0.0.1:$LOAD_PORT
# (default 18081) against a throwaway database and Redis key prefix, registers and logs in one
# account, warms up with 500 requests, zeroes the counters, sends REQUESTS (default 3000)
# with oha at 10 connections, and prints the instructions per request and the 15 functions
# that cost the most of them (self cost). The full profile stays in OUT (default
# ~/.cache/user-service/callgrind.out.request.1) for `callgrind_annotate`. For function
# names, build with `CARGO_PROFILE_RELEASE_STRIP=none` (symbols do not change the code).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

REQUESTS="${REQUESTS:-3000}"
LOAD_PORT="${LOAD_PORT:-18081}"
OUT="${OUT:-$CACHE_DIR/callgrind.out.request}"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a whole number, got '$REQUESTS'"
[[ "$LOAD_PORT" =~ ^[1-9][0-9]*$ ]] || die "LOAD_PORT must be a port number, got '$LOAD_PORT'"

BASE="http://127.0.0.1:$LOAD_PORT"
DB_NAME="user_service_instructions_$$"
REDIS_PREFIX="instructions-$$:"
CREDENTIALS='{"email":"instructions@example.com","password":"correct-horse-battery-staple-7731"}'
WORK_DIR=""
SERVER_PID=""

cleanup() {
    local rc=$?
    set +e
    [[ -n "$SERVER_PID" ]] && stop_process "$SERVER_PID"
    drop_database "$DB_NAME"
    delete_redis_prefix "$REDIS_PREFIX"
    [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in curl python3 valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y curl python3 valgrind)"
done
prepare_oha
ensure_services

if [[ -n "${USER_SERVICE_BIN:-}" ]]; then
    SERVER_BIN="$USER_SERVICE_BIN"
else
    log "==> cargo build --release -p user-service"
    cargo build --release -p user-service
    SERVER_BIN="$CARGO_TARGET_DIR/release/user-service"
fi
[[ -x "$SERVER_BIN" ]] || die "server binary not found: $SERVER_BIN"
tcp_open 127.0.0.1 "$LOAD_PORT" && die "something already listens on port $LOAD_PORT; set LOAD_PORT"

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/user-service-instructions.XXXXXX")"
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT" "$OUT".*
psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $DB_NAME" >/dev/null
log "==> $SERVER_BIN serve under callgrind on $BASE"
LISTEN_ADDR="127.0.0.1:$LOAD_PORT" \
    DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB_NAME" \
    REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
    REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    JWT_PRIVATE_KEY_FILE="$WORK_DIR/jwt-private-key.pem" \
    RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=0 \
    LOCKOUT_THRESHOLD=0 \
    RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$OUT" "$SERVER_BIN" serve \
    >"$WORK_DIR/server.log" 2>&1 </dev/null &
SERVER_PID=$!
wait_until 120 answers_200 "$SERVER_PID" "$BASE/healthz" || die "the server did not come up"

curl -sS -o /dev/null --max-time 60 -H 'Content-Type: application/json' \
    --data "$CREDENTIALS" "$BASE/v1/auth/register"
TOKEN="$(curl -sS --max-time 60 -H 'Content-Type: application/json' --data "$CREDENTIALS" \
    "$BASE/v1/auth/login" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

me() {
    oha "${OHA_ARGS[@]}" -n "$1" -c 10 -H "Authorization: Bearer $TOKEN" \
        "$BASE/v1/users/me"
}
me 500 >/dev/null
callgrind_control -z "$SERVER_PID" >/dev/null
me "$REQUESTS" >"$WORK_DIR/run.json"
callgrind_control -d "$SERVER_PID" >/dev/null
ok="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200", 0))' \
    <"$WORK_DIR/run.json")"
((ok == REQUESTS)) || die "only $ok of $REQUESTS requests answered 200"

# The dump after the zeroing is the last file callgrind wrote (OUT.1, OUT.2, ...).
dump="$(printf '%s\n' "$OUT".* | sort -V | tail -n 1)"
total="$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
echo "instructions per GET /v1/users/me: $((total / REQUESTS)) ($total over $REQUESTS requests; $dump)"
# (The thread entry points that hold the whole run are left out: they are not costs.)
callgrind_annotate --threshold=100 "$dump" | grep -E '^ *[0-9,]+ \(' |
    grep -vE 'PROGRAM TOTALS|\((9[0-9]|100)\.[0-9]+%\)' | head -n 15
