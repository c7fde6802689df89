"""Trust pins: which root a consumer trusts for which scope.

A pin maps a scope (``registry/namespace`` or ``oci:DIR``) to its metadata
repository and to the root the user obtained out of band, identified by its
sha256. There is no trust on first use: adding a pin needs the root file, or a
sha256 that the root fetched from the registry must match.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

from tufoci.atomic_file import atomic_write
from tufoci.errors import MetadataRejectedError, NotTrustedError, RegistryError, UsageError
from tufoci.reference import LAYOUT_PREFIX, Reference, Repository, parse_repository
from tufoci.state import Pin, State, now_iso

METADATA_REPOSITORY_NAME = "tuf"
MAX_ROOT_BYTES = 512000  # python-tuf's UpdaterConfig.root_max_length


def default_metadata_repository(scope: Repository) -> Repository:
    """DESIGN §2: ``<scope>/tuf`` unless configured."""
    return scope.child(METADATA_REPOSITORY_NAME)


def is_http_source(location: str) -> bool:
    """A plain TUF repository over HTTP(S) (a static mirror), instead of an OCI repository."""
    return location.startswith(("https://", "http://"))


def normalize_metadata_location(location: str) -> str:
    """An OCI repository name, or an http(s) URL ending in '/'."""
    if is_http_source(location):
        return location if location.endswith("/") else location + "/"
    return str(parse_repository(location))


def _check_root(data: bytes) -> None:
    """A pinned root must at least be TUF root metadata (its signatures are
    checked by ngclient on first use, against itself)."""
    try:
        signed = json.loads(data)["signed"]
        if signed["_type"] != "root":
            raise ValueError(f"_type is {signed['_type']!r}")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise UsageError(f"not a TUF root metadata file: {type(e).__name__}") from e


def add_pin(
    state: State,
    scope_text: str,
    *,
    root_data: bytes,
    metadata: str | None = None,
    expected_sha256: str | None = None,
) -> Pin:
    """Pin ``root_data`` for a scope (replacing an earlier pin of the same scope)."""
    scope = parse_repository(scope_text)
    _check_root(root_data)
    digest = hashlib.sha256(root_data).hexdigest()
    if expected_sha256 and expected_sha256.lower().removeprefix("sha256:") != digest:
        raise MetadataRejectedError(
            f"root sha256 is {digest}, not the pinned {expected_sha256}: refusing to trust it"
        )
    metadata_repo = normalize_metadata_location(metadata) if metadata else str(default_metadata_repository(scope))
    roots = state.path("roots")
    os.makedirs(roots, mode=0o700, exist_ok=True)
    root_file = os.path.join(roots, f"{digest}.root.json")
    atomic_write(root_file, root_data)
    pin = Pin(str(scope), metadata_repo, digest, root_file)
    with state.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO pins (scope, metadata, root_sha256, root_file, added_at) VALUES (?,?,?,?,?)",
            (pin.scope, pin.metadata, pin.root_sha256, pin.root_file, now_iso()),
        )
        state.audit(conn, "trust-add", scope=pin.scope, root_sha256=digest, metadata=metadata_repo)
    return pin


def remove_pin(state: State, scope_text: str) -> None:
    scope = str(parse_repository(scope_text))
    with state.transaction() as conn:
        if conn.execute("DELETE FROM pins WHERE scope = ?", (scope,)).rowcount == 0:
            raise NotTrustedError(f"no trust pin for {scope}")
        state.audit(conn, "trust-remove", scope=scope)


def pin_for_scope(state: State, scope_text: str) -> Pin:
    scope = str(parse_repository(scope_text))
    for pin in state.pins():
        if pin.scope == scope:
            return pin
    raise NotTrustedError(
        f"no trust pin for {scope}: run 'tufoci trust add {scope} --root ROOT.json' with the root its maintainers published"
    )


@functools.lru_cache(maxsize=4096)
def _parse_scope_once(text: str) -> Repository:
    return parse_repository(text)


def _pin_scope(text: str) -> Repository:
    """A pin's scope, parsed once per process: staging or verifying N references against P pins
    parsed N×P scope names (56 ms for 1,000 references and 18 pins). A relative layout path
    depends on the working directory, so it is parsed each time."""
    if text.startswith(LAYOUT_PREFIX) and not text.startswith(LAYOUT_PREFIX + "/"):
        return parse_repository(text)
    return _parse_scope_once(text)


def pin_for_reference(pins: list[Pin], reference: Reference) -> tuple[Pin, Repository]:
    """The pin whose scope is the longest prefix of the reference's repository."""
    best: tuple[Pin, Repository] | None = None
    for pin in pins:
        scope = _pin_scope(pin.scope)
        if reference.repository.relative_to(scope) is None:
            continue
        if best is None or len(scope.path) > len(best[1].path):
            best = (pin, scope)
    if best is None:
        raise NotTrustedError(
            f"no trust pin covers {reference.repository}: run 'tufoci trust add SCOPE --root ROOT.json' first"
        )
    return best


def fetch_root_by_sha256(
    scope_text: str, sha256: str, metadata: str | None = None, **registry_options: object
) -> bytes:
    """Find, in the metadata repository, the root version whose bytes hash to ``sha256``.

    The hash is the trust anchor; the registry is only asked where the bytes are.
    """
    from tufoci.layout_spec import TIMESTAMP_TAG, parse_metadata_manifest, proposal_tag, root_versions
    from tufoci.store import open_repository

    scope = parse_repository(scope_text)
    repo = parse_repository(metadata) if metadata else default_metadata_repository(scope)
    store = open_repository(repo, **registry_options)
    wanted = sha256.lower().removeprefix("sha256:")
    tags = store.list_tags()
    if TIMESTAMP_TAG not in tags and any(t in tags for t in (proposal_tag("targets", 1), proposal_tag("root", 1))):
        # issue 15.1: an initial signing session publishes no root until version 1 is complete
        raise RegistryError(f"trust data missing: {repo} is awaiting its first signatures (version 1 is proposed, "
                            f"nothing is live yet): pin the root file its maintainers hand out, or try again later")
    for version in root_versions(tags):
        layer = parse_metadata_manifest(store.get_manifest(f"root.{version}").data).layer
        if layer.digest == f"sha256:{wanted}":
            # python-tuf's own limit for a root, whatever size the registry announces
            return store.get_blob(layer.digest, max_bytes=min(layer.size, MAX_ROOT_BYTES))
    raise MetadataRejectedError(f"no root in {repo} has sha256 {wanted}")
