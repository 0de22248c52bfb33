#!/usr/bin/env bash
# Performance record against a peer: user-service's local server (release build) and a
# minimal fastapi-users app (bench/peer/app.py: why each of its settings is fair is written
# there), both on this machine, in one run, with the same oha settings. Not part of the test
# command: it wants a quiet machine.
#
#   scripts/compare.sh                  # 15 s per run, after a 3 s warm-up
#   DURATION=30 WARMUP=5 scripts/compare.sh
#   VERIFY_MS=14.4 scripts/compare.sh   # skip the criterion measurement of argon2 verify
#
# Runs, each side against its own fresh database:
#   GET /me at 100 connections (ours, peer), GET /me at 1,000 connections (ours),
#   login at 100 (ours, peer; one seeded user; ours with the per-IP login limit and the
#   lockout off, as scripts/load.sh does), register at 100 (ours, peer; per-IP register
#   limit off).
# Register bodies: oha sends a random line of a pre-generated file per request (`-Z`), so
# the emails are unique but for rare repeated draws: with REGISTER_POOL lines (default
# 2,000,000) and N requests about N^2/(2*REGISTER_POOL) repeats, i.e. about 1 at 2,000
# registrations. Both sides draw from the same file; a repeat's answer (ours 409, the peer's
# 400 REGISTER_USER_ALREADY_EXISTS) is reported as "dup", not as an error.
#
# Recorded per run from oha's JSON: responses/s, p50, p99, errors (non-2xx + connection
# errors), and each server's peak RSS during that run: VmHWM, reset (clear_refs) before
# the run; for the peer, the sum over uvicorn's process tree (master, 2 workers and
# multiprocessing's resource tracker: an upper bound, the peaks need not coincide).
# Hash-bound login limit = CPU count / single-thread argon2id verify time, the latter from
# `cargo bench -p user-service --bench hashing -- verify` (criterion's mean), unless VERIFY_MS
# is given.
#
# Prints a Markdown table with the ratios ours/peer and checks the goals of
# docs/performance.md (GET /me >= 30x the peer's req/s; login >= 90% of the hash-bound limit
# with p99 within 1.2x of p50 under overload: 100 connections against a few CPUs' worth of
# hashing): a missed goal prints MISSED but does not fail the script. It
# exits non-zero when something breaks: a server does not start or dies, a request in the
# setup fails, or user-service answers an error (non-2xx other than "dup") under load.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
OURS_PORT="${OURS_PORT:-18081}"
PEER_PORT="${PEER_PORT:-18082}"
REGISTER_POOL="${REGISTER_POOL:-2000000}"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds, got '$DURATION'"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds, got '$WARMUP'"
[[ "$OURS_PORT" =~ ^[1-9][0-9]*$ ]] || die "OURS_PORT must be a port number, got '$OURS_PORT'"
[[ "$PEER_PORT" =~ ^[1-9][0-9]*$ ]] || die "PEER_PORT must be a port number, got '$PEER_PORT'"
[[ "$REGISTER_POOL" =~ ^[1-9][0-9]*$ ]] || die "REGISTER_POOL must be a whole number, got '$REGISTER_POOL'"
if [[ -n "${VERIFY_MS:-}" ]]; then
    [[ "$VERIFY_MS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "VERIFY_MS must be milliseconds, got '$VERIFY_MS'"
fi

OURS="http://127.0.0.1:$OURS_PORT"
PEER="http://127.0.0.1:$PEER_PORT"
OURS_DB="user_service_cmp_$$"
PEER_DB="peer_cmp_$$"
REDIS_PREFIX="cmp-$$:"
PEER_VENV="$CACHE_DIR/peer-venv"
EMAIL="load@example.com"
PASSWORD="correct-horse-battery-staple-7731"
CREDENTIALS="{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
# fastapi-users' login takes an OAuth2 password form.
PEER_LOGIN_FORM="username=load%40example.com&password=$PASSWORD"

WORK_DIR=""
BIN_COPY_DIR=""
OURS_PID=""
PEER_PID=""
OHA_PID=""

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$OHA_PID" ]]; then
        kill "$OHA_PID" 2>/dev/null
        wait "$OHA_PID" 2>/dev/null
    fi
    [[ -n "$OURS_PID" ]] && stop_process "$OURS_PID"
    [[ -n "$PEER_PID" ]] && stop_process "$PEER_PID"
    if ((rc != 0)) && [[ -n "$WORK_DIR" ]]; then
        local f
        for f in "$WORK_DIR/ours.log" "$WORK_DIR/peer.log"; do
            if [[ -s "$f" ]]; then
                log "--- last lines of $(basename "$f") ---"
                tail -n 30 "$f" >&2
            fi
        done
    fi
    drop_database "$OURS_DB"
    drop_database "$PEER_DB"
    delete_redis_prefix "$REDIS_PREFIX"
    [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"
    [[ -n "$BIN_COPY_DIR" ]] && rm -rf "$BIN_COPY_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ---------------------------------------------------------------------------------

for tool in curl python3 psql pgrep; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y curl python3 postgresql-client procps)"
done

prepare_oha
grep -q -- '-Z <BODY_PATH_LINES>' <<<"$OHA_HELP" ||
    die "this oha cannot send a body per request from a file (-Z): $(oha --version)"

ensure_services

# The peer's venv, apart from the tools venv; reinstalled only when requirements.txt changes.
PEER_REQUIREMENTS="$REPO_ROOT/bench/peer/requirements.txt"
peer_stamp="$(sha256sum "$PEER_REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -x "$PEER_VENV/bin/uvicorn" || "$(cat "$PEER_VENV/.requirements-sha256" 2>/dev/null)" != "$peer_stamp" ]]; then
    log "==> installing the peer (bench/peer/requirements.txt) into $PEER_VENV"
    [[ -x "$PEER_VENV/bin/python" ]] || python3 -m venv "$PEER_VENV"
    "$PEER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PEER_REQUIREMENTS"
    echo "$peer_stamp" >"$PEER_VENV/.requirements-sha256"
