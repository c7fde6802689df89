#!/usr/bin/env bash
# Story: root 2 of 3 and targets 2 of 3 from the first command — no bootstrap key, no rotation, no root v2.
#
#   alice      creates the trust repository with one root key and one targets key of three each, and the
#              online key (in production the online service's: examples/online-service)
#   bob        } the other two maintainers, a root key and a targets key each, on their own machines
#   carol      }
#   cluster    a deployment pipeline that only verifies
#
# 'init' can meet neither threshold alone, so root v1 and targets v1 are proposals and nothing is live.
# bob pins the root file alice hands out (its fingerprint compared with alice's out of band), reviews both
# proposals and signs them; the first complete set goes live as version 1. Every machine is its own
# TUFOCI_HOME ($work/NAME); public keys and root.json travel through $work/shared. Commands per person
# beyond key generation and pinning: alice 5 (init, publish, target add, publish, publish), bob 2 (status,
# sign), carol 2 (status, sign), cluster 2 (verify, verify).
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"
mkdir shared
export TUFOCI_PASSPHRASE="demo passphrase"   # every key's passphrase here; a person would be prompted
push_image "$scope/web:1.0" "web 1.0"

say "0. keys: each maintainer generates a root key and a targets key and hands over the public halves"
for person in alice bob carol; do
    machine "$person"
    for key in "$person-root" "$person"; do
        run tufoci key generate "$key"
        run_to "shared/$key.pub.json" tufoci key export "$key"
    done
done
machine alice
run tufoci key generate online --unencrypted

say "1. alice creates the repository, root 2 of 3 and targets 2 of 3: both are proposed, nothing is live"
run tufoci init "$scope" --online-key online --root-out shared/root.json \
    --root-key alice-root --root-key shared/bob-root.pub.json --root-key shared/carol-root.pub.json \
    --root-threshold 2 \
    --targets-key alice --targets-key shared/bob.pub.json --targets-key shared/carol.pub.json --targets-threshold 2
expect_output "proposed root v1: 1 of 2 signatures, targets v1: 1 of 2 signatures"
expect_output "root v1 fingerprint"
root_fingerprint=$(grep -o 'root v1 fingerprint [0-9a-f]*' "$last_err" | cut -d' ' -f4)   # alice reads it out

say "2. bob, carol and the cluster pin the root file; each compares its fingerprint with alice's"
for m in bob carol cluster; do
    machine "$m"
    run tufoci trust add "$scope" --root shared/root.json
    expect_output "$root_fingerprint"
done
expect_exit 13 tufoci verify "$scope/web:1.0"
expect_output "awaiting its first signatures"

say "3. bob reviews root v1 (every key, role and threshold) and targets v1, and signs both"
machine bob
run tufoci status "$scope"
expect_output "awaiting its first signatures"
expect_output "proposal root v1 by alice"
expect_output "fingerprint $root_fingerprint"
expect_output "next for root: sign — "
run tufoci sign "$scope" --expect "$(fingerprint "$scope" root)" --expect "$(fingerprint "$scope" targets)"

say "4. alice (who holds the online key here) publishes: version 1 of everything goes live"
machine alice
run tufoci publish "$scope"
expect_output "root v1, targets v1, snapshot v1, timestamp v1"
machine cluster
expect_exit 10 tufoci verify "$scope/web:1.0"   # live (from the pinned root file), and nothing is signed yet

say "5. the first release: alice proposes, carol reviews and signs, alice publishes"
machine alice
run tufoci target add "$scope/web:1.0"
run tufoci publish "$scope"
expect_output "proposed targets v2: 1 of 2 signatures"
machine carol
run tufoci status "$scope"
expect_output "next for targets: sign — carol"
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"
machine alice
run tufoci publish "$scope"
expect_output "targets v2"
machine cluster
run tufoci verify "$scope/web:1.0"

say "root-threshold-from-init finished ($backend backend)"
