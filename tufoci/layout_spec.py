"""The tufoci OCI layout, version 1 (docs/layout.md is the prose of this module).

Every TUF metadata file is one blob wrapped in a plain OCI image manifest; the
tag of that manifest says which role and version it holds. Only ``timestamp``
moves; every other tag is written once. This module only builds and parses
bytes: it does no I/O, so the same code serves every storage backend.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from tufoci.errors import MetadataRejectedError
from tufoci.layout_constants import (  # noqa: F401  (re-exported: the warm verify imports them without this module)
    DOCKER_LIST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    IMAGE_MEDIA_TYPES,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    MAX_METADATA_MANIFEST_BYTES,
    TIMESTAMP_TAG,
)

LAYOUT_VERSION = "1"


# layout §2: the artifact kind is declared by config.mediaType (works on OCI 1.0
# registries); the payload media type is the one docker/attest uses.
CONFIG_MEDIA_TYPE = "application/vnd.tufoci.metadata.config.v1+json"
METADATA_MEDIA_TYPE = "application/vnd.tuf.metadata+json"
EMPTY_CONFIG = b"{}"

FILENAME_ANNOTATION = "tuf.io/filename"
ANNOTATION_LAYOUT = "dev.tufoci.layout.version"
ANNOTATION_ROLE = "dev.tufoci.role"
ANNOTATION_VERSION = "dev.tufoci.version"
# layout §5: hints on the timestamp manifest; never trusted, only used to
# save round trips. A wrong hint can only make a refresh fail.
ANNOTATION_ROOT_HINT = "dev.tufoci.hint.root-version"
ANNOTATION_TIMESTAMP_HINT = "dev.tufoci.hint.timestamp"
ANNOTATION_SNAPSHOT_HINT = "dev.tufoci.hint.snapshot"
MAX_INLINE_SNAPSHOT = 48 * 1024  # keeps a timestamp manifest well under MAX_METADATA_MANIFEST_BYTES

# The role names, defined once for tufoci: python-tuf's TOP_LEVEL_ROLE_NAMES in the specification's order
# (this module loads no python-tuf), and the roles the online key signs, which are never proposed (layout §9).
TOP_LEVEL_ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("snapshot", "timestamp")

TOP_LEVEL_VERSIONED = ("root", "targets", "snapshot")  # layout §3: root.<N>, targets.<N>, snapshot.<N>

# layout §9: threshold signing. A proposed version and each signature over it
# are separate artifacts, so concurrent signers never write the same tag.
# Clients never read these tags.
PROPOSAL_CONFIG_MEDIA_TYPE = "application/vnd.tufoci.proposal.config.v1+json"
SIGNATURE_CONFIG_MEDIA_TYPE = "application/vnd.tufoci.signature.config.v1+json"
SIGNATURE_MEDIA_TYPE = "application/vnd.tufoci.signature.v1+json"
PROPOSAL_TAG_PREFIX = "staged."
SIGNATURE_TAG_PREFIX = "sig."
ANNOTATION_DISCARDED = "dev.tufoci.proposal.discarded"
ANNOTATION_PROPOSER = "dev.tufoci.proposal.by"
ANNOTATION_PROPOSER_MACHINE = "dev.tufoci.proposal.machine"  # random per TUFOCI_HOME: whose proposal it is
ANNOTATION_KEYID = "dev.tufoci.signature.keyid"

# Caps on what is read from a store (DESIGN §3: cap every read).
MAX_METADATA_BYTES = 32 * 1024 * 1024  # MAX_MANIFEST_BYTES, MAX_METADATA_MANIFEST_BYTES: layout_constants

# patterns as text, compiled by re (and cached there) when first used: the verify fast path uses none of them
_PLATFORM_PART = r"[A-Za-z0-9._-]{1,64}"
_PLAIN_ROLE = r"[A-Za-z0-9-]{1,64}"
_HASHED_ROLE_PREFIX = "_"


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``: always computed, never taken from a server."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encode_role(role: str) -> str:
    """A tag-safe, injective encoding of a delegated role name.

    Names made only of ``[A-Za-z0-9-]`` (at most 64) stay readable; any other
    name becomes ``_`` + its sha256 in hex. The plain alphabet has no ``_``, so
    the two forms can never collide, and the hashed form is injective as far as
    sha256 is collision resistant.
    """
    if re.fullmatch(_PLAIN_ROLE, role):
        return role
    # surrogatepass: a JSON "\ud800" escape yields a lone surrogate, which strict UTF-8 cannot encode
    return _HASHED_ROLE_PREFIX + hashlib.sha256(role.encode("utf-8", "surrogatepass")).hexdigest()


def metadata_tag(role: str, version: int) -> str:
    """The immutable tag of one metadata version (layout §3)."""
    if version < 1:
        raise ValueError(f"metadata version must be >= 1, got {version}")
    if role in TOP_LEVEL_VERSIONED:
        return f"{role}.{version}"
    if role == TIMESTAMP_TAG:
        return TIMESTAMP_TAG
    return f"d.{encode_role(role)}.{version}"


def proposal_tag(role: str, version: int) -> str:
    """``staged.<enc(role)>.<N>``: the proposed version N of a role (layout §9)."""
    return f"{PROPOSAL_TAG_PREFIX}{encode_role(role)}.{version}"


def encode_keyid(keyid: str) -> str:
    """32 tag-safe characters identifying a key: the keyid itself when it is hex."""
    if re.fullmatch(r"[0-9a-f]{32,}", keyid):
        return keyid[:32]
    return hashlib.sha256(keyid.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def signature_tag(role: str, version: int, keyid: str) -> str:
    """``sig.<enc(role)>.<N>.<key>``: one signer's signature over proposal N (layout §9)."""
    return f"{SIGNATURE_TAG_PREFIX}{encode_role(role)}.{version}.{encode_keyid(keyid)}"


