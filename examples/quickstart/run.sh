#!/usr/bin/env bash
# tufoci quickstart: a maintainer signs two images, a consumer verifies them, and an attack is caught.
#
# Uses a local docker-registry on 127.0.0.1 when one can be started (Debian package
# docker-registry, plus umoci and skopeo to build and push images); otherwise the embedded
# default, an OCI image-layout directory, with no server. TUFOCI_DEMO_BACKEND=layout forces the latter.
# The shared helpers (say, run, expect_exit, push_image, …) are in examples/lib.sh.
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"

export TUFOCI_HOME="$work/maintainer"
export TUFOCI_PASSPHRASE="demo passphrase"   # non-interactive; a person would be prompted

say "1. the build pushes two images"
push_image "$scope/web:1.0" "web 1.0"
push_image "$scope/api:2.3" "api 2.3"

say "2. the security team creates keys and the trust repository"
run tufoci key generate root-key
run tufoci key generate targets-key --type ecdsa-p256
run tufoci key generate online-key --unencrypted
run tufoci init "$scope" --root-key root-key --targets-key targets-key --online-key online-key \
    --root-out "$work/root.json"

say "3. a release engineer signs the two tags"
run tufoci target add "$scope/web:1.0" "$scope/api:2.3"
run tufoci status "$scope"
run tufoci publish "$scope"

say "4. a deployment pipeline on another machine pins the root and verifies"
export TUFOCI_HOME="$work/consumer"
run tufoci trust add "$scope" --root "$work/root.json"
run tufoci verify "$scope/web:1.0" "$scope/api:2.3"
run tufoci verify "$scope/web:1.0" -o json

say "5. someone with registry access moves web:1.0 to an image nobody signed (11 = the registry serves something other than the signed digest)"
push_image "$scope/web:1.0" "totally legit"
expect_exit 11 tufoci verify "$scope/web:1.0"

say "6. a tag nobody signed (10 = not signed)"
push_image "$scope/web:nightly" "nightly"
expect_exit 10 tufoci verify "$scope/web:nightly"

say "quickstart finished ($backend backend)"
