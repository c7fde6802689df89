#!/usr/bin/env bash
# The CI pipeline of examples/ci/ (github-actions.yml, gitlab-ci.yml), run against a local registry:
# the security team sets up the scope and hands the CI machine its keys; the CI job builds an image with
# umoci, pushes it with `skopeo copy --digestfile`, signs exactly that digest and verifies it.
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

TUFOCI_DEMO_BACKEND=registry start_backend   # skopeo pushes: a registry is needed
scope="$store/acme"
export TUFOCI_PASSPHRASE="demo passphrase"
export PATH="$bin:$PATH"                      # push-and-sign.sh calls tufoci as CI would

say "1. the security team creates the scope; the CI machine gets the targets and online keys"
machine security
run tufoci key generate root
run tufoci key generate targets
run tufoci key generate online --unencrypted
run tufoci init "$scope" --root-key root --targets-key targets --online-key online --root-out "$work/root.json"
mkdir -p deploy
for key in targets online; do
    run_to "deploy/$key.pub.json" tufoci key export "$key"
done
targets_uri=$(key_uri targets)
online_uri=$(key_uri online)
machine ci
run tufoci key import targets deploy/targets.pub.json --uri "$targets_uri"
run tufoci key import online deploy/online.pub.json --uri "$online_uri"
run tufoci trust add "$scope" --root "$work/root.json"

say "2. the CI job builds an image with umoci"
run umoci init --layout build/layout
run umoci new --image build/layout:latest
run umoci config --image build/layout:latest --config.cmd "/app" --config.cmd "built by CI"

say "3. it pushes with skopeo copy --digestfile and signs exactly that digest"
export SKOPEO_DEST_FLAGS="--dest-tls-verify=false"
run bash "$examples/ci/push-and-sign.sh" oci:build/layout:latest "$scope/web:1.0"
expect_output "published to $scope"

say "4. a consumer verifies it (the digest the pipeline pushed)"
machine cluster
run tufoci trust add "$scope" --root "$work/root.json"
run tufoci verify "$scope/web:1.0"
say "ci finished ($backend backend)"
