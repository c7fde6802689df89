# Shared by the example scripts (examples/*/run.sh). Source it right after `set -euo pipefail`:
#
#     set -euo pipefail
#     . "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
#     start_backend                      # a local docker-registry, or an OCI image-layout directory
#     scope="$store/acme"
#     machine security                   # the following commands run in the security team's TUFOCI_HOME
#     say "1. what happens next"
#     run tufoci key generate root       # echoed as `security$ tufoci key generate root`, then run
#     expect_exit 10 tufoci verify …     # an expected failure: any other exit code stops the script
#     expect_output "not signed"         # the last command's output must contain this text
#
# What it provides:
#   examples, repo, bin   the examples directory, the repository, the directory of the tufoci/python to use
#                         ($TUFOCI_BIN, default the repository's .venv/bin)
#   work                  a fresh temporary directory, the current directory from here on, removed on exit
#                         (TUFOCI_DEMO_KEEP=1 keeps it); each machine's TUFOCI_HOME is $work/NAME
#   backend, store        "registry" and 127.0.0.1:PORT, or "layout" and oci:store (a directory in $work);
#                         TUFOCI_DEMO_BACKEND=registry|layout forces one, the default picks registry when
#                         docker-registry, umoci, skopeo and curl are installed
#   say, run, run_to, expect_exit, expect_output, machine, push_image, key_uri, start_online_service,
#   stop_online_service, until_verified, until_live   (described below)
#
# Every helper fails the whole script (exit 1, with a line saying why) on an unexpected result, so an
# example that runs to its last line has shown exactly what it says.

examples=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$examples/.." && pwd)
bin=$(cd "${TUFOCI_BIN:-$repo/.venv/bin}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/tufoci-demo.XXXXXX")
registry_pid=""
service_pid=""
machine=""
backend=""
store=""

cleanup() {
    if [ -n "$service_pid" ]; then
        kill "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
    fi
    if [ -n "$registry_pid" ]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    cd /
    if [ "${TUFOCI_DEMO_KEEP:-}" = 1 ]; then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
cd "$work"

# tufoci, as the examples' commands name it (and echo it): the one in $bin.
tufoci() { "$bin/tufoci" "$@"; }

# say TEXT: announce a step.
say() { printf '\n== %s\n' "$*" >&2; }

# fail TEXT: stop the example.
fail() { printf '\n!! %s: %s\n' "$(basename "$(dirname "$0")")" "$*" >&2; exit 1; }

# machine NAME: the commands that follow run on NAME's machine, a TUFOCI_HOME of its own ($work/NAME);
# TUFOCI_ACTOR makes `tufoci log` and proposals name it too.
machine() {
    machine=$1
    export TUFOCI_HOME="$work/$1" TUFOCI_ACTOR="$1"
}

# show CMD…: echo a command line the way one would type it, prefixed by the machine it runs on.
show() { printf '%s$ %s\n' "$machine" "$(quoted "$@")" >&2; }
quoted() {
    local line="" arg
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:@=+,%-]+$ ]]; then
            line+=" $arg"
        else
            line+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s' "${line# }"
}

# capture CMD…: run it, keep its stdout and stderr (for expect_output), replay both; sets $status.
last_out="$work/.last-stdout"
last_err="$work/.last-stderr"
capture() {
    status=0
    "$@" >"$last_out" 2>"$last_err" || status=$?
    cat "$last_out"
    cat "$last_err" >&2
}

# run CMD…: echo the command, run it; it must succeed.
run() {
    show "$@"
    capture "$@"
    [ "$status" -eq 0 ] || fail "'$*' exited $status"
}

# run_to FILE CMD…: echo the command as `CMD > FILE`, run it with its stdout in FILE; it must succeed.
run_to() {
    local file=$1
    shift
    printf '%s$ %s > %s\n' "$machine" "$(quoted "$@")" "$file" >&2
    status=0
    "$@" >"$file" 2>"$last_err" || status=$?
    cp "$file" "$last_out"
    cat "$last_err" >&2
    [ "$status" -eq 0 ] || fail "'$*' exited $status"
}

# expect_exit CODE CMD…: echo the command, run it; it must exit with CODE (0 included).
expect_exit() {
    local expected=$1
    shift
    show "$@"
    capture "$@"
    [ "$status" -eq "$expected" ] || fail "'$*' exited $status, expected $expected"
    echo "exit code $status, as expected" >&2
}

# expect_output TEXT: the last command's output (stdout or stderr) contains TEXT.
expect_output() {
    grep -qF -- "$1" "$last_out" "$last_err" || fail "expected the output of the last command to contain: $1"
}

# start_online_service SCOPE: run `tufoci online-service SCOPE --every 6h --poll 1s` on the current machine,
# in the background (its log in $work/online-service.log); the only process that holds the online key.
start_online_service() {
    show tufoci online-service "$1" --every 6h --poll 1s
    "$bin/tufoci" online-service "$1" --every 6h --poll 1s 2>"$work/online-service.log" &
    service_pid=$!
}

