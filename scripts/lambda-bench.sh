#!/usr/bin/env bash
# Cold start, peak memory and package size of every Lambda function binary (not part of the
# test command). Each release binary runs under the tests' emulated Lambda Runtime API
# against a throwaway database and Redis key prefix on the local Postgres and Redis, and a
# Markdown table is printed: cold start (process spawn to the first response, median of 5),
# the init phase alone, peak RSS (VmHWM) after 100 and after 1,000 invocations, and the
# size of the deployment zip (`bootstrap`, zip -9).
#
#   scripts/lambda-bench.sh                           # build the release binaries, then measure
#   LAMBDA_BIN_DIR=path scripts/lambda-bench.sh       # measure the binaries in path (no build)
#   scripts/lambda-bench.sh --function login --runs 9 # arguments go to lambda-bench (--help)
#   scripts/lambda-bench.sh --env JWT_KEYS_SECRET_ARN=arn:...   # extra function variables
#
# The figures are for x86_64 builds of this machine: the deployed functions are arm64
# (`sam build`), whose sizes and timings differ; read these as indicative. The AWS SDK's
# variables (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...) are passed on to the functions, so a
# local moto server can stand in for Secrets Manager.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_services
command -v zip >/dev/null || log "zip not found: the zip column will say n/a"

# The functions as sam-build.sh builds them (for size: LAMBDA_OPT_LEVEL in lib.sh), in a
# cache of their own, so that they and scripts/load.sh's server (opt-level 3) do not
# replace each other's release binaries.
export CARGO_PROFILE_RELEASE_OPT_LEVEL="$LAMBDA_OPT_LEVEL"
export CARGO_TARGET_DIR="$CACHE_DIR/target-lambda-x86"
if [[ -z "${LAMBDA_BIN_DIR:-}" ]]; then
    log "building the release binaries: cargo build --release --workspace --bins"
    cargo build --release --workspace --bins
    LAMBDA_BIN_DIR="$CARGO_TARGET_DIR/release"
fi
BENCH="$CARGO_TARGET_DIR/release/lambda-bench"
[[ -x "$BENCH" ]] || cargo build --release -p user-service-tests --bin lambda-bench
"$BENCH" --dir "$LAMBDA_BIN_DIR" "$@"
