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
on_exit() {
    local rc=$?
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

# rustfmt colours its diff even into a pipe; not in CI logs.
FMT_ARGS=(--check)
[[ -z "${CI:-}" ]] || FMT_ARGS+=(--color never)

step "cargo fmt --all -- --check" cargo fmt --all -- "${FMT_ARGS[@]}"
step "cargo clippy --workspace --all-targets -- -D warnings" \
    cargo clippy --workspace --all-targets -- -D warnings
# The whole workspace's tests, then one closing line that adds up every test binary's
# result (cargo's own last line is the last binary's, often a doc-test run of 0 tests).
run_workspace_tests() {
    local out="$CARGO_TARGET_DIR/test-output.txt"
    mkdir -p "$CARGO_TARGET_DIR"
    local rc=0
    cargo test --workspace 2>&1 | tee "$out" || rc=$?
    awk '/^test result:/ { for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i;
            if ($(i + 1) ~ /^ignored/) s += $i } }
         END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$out"
    return "$rc"
}
step "cargo test --workspace" run_workspace_tests

# The SAM template against the endpoint list, cfn-lint, sam validate --lint, actionlint
# (Python tools in $HOME/.cache/user-service/venv, installed on first use).
step "template and workflow checks" bash scripts/check-template.sh