# stop_online_service: SIGTERM, as systemd or Kubernetes would stop it; it must exit cleanly.
stop_online_service() {
    kill -TERM "$service_pid"
    wait "$service_pid" || fail "the online service exited $?"
    service_pid=""
}

# until_verified REF…: on the current machine, wait (up to 60 s) until `tufoci verify REF…` succeeds: the
# online service makes a complete proposal live within its poll interval. Then run it as a shown command.
until_verified() {
    local _
    for _ in $(seq 120); do
        "$bin/tufoci" verify "$@" >/dev/null 2>&1 && break
        sleep 0.5
    done
    run tufoci verify "$@"
}

# until_live SCOPE ROLE VERSION: on the current machine, wait (up to 60 s) until `tufoci status SCOPE` shows
# ROLE live at VERSION or later (a complete proposal the online service has not promoted yet is not live).
until_live() {
    local _
    for _ in $(seq 120); do
        "$bin/tufoci" status "$1" -o json 2>/dev/null | "$bin/python" -c '
import json, sys
roles = {r["role"]: r["version"] for r in json.load(sys.stdin).get("roles", [])}
sys.exit(0 if roles.get(sys.argv[1], 0) >= int(sys.argv[2]) else 1)' "$2" "$3" && return 0
        sleep 0.5
    done
    fail "$2 v$3 did not go live within 60 s"
}

# key_uri NAME: the private key URI of key NAME in the current machine's catalogue.
key_uri() {
    "$bin/tufoci" key list -o json | "$bin/python" -c '
import json, sys
(uri,) = [k["uri"] for k in json.load(sys.stdin) if k["name"] == sys.argv[1]]
print(uri)' "$1"
}

# fingerprint SCOPE ROLE: the fingerprint 'tufoci status' shows for ROLE's open proposal (what 'sign --expect' takes):
# a script signs only the proposal its maintainer reviewed, never whatever the registry serves a moment later.
fingerprint() {
    "$bin/tufoci" status "$1" -o json | "$bin/python" -c '
import json, sys
(fingerprint,) = [p["fingerprint"] for p in json.load(sys.stdin)["proposals"] if p["role"] == sys.argv[1]]
print(fingerprint)' "$2"
}

# start_backend: choose the backend, start the registry when it is one; sets $backend and $store.
start_backend() {
    backend=${TUFOCI_DEMO_BACKEND:-auto}
    if [ "$backend" = auto ]; then
        if command -v docker-registry >/dev/null && command -v umoci >/dev/null && command -v skopeo >/dev/null \
            && command -v curl >/dev/null; then
            backend=registry
        else
            backend=layout
        fi
    fi
    case "$backend" in
        registry)
            local tool
            for tool in docker-registry umoci skopeo curl; do
                command -v "$tool" >/dev/null || fail "TUFOCI_DEMO_BACKEND=registry needs $tool (scripts/install-system-deps installs it)"
            done
            start_registry
            store="127.0.0.1:$port"
            say "using a local docker-registry at 127.0.0.1:$port"
            ;;
        layout)
            mkdir -p "$work/store"
            store="oci:store"
            say "no docker-registry here: using the embedded OCI image-layout backend at $work/store"
            ;;
        *) fail "TUFOCI_DEMO_BACKEND must be registry or layout, not '$backend'" ;;
    esac
}

# start_registry: docker-registry on a free 127.0.0.1 port ($port), ready to serve; tried three times in
# case another process takes the port between choosing and binding it.
start_registry() {
    local attempt
    for attempt in 1 2 3; do
        port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        cat >"$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
log:
  level: error
  accesslog:
    disabled: true
YAML
        docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
        registry_pid=$!
        local _
        for _ in $(seq 100); do
            if curl -fsS --noproxy '*' "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
                return 0
            fi
            kill -0 "$registry_pid" 2>/dev/null || break   # it exited (port taken?): try another port
            sleep 0.1
        done
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
        registry_pid=""
    done
    cat "$work/registry.log" >&2
    fail "the registry did not start"
}

# push_image REF TEXT: put a small real image (its only file says TEXT) at REF, e.g. "$store/acme/web:1.0".
# Registry: built by umoci, pushed by skopeo. Layout: written by examples/quickstart/write_image.py.
push_image() {
    if [ "$backend" = registry ]; then
        local layout
        layout="$work/img-$RANDOM$RANDOM"
        umoci init --layout "$layout" >/dev/null
        umoci new --image "$layout:x" >/dev/null
        umoci config --image "$layout:x" --config.cmd "echo" --config.cmd "$2" >/dev/null
        skopeo copy --insecure-policy --dest-tls-verify=false -q "oci:$layout:x" "docker://$1" >/dev/null
        rm -rf "$layout"
    else
        "$bin/python" "$examples/quickstart/write_image.py" "oci:${1#oci:}" "$2" >/dev/null
    fi
}
