#!/usr/bin/env bash
# Load benchmark of the local server's release build (not part of the test command).
# The per-IP login limit and the account lockout are switched off for the run (every request
# comes from one IP and one account): the login row measures the hash-bound throughput.
#
#   scripts/load.sh                 # 15 s per scenario
#   DURATION=60 scripts/load.sh     # longer runs
#
# Builds `cargo build --release -p user-service` (USER_SERVICE_BIN=path skips the build and
# runs that binary instead), installs oha with `cargo install oha --locked` if it is not on
# PATH, starts `user-service serve` on 127.0.0.1:$LOAD_PORT (default 18080) against a
# throwaway database and Redis key prefix, and prints a Markdown table per scenario:
# requests/s, latency percentiles, errors (non-2xx responses + transport errors) and the
# server's peak RSS during the run (VmRSS sampled every 100 ms).
#
#   scripts/load.sh --instructions                # instructions per GET /me, by callgrind
#   REQUESTS=5000 scripts/load.sh --instructions
#
# With --instructions the same server runs under `valgrind --tool=callgrind` instead, gets 500
# `GET /v1/users/me` to warm up, then REQUESTS (default 3000) at 10 connections with the
# counters zeroed, and the script prints the instructions per request and the 15 functions
# that cost the most of them (self cost). Instruction counts, unlike req/s, barely move with
# whatever else the machine is doing, so two builds compare to a few percent on a noisy VM.
# The profile stays in CALLGRIND_OUT (default ~/.cache/user-service/callgrind.out.load.1)
# for `callgrind_annotate`. For function names build with `CARGO_PROFILE_RELEASE_STRIP=none`
# (symbols do not change the code).
#
# Traffic goes to 127.0.0.1 only; every run stops after DURATION seconds.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

INSTRUCTIONS=false
case "${1:-}" in
    "") ;;
    --instructions) INSTRUCTIONS=true ;;
    *) die "unknown argument '$1' (the one argument is --instructions)" ;;
esac
DURATION="${DURATION:-15}"
LOAD_PORT="${LOAD_PORT:-18080}"
REQUESTS="${REQUESTS:-3000}"
CALLGRIND_OUT="${CALLGRIND_OUT:-$CACHE_DIR/callgrind.out.load}"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds, got '$DURATION'"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a whole number, got '$REQUESTS'"
[[ "$LOAD_PORT" =~ ^[1-9][0-9]*$ ]] || die "LOAD_PORT must be a port number, got '$LOAD_PORT'"

ADDR="127.0.0.1:$LOAD_PORT"
BASE="http://$ADDR"
DB_NAME="user_service_load_$$"
REDIS_PREFIX="load-$$:"
EMAIL="load@example.com"
PASSWORD="correct-horse-battery-staple-7731"
CREDENTIALS="{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"

WORK_DIR=""
SERVER_PID=""
SAMPLER_PID=""
OHA_PID=""

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$OHA_PID" ]]; then
        kill "$OHA_PID" 2>/dev/null
        wait "$OHA_PID" 2>/dev/null
    fi
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null
        wait "$SAMPLER_PID" 2>/dev/null
    fi
    [[ -n "$SERVER_PID" ]] && stop_process "$SERVER_PID"
    if ((rc != 0)) && [[ -n "$WORK_DIR" && -s "$WORK_DIR/server.log" ]]; then
        log "--- last lines of the server log ---"
        tail -n 30 "$WORK_DIR/server.log" >&2
    fi
    drop_database "$DB_NAME"
    delete_redis_prefix "$REDIS_PREFIX"
    [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ---------------------------------------------------------------------------------

for tool in curl python3 psql pgrep; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y curl python3 postgresql-client procps)"
done
if [[ "$INSTRUCTIONS" == true ]]; then
    for tool in valgrind callgrind_control callgrind_annotate; do
        command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y valgrind)"
    done
fi

prepare_oha

ensure_services

if [[ -n "${USER_SERVICE_BIN:-}" ]]; then
    SERVER_BIN="$USER_SERVICE_BIN"
    log "using USER_SERVICE_BIN=$SERVER_BIN (no build)"
else
    log "==> cargo build --release -p user-service"
    cargo build --release -p user-service
    SERVER_BIN="$CARGO_TARGET_DIR/release/user-service"
fi
[[ -x "$SERVER_BIN" ]] || die "server binary not found: $SERVER_BIN"

# --- server --------------------------------------------------------------------------------

