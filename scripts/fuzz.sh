#!/usr/bin/env bash
# Contract fuzzing: Schemathesis generates requests for every operation of the running
# server's own /openapi.json and checks each answer against the document (status codes,
# content types, headers, response schemas, no 5xx, invalid input rejected, auth enforced),
# then walks chains of operations (stateful phase). Any finding fails the step and prints
# Schemathesis's reproduction (curl) lines. Called by scripts/test.sh after the cargo tests.
#
#   scripts/fuzz.sh                          # the test command's bounded run
#   FUZZ_MAX_EXAMPLES=500 scripts/fuzz.sh    # a longer hunt
#   FUZZ_SEED=123 scripts/fuzz.sh            # replay one run's generation
#
# Runs the debug `user-service` binary (`cargo build --workspace --bin user-service`, a no-op
# right after `cargo test --workspace`; USER_SERVICE_BIN=path runs that binary instead) on a
# free 127.0.0.1 port against a throwaway Postgres database and Redis key prefix, with cheap
# argon2 settings, the abuse limits off (every request comes from one IP) and a bootstrap
# admin. Tokens come from the API itself, through scripts/fuzz/hooks.py. Everything it
# creates (server, database, Redis keys, temporary folder) is removed on exit, failed or not.
# Traffic goes to 127.0.0.1 only and the run is bounded (examples per operation, stateful
# steps, request timeout).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Pinned: a new Schemathesis release can add checks, and a new finding should come with a
# deliberate upgrade, not with a random CI run.
SCHEMATHESIS_VERSION="4.32.5"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-100}"
[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_MAX_EXAMPLES must be a positive number, got '$MAX_EXAMPLES'"

DB_NAME="user_service_fuzz_$$"
REDIS_PREFIX="fuzz-$$:"
ADMIN_EMAIL="fuzz-admin@example.com"
WORK_DIR=""
SERVER_PID=""

cleanup() {
    local rc=$?
    set +e
    [[ -n "$SERVER_PID" ]] && stop_process "$SERVER_PID"
    if ((rc != 0)) && [[ -n "$WORK_DIR" && -s "$WORK_DIR/server.log" ]]; then
        log "--- server log: errors and warnings (last 30) ---"
        grep -E '"level":"(ERROR|WARN)"|^Error|panicked' "$WORK_DIR/server.log" | tail -n 30 >&2
    fi
    drop_database "$DB_NAME"
    delete_redis_prefix "$REDIS_PREFIX"
    [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in curl psql python3 pgrep; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y curl postgresql-client python3 procps)"
done
ensure_venv "schemathesis==$SCHEMATHESIS_VERSION"
ensure_services

SERVER_BIN="$(debug_server_bin)"

# --- server --------------------------------------------------------------------------------

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/user-service-fuzz.XXXXXX")"
ADMIN_PASSWORD="correct-horse-battery-$(python -c 'import secrets; print(secrets.token_urlsafe(18))')"

log "starting $SERVER_BIN serve on $BASE (database $DB_NAME, Redis prefix $REDIS_PREFIX)"
env -u AUDIT_TABLE -u SMTP_URL \
    LISTEN_ADDR="127.0.0.1:$PORT" \
    DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB_NAME" \
    REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
    REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    JWT_PRIVATE_KEY_FILE="$WORK_DIR/jwt-private-key.pem" \
    MAIL_BACKEND=log \
    ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 ARGON2_PARALLELISM=1 \
    RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=0 RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE=0 \
    RATE_LIMIT_FORGOT_PER_IP_PER_MINUTE=0 RATE_LIMIT_RESET_PER_IP_PER_MINUTE=0 \
    LOCKOUT_THRESHOLD=0 \
    BOOTSTRAP_ADMIN_EMAIL="$ADMIN_EMAIL" BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$SERVER_BIN" serve >"$WORK_DIR/server.log" 2>&1 </dev/null &
SERVER_PID=$!

wait_until 60 answers_200 "$SERVER_PID" "$BASE/readyz" || die "GET $BASE/readyz did not answer 200 within 60 s"
log "server is ready (pid $SERVER_PID)"

# --- tokens, through the API ---------------------------------------------------------------

# post_json PATH BODY OUTFILE [TOKEN]: prints the HTTP status.
post_json() {
    local auth=()
    [[ -z "${4:-}" ]] || auth=(-H "Authorization: Bearer $4")
    curl -sS -o "$3" -w '%{http_code}' --max-time 30 "${auth[@]}" \
        -H 'Content-Type: application/json' --data "$2" "$BASE$1"
}
json_field() { python -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

status="$(post_json /v1/auth/login "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" "$WORK_DIR/admin.json")"
[[ "$status" == 200 ]] || die "the bootstrap admin's login answered $status"
ADMIN_TOKEN="$(json_field "$WORK_DIR/admin.json" access_token)"
ADMIN_ID="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["user"]["id"])' "$WORK_DIR/admin.json")"

USER_EMAIL="fuzz-user@example.com"
USER_PASSWORD="correct-horse-battery-staple-$$"
status="$(post_json /v1/auth/register "{\"email\":\"$USER_EMAIL\",\"password\":\"$USER_PASSWORD\"}" "$WORK_DIR/user.json")"
[[ "$status" == 201 ]] || die "POST /v1/auth/register answered $status: $(cat "$WORK_DIR/user.json")"
status="$(post_json /v1/auth/login "{\"email\":\"$USER_EMAIL\",\"password\":\"$USER_PASSWORD\"}" "$WORK_DIR/user.json")"
[[ "$status" == 200 ]] || die "the user's login answered $status"
USER_TOKEN="$(json_field "$WORK_DIR/user.json" access_token)"

# The tokens work, and the roles are what the run assumes.
status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $ADMIN_TOKEN" "$BASE/v1/admin/users")"
[[ "$status" == 200 ]] || die "GET /v1/admin/users with the admin's token answered $status"
status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $USER_TOKEN" "$BASE/v1/admin/users")"
[[ "$status" == 403 ]] || die "GET /v1/admin/users with a user's token answered $status, not 403"
log "tokens: admin $ADMIN_ID and a user, both obtained through /v1/auth/login"

# --- Schemathesis ----------------------------------------------------------------------------

# Checks: all of them (`--checks all`), none excluded:
#   not_a_server_error, status_code_conformance, content_type_conformance,
#   response_headers_conformance, response_schema_conformance: every answer as documented
#   (problems as application/problem+json with the Problem schema);
#   negative_data_rejection: schema-violating input is refused with a 4xx;
#   positive_data_acceptance: schema-valid input is not refused. Narrowed by the hooks'
#   `filter_failure` to the rules JSON Schema cannot state (email syntax, password policy,
#   reset-token validity, cursor authenticity): their documented 400s with those codes are
#   not findings; any other refusal of schema-valid input is;
#   missing_required_header, ignored_auth: 401 without or with a broken token;
#   unsupported_method, allow_header_conformance: 405 with `Allow` for other methods;
#   use_after_free, ensure_resource_availability, object_level_authorization: what the
#   stateful phase creates is there, and what it deletes is gone.
# Phases: examples (none in the document yet: skipped), coverage (boundary and type-confused
# values of every field), fuzzing (random, valid and invalid), stateful (chains through the
# links Schemathesis infers: register/login -> refresh, create -> get -> patch -> delete).
export FUZZ_BASE_URL="$BASE" FUZZ_ADMIN_EMAIL="$ADMIN_EMAIL" FUZZ_ADMIN_PASSWORD="$ADMIN_PASSWORD" FUZZ_ADMIN_ID="$ADMIN_ID"
export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$REPO_ROOT/scripts/fuzz${PYTHONPATH:+:$PYTHONPATH}"
# The document is fetched first and given as a file: loaded from its URL, Schemathesis
# leaves out the operation that serves it (GET /openapi.json), and every operation counts.
curl -sS --fail --max-time 10 -o "$WORK_DIR/openapi.json" "$BASE/openapi.json"
ST_ARGS=(
    run "$WORK_DIR/openapi.json" --url "$BASE"
    --checks all
    --phases "examples,coverage,fuzzing,stateful"
    --max-examples "$MAX_EXAMPLES"
    --workers 2
    --request-timeout 10
    --suppress-health-check too_slow
)
[[ -z "${FUZZ_SEED:-}" ]] || ST_ARGS+=(--seed "$FUZZ_SEED")
# From the temporary folder: Schemathesis keeps a cache (.schemathesis/) in its working directory.
(cd "$WORK_DIR" && NO_COLOR=1 COLUMNS=120 st --no-color "${ST_ARGS[@]}")
