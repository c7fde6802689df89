#!/usr/bin/env bash
# Story 1, teams: the security team delegates parts of the namespace to teams; each team signs its own
# tags — and nothing else — without the root, targets or online keys: every release goes live through the
# online service, the one process that holds the online key (snapshot/timestamp).
#
#   security      the acme security team: root key, targets key; runs the online service (online key)
#   web-team      the web team: three keys, any one may sign web/*
#   db-alice      one db maintainer   } db/* needs both of them (threshold 2)
#   db-bob        the other           }
#   web-frontend  a sub-team the web team delegates web/frontend:* to
#   cluster       a deployment pipeline that only verifies
#
# Every machine is its own TUFOCI_HOME ($work/NAME). They share nothing but the registry (or the OCI
# layout directory) and what is handed over out of band in $work/shared: public keys and root.json.
# Same backends as the quickstart (TUFOCI_DEMO_BACKEND=registry|layout); helpers in examples/lib.sh.
# Commands per person beyond key generation and pinning (README, "Teams and thresholds"): security 5 (init,
# delegate, delegate, publish, online-service), web-team 5 (target add, publish, the refused target add,
# delegate, publish), db-alice 2 (target add, publish), db-bob 3 (key import, status, sign), web-frontend 3
# (target add, publish, the refused target add), cluster: verify (after each step) and target list.
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"
mkdir shared
export TUFOCI_PASSPHRASE="demo passphrase"   # every key's passphrase here; a person would be prompted

say "0. the build pushes images (nobody has signed them)"
push_image "$scope/web/frontend:1.4" "frontend 1.4"
push_image "$scope/web/frontend:1.5" "frontend 1.5"
push_image "$scope/web/api:2.0" "api 2.0"
push_image "$scope/db/postgres:15" "postgres 15"

say "1. the security team creates the trust repository for $scope"
machine security
run tufoci key generate root
run tufoci key generate targets --type ecdsa-p256
run tufoci key generate online --unencrypted   # signs snapshot/timestamp: only the online service uses it
run tufoci init "$scope" --root-key root --targets-key targets --online-key online --root-out shared/root.json

say "2. the teams create their keys and hand the public halves to the security team"
machine web-team
for key in web1 web2 web3; do
    run tufoci key generate "$key"
    run_to "shared/$key.pub.json" tufoci key export "$key"
done
for person in db-alice db-bob; do
    machine "$person"
    run tufoci key generate "$person"
    run_to "shared/$person.pub.json" tufoci key export "$person"
done

say "3. the security team delegates web/* to the web team (any 1 of 3 keys) and db/* to the db team (2 of 2)"
machine security
run tufoci delegate "$scope" web --key shared/web1.pub.json --key shared/web2.pub.json --key shared/web3.pub.json \
    --path 'web/*'
run tufoci delegate "$scope" db --key shared/db-alice.pub.json --key shared/db-bob.pub.json --path 'db/*' \
    --threshold 2
run tufoci publish "$scope"   # targets v2: the delegations; each team's first publish creates its role

say "4. the security team starts the online service: from now on the only process with the online key"
# Here it runs on the security team's machine with an unencrypted key file; in production it is a KMS or HSM
# key and a Deployment or systemd unit (docs/operations.md). No team imports the online key.
start_online_service "$scope"
for m in web-team db-alice db-bob web-frontend cluster; do
    machine "$m"
    run tufoci trust add "$scope" --root shared/root.json
done

say "5. the web team signs web/frontend:1.4 — no root, targets or online key on this machine"
machine web-team
run tufoci target add --role web "$scope/web/frontend:1.4"
run tufoci publish "$scope"
expect_output "web v1 complete; goes live within"   # the web role's first version; targets is untouched

say "6. the online service makes it live; web/api:2.0 was pushed but nobody signed it (10 = not signed)"
machine cluster
until_verified "$scope/web/frontend:1.4"
expect_exit 10 tufoci verify "$scope/web/api:2.0"

say "7. the web team tries to sign a db tag: refused when staged, nothing is staged or pushed"
machine web-team
expect_exit 2 tufoci target add --role web "$scope/db/postgres:15"
expect_output "outside the paths delegated to role web"
machine cluster
expect_exit 10 tufoci verify "$scope/db/postgres:15"

say "8. a db release needs both db maintainers: db-alice signs and proposes (1 of 2)"
machine db-alice
run tufoci target add --role db "$scope/db/postgres:15"
run tufoci publish "$scope"
expect_output "proposed db v1: 1 of 2 signatures"
machine cluster
expect_exit 10 tufoci verify "$scope/db/postgres:15"   # a proposal is not live

say "9. db-bob, on his own machine, reviews the proposal and signs it; the online service makes it live"
machine db-bob
run tufoci key import db-alice shared/db-alice.pub.json   # her public key, so status can name her signature
run tufoci status "$scope"      # what changes, who signed, who is still missing
expect_output "✓ db-alice: valid"
expect_output "1 more needed from: db-bob"
run tufoci sign "$scope" db --expect "$(fingerprint "$scope" db)"
machine cluster
until_verified "$scope/db/postgres:15"

say "10. the web team delegates web/frontend:* on to the web-frontend sub-team (a nested delegation)"
machine web-frontend
run tufoci key generate frontend1
run_to shared/frontend1.pub.json tufoci key export frontend1
machine web-team
run tufoci delegate "$scope" web-frontend --parent web --key shared/frontend1.pub.json --path 'web/frontend:*'
run tufoci publish "$scope"     # web v2, signed by the web team's key: no security team involved
expect_output "web v2 complete; goes live within"
until_live "$scope" web 2   # the sub-team's first publish needs the delegation live

say "11. the sub-team signs web/frontend:1.5; web/api is outside its paths"
machine web-frontend
run tufoci target add --role web-frontend "$scope/web/frontend:1.5"
run tufoci publish "$scope"
expect_output "web-frontend v1 complete; goes live within"
expect_exit 2 tufoci target add --role web-frontend "$scope/web/api:2.0"
expect_output "(web/frontend:*)"

say "12. the cluster verifies everything; the search walks targets → web → web-frontend, and targets → db"
machine cluster
until_verified "$scope/web/frontend:1.5" "$scope/web/frontend:1.4" "$scope/db/postgres:15"
run tufoci target list "$scope"
expect_exit 10 tufoci verify "$scope/web/api:2.0"

say "13. what the online service published: one JSON line per publish on its stderr"
machine security
stop_online_service
grep '"published"' "$work/online-service.log" >&2 || fail "the online service logged no publish"

say "teams finished ($backend backend)"