# layout §3/§9: the one grammar of the tags tufoci writes in a metadata repository.
# Versions are ASCII digits without a leading zero (str.isdigit() would accept '²').
_VERSION = r"([1-9][0-9]{0,11})"
_ENCODED_ROLE = r"([A-Za-z0-9-]{1,64}|_[0-9a-f]{64})"
_TAG_GRAMMAR = (
    ("top-level", rf"({'|'.join(TOP_LEVEL_VERSIONED)})\.{_VERSION}"),
    ("timestamp", re.escape(TIMESTAMP_TAG)),
    ("delegated", rf"d\.{_ENCODED_ROLE}\.{_VERSION}"),
    ("proposal", rf"{re.escape(PROPOSAL_TAG_PREFIX)}{_ENCODED_ROLE}\.{_VERSION}"),
    ("signature", rf"{re.escape(SIGNATURE_TAG_PREFIX)}{_ENCODED_ROLE}\.{_VERSION}\.([0-9a-f]{{32}})"),
)


@dataclass(frozen=True)
class MetadataTag:
    """What a metadata-repository tag names: ``kind``, the (encoded) role, the version, the signer's key."""

    kind: str  # top-level | timestamp | delegated | proposal | signature
    role: str  # the role name for top-level roles and the timestamp, else ``encode_role(role)``
    version: int | None = None
    key: str | None = None  # signature tags: ``encode_keyid(keyid)``


def parse_metadata_tag(tag: str) -> MetadataTag | None:
    """The one parser of metadata tags (layout §3, §9): None for any tag tufoci does not write.

    A registry lists whatever tags it likes; callers skip what this does not
    recognise instead of failing on it (``root.²``, ``root.01``, ``d.a/b.1``).
    """
    for kind, pattern in _TAG_GRAMMAR:
        match = re.fullmatch(pattern, tag) if isinstance(tag, str) else None
        if match is None:
            continue
        if kind == "timestamp":
            return MetadataTag(kind, TIMESTAMP_TAG)
        groups = match.groups()
        return MetadataTag(kind, groups[0], int(groups[1]), groups[2] if len(groups) > 2 else None)
    return None


def root_versions(tags: list[str]) -> list[int]:
    """The root versions a list of metadata-repository tags holds, in order (layout §3: ``root.<N>``)."""
    parsed = (parse_metadata_tag(t) for t in tags)
    return sorted(p.version for p in parsed
                  if p and p.kind == "top-level" and p.role == "root" and p.version is not None)


