"""Copying a scope — its signed images and its trust data — to another registry or a layout directory.

Only what the trusted metadata signs is copied, by digest, so a copy can never
carry an image nobody released; manifests keep their bytes (digests are
preserved), blobs are mounted when both sides are repositories of one registry
and streamed otherwise (never held whole in memory), and everything already
present at the destination is skipped, so an interrupted copy is resumed by
running it again. The metadata repository is copied last, and its
``timestamp`` last of all (layout §4): until then readers at the destination
see the previous trust state, whose images are all there.

A copy to ``oci:DIR`` and a copy from it are the air-gapped transfer: carry the
directory (or a tarball of it) and copy it into the other registry.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from tufoci.client.trust_pins import default_metadata_repository
from tufoci.errors import MetadataRejectedError, NotFoundError, PublishError, RegistryError, UsageError
from tufoci.json_keys import camel_keys
from tufoci.layout_spec import (
    DOCKER_LIST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    TIMESTAMP_TAG,
    image_media_type,
)
from tufoci.reference import Repository, parse_repository, reference_for_target
from tufoci.repo_tool.high_water import Mark, observed, older_roles
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.state import Pin
from tufoci.store.base import RepositoryStore

Progress = Callable[[str], None]


@dataclass
class CopyReport:
    source: str
    destination: str
    images: int = 0
    manifests_copied: int = 0
    manifests_skipped: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    metadata_tags: int = 0
    targets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return camel_keys(self.__dict__)


class _Copier:
    def __init__(self, report: CopyReport, progress: Progress, session: MaintainerSession):
        self.report, self.progress, self.session = report, progress, session
        self._done: set[tuple[str, str]] = set()

    def store(self, repository: Repository) -> RepositoryStore:
        return self.session.open_repository(repository)

    def blob(self, source: RepositoryStore, destination: RepositoryStore, descriptor: dict) -> None:
        digest, size = str(descriptor["digest"]), int(descriptor["size"])
        key = (repr(destination), digest)
        if key in self._done:
            return
        if destination.has_blob(digest):
            self.report.blobs_skipped += 1
        elif destination.mount_blob(digest, source):
            self.report.blobs_mounted += 1
        else:
            with source.open_blob(digest, size) as stream:
                destination.put_blob_from(digest, size, stream)
            self.report.blobs_copied += 1
            self.report.bytes_copied += size
        self._done.add(key)

    def manifest(self, source: RepositoryStore, destination: RepositoryStore, digest: str, tag: str | None) -> None:
        """Copy a manifest by digest (children and blobs first), then point ``tag`` at it."""
        try:
            present = destination.get_manifest(tag or digest).digest == digest
        except NotFoundError:
            present = False
        if present:
            self.report.manifests_skipped += 1
            return
        manifest = source.get_manifest(digest, max_bytes=MAX_MANIFEST_BYTES)  # checked against digest
        media_type = image_media_type(manifest.data, manifest.content_type)
        try:
            document = json.loads(manifest.data)
        except ValueError as e:
            raise RegistryError(f"manifest {digest} is not JSON: {e}") from e
        if media_type in (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE):
            for child in document.get("manifests") or []:  # every platform of an index
                self.manifest(source, destination, str(child["digest"]), None)
        else:
            for descriptor in [document.get("config"), *(document.get("layers") or [])]:
                if isinstance(descriptor, dict) and descriptor.get("digest"):
                    self.blob(source, destination, descriptor)
        destination.put_manifest(tag or digest, manifest.data, media_type)
        self.report.manifests_copied += 1


def _destination_state(session: MaintainerSession, destination: Repository) -> dict[str, Mark]:
    """The trust state the destination serves, verified with the source's pinned root (expiry waived).

    Empty when there is none: no ``timestamp`` yet, or metadata that does not
    verify with this root (nothing a consumer of this root trusts is replaced).
    Verified in a scratch cache, so nothing about the destination is remembered.

    Raises:
        RegistryError: the destination cannot be reached.
    """
    pin = session.pin
    target = Pin(str(destination), str(default_metadata_repository(destination)), pin.root_sha256, pin.root_file)
    there = MaintainerSession(session.state, target, registry=session.registry, allow_expired=True)
    with tempfile.TemporaryDirectory(prefix=".copy-", dir=session.state.home) as scratch:
        try:
            with there.live(cache=os.path.join(scratch, "cache")) as live:
                return observed(live.verified, live.current)
        except (NotFoundError, MetadataRejectedError):
            return {}


def copy_scope(
    session: MaintainerSession,
    destination_text: str,
    *,
    tag_pattern: str | None = None,
    replace_newer: bool = False,
    progress: Progress = lambda line: None,
) -> CopyReport:
    """Copy every signed image of a trusted scope (or those matching ``tag_pattern``) and its metadata.

    The ``timestamp`` copied is the one this copy verified (by manifest digest),
    never a second read of the tag. A destination whose trust state (verified with
    the same root) is newer than the source's is not moved backwards unless
    ``replace_newer``. The session decides whether expired metadata may be copied (the CLI's does not).

    Raises:
        PublishError: the destination is newer and ``replace_newer`` is not set (nothing copied).
        MetadataRejectedError: the source's metadata does not verify.
        RegistryError: a registry cannot be reached or misbehaves.
    """
    pin = session.pin
    source_scope, destination_scope = parse_repository(pin.scope), parse_repository(destination_text)
    report = CopyReport(str(source_scope), str(destination_scope))
    copier = _Copier(report, progress, session)

    with session.live() as live:
        current, tree = live.current, live.tree
        source_state = observed(live.verified, current)
        verified_timestamp = current.timestamp_manifest_digest
        signed = {}
        for name in sorted({name for role in tree.walk() for name in tree.metadata(role).signed.targets}):
            if tag_pattern is None or fnmatch.fnmatchcase(name, tag_pattern):
                info = live.verified.lookup(name)  # the client's delegation walk: paths, order, terminating
                if info is not None:
                    signed[name] = "sha256:" + info.hashes.get("sha256", "")
    if verified_timestamp is None:  # an HTTP source: no manifest to copy
        raise UsageError(f"{pin.scope} reads its metadata from {pin.metadata}: copy needs an OCI source")
    newer = older_roles(_destination_state(session, destination_scope), source_state)
    if newer and not replace_newer:
        raise PublishError(
            f"{destination_scope} serves a newer trust state than {pin.scope} (source vs destination: "
            f"{'; '.join(newer)}): copying would move it backwards. Nothing was copied; use --replace-newer to replace it"
        )
    names = sorted(signed)
    for number, name in enumerate(names, 1):
        reference = reference_for_target(name, source_scope)
        relative = reference.repository.relative_to(source_scope) or ""
        progress(f"[{number}/{len(names)}] {name}")
        copier.manifest(copier.store(reference.repository), copier.store(destination_scope.child(relative)),
                        signed[name], reference.tag)
        report.images += 1
        report.targets.append(name)

    source_metadata = session.store
    destination_metadata = copier.store(default_metadata_repository(destination_scope))
    for tag in sorted(t for t in source_metadata.list_tags() if t != TIMESTAMP_TAG):
        manifest = source_metadata.get_manifest(tag)
        copier.manifest(source_metadata, destination_metadata, manifest.digest, tag)
        report.metadata_tags += 1
    # layout §4: timestamp last — the one verified above, by digest, not whatever the tag says now
    copier.manifest(source_metadata, destination_metadata, verified_timestamp, TIMESTAMP_TAG)
    report.metadata_tags += 1
    progress(f"metadata: {report.metadata_tags} tags")
    return report
