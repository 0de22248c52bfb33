#!/usr/bin/env bash
# The interactive API docs in a real browser: starts the debug server, loads /docs in headless
# Chromium (Debian's `chromium`, installed if missing) through playwright-core (npm, pinned in
# scripts/docs-browser/package-lock.json), checks that Swagger UI rendered every operation of
# /openapi.json, one operation's schema, example and problem codes, and a "Try it out"
# request (scripts/docs-browser/check.mjs), and saves a screenshot:
# $CARGO_TARGET_DIR/artefacts/docs.png. Called by scripts/test.sh after the cargo tests.
#
# First checks that the vendored Swagger UI files are the pinned npm package's
# (scripts/vendor-swagger-ui.sh --check).
#
# The server is the debug `user-service` binary (USER_SERVICE_BIN=path runs another) on a free
# 127.0.0.1 port, with a throwaway Postgres database and Redis key prefix, all removed on exit.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DB_NAME="user_service_docs_$$"
REDIS_PREFIX="docs-$$:"
WORK_DIR=""
SERVER_PID=""
NODE_DIR="$CACHE_DIR/docs-browser"
SCREENSHOT="$CARGO_TARGET_DIR/artefacts/docs.png"

cleanup() {
    local rc=$?
    set +e
    [[ -n "$SERVER_PID" ]] && stop_process "$SERVER_PID"
    if ((rc != 0)) && [[ -n "$WORK_DIR" && -s "$WORK_DIR/server.log" ]]; then
        log "--- server log (last 20 lines) ---"
        tail -n 20 "$WORK_DIR/server.log" >&2
    fi
    drop_database "$DB_NAME"
    delete_redis_prefix "$REDIS_PREFIX"
    [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/vendor-swagger-ui.sh --check

for tool in node npm curl psql; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y nodejs npm curl postgresql-client)"
done
ensure_chromium
# playwright-core at the locked version, installed once into the cache (npm ci checks the
# lock file's integrity); never a browser download of its own: it drives Debian's chromium.
mkdir -p "$NODE_DIR"
if ! cmp -s scripts/docs-browser/package-lock.json "$NODE_DIR/package-lock.json" ||
    [[ ! -d "$NODE_DIR/node_modules/playwright-core" ]]; then
    cp scripts/docs-browser/package.json scripts/docs-browser/package-lock.json "$NODE_DIR/"
    log "npm ci (playwright-core) in $NODE_DIR"
    (cd "$NODE_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
fi
ensure_services

SERVER_BIN="$(debug_server_bin)"

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/user-service-docs.XXXXXX")"
log "starting $SERVER_BIN serve on $BASE (database $DB_NAME, Redis prefix $REDIS_PREFIX)"
env -u AUDIT_TABLE -u SMTP_URL \
    LISTEN_ADDR="127.0.0.1:$PORT" \
    DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB_NAME" \
    REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
    REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    JWT_PRIVATE_KEY_FILE="$WORK_DIR/jwt-private-key.pem" \
    MAIL_BACKEND=log \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$SERVER_BIN" serve >"$WORK_DIR/server.log" 2>&1 </dev/null &
SERVER_PID=$!
wait_until 60 answers_200 "$SERVER_PID" "$BASE/readyz" || die "GET $BASE/readyz did not answer 200 within 60 s"

mkdir -p "$(dirname "$SCREENSHOT")"
rm -f "$SCREENSHOT"
PLAYWRIGHT_CORE_DIR="$NODE_DIR/node_modules/playwright-core" \
    timeout 120 node scripts/docs-browser/check.mjs "$BASE" "$SCREENSHOT"
[[ -s "$SCREENSHOT" ]] || die "no screenshot at $SCREENSHOT"
