"""Trust pins: which root a consumer trusts for which scope.

A pin maps a scope (``registry/namespace`` or ``oci:DIR``) to its metadata
repository and to the root the user obtained out of band, identified by its
sha256. There is no trust on first use: adding a pin needs the root file, or a
sha256 that the root fetched from the registry must match.
"""

from __future__ import annotations

import functools
import os
import re

from tufoci.errors import MetadataRejectedError, NotTrustedError, RegistryError, UsageError
from tufoci.reference import LAYOUT_PREFIX, Reference, Repository, parse_repository
from tufoci.registry_options import RegistryOptions
from tufoci.sha256 import sha256_hex
from tufoci.state import Pin

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    from typing import Any

    from tufoci.state import State  # its module is not loaded on the verify fast path, which imports this one

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
    import json  # here: the verify fast path imports this module for its pins and never parses a root

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
    replace: bool = False,
) -> Pin:
    """Pin ``root_data`` for a scope.

    An existing, different pin of the scope is replaced only with ``replace`` (issue 18: a silently
    replaced pin made every later verify fail as if under attack).

    Raises:
        UsageError: not root metadata, a malformed sha256, or a different pin exists and ``replace`` is not set.
        MetadataRejectedError: the root's sha256 is not ``expected_sha256``.
    """
    pin = make_pin(scope_text, root_data, directory=state.path("roots"), metadata=metadata,
                   expected_sha256=expected_sha256)
    existing = next((p for p in state.pins() if p.scope == pin.scope), None)
    if existing and not replace and (existing.root_sha256, existing.metadata) != (pin.root_sha256, pin.metadata):
        raise UsageError(
            f"{pin.scope} is already pinned to root sha256 {existing.root_sha256} (metadata {existing.metadata}): "
            f"add --replace to replace it with root sha256 {pin.root_sha256} (metadata {pin.metadata})"
        )
    with state.transaction():
        state.put_pin(pin)
        state.record_audit("trust-add", scope=pin.scope, root_sha256=pin.root_sha256, metadata=pin.metadata)
    return pin


def make_pin(
    scope_text: str,
    root_data: bytes,
    *,
    directory: str,
    metadata: str | None = None,
    expected_sha256: str | None = None,
) -> Pin:
    """A pin built from trust material alone: the root is kept as ``directory/<sha256>.root.json``.

    What ``add_pin`` records in state.db, and what a resident verifier (the
    admission webhook) builds from its policy without any state.db.

    Raises:
        UsageError: ``root_data`` is not TUF root metadata, the scope does not parse, or ``expected_sha256``
            is not a full sha256.
        MetadataRejectedError: ``expected_sha256`` is given and the root does not hash to it.
    """
    scope = parse_repository(scope_text)
    _check_root(root_data)
    digest = sha256_hex(root_data)
    if expected_sha256 and full_sha256(expected_sha256) != digest:
        raise MetadataRejectedError(
            f"root sha256 is {digest}, not the pinned {expected_sha256}: refusing to trust it"
        )
    from tufoci.atomic_file import atomic_write  # here: the verify fast path imports this module, never writes

    metadata_repo = normalize_metadata_location(metadata) if metadata else str(default_metadata_repository(scope))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    root_file = os.path.join(directory, f"{digest}.root.json")
    atomic_write(root_file, root_data)
    return Pin(str(scope), metadata_repo, digest, root_file)


def full_sha256(text: str) -> str:
    """The 64 hex digits of a ``--root-sha256`` (``sha256:`` prefix optional).

    Raises:
        UsageError: anything else, a prefix of a digest included: a pin needs the whole digest.
    """
    hexdigest = text.lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise UsageError(f"--root-sha256 {text!r} is not a full sha256 (64 hex digits): a pin needs the whole digest")
    return hexdigest