if tcp_open 127.0.0.1 "$LOAD_PORT"; then
    die "something already listens on $ADDR; set LOAD_PORT to a free port"
fi

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/user-service-load.XXXXXX")"
SERVER_CMD=("$SERVER_BIN")
STARTUP_SECONDS=60
if [[ "$INSTRUCTIONS" == true ]]; then
    mkdir -p "$(dirname "$CALLGRIND_OUT")"
    rm -f "$CALLGRIND_OUT" "$CALLGRIND_OUT".*
    SERVER_CMD=(valgrind --tool=callgrind --callgrind-out-file="$CALLGRIND_OUT" "$SERVER_BIN")
    STARTUP_SECONDS=120
fi
log "==> starting ${SERVER_CMD[*]} serve on $ADDR (database $DB_NAME, Redis prefix $REDIS_PREFIX)"
LISTEN_ADDR="$ADDR" \
    DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB_NAME" \
    REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
    REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    JWT_PRIVATE_KEY_FILE="$WORK_DIR/jwt-private-key.pem" \
    RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE="${RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE:-0}" \
    LOCKOUT_THRESHOLD="${LOCKOUT_THRESHOLD:-0}" \
    RUST_LOG="${RUST_LOG:-warn}" \
    "${SERVER_CMD[@]}" serve >"$WORK_DIR/server.log" 2>&1 </dev/null &
SERVER_PID=$!

wait_until "$STARTUP_SECONDS" answers_200 "$SERVER_PID" "$BASE/healthz" ||
    die "GET $BASE/healthz did not answer 200 within $STARTUP_SECONDS s"
log "server is up (pid $SERVER_PID)"

# post_json PATH BODY OUTFILE: prints the HTTP status.
post_json() {
    curl -sS -o "$3" -w '%{http_code}' --max-time 30 \
        -H 'Content-Type: application/json' --data "$2" "$BASE$1"
}

status="$(post_json /v1/auth/register "$CREDENTIALS" "$WORK_DIR/register.json")"
[[ "$status" == 201 ]] ||
    die "POST /v1/auth/register answered $status: $(cat "$WORK_DIR/register.json")"
status="$(post_json /v1/auth/login "$CREDENTIALS" "$WORK_DIR/login.json")"
[[ "$status" == 200 ]] ||
    die "POST /v1/auth/login answered $status: $(cat "$WORK_DIR/login.json")"
TOKEN="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' \
    <"$WORK_DIR/login.json")"
[[ -n "$TOKEN" ]] || die "no access_token in the login response"
status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
    -H "Authorization: Bearer $TOKEN" "$BASE/v1/users/me")"
[[ "$status" == 200 ]] || die "GET /v1/users/me with the fresh token answered $status"

# --- instructions (--instructions) ---------------------------------------------------------

if [[ "$INSTRUCTIONS" == true ]]; then
    me() {
        oha "${OHA_ARGS[@]}" -n "$1" -c 10 -H "Authorization: Bearer $TOKEN" "$BASE/v1/users/me"
    }
    log "==> GET /v1/users/me under callgrind: 500 to warm up, then $REQUESTS counted"
    me 500 >/dev/null
    callgrind_control -z "$SERVER_PID" >/dev/null
    me "$REQUESTS" >"$WORK_DIR/instructions.json"
    callgrind_control -d "$SERVER_PID" >/dev/null
    ok="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200", 0))' \
        <"$WORK_DIR/instructions.json")"
    ((ok == REQUESTS)) || die "only $ok of $REQUESTS requests answered 200"
    # The dump after the zeroing is the last file callgrind wrote (OUT.1, OUT.2, ...). The
    # filters read their whole input: one that stopped early would end the pipeline with
    # SIGPIPE, a failure under pipefail.
    dump="$(printf '%s\n' "$CALLGRIND_OUT".* | sort -V | tail -n 1)"
    total="$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ && !seen++ {gsub(",", "", $1); print $1}')"
    echo "instructions per GET /v1/users/me: $((total / REQUESTS)) ($total over $REQUESTS requests; $dump)"
    # The thread entry points, which hold the whole run, are not costs of their own.
    callgrind_annotate --threshold=100 "$dump" | grep -E '^ *[0-9,]+ \(' |
        grep -vE 'PROGRAM TOTALS|\((9[0-9]|100)\.[0-9]+%\)' | sed -n '1,15p'
    exit 0
fi

# --- runs ----------------------------------------------------------------------------------

