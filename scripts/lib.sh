# shellcheck shell=bash
# Shared helpers for the scripts in scripts/. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it sets REPO_ROOT, CACHE_DIR and CARGO_TARGET_DIR, and puts ~/.cargo/bin on PATH.

# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${USER_SERVICE_CACHE_DIR:-$HOME/.cache/user-service}"
VENV_DIR="$CACHE_DIR/venv"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"
if [[ -n "${CI:-}" ]]; then
    export CARGO_TERM_COLOR=never
fi
# The shared caches judge this checkout's own crates by file times, and a fresh clone's are
# all new: before anything here builds, every file gets the time the caches know its content
# by, a changed one the time now (scripts/source_times.py; manifest in $CACHE_DIR). Only a
# fresh clone may have its times set back (.ci/run says so with USER_SERVICE_FRESH_CLONE=1);
# a working tree's files are only ever made newer.
sync_source_times() {
    local args=("$CACHE_DIR/source-times.json" "$REPO_ROOT")
    [[ -z "${USER_SERVICE_FRESH_CLONE:-}" ]] || args+=(--restore)
    python3 "$REPO_ROOT/scripts/source_times.py" "${args[@]}"
}
if [[ -e "$REPO_ROOT/.git" ]] && command -v git >/dev/null; then
    sync_source_times
fi
case ":$PATH:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) export PATH="$HOME/.cargo/bin:$PATH" ;;
esac

# The Lambda functions' builds (scripts/sam-build.sh, scripts/lambda-bench.sh) optimise for
# size; Cargo.toml's [profile.release] keeps the password hash at opt-level 3 and the local
# server is built at 3 throughout. See docs/performance.md ("What a function's memory is").
# shellcheck disable=SC2034 # used by the scripts that source this file
LAMBDA_OPT_LEVEL=s

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Seconds as "1m 23s".
fmt_duration() { printf '%dm %02ds' "$(($1 / 60))" "$(($1 % 60))"; }

# shellcheck disable=SC2034 # read by the sourcing script's exit trap
CURRENT_STEP=""
# step NAME CMD [ARGS...]: announce "==> NAME", run CMD, report its time. Any failure
# stops the script (set -e); CURRENT_STEP says where for the exit message.
step() {
    local name="$1" started=$SECONDS
    shift
    CURRENT_STEP="$name"
    printf '\n==> %s\n' "$name"
    "$@"
    printf -- '--> %s: ok (%s)\n' "$name" "$(fmt_duration $((SECONDS - started)))"
    CURRENT_STEP=""
}

# ---------------------------------------------------------------------------------------
# Rust toolchain
# ---------------------------------------------------------------------------------------