def check_root_in_registry(
    scope_text: str, root_data: bytes, metadata: str | None = None, *, registry: RegistryOptions = RegistryOptions()
) -> str | None:
    """Compare a root file with the same version in the scope's metadata repository (issue 18: another
    scope's root pinned by mistake reads, at every later verify, as an attack).

    Returns a note when the registry could not be asked or has no such root (the pin may precede the
    first publish, or the registry is offline), None when the root matched.

    Raises:
        MetadataRejectedError: the registry holds another root of that version.
    """
    from tufoci.errors import NotFoundError, RegistryError
    from tufoci.layout_spec import metadata_tag, parse_metadata_manifest
    from tufoci.store import open_repository

    if metadata and is_http_source(metadata):
        return f"the root was not compared with {metadata} (a static mirror)"
    _check_root(root_data)
    scope = parse_repository(scope_text)
    repo = parse_repository(metadata) if metadata else default_metadata_repository(scope)
    import json

    version = json.loads(root_data)["signed"].get("version")
    digest = sha256_hex(root_data)
    try:
        manifest = open_repository(repo, registry=registry).get_manifest(metadata_tag("root", version))
        layer = parse_metadata_manifest(manifest.data).layer
    except NotFoundError:
        return f"{repo} has no root.{version}: the root could not be compared with the registry's"
    except RegistryError as e:
        return f"the root could not be compared with the registry's ({e})"
    if layer.digest != f"sha256:{digest}" and not _completes(root_data, repo, layer, registry=registry):
        raise MetadataRejectedError(
            f"the root file is not {scope}'s: {repo} serves root.{version} with {layer.digest}, the file has "
            f"sha256:{digest} (another scope's root?): refused"
        )
    return None


def _completes(pinned: bytes, repo: Repository, layer: Any, *, registry: RegistryOptions = RegistryOptions()) -> bool:
    """Whether the registry's root (``layer``) is the pinned root v1 that awaited its first signatures, now
    with all of them: the same signed part (client/genesis_root.py)."""
    from tuf.api.metadata import Metadata
    from tuf.api.serialization import DeserializationError

    from tufoci.client.genesis_root import awaits_signatures, signed_digest
    from tufoci.store import open_repository

    try:
        root = Metadata.from_bytes(pinned)
    except (DeserializationError, ValueError, TypeError, KeyError):
        return False
    if not awaits_signatures(root):
        return False
    live = open_repository(repo, registry=registry).get_blob(layer.digest, max_bytes=min(layer.size, MAX_ROOT_BYTES))
    try:
        return signed_digest(Metadata.from_bytes(live)) == signed_digest(root)
    except (DeserializationError, ValueError, TypeError, KeyError):
        return False  # not metadata: then not this root either


def remove_pin(state: State, scope_text: str) -> None:
    scope = str(parse_repository(scope_text))
    with state.transaction():
        if not state.remove_pin(scope):
            raise NotTrustedError(f"no trust pin for {scope}")
        state.record_audit("trust-remove", scope=scope)


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
            f"no trust pin covers {reference.repository}: run 'tufoci trust add {_scope_guess(reference)} --root "
            "ROOT.json' (or the scope its maintainers named) first"
        )
    return best


def _scope_guess(reference: Reference) -> str:
    """The usual scope of a reference, ``registry/namespace``, to fill in a suggested command."""
    repository = reference.repository
    if repository.is_layout:
        return str(repository)
    return f"{repository.registry}/{repository.path.split('/')[0]}"


def fetch_root_by_sha256(
    scope_text: str, sha256: str, metadata: str | None = None, *, registry: RegistryOptions = RegistryOptions()
) -> bytes:
    """Find, in the metadata repository, the root version whose bytes hash to ``sha256``.

    The hash is the trust anchor; the registry is only asked where the bytes are.
    """
    from tufoci.layout_spec import TIMESTAMP_TAG, metadata_tag, parse_metadata_manifest, proposal_tag, root_versions
    from tufoci.store import open_repository

    scope = parse_repository(scope_text)
    repo = parse_repository(metadata) if metadata else default_metadata_repository(scope)
    store = open_repository(repo, registry=registry)
    wanted = full_sha256(sha256)
    tags = store.list_tags()
    if TIMESTAMP_TAG not in tags and any(t in tags for t in (proposal_tag("targets", 1), proposal_tag("root", 1))):
        # issue 15.1: an initial signing session publishes no root until version 1 is complete
        raise RegistryError(f"trust data missing: {repo} is awaiting its first signatures (version 1 is proposed, "
                            f"nothing is live yet): pin the root file its maintainers hand out, or try again later")
    for version in root_versions(tags):
        layer = parse_metadata_manifest(store.get_manifest(metadata_tag("root", version)).data).layer
        if layer.digest == f"sha256:{wanted}":
            # python-tuf's own limit for a root, whatever size the registry announces
            return store.get_blob(layer.digest, max_bytes=min(layer.size, MAX_ROOT_BYTES))
    raise MetadataRejectedError(f"no root in {repo} has sha256 {wanted}")