def meta_key(role: str) -> str:
    """The name a snapshot's (or timestamp's) ``meta`` lists ``role`` under (TUF: ``targets.json``)."""
    return f"{role}.json"


def meta_role(key: str) -> str:
    """The role a snapshot's (or timestamp's) ``meta`` key names: ``meta_key`` reversed."""
    return key.removesuffix(".json")


def metadata_filename(role: str, version: int | None) -> str:
    """The TUF file name the blob is annotated with (``3.targets.json``)."""
    return meta_key(role) if version is None else f"{version}.{meta_key(role)}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_dict(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


EMPTY_CONFIG_DESCRIPTOR = Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(EMPTY_CONFIG), len(EMPTY_CONFIG))


def build_metadata_manifest(
    role: str,
    version: int,
    data: bytes,
    *,
    root_version: int | None = None,
    snapshot_data: bytes | None = None,
) -> bytes:
    """The manifest bytes wrapping one metadata blob.

    For the timestamp, ``root_version`` and the timestamp bytes themselves are
    carried as hints so that a refresh of an unchanged repository costs one
    request, and a small snapshot too, so that a cold refresh costs one request
    fewer (layout §5).
    """
    filename = metadata_filename(role, None if role == TIMESTAMP_TAG else version)
    layer = {
        "mediaType": METADATA_MEDIA_TYPE,
        "digest": sha256_digest(data),
        "size": len(data),
        "annotations": {FILENAME_ANNOTATION: filename},
    }
    annotations = {
        ANNOTATION_LAYOUT: LAYOUT_VERSION,
        ANNOTATION_ROLE: role,
        ANNOTATION_VERSION: str(version),
    }
    if role == TIMESTAMP_TAG:
        if root_version is not None:
            annotations[ANNOTATION_ROOT_HINT] = str(root_version)
        annotations[ANNOTATION_TIMESTAMP_HINT] = base64.b64encode(data).decode("ascii")
        if snapshot_data is not None and len(snapshot_data) <= MAX_INLINE_SNAPSHOT:
            annotations[ANNOTATION_SNAPSHOT_HINT] = base64.b64encode(snapshot_data).decode("ascii")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": EMPTY_CONFIG_DESCRIPTOR.to_dict(),
        "layers": [layer],
        "annotations": annotations,
    }
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode("utf-8")


