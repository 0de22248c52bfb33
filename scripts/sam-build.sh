#!/usr/bin/env bash
# `sam build` of every function in template.yaml (arm64, release, cargo-lambda through zig),
# then of the example examples/protected-api/template.yaml, then a check of what they built:
# one aarch64 ELF `bootstrap` per function, and its size zipped as the Lambda package is
# (deflate level 9), which must stay under 10 MiB.
#
# Run by scripts/test.sh (after the tests) and by .github/workflows/deploy.yml; on its own:
#   scripts/sam-build.sh
# Output: .aws-sam/build, and examples/protected-api/.aws-sam/build for the example (SAM's
# default, gitignored: `sam deploy` finds it there without flags, and every clone has its
# own, so two worktrees never overwrite each other's build).
#
# How SAM builds these functions (aws-lambda-builders' rust-cargolambda workflow): in place,
# nothing copied. For each function it runs `cargo lambda build --release --arm64 --bin NAME`
# with the function's folder as working directory, so cargo sees the workspace root, its
# Cargo.lock and [profile.release]; then it copies `$CARGO_TARGET_DIR/lambda/NAME/bootstrap`
# (the directory `cargo metadata` reports, which honours CARGO_TARGET_DIR) into the build
# directory. Sequential (samconfig.toml: parallel = false, cached = false): every function
# shares the compiled dependencies, and cargo's own fingerprints make a re-run with no change
# a no-op per function.
#
# Before SAM, one `cargo lambda build` of every function crate at once, with exactly SAM's
# flags: one cargo invocation compiles the core library once and links the functions on all
# cores, where SAM's one-by-one invocations link one at a time. SAM's own per-function builds
# then find everything fresh and only copy. This works because every function crate has the
# same features (each enables `ses`): with different ones, SAM's build of a function would
# compile the core library again for its own feature set.
#
# The arm64 build cache is its own directory outside the clone, LAMBDA_CARGO_TARGET_DIR
# (default ~/.cache/user-service/target-lambda): in the x86 test cache it would wait on that
# cache's lock whenever a test build runs (they share no artifacts anyway: other target,
# other profile, cargo-lambda's `-C target-cpu=neoverse-n1`). Like the x86 cache, it is
# shared by every clone on the machine: cargo names the workspace's own crates by their path
# inside the workspace and judges them fresh by file times, which scripts/source_times.py
# (run when lib.sh is sourced) sets to when the caches first saw each file's content, so
# clones reuse each other's compiled crates.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Versions this build was last seen working with (the same SAM as scripts/check-template.sh).
LAMBDA_TOOLS=(
    'cargo-lambda==1.9.2'
    'ziglang==0.17.1'
    'aws-sam-cli==1.170.0'
)
LAMBDA_RUST_TARGET=aarch64-unknown-linux-gnu
# Lambda's limit for a zip uploaded directly is 50 MiB; ours is far lower so that a
# dependency that bloats every function is noticed here, not at cold-start time.
ZIP_LIMIT_BYTES=$((10 * 1024 * 1024))
BUILD_DIR=.aws-sam/build

export CARGO_TARGET_DIR="${LAMBDA_CARGO_TARGET_DIR:-$CACHE_DIR/target-lambda}"
# Built for size (see LAMBDA_OPT_LEVEL in lib.sh); SAM's own cargo-lambda runs inherit it.
export CARGO_PROFILE_RELEASE_OPT_LEVEL="$LAMBDA_OPT_LEVEL"
# SAM and boto: no telemetry, no instance-metadata probing, a region for the transform.
export SAM_CLI_TELEMETRY=0
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

# ensure_rust_target TRIPLE: `rustup target add` it unless installed.
ensure_rust_target() {
    if ! command -v rustup >/dev/null; then
        log "rustup not found; assuming the toolchain already has the $1 standard library"
        return 0
    fi
    if ! rustup target list --installed | grep -qx "$1"; then
        log "installing the Rust target $1"
        rustup target add "$1"
    fi
}

