#!/usr/bin/env bash
# The project's test command (README, .ci/run, GitHub Actions): formatting, lints and the
# whole workspace's tests against the local PostgreSQL and Redis.
#
# Works on a fresh machine with nothing installed by hand; re-runs are incremental
# (build cache in $CARGO_TARGET_DIR, default ~/.cache/user-service/target).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

STARTED=$SECONDS
MOTO_PID=""
on_exit() {
    local rc=$?
    # Defined further down: absent when a step before it failed.
    if declare -F stop_moto >/dev/null; then stop_moto; fi
    local took
    took="$(fmt_duration $((SECONDS - STARTED)))"
    if ((rc == 0)); then
        printf '\n==> all steps passed; total elapsed %s\n' "$took"
    else
        printf '\n==> FAILED%s (exit %d); total elapsed %s\n' \
            "${CURRENT_STEP:+ in step: $CURRENT_STEP}" "$rc" "$took" >&2
    fi
}
trap on_exit EXIT

# --- steps: one function call each -----------------------------------------------------

step "setup: rustfmt and clippy" ensure_rust_components rustfmt clippy
step "setup: PostgreSQL and Redis" ensure_services
step "setup: a redis-server binary (private servers of the failover test)" ensure_redis_server

# rustfmt colours its diff even into a pipe; not in CI logs.
FMT_ARGS=(--check)
[[ -z "${CI:-}" ]] || FMT_ARGS+=(--color never)

step "cargo fmt --all -- --check" cargo fmt --all -- "${FMT_ARGS[@]}"
step "cargo clippy --workspace --all-targets -- -D warnings" \
    cargo clippy --workspace --all-targets -- -D warnings
# DynamoDB for the audit-trail tests: a local moto server (PyPI `moto[server]`, in the
# project venv) that the tests reach through the real AWS SDK. Port 5000 unless taken (or
# MOTO_PORT says otherwise); stopped on exit by on_exit above.
start_moto() {
    ensure_venv 'moto[server]'
    local port="${MOTO_PORT:-5000}" i
    if python - "$port" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)  # taken
sys.exit(1)
PY
    then
        port="$(free_port)"
        log "port ${MOTO_PORT:-5000} is taken; moto uses $port"
    fi
    mkdir -p "$CARGO_TARGET_DIR"
    moto_server -H 127.0.0.1 -p "$port" >"$CARGO_TARGET_DIR/moto.log" 2>&1 &
    MOTO_PID=$!
    for ((i = 0; i < 150; i++)); do
        kill -0 "$MOTO_PID" 2>/dev/null ||
            die "moto_server exited; see $CARGO_TARGET_DIR/moto.log"
        if python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/reset', data=b'', timeout=1)" 2>/dev/null; then
            export MOTO_ENDPOINT="http://127.0.0.1:$port"
            export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
            log "moto serving at $MOTO_ENDPOINT (pid $MOTO_PID)"
            return 0
        fi
        sleep 0.2
    done
    die "moto_server did not answer on port $port within 30 s"
}
stop_moto() {
    if [[ -n "$MOTO_PID" ]]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=""
    fi
}
step "setup: moto (DynamoDB for the audit tests)" start_moto

# The function binaries, which the `lambda` tests run under an emulated Lambda Runtime API.
step "cargo build --workspace --bins" cargo build --workspace --bins

# The whole workspace's tests, then one closing line that adds up every test binary's
# result (cargo's own last line is the last binary's, often a doc-test run of 0 tests).
run_workspace_tests() {
    local out="$CARGO_TARGET_DIR/test-output.txt"
    mkdir -p "$CARGO_TARGET_DIR"
    local rc=0
    # 8 tests at a time, not one per CPU: the integration tests mostly wait (on Postgres, on
    # Redis, on the timers of lockouts and key refreshes), so on 2 CPUs the api tests took
    # 112 s with 6 threads and 75 s with 12, using 9 s of CPU either way. 8 leaves Postgres
    # (100 connections) room for the tests that start several instances.
    cargo test --workspace -- --test-threads "${TEST_THREADS:-8}" 2>&1 | tee "$out" || rc=$?
    awk '/^test result:/ { for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i;
            if ($(i + 1) ~ /^ignored/) s += $i } }
         END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$out"
    return "$rc"
}
step "cargo test --workspace" run_workspace_tests

# Contract fuzzing: Schemathesis (pinned, in the project venv) against the debug server that
# the tests just built, with every check and phase; fails on any finding (scripts/fuzz.sh).
step "contract fuzzing (Schemathesis)" bash scripts/fuzz.sh

# The interactive API docs in a real browser: headless Chromium (Debian's, installed if
# missing) loads /docs from the debug server and checks that every operation is rendered and
# "Try it out" works; the screenshot is $CARGO_TARGET_DIR/artefacts/docs.png
# (scripts/docs-browser.sh).
step "API docs in a browser (Swagger UI, headless Chromium)" bash scripts/docs-browser.sh

# The SAM template against the endpoint list, cfn-lint, sam validate --lint, actionlint
# (Python tools in $HOME/.cache/user-service/venv, installed on first use).
step "template and workflow checks" bash scripts/check-template.sh

# Every function of template.yaml built as SAM deploys it (arm64 release, cargo-lambda
# through zig; cache in ~/.cache/user-service/target-lambda), each checked to be an aarch64
# `bootstrap` under 10 MiB zipped; prints the size table (see scripts/sam-build.sh).
step "sam build (arm64) and package sizes" bash scripts/sam-build.sh