# sample_rss PID FILE: every 100 ms, write the largest VmRSS (KiB) of PID seen so far to FILE.
sample_rss() {
    local pid="$1" file="$2" max=0 key value
    echo 0 >"$file"
    while [[ -r "/proc/$pid/status" ]]; do
        while read -r key value _; do
            if [[ "$key" == VmRSS: ]]; then
                if ((value > max)); then
                    max=$value
                    echo "$max" >"$file"
                fi
                break
            fi
        done <"/proc/$pid/status" 2>/dev/null || break
        sleep 0.1
    done
}

ROWS=()
NOTES=()

# run_scenario NAME CONNECTIONS OHA_ARGS... : one fixed-duration oha run against the server.
run_scenario() {
    local name="$1" connections="$2"
    shift 2
    local n=$((${#ROWS[@]} + 1))
    local json="$WORK_DIR/run-$n.json" rss="$WORK_DIR/rss-$n"
    log "==> $name, $connections connections, ${DURATION}s"
    sample_rss "$SERVER_PID" "$rss" &
    SAMPLER_PID=$!
    # In the background, so that Ctrl-C or TERM stops it at once (bash runs traps during wait).
    oha "${OHA_ARGS[@]}" -z "${DURATION}s" -c "$connections" "$@" >"$json" &
    OHA_PID=$!
    wait "$OHA_PID"
    OHA_PID=""
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during: $name"

    local out
    out="$(python3 - "$json" "$name" "$connections" "$(cat "$rss")" <<'PY'
import json, sys

path, name, connections, rss_kib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(path) as f:
    r = json.load(f)
summary = r["summary"]
percentiles = r.get("latencyPercentiles") or {}
codes = {str(k): int(v) for k, v in (r.get("statusCodeDistribution") or {}).items()}
transport = {str(k): int(v) for k, v in (r.get("errorDistribution") or {}).items()}
# Requests cut off by oha's own deadline are not the server's errors.
aborted = sum(v for k, v in transport.items() if "deadline" in k.lower())
transport_errors = sum(v for k, v in transport.items() if "deadline" not in k.lower())
non_2xx = sum(v for k, v in codes.items() if not k.startswith("2"))

def ms(value):
    return "n/a" if value is None else f"{value * 1000:.2f}"

# oha's requestsPerSec counts transport errors too; count responses (any status) instead.
elapsed = summary.get("total") or 0
rps = sum(codes.values()) / elapsed if elapsed else None
row = "| {} | {} | {} | {} | {} | {} | {} |".format(
    name,
    connections,
    "n/a" if rps is None else f"{rps:.0f}",
    ms(percentiles.get("p50")),
    ms(percentiles.get("p99")),
    non_2xx + transport_errors,
    f"{rss_kib / 1024:.1f}",
)
parts = [f"{k}: {v}" for k, v in sorted(codes.items())]
parts += [f"{k}: {v}" for k, v in sorted(transport.items())]
note = f"- {name} @ {connections}: " + (", ".join(parts) or "no responses")
if aborted:
    note += " (requests cut at the deadline are not counted as errors)"
print(row)
print(note)
PY
    )"
    ROWS+=("$(sed -n 1p <<<"$out")")
    NOTES+=("$(sed -n 2p <<<"$out")")
    sleep 2 # let closed connections settle before the next run
}

run_scenario "GET /v1/users/me" 100 -H "Authorization: Bearer $TOKEN" "$BASE/v1/users/me"
run_scenario "GET /v1/users/me" 1000 -H "Authorization: Bearer $TOKEN" "$BASE/v1/users/me"
run_scenario "POST /v1/auth/login" 100 -m POST -T application/json -d "$CREDENTIALS" \
    "$BASE/v1/auth/login"

hwm_kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)"

# --- report --------------------------------------------------------------------------------

cat <<EOF

## user-service load test

- commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')
- nproc: $(nproc); $(oha --version); ${DURATION} s per run; server and load generator on the same machine
- peak RSS: the server's largest VmRSS sampled every 100 ms during that run; VmHWM over the whole process life: $(awk -v k="${hwm_kib:-0}" 'BEGIN {printf "%.1f", k / 1024}') MiB
- req/s: responses of any status per second; errors: non-2xx responses + transport errors

| scenario | connections | req/s | p50 ms | p99 ms | errors | peak RSS MiB |
|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${ROWS[@]}"
printf '\nResponses by status / error:\n'
printf '%s\n' "${NOTES[@]}"
