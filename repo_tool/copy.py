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
from collections.abc import Callable
from dataclasses import dataclass, field

from tufoci.client.refresh import metadata_store, trusted_session
from tufoci.client.trust_pins import default_metadata_repository, pin_for_scope
from tufoci.errors import NotFoundError, RegistryError
from tufoci.json_keys import camel_keys
from tufoci.layout_spec import (
    DOCKER_LIST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    TIMESTAMP_TAG,
    image_media_type,
)
from tufoci.reference import Repository, parse_repository, reference_for_target
from tufoci.repo_tool.plan import load_current
from tufoci.repo_tool.roles import RoleTree
from tufoci.state import State
from tufoci.store import open_repository
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
    def __init__(self, report: CopyReport, progress: Progress, registry_options: dict):
        self.report, self.progress, self.options = report, progress, registry_options
        self._done: set[tuple[str, str]] = set()

    def store(self, repository: Repository) -> RepositoryStore:
        return open_repository(repository, **self.options)

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


def copy_scope(
    state: State,
    source_text: str,
    destination_text: str,
    *,
    tag_pattern: str | None = None,
    progress: Progress = lambda line: None,
    **registry_options: object,
) -> CopyReport:
    """Copy every signed image of a trusted scope (or those matching ``tag_pattern``) and its metadata."""
    pin = pin_for_scope(state, source_text)
    source_scope, destination_scope = parse_repository(pin.scope), parse_repository(destination_text)
    report = CopyReport(str(source_scope), str(destination_scope))
    copier = _Copier(report, progress, dict(registry_options))

    with trusted_session(state.home, pin, **registry_options) as session:
        tree = RoleTree(session, load_current(session).root.signed)
        signed = {}
        for role in reversed(tree.walk()):  # the most trusted role wins, as clients resolve it
            for name, info in tree.metadata(role).signed.targets.items():
                signed[name] = "sha256:" + info.hashes.get("sha256", "")
    names = sorted(n for n in signed if tag_pattern is None or fnmatch.fnmatchcase(n, tag_pattern))
    for number, name in enumerate(names, 1):
        reference = reference_for_target(name, source_scope)
        relative = reference.repository.relative_to(source_scope) or ""
        progress(f"[{number}/{len(names)}] {name}")
        copier.manifest(copier.store(reference.repository), copier.store(destination_scope.child(relative)),
                        signed[name], reference.tag)
        report.images += 1
        report.targets.append(name)

    source_metadata = metadata_store(pin, **registry_options)
    destination_metadata = copier.store(default_metadata_repository(destination_scope))
    tags = sorted(source_metadata.list_tags(), key=lambda t: t == TIMESTAMP_TAG)  # timestamp last
    for tag in tags:
        manifest = source_metadata.get_manifest(tag)
        copier.manifest(source_metadata, destination_metadata, manifest.digest, tag)
        report.metadata_tags += 1
    progress(f"metadata: {report.metadata_tags} tags")
    return report
