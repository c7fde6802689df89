#!/usr/bin/env bash
# Story 2, a threshold release: any release needs 2 of 3 maintainers, who share nothing but the registry.
#
#   security   the security team: root key, a bootstrap targets key, the online key (snapshot/timestamp)
#   alice, bob, carol   the release maintainers, one key each, on their own machines
#   cluster    a deployment pipeline that only verifies
#
# The security team moves the targets role from its bootstrap key to alice, bob and carol with threshold 2.
# That is a root change (root v2), and it waits until targets is signed by the new keys. Then every
# release is a proposal in the registry that a second maintainer reviews (`tufoci status`) and signs.
# Every machine is its own TUFOCI_HOME ($work/NAME); public keys and root.json travel through $work/shared.
# Same backends as the quickstart (TUFOCI_DEMO_BACKEND=registry|layout); helpers in examples/lib.sh.
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"
mkdir shared
export TUFOCI_PASSPHRASE="demo passphrase"   # every key's passphrase here; a person would be prompted
maintainers="alice bob carol"

say "1. the security team creates the trust repository with a bootstrap targets key and signs web:1.0"
push_image "$scope/web:1.0" "web 1.0"
machine security
run tufoci key generate root
run tufoci key generate bootstrap-targets
run tufoci key generate online --unencrypted
run tufoci init "$scope" --root-key root --targets-key bootstrap-targets --online-key online \
    --root-out shared/root.json
run tufoci target add "$scope/web:1.0"
run tufoci publish "$scope"

machine cluster
run tufoci trust add "$scope" --root shared/root.json
run tufoci verify "$scope/web:1.0"

say "2. alice, bob and carol create their keys, pin the root, and import each other's public keys (so status names who signed and who is missing)"
for person in $maintainers; do
    machine "$person"
    run tufoci key generate "$person"
    run_to "shared/$person.pub.json" tufoci key export "$person"
    run tufoci trust add "$scope" --root shared/root.json
done
for person in $maintainers; do
    machine "$person"
    for other in $maintainers; do
        [ "$other" = "$person" ] || run tufoci key import "$other" "shared/$other.pub.json"
    done
done

say "3. the security team moves targets to alice, bob and carol, 2 of 3"
machine security
for person in $maintainers; do
    run tufoci key import "$person" "shared/$person.pub.json"
done
run tufoci rotate "$scope" targets --add-key alice --add-key bob --add-key carol \
    --remove-key bootstrap-targets --threshold 2
run tufoci publish "$scope"
expect_output "waits for targets v3"   # root v2 is signed, but held until targets is signed by the new keys
expect_output "proposed targets v3: 0 of 2 signatures"
machine cluster
run tufoci verify "$scope/web:1.0"    # nothing live has changed

say "4. alice and bob sign targets v3; the security team publishes root v2 and targets v3 together"
machine alice
run tufoci status "$scope"   # both proposals: root v2 (signed, held) and targets v3 (0 of 2)
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"
machine bob
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"
machine security
run tufoci publish "$scope"
expect_output "root v2, targets v3"
machine cluster
run tufoci verify "$scope/web:1.0"    # the cluster walks root v1 → v2 and accepts the new targets keys

say "5. the maintainers get the online key, so any of them can make a complete release live"
# The online key signs snapshot and timestamp. Here it is the security team's unencrypted key file; in
# production it would be a KMS or HSM key that the maintainers' machines may use (key import … --uri awskms:…).
machine security
run_to shared/online.pub.json tufoci key export online
online_uri=$(key_uri online)
for person in $maintainers; do
    machine "$person"
    run tufoci key import online shared/online.pub.json --uri "$online_uri"
done

say "6. alice releases web:1.1: her publish is only a proposal, 1 of 2 signatures"
push_image "$scope/web:1.1" "web 1.1"
machine alice
run tufoci target add "$scope/web:1.1"
run tufoci publish "$scope"
expect_output "proposed targets v4: 1 of 2 signatures"
machine cluster
run tufoci verify "$scope/web:1.0"             # the live state is unchanged
expect_exit 10 tufoci verify "$scope/web:1.1"  # not signed (yet)

say "7. bob reviews the proposal on his machine: what changes, who signed, who is missing; then signs"
machine bob
run tufoci status "$scope"
expect_output "+ web:1.1"
expect_output "✓ alice: valid"
expect_output "1 more needed from:"
expect_output "fingerprint "        # what bob signs must be what he read: sign --expect checks it
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"

say "8. carol signs too (more than the threshold is fine) and publishes"
machine carol
run tufoci sign "$scope" targets --expect "$(fingerprint "$scope" targets)"
run tufoci status "$scope"
run tufoci publish "$scope"
expect_output "targets v4"
machine cluster
run tufoci verify "$scope/web:1.1" "$scope/web:1.0"

say "9. alice's audit log: everything her machine generated, staged, proposed and signed"
machine alice
run tufoci log

say "threshold-release finished ($backend backend)"
