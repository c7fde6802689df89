#!/usr/bin/env bash
# The CI step: push a built image with skopeo, then sign exactly the digest skopeo pushed.
#
#   push-and-sign.sh SOURCE DEST
#     SOURCE  what the build produced, as skopeo names it (oci:build/layout:latest, docker-archive:img.tar, …)
#     DEST    REGISTRY/SCOPE/REPO:TAG to push to and sign (its scope pinned on this machine: 'tufoci trust add')
#
# Environment: TUFOCI_HOME (the CI machine's keys and pins), TUFOCI_PASSPHRASE for an encrypted key,
# SKOPEO_DEST_FLAGS (e.g. --dest-tls-verify=false for a local registry), TUFOCI_FLAGS (e.g. --plain-http).
# The signed digest is the one `skopeo copy --digestfile` wrote, never what the tag serves a moment later:
# if the tag moved in between, `tufoci target add` refuses, naming both digests.
set -euo pipefail
source_ref=$1
dest=$2
digest_file=$(mktemp)
trap 'rm -f "$digest_file"' EXIT

# shellcheck disable=SC2086  # the flags are words on purpose
skopeo copy --insecure-policy ${SKOPEO_DEST_FLAGS:-} --digestfile "$digest_file" "$source_ref" "docker://$dest"
echo "pushed $dest@$(cat "$digest_file")" >&2
# shellcheck disable=SC2086
tufoci target add ${TUFOCI_FLAGS:-} --digest-file "$digest_file" "$dest" --publish
