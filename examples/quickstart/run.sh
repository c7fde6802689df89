#!/usr/bin/env bash
# tufoci quickstart: a maintainer signs two images, a consumer verifies them, and an attack is caught.
#
# Uses a local docker-registry on 127.0.0.1 when one can be started (Debian package
# docker-registry, plus umoci and skopeo to build and push images); otherwise the embedded
# default, an OCI image-layout directory, with no server. TUFOCI_DEMO_BACKEND=layout forces the latter.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${TUFOCI_BIN:-$repo/.venv/bin}
tufoci="$bin/tufoci"
work=$(mktemp -d "${TMPDIR:-/tmp}/tufoci-demo.XXXXXX")
registry_pid=""
cleanup() {
    if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*" >&2; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

backend=${TUFOCI_DEMO_BACKEND:-auto}
if [ "$backend" = auto ]; then
    if command -v docker-registry >/dev/null && command -v umoci >/dev/null && command -v skopeo >/dev/null; then
        backend=registry
    else
        backend=layout
    fi
fi

if [ "$backend" = registry ]; then
    port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$work/registry.yml" <<YAML
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
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || { echo "registry did not start" >&2; cat "$work/registry.log" >&2; exit 1; }
    scope="127.0.0.1:$port/acme"
    say "using a local docker-registry at 127.0.0.1:$port"
    push_image() {  # push_image REF TEXT: build a real image with umoci, push it with skopeo
        local layout="$work/img-$RANDOM"
        umoci init --layout "$layout" >/dev/null
        umoci new --image "$layout:x" >/dev/null
        umoci config --image "$layout:x" --config.cmd "echo" --config.cmd "$2" >/dev/null
        skopeo copy --insecure-policy --dest-tls-verify=false -q "oci:$layout:x" "docker://$1" >/dev/null
    }
else
    scope="oci:$work/store/acme"
    say "no docker-registry here: using the embedded OCI image-layout backend at $work/store"
    push_image() { "$bin/python" "$here/write_image.py" "oci:${1#oci:}" "$2" >/dev/null; }
fi

export TUFOCI_HOME="$work/maintainer"
export TUFOCI_PASSPHRASE="demo passphrase"   # non-interactive; a person would be prompted

say "1. the build pushes two images"
push_image "$scope/web:1.0" "web 1.0"
push_image "$scope/api:2.3" "api 2.3"

say "2. the security team creates keys and the trust repository"
run "$tufoci" key generate root-key
run "$tufoci" key generate targets-key --type ecdsa-p256
run "$tufoci" key generate online-key --unencrypted
run "$tufoci" init "$scope" --root-key root-key --targets-key targets-key --online-key online-key \
    --root-out "$work/root.json"

say "3. a release engineer signs the two tags"
run "$tufoci" target add "$scope/web:1.0" "$scope/api:2.3"
run "$tufoci" status "$scope"
run "$tufoci" publish "$scope"

say "4. a deployment pipeline on another machine pins the root and verifies"
export TUFOCI_HOME="$work/consumer"
run "$tufoci" trust add "$scope" --root "$work/root.json"
run "$tufoci" verify "$scope/web:1.0" "$scope/api:2.3"
run "$tufoci" verify "$scope/web:1.0" -o json

say "5. someone with registry access moves web:1.0 to an image nobody signed"
push_image "$scope/web:1.0" "totally legit"
set +e
"$tufoci" verify "$scope/web:1.0"
code=$?
set -e
echo "exit code $code (11 = the registry serves something other than the signed digest)" >&2
[ "$code" -eq 11 ] || { echo "quickstart: expected exit 11" >&2; exit 1; }

say "6. a tag nobody signed"
push_image "$scope/web:nightly" "nightly"
set +e
"$tufoci" verify "$scope/web:nightly"
code=$?
set -e
echo "exit code $code (10 = not signed)" >&2
[ "$code" -eq 10 ] || { echo "quickstart: expected exit 10" >&2; exit 1; }

say "quickstart finished ($backend backend)"
