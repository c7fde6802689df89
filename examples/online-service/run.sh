#!/usr/bin/env bash
# Story: a team publishes without the online key; the release goes live through the online service.
#
#   security   the acme security team: root and targets keys; creates the online key for the service only
#   online     the machine running 'tufoci online-service' (in production: a KMS/HSM key, a Deployment)
#   web-alice  } the web team: web/* needs both of them (threshold 2); neither holds the online key
#   web-bob    }
#   cluster    a deployment pipeline that only verifies
#
# Every machine is its own TUFOCI_HOME ($work/NAME); they share only the registry (or OCI layout) and
# what is handed over in $work/shared: public keys and root.json. Commands per person beyond key
# generation and pinning: security 3 (init, delegate, publish), web-alice 2 (target add, publish),
# web-bob 2 (status, sign), online 1 (online-service), cluster 1 (verify).
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

start_backend
scope="$store/acme"
mkdir shared
export TUFOCI_PASSPHRASE="demo passphrase"   # every key's passphrase here; a person would be prompted
push_image "$scope/web/frontend:1.4" "frontend 1.4"

say "0. keys (each person generates their own and hands over the public half)"
machine security
run tufoci key generate root
run tufoci key generate targets
run tufoci key generate online --unencrypted
run_to shared/online.pub.json tufoci key export online
online_uri=$(key_uri online)
for person in web-alice web-bob; do
    machine "$person"
    run tufoci key generate "$person"
    run_to "shared/$person.pub.json" tufoci key export "$person"
done

say "1. security creates the trust repository and delegates web/* to the web team (2 of 2)"
machine security
run tufoci init "$scope" --root-key root --targets-key targets --online-key online --root-out shared/root.json
run tufoci delegate "$scope" web --key shared/web-alice.pub.json --key shared/web-bob.pub.json --path 'web/*' \
    --threshold 2
run tufoci publish "$scope"

say "2. the online service starts: the only place the online key lives from now on"
machine online
run tufoci key import online shared/online.pub.json --uri "$online_uri"
run tufoci trust add "$scope" --root shared/root.json
start_online_service "$scope"
for m in web-alice web-bob cluster; do
    machine "$m"
    run tufoci trust add "$scope" --root shared/root.json
done

say "3. web-alice signs web/frontend:1.4: the web role needs bob too, so it is proposed"
machine web-alice
run tufoci target add --role web "$scope/web/frontend:1.4"
run tufoci publish "$scope"
expect_output "proposed web v1: 1 of 2 signatures"

say "4. web-bob reviews and signs; nobody on the team holds the online key"
machine web-bob
run tufoci status "$scope"
expect_output "next for web: sign — web-bob"
run tufoci sign "$scope" web --expect "$(fingerprint "$scope" web)"

say "5. the online service makes it live within its poll interval; the cluster verifies"
machine cluster
until_verified "$scope/web/frontend:1.4"

say "6. what the service did: JSON lines on stderr, and online-status.json in its home"
stop_online_service
grep '"published"' "$work/online-service.log" >&2 || fail "the online service logged no publish"
"$bin/python" -c 'import json,sys; s=json.load(open(sys.argv[1])); print("online-status.json:", s["published"])' \
    "$work/online/online-status.json" >&2

say "online-service finished ($backend backend)"