fi

if [[ -n "${USER_SERVICE_BIN:-}" ]]; then
    SERVER_BIN="$USER_SERVICE_BIN"
    log "using USER_SERVICE_BIN=$SERVER_BIN (no build)"
else
    log "==> cargo build --release -p user-service --bin user-service"
    cargo build --release -p user-service --bin user-service
    SERVER_BIN="$CARGO_TARGET_DIR/release/user-service"
fi
[[ -x "$SERVER_BIN" ]] || die "server binary not found: $SERVER_BIN"
# The target directory may be shared with other worktrees: run a copy, so that a build there
# cannot swap the binary under this run.
BIN_COPY_DIR="$(mktemp -d "${TMPDIR:-/tmp}/user-service-bin.XXXXXX")"
cp "$SERVER_BIN" "$BIN_COPY_DIR/user-service"
SERVER_BIN="$BIN_COPY_DIR/user-service"

# --- the hash-bound login limit ------------------------------------------------------------

if [[ -n "${VERIFY_MS:-}" ]]; then
    VERIFY_SOURCE="VERIFY_MS=$VERIFY_MS (given)"
else
    log "==> cargo bench -p user-service --bench hashing -- verify (single-thread argon2id verify)"
    cargo bench -p user-service --bench hashing -- verify >&2
    estimates="$CARGO_TARGET_DIR/criterion/argon2id_default/verify/new/estimates.json"
    [[ -s "$estimates" ]] || die "criterion wrote no $estimates"
    VERIFY_MS="$(python3 -c 'import json, sys; print("%.2f" % (json.load(open(sys.argv[1]))["mean"]["point_estimate"] / 1e6))' "$estimates")"
    VERIFY_SOURCE="criterion mean of \`cargo bench -p user-service --bench hashing -- verify\`: $VERIFY_MS ms"
fi
# The peer's own single-thread verify (argon2-cffi through pwdlib, same parameters), for the
# peer's hash-bound limit: informational.
PEER_VERIFY_MS="$("$PEER_VENV/bin/python" - <<'PY'
import time

from pwdlib.hashers.argon2 import Argon2Hasher

hasher = Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)
password = "correct-horse-battery-staple-7731"
stored = hasher.hash(password)
for _ in range(5):
    hasher.verify(password, stored)
n = 50
started = time.perf_counter()
for _ in range(n):
    hasher.verify(password, stored)
print(f"{(time.perf_counter() - started) / n * 1000:.2f}")
PY
)"
CPUS="$(nproc)"
PEER_HASH_LIMIT="$(python3 -c 'import sys; print(f"{int(sys.argv[1]) * 1000 / float(sys.argv[2]):.0f}")' "$CPUS" "$PEER_VERIFY_MS")"
HASH_LIMIT="$(python3 -c 'import sys; print(f"{int(sys.argv[1]) * 1000 / float(sys.argv[2]):.0f}")' "$CPUS" "$VERIFY_MS")"
log "hash-bound login limit: $CPUS CPUs / $VERIFY_MS ms = $HASH_LIMIT logins/s"

