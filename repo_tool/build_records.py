"""The digest files build and copy tools write, read as what ``target add`` signs (issue 18).

Docker Content Trust signed on ``docker push``; in CI the equivalent is to sign exactly the
digest the pipeline pushed, never what a tag serves a moment later. Formats:

- ``list``: lines ``REF DIGEST SIZE [MEDIATYPE]`` (``target add --from-file``): complete, no registry request;
- ``digest``: one ``sha256:…`` (``skopeo copy --digestfile``, ``docker build --iidfile``), for one REF;
- ``buildx-metadata``: ``docker buildx build --metadata-file`` JSON (``containerimage.digest``, ``image.name``);
- ``oci-index``: an OCI image layout's ``index.json`` (tags from ``org.opencontainers.image.ref.name``).

A digest alone names the bytes but not their size or media type: those references are staged as
``REF@DIGEST`` and resolved by digest from the registry (the bytes are hashed as usual).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tufoci.errors import UsageError
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE
from tufoci.reference import DIGEST_RE, parse_reference

FORMATS = ("auto", "list", "digest", "buildx-metadata", "oci-index")
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class DigestFileTargets:
    """What a digest file asks to stage: complete records (no registry request) and/or references
    pinned to a digest (resolved by digest)."""

    records: list[tuple[str, str, int, str]] = field(default_factory=list)
    pinned: list[str] = field(default_factory=list)


def detect_format(text: str) -> str:
    """The format of a digest file's contents (``auto``)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as e:
            raise UsageError(f"digest file is not valid JSON: {e}") from e
        if isinstance(data, dict) and "manifests" in data:
            return "oci-index"
        if isinstance(data, dict) and "containerimage.digest" in data:
            return "buildx-metadata"
        raise UsageError("digest file is JSON but neither an OCI index.json nor buildx --metadata-file output")
    if DIGEST_RE.fullmatch(stripped):
        return "digest"
    return "list"


def read_digest_file(text: str, references: list[str], fmt: str = "auto", *, source: str = "digest file"
                     ) -> DigestFileTargets:
    """Parse a digest file of format ``fmt`` for ``references`` (the REFs the format needs).

    Raises:
        UsageError: malformed contents, or references that do not fit the format (naming ``source``).
    """
    if fmt == "auto":
        fmt = detect_format(text)
    if fmt == "list":
        if references:
            raise UsageError(f"{source} lists its references: give no REFERENCE with it")
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return DigestFileTargets(records=[parse_build_record(line) for line in lines])
    if fmt == "digest":
        digest = text.strip()
        if not DIGEST_RE.fullmatch(digest):
            raise UsageError(f"{source} holds {digest[:80]!r}, not one sha256:<64 hex> digest")
        if len(references) != 1:
            raise UsageError(f"{source} holds one digest: give exactly one REPO:TAG it was pushed as")
        return DigestFileTargets(pinned=[_pinned(references[0], digest)])
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{source} is not valid JSON: {e}") from e
    if fmt == "buildx-metadata":
        return _buildx(data, references, source)
    if fmt == "oci-index":
        return _oci_index(data, references, source)
    raise UsageError(f"unknown digest file format {fmt!r}: choose one of {', '.join(FORMATS)}")


def parse_build_record(line: str) -> tuple[str, str, int, str]:
    """One line of a build's output: ``REF DIGEST SIZE [MEDIATYPE]``.

    Raises:
        UsageError: the line does not have that shape.
    """
    fields = line.split()
    if len(fields) not in (3, 4) or not DIGEST_RE.fullmatch(fields[1]) or not fields[2].isdigit():
        raise UsageError(f"invalid line {line.strip()!r}: expected 'REF sha256:<64 hex> SIZE [MEDIATYPE]'")
    return fields[0], fields[1], int(fields[2]), fields[3] if len(fields) == 4 else MANIFEST_MEDIA_TYPE


def _pinned(reference: str, digest: str) -> str:
    parsed = parse_reference(reference)
    if parsed.digest and parsed.digest != digest:
        raise UsageError(f"{reference} names {parsed.digest}, the digest file {digest}")
    if not parsed.tag:
        raise UsageError(f"{reference}: a target is named by its tag; give REPO:TAG")
    return f"{parsed.repository}:{parsed.tag}@{digest}"


def _buildx(data: object, references: list[str], source: str) -> DigestFileTargets:
    if not isinstance(data, dict) or not isinstance(data.get("containerimage.digest"), str):
        raise UsageError(f"{source}: no 'containerimage.digest' (docker buildx build --metadata-file output)")
    digest = data["containerimage.digest"]
    names = references or [n.strip() for n in str(data.get("image.name", "")).split(",") if n.strip()]
    if not names:
        raise UsageError(f"{source} names no image ('image.name'): give the REPO:TAG it was pushed as")
    return DigestFileTargets(pinned=[_pinned(name, digest) for name in names])


def _oci_index(data: object, references: list[str], source: str) -> DigestFileTargets:
    manifests = data.get("manifests") if isinstance(data, dict) else None
    if not isinstance(manifests, list) or len(references) != 1:
        raise UsageError(f"{source}: an OCI layout's index.json needs one REPO (all its tags) or REPO:TAG")
    parsed = parse_reference(references[0])
    # parse_reference reads a bare REPO as REPO:latest; here a bare REPO means every tag of the layout
    only = parsed.tag if references[0].rsplit("/", 1)[-1].count(":") else None
    records = []
    for entry in manifests:
        if not isinstance(entry, dict):
            continue
        tag = (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)
        if not tag or (only and tag != only):
            continue
        digest, size = entry.get("digest"), entry.get("size")
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest) or not isinstance(size, int):
            raise UsageError(f"{source}: the entry for tag {tag!r} has no valid digest and size")
        records.append((f"{parsed.repository}:{tag}", digest, size, entry.get("mediaType") or MANIFEST_MEDIA_TYPE))
    if not records:
        raise UsageError(f"{source} has no manifest tagged {only!r}" if only
                         else f"{source} has no tagged manifest ({REF_NAME_ANNOTATION})")
    return DigestFileTargets(records=records)