# ensure_rust_components COMPONENT...: `rustup component add` the ones not yet installed.
ensure_rust_components() {
    command -v cargo >/dev/null || die "cargo not found on PATH"
    if ! command -v rustup >/dev/null; then
        log "rustup not found; assuming the toolchain already has: $*"
        return 0
    fi
    local installed missing=() c
    installed="$(rustup component list --installed 2>/dev/null || true)"
    for c in "$@"; do
        grep -Eq "^${c}(-|$)" <<<"$installed" || missing+=("$c")
    done
    if ((${#missing[@]})); then
        log "installing rustup components: ${missing[*]}"
        rustup component add "${missing[@]}"
    fi
}

# ensure_cargo_tool BINARY [CRATE]: `cargo install CRATE --locked` when BINARY is not on PATH.
ensure_cargo_tool() {
    local bin="$1" crate="${2:-$1}"
    command -v "$bin" >/dev/null && return 0
    log "installing $crate with cargo install (into ~/.cargo/bin)"
    cargo install "$crate" --locked
    command -v "$bin" >/dev/null || die "$bin still not on PATH after cargo install $crate"
}

# ---------------------------------------------------------------------------------------
# Local services: PostgreSQL and Redis
# ---------------------------------------------------------------------------------------

# True when something accepts TCP connections on HOST PORT (bash /dev/tcp, no client needed).
tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

postgres_up() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3
    elif command -v psql >/dev/null; then
        psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -XAtqc 'select 1' >/dev/null 2>&1
    else
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}

redis_up() {
    if command -v redis-cli >/dev/null; then
        [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    else
        # No client (e.g. a GitHub runner): speak RESP over /dev/tcp.
        # shellcheck disable=SC2016 # expanded by the inner bash
        timeout 3 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            printf "PING\r\n" >&3
            IFS= read -r reply <&3
            [[ "$reply" == "+PONG"* ]]' _ "$REDIS_HOST" "$REDIS_PORT" 2>/dev/null
    fi
}

start_postgres() {
    command -v pg_ctlcluster >/dev/null || { log "pg_ctlcluster not found"; return 0; }
    local version
    for version in /etc/postgresql/*/; do
        version="$(basename "$version")"
        [[ -d "/etc/postgresql/$version/main" ]] || continue
        log "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
}

start_redis() {
    command -v redis-server >/dev/null || { log "redis-server not found"; return 0; }
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
}

# wait_until SECONDS CHECK: poll CHECK every half second until it passes or time runs out.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# ensure_services: Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379, started with the
# machine's own commands when down; fails with a clear message when they stay down.
ensure_services() {
    if ! postgres_up; then
        log "PostgreSQL is not answering on $PG_HOST:$PG_PORT"
        start_postgres
        wait_until 30 postgres_up ||
            die "PostgreSQL is still down on $PG_HOST:$PG_PORT (tried: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start)"
    fi
    if ! redis_up; then
        log "Redis is not answering on $REDIS_HOST:$REDIS_PORT"
        start_redis
        wait_until 15 redis_up ||
            die "Redis is still down on $REDIS_HOST:$REDIS_PORT (tried: redis-server --daemonize yes ...; see /var/log/redis/ci.log)"
    fi
    log "PostgreSQL $PG_HOST:$PG_PORT and Redis $REDIS_HOST:$REDIS_PORT are up"
}

# ensure_redis_server: a redis-server binary for the tests that run private Redis servers
# of their own (tests/api/failover.rs), exported as REDIS_SERVER. Where there is none (a
# GitHub runner, whose Redis is a service container), Debian's redis-tools is installed:
# its redis-check-rdb is the whole server, which serves when called redis-server.
ensure_redis_server() {
    local found
    found="$(command -v redis-server || true)"
    if [[ -z "$found" ]]; then
        if ! command -v redis-check-rdb >/dev/null; then
            command -v apt-get >/dev/null ||
                die "no redis-server on PATH, and no apt-get to install redis-tools"
            log "installing redis-tools (for a redis-server binary)"
            local sudo=""
            ((EUID == 0)) || sudo=sudo
            $sudo apt-get install -y --no-install-recommends redis-tools >/dev/null ||
                { $sudo apt-get update -qq && $sudo apt-get install -y --no-install-recommends redis-tools >/dev/null; } ||
                die "could not install redis-tools"
        fi
        mkdir -p "$CACHE_DIR/bin"
        found="$CACHE_DIR/bin/redis-server"
        ln -sf "$(command -v redis-check-rdb)" "$found"
    fi
    export REDIS_SERVER="$found"
    log "redis-server for the tests' private servers: $REDIS_SERVER ($("$REDIS_SERVER" --version))"
}

# ---------------------------------------------------------------------------------------
# Python tools (moto, cfn-lint, ...)
# ---------------------------------------------------------------------------------------

# ensure_venv REQUIREMENT...: create the venv at $VENV_DIR if it is missing, pip install
# (quietly) only the requirements not already satisfied in it (pip-style specs such as
# 'moto[server]' or 'cfn-lint>=1'), then activate it: its bin/ goes first on PATH.
ensure_venv() {
    local py="$VENV_DIR/bin/python"
    if [[ ! -x "$py" ]]; then
        log "creating Python venv at $VENV_DIR"
        mkdir -p "$(dirname "$VENV_DIR")"
        python3 -m venv "$VENV_DIR"
    fi
    if (($#)); then
        local unmet missing=()
        # Prints the requirements that are not installed (or whose version or extras'
        # dependencies are not), one per line.
        unmet="$("$py" - "$@" <<'PY'
import sys
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement

def satisfied(req, seen=frozenset()):
    try:
        dist = metadata.distribution(req.name)
    except metadata.PackageNotFoundError:
        return False
    if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
        return False
    for extra in req.extras:
        for dep in dist.requires or []:
            dep = Requirement(dep)
            if dep.marker and dep.marker.evaluate({"extra": extra}) and dep.name not in seen:
                if not satisfied(dep, seen | {req.name}):
                    return False
    return True

for spec in sys.argv[1:]:
    if not satisfied(Requirement(spec)):
        print(spec)
PY
        )"
        [[ -z "$unmet" ]] || mapfile -t missing <<<"$unmet"
        if ((${#missing[@]})); then
            log "pip installing into $VENV_DIR: ${missing[*]}"
            "$py" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
        fi
    fi
    export VIRTUAL_ENV="$VENV_DIR"
    case ":$PATH:" in
        *":$VENV_DIR/bin:"*) ;;
        *) export PATH="$VENV_DIR/bin:$PATH" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# A browser (scripts/docs-browser.sh)
# ---------------------------------------------------------------------------------------

# ensure_chromium: sets CHROMIUM to a Chromium-based browser on PATH (`chromium`, else
# `chromium-browser` or `google-chrome`, as on GitHub's runners); without one, installs
# Debian's `chromium` (and a font, so that screenshots show text) with apt-get.
ensure_chromium() {
    local name sudo=()
    for name in chromium chromium-browser google-chrome; do
        if command -v "$name" >/dev/null; then
            CHROMIUM="$(command -v "$name")"
            export CHROMIUM
            return 0
        fi
    done
    command -v apt-get >/dev/null || die "chromium is needed (Debian: apt-get install -y chromium)"
    ((EUID == 0)) || sudo=(sudo)
    log "installing chromium and fonts-dejavu-core (apt-get)"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    CHROMIUM="$(command -v chromium)" || die "chromium still not on PATH after apt-get install"
    export CHROMIUM
}

# ---------------------------------------------------------------------------------------
# A throwaway server (scripts/fuzz.sh, load.sh, compare.sh)
# ---------------------------------------------------------------------------------------

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# debug_server_bin: the path of the local server's debug build, $USER_SERVICE_BIN if set.
# Built with `--workspace`, which keeps the features `cargo test --workspace` unified (the
# `ses` feature of the mail-sending functions), so this reuses the tests' build instead of
# compiling the library a second time.
debug_server_bin() {
    local bin="${USER_SERVICE_BIN:-}"
    if [[ -z "$bin" ]]; then
        cargo build --quiet --workspace --bin user-service >&2
        bin="$CARGO_TARGET_DIR/debug/user-service"
    fi
    [[ -x "$bin" ]] || die "server binary not found: $bin"
    printf '%s\n' "$bin"
}

# stop_process PID: TERM, up to 5 s to exit, then KILL (with its children).
stop_process() {
    local pid="$1" children deadline=$((SECONDS + 5))
    kill -0 "$pid" 2>/dev/null || return 0
    children="$(pgrep -P "$pid" || true)"
    kill -TERM "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        # shellcheck disable=SC2086 # a list of pids
        [[ -z "$children" ]] || kill -KILL $children 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}

# drop_database NAME: drops the database NAME if it exists, whoever is connected to it.
drop_database() {
    PGOPTIONS='-c client_min_messages=warning' psql -h "$PG_HOST" -p "$PG_PORT" -U postgres \
        -d postgres -Xq -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
}

# delete_redis_prefix PREFIX: deletes every Redis key starting with PREFIX. Speaks RESP
# itself (SCAN, DEL), so that no redis-cli is needed (GitHub's runners have none).
delete_redis_prefix() {
    python3 - "$REDIS_HOST" "$REDIS_PORT" "$1*" <<'PY'
import socket, sys

host, port, pattern = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection((host, port), timeout=5)
reader = sock.makefile("rb")

def command(*args):
    payload = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    sock.sendall(payload)
    return reply()

def reply():
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind in (b"+", b":"):
        return rest
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2]
    if kind == b"*":
        return [reply() for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")

cursor = b"0"
while True:
    cursor, keys = command("SCAN", cursor.decode(), "MATCH", pattern, "COUNT", "1000")
    if keys:
        command("DEL", *(k.decode() for k in keys))
    if cursor == b"0":
        break
PY
}

# answers_200 PID URL: the process PID is alive (else: die) and GET URL answers 200.
# For wait_until while a server starts.
answers_200() {
    kill -0 "$1" 2>/dev/null || die "the server behind $2 exited during start-up"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2")" == 200 ]]
}

# prepare_oha: installs oha if missing, raises the open-files limit for many connections
# (as far as the hard limit allows), and sets OHA_ARGS to what every run passes: no TUI,
# JSON output, requests in flight at the deadline allowed to finish.
prepare_oha() {
    if ! ulimit -n 65536 2>/dev/null; then
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        log "warning: could not raise ulimit -n to 65536; it is $(ulimit -n)"
    fi
    ensure_cargo_tool oha
    OHA_HELP="$(oha --help)"
    OHA_ARGS=()
    if grep -q -- '--no-tui' <<<"$OHA_HELP"; then
        OHA_ARGS+=(--no-tui)
    fi
    grep -q -- '--output-format' <<<"$OHA_HELP" ||
        die "this oha has no --output-format: $(oha --version); cargo install oha --locked --force"
    OHA_ARGS+=(--output-format json)
    # Let requests still in flight at the deadline finish instead of counting them as aborted.
    if grep -q -- '--wait-ongoing-requests-after-deadline' <<<"$OHA_HELP"; then
        OHA_ARGS+=(--wait-ongoing-requests-after-deadline)
    fi
}