# --- servers -------------------------------------------------------------------------------

for port in "$OURS_PORT" "$PEER_PORT"; do
    if tcp_open 127.0.0.1 "$port"; then
        die "something already listens on 127.0.0.1:$port; set OURS_PORT / PEER_PORT to free ports"
    fi
done

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/user-service-compare.XXXXXX")"

log "==> starting $SERVER_BIN serve on $OURS (database $OURS_DB)"
LISTEN_ADDR="127.0.0.1:$OURS_PORT" \
    DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$OURS_DB" \
    REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
    REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    JWT_PRIVATE_KEY_FILE="$WORK_DIR/jwt-private-key.pem" \
    RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=0 \
    RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE=0 \
    LOCKOUT_THRESHOLD=0 \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$SERVER_BIN" serve >"$WORK_DIR/ours.log" 2>&1 </dev/null &
OURS_PID=$!

log "==> starting fastapi-users (uvicorn, 2 workers) on $PEER (database $PEER_DB)"
"$PEER_VENV/bin/python" - "$WORK_DIR" <<'PY'
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

key = ec.generate_private_key(ec.SECP256R1())
out = Path(sys.argv[1])
(out / "peer-private.pem").write_bytes(
    key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
)
(out / "peer-public.pem").write_bytes(
    key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
)
PY
psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Xq -c "CREATE DATABASE \"$PEER_DB\"" >/dev/null
export PEER_DATABASE_URL="postgresql+asyncpg://postgres@$PG_HOST:$PG_PORT/$PEER_DB"
export PEER_JWT_PRIVATE_KEY_FILE="$WORK_DIR/peer-private.pem"
export PEER_JWT_PUBLIC_KEY_FILE="$WORK_DIR/peer-public.pem"
(cd bench/peer && "$PEER_VENV/bin/python" app.py create-schema)
"$PEER_VENV/bin/uvicorn" app:app --app-dir bench/peer --host 127.0.0.1 --port "$PEER_PORT" \
    --workers 2 --no-access-log --log-level warning >"$WORK_DIR/peer.log" 2>&1 </dev/null &
PEER_PID=$!

wait_until 60 answers_200 "$OURS_PID" "$OURS/healthz" || die "GET $OURS/healthz did not answer 200 within 60 s"
wait_until 60 answers_200 "$PEER_PID" "$PEER/healthz" || die "GET $PEER/healthz did not answer 200 within 60 s"
# uvicorn answers as soon as one worker is up; wait for both.
peer_workers_up() { (($(pgrep -c -P "$PEER_PID" -f spawn_main || true) >= 2)); }
wait_until 30 peer_workers_up || die "uvicorn did not start 2 workers"
sleep 2
log "both servers are up (ours pid $OURS_PID, peer pid $PEER_PID)"

# --- seed: one user on each side, and a token for GET /me ----------------------------------

# expect STATUS OUTFILE CURL_ARGS...: run curl, die unless it answers STATUS.
expect() {
    local want="$1" out="$2" status
    shift 2
    status="$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 "$@")"
    [[ "$status" == "$want" ]] || die "curl $* answered $status, not $want: $(head -c 300 "$out")"
}
token_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["access_token"])' "$1"; }

expect 201 "$WORK_DIR/seed.json" -H 'Content-Type: application/json' -d "$CREDENTIALS" "$OURS/v1/auth/register"
expect 200 "$WORK_DIR/seed.json" -H 'Content-Type: application/json' -d "$CREDENTIALS" "$OURS/v1/auth/login"
OURS_TOKEN="$(token_of "$WORK_DIR/seed.json")"
expect 200 "$WORK_DIR/seed.json" -H "Authorization: Bearer $OURS_TOKEN" "$OURS/v1/users/me"

expect 201 "$WORK_DIR/seed.json" -H 'Content-Type: application/json' -d "$CREDENTIALS" "$PEER/auth/register"
expect 200 "$WORK_DIR/seed.json" -d "$PEER_LOGIN_FORM" "$PEER/auth/jwt/login"
PEER_TOKEN="$(token_of "$WORK_DIR/seed.json")"
expect 200 "$WORK_DIR/seed.json" -H "Authorization: Bearer $PEER_TOKEN" "$PEER/users/me"

