#!/usr/bin/env bash
# The Swagger UI assets that /docs serves, vendored in shared/vendor/swagger-ui-dist/ from the
# npm package `swagger-ui-dist` at the version in its VERSION file. The package tarball must
# match INTEGRITY (the registry's `dist.integrity` of that version, recorded when it was
# pinned), so a tarball that changed since is refused.
#
#   scripts/vendor-swagger-ui.sh              # re-fetch the pinned version, rewrite the files
#   scripts/vendor-swagger-ui.sh --check      # the files are byte for byte the pinned tarball's
#   scripts/vendor-swagger-ui.sh --upgrade X  # pin version X (its registry integrity), fetch it
#
# The service embeds the files at compile time (shared/src/http/openapi/swagger_ui.rs), so
# `cargo build` needs no network; only this script talks to the registry (through npm).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PACKAGE=swagger-ui-dist
DIR=shared/vendor/swagger-ui-dist
# What /docs needs (the bundle carries Swagger UI and its dependencies), and the licence.
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE)

command -v npm >/dev/null || die "npm is needed (apt-get install -y npm)"

# sri_of FILE: the file's Subresource Integrity string (sha512-<base64>), as npm records it.
sri_of() {
    python3 -c 'import base64, hashlib, sys
print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
}

# unpack VERSION INTEGRITY OUT: the package tarball of VERSION, checked against INTEGRITY,
# unpacked into OUT/package.
unpack() {
    local version="$1" integrity="$2" out="$3" tarball actual
    tarball="$(cd "$out" && npm pack --silent "$PACKAGE@$version")"
    actual="$(sri_of "$out/$tarball")"
    [[ "$actual" == "$integrity" ]] ||
        die "$PACKAGE@$version: the tarball's integrity is $actual, the pinned one $integrity"
    tar -xzf "$out/$tarball" -C "$out"
    grep -q "\"version\": \"$version\"" "$out/package/package.json" ||
        die "$PACKAGE@$version: the tarball's package.json names another version"
}

MODE="${1:-fetch}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vendor-swagger-ui.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

case "$MODE" in
    --upgrade)
        version="${2:?usage: $0 --upgrade VERSION}"
        integrity="$(npm view "$PACKAGE@$version" dist.integrity)"
        [[ "$integrity" == sha512-* ]] || die "no sha512 integrity for $PACKAGE@$version: '$integrity'"
        printf '%s\n' "$version" >"$DIR/VERSION"
        printf '%s\n' "$integrity" >"$DIR/INTEGRITY"
        log "pinned $PACKAGE@$version ($integrity)"
        ;&
    fetch)
        version="$(<"$DIR/VERSION")" integrity="$(<"$DIR/INTEGRITY")"
        unpack "$version" "$integrity" "$WORK"
        for file in "${FILES[@]}"; do
            cp "$WORK/package/$file" "$DIR/$file"
        done
        log "vendored $PACKAGE@$version into $DIR: ${FILES[*]}"
        ;;
    --check)
        version="$(<"$DIR/VERSION")" integrity="$(<"$DIR/INTEGRITY")"
        unpack "$version" "$integrity" "$WORK"
        for file in "${FILES[@]}"; do
            cmp -s "$WORK/package/$file" "$DIR/$file" ||
                die "$DIR/$file differs from $PACKAGE@$version's (run scripts/vendor-swagger-ui.sh)"
        done
        log "$DIR: ${FILES[*]} are $PACKAGE@$version's, tarball integrity $integrity"
        ;;
    *)
        die "usage: $0 [--check | --upgrade VERSION]"
        ;;
esac
