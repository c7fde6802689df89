#!/usr/bin/env bash
# Key lifecycle: a root rotation, a compromised targets key revoked, a compromised online key replaced.
#
#   security   the security team: root, targets and online keys
#   attacker   someone who copied the old targets key (and nothing else)
#   cluster    a deployment pipeline pinned to root v1 that is never re-configured
#
# Same backends as the quickstart (TUFOCI_DEMO_BACKEND=registry|layout); helpers in examples/lib.sh.
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"
mkdir shared
export TUFOCI_PASSPHRASE="demo passphrase"   # every key's passphrase here; a person would be prompted

say "1. the security team creates the trust repository and signs web:1.0; the cluster pins root v1"
push_image "$scope/web:1.0" "web 1.0"
machine security
run tufoci key generate root-2026
run tufoci key generate targets-a
run tufoci key generate online-a --unencrypted
run tufoci init "$scope" --root-key root-2026 --targets-key targets-a --online-key online-a \
    --root-out shared/root.json
run tufoci target add "$scope/web:1.0"
run tufoci publish "$scope"
machine cluster
run tufoci trust add "$scope" --root shared/root.json
run tufoci verify "$scope/web:1.0"

say "2. scheduled root rotation: root v2 is signed by the old root key and the new one"
machine security
run tufoci key generate root-2027
run tufoci rotate "$scope" root --add-key root-2027 --remove-key root-2026
run tufoci publish "$scope"
expect_output "root v2"
machine cluster
run tufoci verify "$scope/web:1.0"     # walks root v1 -> v2 on its own

say "3. targets-a leaked: the security team replaces it; targets is re-signed with the new key in the same publish"
machine attacker
run_to shared/targets-a.pem cat "$work/security/keys/targets-a.pem"   # what was stolen
machine security
run tufoci key generate targets-b
run tufoci rotate "$scope" targets --add-key targets-b --remove-key targets-a
run tufoci publish "$scope"
machine cluster
run tufoci verify "$scope/web:1.0"     # tags signed before keep verifying

say "4. the attacker tries to sign an image with the revoked key: it counts for nothing"
push_image "$scope/web:evil" "evil"
machine attacker
run tufoci trust add "$scope" --root shared/root.json
run_to shared/targets-a.pub.json env TUFOCI_HOME="$work/security" "$bin/tufoci" key export targets-a
run tufoci key import targets-a shared/targets-a.pub.json --uri "encfile:$work/shared/targets-a.pem"
run tufoci target add "$scope/web:evil"
run tufoci publish "$scope"
expect_output "0 of 1 signatures"      # targets-a is no longer a targets key: only a proposal nobody can complete
machine cluster
expect_exit 10 tufoci verify "$scope/web:evil"

say "5. the online key leaked: rotate snapshot and timestamp to a new one (clients fed a fast-forward recover)"
machine security
run tufoci discard --force "$scope" targets     # drop the attacker's proposal (not ours: --force names whose it was)
run tufoci key generate online-b --unencrypted
run tufoci rotate "$scope" snapshot --add-key online-b --remove-key online-a
run tufoci rotate "$scope" timestamp --add-key online-b --remove-key online-a
run tufoci publish "$scope"
run tufoci timestamp "$scope"
machine cluster
run tufoci verify "$scope/web:1.0"

say "6. what the security team's machine knows now"
machine security
run tufoci key list
run tufoci status "$scope"
run tufoci log "$scope"

say "rotate-keys finished ($backend backend)"
