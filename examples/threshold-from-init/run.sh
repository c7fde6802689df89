#!/usr/bin/env bash
# Story: a 2-of-3 targets threshold from the first command — no bootstrap key, no rotation, no root v2.
#
#   alice      creates the trust repository: root key, online key, and one of the three targets keys
#   bob        } the other two release maintainers, one key each, on their own machines
#   carol      }
#   cluster    a deployment pipeline that only verifies
#
# 'init' cannot meet the targets threshold alone, so targets v1 is a proposal and nothing is live; bob signs
# it, and the first complete set goes live as version 1. Every machine is its own TUFOCI_HOME ($work/NAME);
# public keys and root.json travel through $work/shared. Commands per person beyond key generation and
# pinning: alice 5 (init, publish, target add, publish, publish), bob 3 (status, sign, sign), cluster 1 (verify).
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"
mkdir shared
export TUFOCI_PASSPHRASE="demo passphrase"   # every key's passphrase here; a person would be prompted
push_image "$scope/web:1.0" "web 1.0"

say "0. keys: each maintainer generates one and hands over the public half"
for person in alice bob carol; do
    machine "$person"
    run tufoci key generate "$person"
    run_to "shared/$person.pub.json" tufoci key export "$person"
done
machine alice
run tufoci key generate root
run tufoci key generate online --unencrypted

say "1. alice creates the repository with targets 2 of 3: targets v1 is proposed, nothing is live"
run tufoci init "$scope" --root-key root --online-key online --root-out shared/root.json \
    --targets-key alice --targets-key shared/bob.pub.json --targets-key shared/carol.pub.json --targets-threshold 2
expect_output "proposed targets v1: 1 of 2 signatures"
for m in bob carol cluster; do
    machine "$m"
    run tufoci trust add "$scope" --root shared/root.json
done
expect_exit 13 tufoci verify "$scope/web:1.0"
expect_output "awaiting its first signatures"

say "2. bob reviews targets v1 and signs it"
machine bob
run tufoci status "$scope"
expect_output "awaiting its first signatures"
expect_output "next for targets: sign — bob"
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"

say "3. alice (who runs the online key here) publishes: version 1 of everything goes live"
machine alice
run tufoci publish "$scope"
expect_output "root v1, targets v1, snapshot v1, timestamp v1"
machine cluster
expect_exit 10 tufoci verify "$scope/web:1.0"   # live, and nothing is signed yet

say "4. the first release is an ordinary 2-of-3 proposal: alice proposes, bob signs, alice publishes"
machine alice
run tufoci target add "$scope/web:1.0"
run tufoci publish "$scope"
expect_output "proposed targets v2: 1 of 2 signatures"
machine bob
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"
machine alice
run tufoci publish "$scope"
expect_output "targets v2"
machine cluster
run tufoci verify "$scope/web:1.0"

say "threshold-from-init finished ($backend backend)"