def build_artifact_manifest(
    config_media_type: str,
    layer_media_type: str,
    data: bytes,
    annotations: dict[str, str],
) -> bytes:
    """A plain OCI manifest with the empty config and one layer (proposals, signatures)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": config_media_type, "digest": EMPTY_CONFIG_DESCRIPTOR.digest, "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": layer_media_type, "digest": sha256_digest(data), "size": len(data)}],
        "annotations": {ANNOTATION_LAYOUT: LAYOUT_VERSION, **annotations},
    }
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode("utf-8")


@dataclass(frozen=True)
class ArtifactManifest:
    config_media_type: str
    layer: Descriptor
    annotations: dict[str, str]


def parse_artifact_manifest(raw: bytes, config_media_type: str) -> ArtifactManifest:
    """Parse a proposal or signature manifest; anything else is rejected."""
    try:
        manifest = json.loads(raw)
        if manifest["config"]["mediaType"] != config_media_type:
            raise ValueError(f"config media type is not {config_media_type}")
        (layer,) = manifest["layers"]
        descriptor = Descriptor(str(layer["mediaType"]), str(layer["digest"]), int(layer["size"]))
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", descriptor.digest) or descriptor.size < 0:
            raise ValueError("bad layer descriptor")
        annotations = {str(k): str(v) for k, v in (manifest.get("annotations") or {}).items()}
    # OverflowError: a size of 1e400 (JSON infinity); RecursionError: absurdly nested JSON
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        raise MetadataRejectedError(f"malformed artifact manifest: {e}") from e
    return ArtifactManifest(config_media_type, descriptor, annotations)


@dataclass(frozen=True)
class MetadataManifest:
    """What a reader takes from a metadata manifest: all of it untrusted."""

    layer: Descriptor
    filename: str
    root_hint: int | None
    inline_data: bytes | None
    inline_snapshot: bytes | None = None  # unchecked here: the fetcher compares it with the timestamp's hash


def parse_metadata_manifest(raw: bytes) -> MetadataManifest:
    """Parse a metadata manifest, rejecting anything not shaped like layout v1.

    The inline timestamp hint is kept only if its bytes hash to the layer
    digest, so it is exactly as good as fetching the blob.
    """
    try:
        manifest = json.loads(raw)
        config = manifest["config"]
        (layer,) = manifest["layers"]
        if config["mediaType"] != CONFIG_MEDIA_TYPE or layer["mediaType"] != METADATA_MEDIA_TYPE:
            raise ValueError("not a tufoci metadata manifest")
        descriptor = Descriptor(layer["mediaType"], str(layer["digest"]), int(layer["size"]))
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", descriptor.digest) or descriptor.size < 0:
            raise ValueError("bad layer descriptor")
        filename = str((layer.get("annotations") or {}).get(FILENAME_ANNOTATION, ""))
        annotations = manifest.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ValueError("annotations is not an object")
    # OverflowError: a size of 1e400 (JSON infinity); RecursionError: absurdly nested JSON
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        raise MetadataRejectedError(f"malformed metadata manifest: {e}") from e
    root_hint = _parse_int(annotations.get(ANNOTATION_ROOT_HINT))
    inline = None
    encoded = annotations.get(ANNOTATION_TIMESTAMP_HINT)
    if isinstance(encoded, str):
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except ValueError:
            candidate = None
        if candidate is not None and len(candidate) == descriptor.size and sha256_digest(candidate) == descriptor.digest:
            inline = candidate
    snapshot = None
    encoded = annotations.get(ANNOTATION_SNAPSHOT_HINT)
    if isinstance(encoded, str) and len(encoded) <= (MAX_INLINE_SNAPSHOT * 4) // 3 + 4:
        try:
            snapshot = base64.b64decode(encoded, validate=True)
        except ValueError:
            snapshot = None
    return MetadataManifest(descriptor, filename, root_hint, inline, snapshot)


def _parse_int(value: object) -> int | None:
    # ASCII digits only: str.isdigit() accepts '²', which int() rejects
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,11}", value):
        return int(value)
    return None


def image_media_type(raw: bytes, content_type: str | None) -> str:
    """The media type of an image manifest: its own field first, then the header."""
    try:
        declared = json.loads(raw).get("mediaType")
    except (ValueError, AttributeError, RecursionError):
        declared = None
    if isinstance(declared, str) and declared:
        return declared
    if content_type:
        return content_type.split(";")[0].strip()
    return MANIFEST_MEDIA_TYPE


def target_custom(media_type: str, platforms: list[str] | None = None) -> dict:
    """A target's ``custom`` (§1.3): the media type, left out when it is the OCI image manifest's.

    Most targets are OCI image manifests; naming the type in each costs 66 of
    a target's ~180 bytes, and the bytes a verify downloads grow with it.
    """
    custom: dict = {} if media_type == MANIFEST_MEDIA_TYPE else {"mediaType": media_type}
    if platforms:
        custom["x-tufoci-platforms"] = platforms
    return custom


def target_media_type(custom: object) -> str:
    """The media type a target's ``custom`` records (§1.3: none means an OCI image manifest)."""
    media_type = custom.get("mediaType") if isinstance(custom, dict) else None
    return media_type if isinstance(media_type, str) else MANIFEST_MEDIA_TYPE


def index_platforms(raw: bytes) -> list[str]:
    """``os/arch[/variant]`` of each child of an index (informational only)."""
    try:
        manifests = json.loads(raw).get("manifests") or []
    except (ValueError, AttributeError, RecursionError):
        return []
    if not isinstance(manifests, list):
        return []
    platforms = []
    for child in manifests:
        platform = child.get("platform") if isinstance(child, dict) else None
        if not isinstance(platform, dict):
            continue
        parts = [platform.get("os"), platform.get("architecture")]
        if platform.get("variant"):
            parts.append(platform["variant"])
        if all(isinstance(p, str) and re.fullmatch(_PLATFORM_PART, p) for p in parts):
            platforms.append("/".join(map(str, parts)))
    return platforms