ensure_venv "${LAMBDA_TOOLS[@]}"
ensure_rust_target "$LAMBDA_RUST_TARGET"

# Functions of the template: "LogicalId CodeUri" per line.
mapfile -t FUNCTIONS < <(python - <<'PY'
from samcli.yamlhelper import yaml_parse

with open("template.yaml") as f:
    template = yaml_parse(f.read())
for name, resource in template["Resources"].items():
    if resource.get("Type") == "AWS::Serverless::Function":
        print(name, resource["Properties"]["CodeUri"])
PY
)
((${#FUNCTIONS[@]})) || die "no AWS::Serverless::Function in template.yaml"

# A function whose crate is not written yet (its CodeUri folder is missing) is reported and
# left out, like scripts/check-template.sh does; every other one must build. Not in CI
# (`CI` set): a deploy would upload that folder as the function's code.
EXCLUDE=()
SKIPPED=()
for entry in "${FUNCTIONS[@]}"; do
    read -r logical_id code_uri <<<"$entry"
    if [[ ! -f "$code_uri/Cargo.toml" ]]; then
        EXCLUDE+=(--exclude "$logical_id")
        SKIPPED+=("$logical_id ($code_uri)")
    fi
done
if ((${#SKIPPED[@]})); then
    [[ -z "${CI:-}" ]] || die "functions without a crate: ${SKIPPED[*]}"
    log "WARNING: not built, their crates do not exist yet: ${SKIPPED[*]}"
fi

PACKAGES=()
for entry in "${FUNCTIONS[@]}"; do
    read -r _ code_uri <<<"$entry"
    [[ -f "$code_uri/Cargo.toml" ]] && PACKAGES+=(-p "fn-${code_uri#functions/}")
done
log "cargo lambda build of ${#FUNCTIONS[@]} functions at once; cargo cache $CARGO_TARGET_DIR"
started=$SECONDS
cargo lambda build --release --arm64 "${PACKAGES[@]}"
log "cargo lambda build took $(fmt_duration $((SECONDS - started)))"

log "sam build: ${#FUNCTIONS[@]} functions, ${#SKIPPED[@]} left out; cargo cache $CARGO_TARGET_DIR"
started=$SECONDS
sam build --build-dir "$BUILD_DIR" "${EXCLUDE[@]}"
log "sam build took $(fmt_duration $((SECONDS - started)))"

# The example of another API behind the authorizer, built as its README says: `sam build`
# in its folder, from its own template.yaml, into its own .aws-sam (never into the build
# that gets deployed). Its crate is a workspace member, so cargo-lambda builds it against
# the workspace's Cargo.lock and [profile.release], in the same cargo cache: the
# dependencies it shares with the functions with the same features are reused, the others
# (lambda_http and the crates under it, with the example's fewer features) are compiled
# once for it and stay cached.
EXAMPLE_DIR=examples/protected-api
log "sam build of $EXAMPLE_DIR (its own template); cargo cache $CARGO_TARGET_DIR"
started=$SECONDS
(cd "$EXAMPLE_DIR" && sam build)
log "sam build of $EXAMPLE_DIR took $(fmt_duration $((SECONDS - started)))"

# check_packages BUILD_DIR SIZES_FILE "LogicalId CodeUri"...: every built function is an
# aarch64 ELF executable named bootstrap; prints its sizes; fails past the limit.
check_packages() {
    python - "$1" "$ZIP_LIMIT_BYTES" "$2" "${@:3}" <<'PY'
"""Checks SAM's build output and prints the size table. Zips in memory, as `sam package`
does (one entry `bootstrap`, deflate), at level 9 (`zip -9`), two at a time (zlib releases
the GIL). Zipped sizes are remembered by the binary's SHA-256, so a re-run without changes
zips nothing (level 9 takes ~1 s per function)."""
import hashlib
import io
import json
import pathlib
import struct
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

build_dir = pathlib.Path(sys.argv[1])
limit = int(sys.argv[2])
cache_file = pathlib.Path(sys.argv[3])
functions = [entry.split(maxsplit=1) for entry in sys.argv[4:]]
try:
    zip_cache = json.loads(cache_file.read_text())
except (OSError, ValueError):
    zip_cache = {}
EM_AARCH64 = 183
ET_EXEC, ET_DYN = 2, 3
MIB = 1024 * 1024


def elf_problem(data):
    """Why `data` is not a 64-bit little-endian aarch64 executable, or None."""
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_machine != EM_AARCH64:
        return f"ELF machine {e_machine}, not aarch64 ({EM_AARCH64})"
    if e_type not in (ET_EXEC, ET_DYN):
        return f"ELF type {e_type}, not an executable"
    return None


def zipped_size(data):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, data, compresslevel=9)
    return len(buffer.getvalue())


def check(function):
    """One row of the table: id, folder, size, zipped size, SHA-256, problem."""
    logical_id, code_uri = function
    if not (pathlib.Path(code_uri) / "Cargo.toml").is_file():
        return logical_id, code_uri, None, None, None, "not built: crate missing"
    bootstrap = build_dir / logical_id / "bootstrap"
    if not bootstrap.is_file():
        return logical_id, code_uri, None, None, None, f"missing {bootstrap}"
    data = bootstrap.read_bytes()
    problem = elf_problem(data)
    if problem is None and not bootstrap.stat().st_mode & 0o111:
        problem = "not executable"
    digest = hashlib.sha256(data).hexdigest()
    zipped = zip_cache.get(digest)
    if not isinstance(zipped, int):
        zipped = zipped_size(data)
    return logical_id, code_uri, len(data), zipped, digest, problem


with ThreadPoolExecutor(max_workers=2) as pool:
    rows = list(pool.map(check, functions))
# Only this build's binaries, so the file stays as small as the build.
cache_file.parent.mkdir(parents=True, exist_ok=True)
cache_file.write_text(json.dumps({r[4]: r[3] for r in rows if r[4] is not None}))

errors = []
width = max(len(r[1]) for r in rows)
print(f"\n{'function':<{width}} | {'unzipped':>9} | {'zipped':>9}")
print(f"{'-' * width}-|-{'-' * 9}-|-{'-' * 9}")
for logical_id, code_uri, size, zipped, _, problem in sorted(rows, key=lambda r: -(r[3] or 0)):
    if size is None:
        print(f"{code_uri:<{width}} | {'-':>9} | {'-':>9}  ({problem})")
        if not problem.startswith("not built"):
            errors.append(f"{logical_id}: {problem}")
        continue
    mark = ""
    if problem:
        errors.append(f"{logical_id}: {problem}")
        mark = f"  ({problem})"
    elif zipped >= limit:
        errors.append(f"{logical_id}: zipped {zipped / MIB:.2f} MiB >= {limit / MIB:.0f} MiB")
        mark = "  (TOO BIG)"
    print(f"{code_uri:<{width}} | {size / MIB:>5.2f} MiB | {zipped / MIB:>5.2f} MiB{mark}")

if errors:
    sys.exit("sam-build: " + "; ".join(errors))
built = [r for r in rows if r[2] is not None]
print(f"{len(built)} functions built, each an aarch64 ELF `bootstrap` under "
      f"{limit / MIB:.0f} MiB zipped (together {sum(r[3] for r in built) / MIB:.1f} MiB)")
PY
}
check_packages "$BUILD_DIR" "$CARGO_TARGET_DIR/sam-build-zip-sizes.json" "${FUNCTIONS[@]}"
check_packages "$EXAMPLE_DIR/.aws-sam/build" "$CARGO_TARGET_DIR/sam-build-example-zip-sizes.json" \
    "ExampleFunction $EXAMPLE_DIR/function"