# Register bodies: one file for the warm-ups, one for the measured runs, shared by both sides
# (each side has its own database).
log "==> writing $REGISTER_POOL register bodies"
python3 - "$WORK_DIR" "$REGISTER_POOL" "$PASSWORD" <<'PY'
import sys

out, n, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for name, prefix, count in (("register-warm.txt", "w", 200_000), ("register-run.txt", "r", n)):
    with open(f"{out}/{name}", "w") as f:
        f.writelines(
            f'{{"email":"{prefix}{i:08d}@bench.example.com","password":"{password}"}}\n'
            for i in range(count)
        )
PY

# --- runs ----------------------------------------------------------------------------------

# tree_pids PID: PID and all its descendants.
tree_pids() {
    local child
    echo "$1"
    for child in $(pgrep -P "$1" || true); do
        tree_pids "$child"
    done
}

# reset_peak PID: reset VmHWM of PID's process tree to the current RSS.
RSS_NOTE="VmHWM, reset with /proc/PID/clear_refs before each run"
reset_peak() {
    local pid
    for pid in $(tree_pids "$1"); do
        if ! { echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null; then
            RSS_NOTE="VmHWM since start (/proc/PID/clear_refs not writable: peaks are cumulative)"
        fi
    done
}

# peak_kib PID: sum of VmHWM over PID's process tree.
peak_kib() {
    local pid total=0 v
    for pid in $(tree_pids "$1"); do
        v="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# cpu_ticks PID: user + system CPU time of PID's process tree, in clock ticks.
cpu_ticks() {
    local pid total=0 v
    for pid in $(tree_pids "$1"); do
        # Fields 14 and 15 of /proc/PID/stat; cut after "(comm) ", which may hold spaces.
        v="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"
# machine_ticks: "busy total" CPU ticks of the whole machine since boot (/proc/stat).
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

RESULTS="$WORK_DIR/results.jsonl"
: >"$RESULTS"

# run SIDE KEY CONNECTIONS DUP_STATUS OHA_ARGS...: a warm-up, then one measured oha run;
# appends its figures to $RESULTS. A "-Z FILE" argument is swapped for the warm-up file during
# the warm-up. DUP_STATUS: the status that means "email already taken" (register), or "-".
run() {
    local side="$1" key="$2" connections="$3" dup="$4"
    shift 4
    local pid json="$WORK_DIR/$side-$key-$connections.json" warm_args=() a
    if [[ "$side" == ours ]]; then pid="$OURS_PID"; else pid="$PEER_PID"; fi
    for a in "$@"; do
        if [[ "$a" == "$WORK_DIR/register-run.txt" ]]; then
            warm_args+=("$WORK_DIR/register-warm.txt")
        else
            warm_args+=("$a")
        fi
    done
    if ((WARMUP > 0)); then
        log "==> $side $key, $connections connections: ${WARMUP}s warm-up"
        oha "${OHA_ARGS[@]}" -z "${WARMUP}s" -c "$connections" "${warm_args[@]}" >/dev/null &
        OHA_PID=$!
        wait "$OHA_PID"
        OHA_PID=""
        sleep 1
    fi
    kill -0 "$pid" 2>/dev/null || die "the $side server died during the warm-up of $key"
    reset_peak "$pid"
    local ticks_before machine_before
    ticks_before="$(cpu_ticks "$pid")"
    machine_before="$(machine_ticks)"
    log "==> $side $key, $connections connections: ${DURATION}s${rate:+ at $rate req/s}"
    # In the background, so that Ctrl-C or TERM stops it at once (bash runs traps during wait).
    oha "${OHA_ARGS[@]}" -z "${DURATION}s" -c "$connections" "$@" >"$json" &
    OHA_PID=$!
    wait "$OHA_PID"
    OHA_PID=""
    kill -0 "$pid" 2>/dev/null || die "the $side server died during $key"
    local cpu_s machine_busy
    machine_busy="$(awk -v b="$machine_before" -v a="$(machine_ticks)" \
        'BEGIN {split(b, x, " "); split(a, y, " "); print (y[1] - x[1]) / (y[2] - x[2])}')"
    cpu_s="$(awk -v t="$(($(cpu_ticks "$pid") - ticks_before))" -v hz="$CLK_TCK" 'BEGIN {print t / hz}')"
    python3 - "$json" "$side" "$key" "$connections" "$dup" "$(peak_kib "$pid")" "$cpu_s" \
        "${rate:-}" "$machine_busy" >>"$RESULTS" <<'PY'
import json, sys

path, side, key, connections, dup, rss_kib, cpu_s, rate, machine_busy = sys.argv[1:10]
with open(path) as f:
    r = json.load(f)
codes = {str(k): int(v) for k, v in (r.get("statusCodeDistribution") or {}).items()}
transport = {str(k): int(v) for k, v in (r.get("errorDistribution") or {}).items()}
# Requests cut off by oha's own deadline are not the server's errors.
transport_errors = sum(v for k, v in transport.items() if "deadline" not in k.lower())
dups = codes.get(dup, 0)
non_2xx = sum(v for k, v in codes.items() if not k.startswith("2")) - dups
elapsed = r["summary"].get("total") or 0
p = r.get("latencyPercentiles") or {}
print(json.dumps({
    "side": side, "key": key, "connections": int(connections),
    # oha's requestsPerSec counts transport errors too; count responses (any status).
    "rps": sum(codes.values()) / elapsed if elapsed else 0.0,
    "p50": p.get("p50"), "p99": p.get("p99"),
    "errors": non_2xx + transport_errors, "dups": dups, "rss_kib": int(rss_kib),
    "cpu_s": float(cpu_s), "elapsed": elapsed, "responses": sum(codes.values()),
    "rate": int(rate) if rate else None, "machine_busy": float(machine_busy),
    "codes": codes, "transport": transport,
}))
PY
    sleep 2 # let closed connections settle before the next run
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"

run ours me 100 - -H "Authorization: Bearer $OURS_TOKEN" "$OURS/v1/users/me"
run peer me 100 - -H "Authorization: Bearer $PEER_TOKEN" "$PEER/users/me"
run ours me 1000 - -H "Authorization: Bearer $OURS_TOKEN" "$OURS/v1/users/me"
# With 1,000 connections each sending its next request as soon as an answer comes, the mean
# latency is 1,000 / throughput (Little's law): queueing, not service time. The same 1,000
# connections at a fixed rate (default: half of the 100-connection throughput; oha corrects
# for coordinated omission) show the latency below saturation. Informational, not a goal.
if [[ -z "${FIXED_RATE:-}" ]]; then
    FIXED_RATE="$(python3 -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = next(r for r in rows if (r["side"], r["key"], r["connections"]) == ("ours", "me", 100))
print(max(100, int(r["rps"] / 2 // 100 * 100)))' "$RESULTS")"
fi
[[ "$FIXED_RATE" =~ ^[1-9][0-9]*$ ]] || die "FIXED_RATE must be a whole number of requests/s, got '$FIXED_RATE'"
rate="$FIXED_RATE" run ours me-rate 1000 - -q "$FIXED_RATE" --latency-correction \
    -H "Authorization: Bearer $OURS_TOKEN" "$OURS/v1/users/me"
run ours login 100 - -m POST -T application/json -d "$CREDENTIALS" "$OURS/v1/auth/login"
run peer login 100 - -m POST -T application/x-www-form-urlencoded -d "$PEER_LOGIN_FORM" \
    "$PEER/auth/jwt/login"
# Register last: the users it adds would otherwise slow the peer's login lookup
# (lower(email) = lower($1) with no index on lower(email)).
run ours register 100 409 -m POST -T application/json -Z "$WORK_DIR/register-run.txt" \
    "$OURS/v1/auth/register"
run peer register 100 400 -m POST -T application/json -Z "$WORK_DIR/register-run.txt" \
    "$PEER/auth/register"

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report --------------------------------------------------------------------------------

python3 - "$RESULTS" <<PY
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
get = {(r["side"], r["key"], r["connections"]): r for r in rows}
cpus, verify_ms, hash_limit = $CPUS, $VERIFY_MS, $HASH_LIMIT

def ms(v):
    return "n/a" if v is None else f"{v * 1000:.1f}"

def err(r):
    return f"{r['errors']}" + (f" (+{r['dups']} dup)" if r["dups"] else "")

def mib(r):
    return f"{r['rss_kib'] / 1024:.0f}"

print(f"""
## user-service vs fastapi-users

- date: $STARTED; commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')
- machine: {cpus} CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), both servers, Postgres, Redis and oha on it
- load average (1/5/15 min) before the runs: $LOAD_BEFORE; after: $LOAD_AFTER
- $(oha --version), ${DURATION} s per run after a ${WARMUP} s warm-up, keep-alive
- req/s: responses of any status per second; errors: non-2xx + connection errors
  ("dup": a repeated draw from the register body file, email already taken)
- peak RSS: $RSS_NOTE; the peer: the sum over uvicorn's master, 2 workers and resource tracker
- hash-bound login limit: {cpus} CPUs / {verify_ms} ms verify = {hash_limit} logins/s ($VERIFY_SOURCE);
  the peer's (argon2-cffi via pwdlib, same parameters, timed in Python, single thread): {cpus} / $PEER_VERIFY_MS ms = $PEER_HASH_LIMIT logins/s

| scenario | conns | ours req/s | peer req/s | ours/peer | ours p50 ms | peer p50 ms | ours p99 ms | peer p99 ms | ours errors | peer errors | ours peak RSS MiB | peer peak RSS MiB |
|---|---|---|---|---|---|---|---|---|---|---|---|---|""")
names = {"me": "GET /me", "login": "POST login", "register": "POST register"}
names["me-rate"] = f"GET /me at a fixed {get[('ours', 'me-rate', 1000)]['rate']} req/s"
for key, conns in (("me", 100), ("me", 1000), ("me-rate", 1000), ("login", 100), ("register", 100)):
    o = get[("ours", key, conns)]
    p = get.get(("peer", key, conns))
    if p:
        ratio = f"{o['rps'] / p['rps']:.1f}x" if p["rps"] else "n/a"
        print(f"| {names[key]} | {conns} | {o['rps']:.0f} | {p['rps']:.0f} | {ratio} | {ms(o['p50'])} | {ms(p['p50'])} | {ms(o['p99'])} | {ms(p['p99'])} | {err(o)} | {err(p)} | {mib(o)} | {mib(p)} |")
    else:
        print(f"| {names[key]} | {conns} | {o['rps']:.0f} | (not run) | | {ms(o['p50'])} | | {ms(o['p99'])} | | {err(o)} | | {mib(o)} | |")

def goal(ok, text):
    print(f"- {'met' if ok else 'MISSED'}: {text}")

print("\nGoals:")
me, pme = get[("ours", "me", 100)], get[("peer", "me", 100)]
lo, plo = get[("ours", "login", 100)], get[("peer", "login", 100)]
hi = get[("ours", "me", 1000)]
r = me["rps"] / pme["rps"] if pme["rps"] else float("inf")
goal(r >= 30, f"GET /me >= 30x the peer's req/s: {me['rps']:.0f} / {pme['rps']:.0f} = {r:.1f}x")
share = lo["rps"] / hash_limit
goal(share >= 0.90, f"login >= 90% of the hash-bound limit: {lo['rps']:.0f} / {hash_limit} = {share:.0%}")
spread = lo["p99"] / lo["p50"] if lo["p50"] else float("inf")
goal(spread <= 1.2, f"login p99 within 1.2x of p50 under overload (100 connections): {ms(lo['p99'])} / {ms(lo['p50'])} ms = {spread:.2f}x")
r = lo["rps"] / plo["rps"] if plo["rps"] else float("inf")
print(f"- (not a goal: login {r:.1f}x the peer's req/s; the peer's login: {plo['rps']:.0f} / $PEER_HASH_LIMIT = {plo['rps'] / $PEER_HASH_LIMIT:.0%} of its own hash-bound limit)")
print(f"- (not a goal: p99 of GET /me at 1,000 connections: {ms(hi['p99'])} ms)")

print("\nResponses by status / error; the server's CPU time (its whole process tree) and how busy")
print("the whole machine was (all processes: the servers, Postgres, Redis, oha, anything else):")
for r in rows:
    parts = [f"{k}: {v}" for k, v in sorted(r["codes"].items())]
    parts += [f"{k}: {v}" for k, v in sorted(r["transport"].items())]
    per = r["cpu_s"] * 1000 / r["responses"] if r["responses"] else 0
    share = r["cpu_s"] / (r["elapsed"] * cpus) if r["elapsed"] else 0
    print(f"- {r['side']} {names[r['key']]} @ {r['connections']}: " + (", ".join(parts) or "no responses")
          + f"; server CPU {per:.2f} ms per response = {share:.0%} of {cpus} CPUs; machine {r['machine_busy']:.0%} busy")
PY

ours_errors="$(python3 -c 'import json, sys; print(sum(r["errors"] for r in map(json.loads, open(sys.argv[1])) if r["side"] == "ours"))' "$RESULTS")"
((ours_errors == 0)) || die "user-service answered $ours_errors errors under load (see above)"
