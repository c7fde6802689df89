"""python-tuf's ngclient, fed from an OCI repository.

ngclient asks for URLs such as ``<base>3.root.json``, ``<base>timestamp.json`` or
``<base>7.targets.json``; this fetcher turns each into store reads following
docs/layout.md §5. Nothing it reads is trusted: it only decides *where* to get
bytes, and ngclient verifies every byte against the trusted chain. That is why
it may use hints (latest root version and the timestamp bytes carried on the
``timestamp`` manifest; lengths and hashes from the timestamp and snapshot it
just served) to skip round trips: a wrong hint can make a refresh fail, never
succeed.

Round trips for a refresh of an unchanged repository: one (the ``timestamp``
manifest, which carries the root hint and the timestamp bytes; snapshot and
targets are then already in ngclient's cache).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from tufoci.errors import NotFoundError
from tufoci.layout_spec import (
    MAX_METADATA_BYTES,
    MAX_METADATA_MANIFEST_BYTES,
    TIMESTAMP_TAG,
    MetadataManifest,
    meta_role,
    metadata_tag,
    parse_metadata_manifest,
    proposal_tag,
    sha256_digest,
)
from tufoci.store.base import RepositoryStore
from tufoci.tuf_compat import requested_metadata


class OCIMetadataFetcher(FetcherInterface):
    """A ``FetcherInterface`` over one metadata repository, for one refresh."""

    def __init__(self, store: RepositoryStore):
        self._store = store
        self._timestamp_manifest: MetadataManifest | None = None
        self._timestamp_missing = False
        self.timestamp_manifest_digest: str | None = None
        # (role, version) -> (digest, length) learned from the timestamp/snapshot served
        self._locations: dict[tuple[str, int], tuple[str, int | None]] = {}
        self._max_length = MAX_METADATA_BYTES

    def download_bytes(self, url: str, max_length: int) -> bytes:
        # pass ngclient's per-role limit down, so no read is ever larger than it
        self._max_length = max_length
        return super().download_bytes(url, max_length)

    def _fetch(self, url: str) -> Iterator[bytes]:
        # read eagerly (not a generator): FetcherInterface.fetch() only wraps
        # errors raised by this call, and metadata files are small and capped
        try:
            return iter([self._read(url)])
        except NotFoundError as e:
            # ngclient treats 403/404 on root N+1 as "no newer root"
            raise exceptions.DownloadHTTPError(str(e), 404) from e

    # -- layout §5: what a refresh reads --------------------------------------
    def _read(self, url: str) -> bytes:
        try:
            role, version = requested_metadata(url)
        except ValueError:
            role, version = "", None
        if version is None and role != "timestamp":  # layout §5: only the timestamp is read unversioned
            raise NotFoundError(f"{url.rsplit('/', 1)[-1]} is not a file of the tufoci layout")
        if version is None:
            manifest = self._timestamp()
            if manifest is None:
                raise NotFoundError(self._no_timestamp())
            data = manifest.inline_data or self._blob(manifest.layer.digest, manifest.layer.size)
            self._learn(data)
            return data
        if role == "root":
            hint = self._timestamp()
            if hint is not None and hint.root_hint is not None and version > hint.root_hint:
                raise NotFoundError(f"root {version} is newer than the latest root {hint.root_hint}")
            return self._by_tag(metadata_tag("root", version))
        location = self._locations.get((role, version))
        inline = self._timestamp_manifest.inline_snapshot if self._timestamp_manifest is not None else None
        if role == "snapshot" and location is not None and inline is not None \
                and sha256_digest(inline) == location[0]:
            data = inline  # layout §5: the snapshot carried on the timestamp manifest, same hash
        elif location is not None:
            data = self._blob(*location)
        else:
            data = self._by_tag(metadata_tag(role, version))
        if role == "snapshot":
            self._learn(data)
        return data

    def _timestamp(self) -> MetadataManifest | None:
        if self._timestamp_manifest is None and not self._timestamp_missing:
            try:
                manifest = self._store.get_manifest(TIMESTAMP_TAG, max_bytes=MAX_METADATA_MANIFEST_BYTES)
            except NotFoundError:
                self._timestamp_missing = True
                return None
            self.timestamp_manifest_digest = manifest.digest
            self._timestamp_manifest = parse_metadata_manifest(manifest.data)
        return self._timestamp_manifest

    def _no_timestamp(self) -> str:
        """Why there is no timestamp: an initial signing session (layout §9: a proposal of version 1), or no
        trust repository. Only on this failure path: one more request, never on a working refresh."""
        for role in ("targets", "root"):
            try:
                self._store.get_manifest(proposal_tag(role, 1), max_bytes=MAX_METADATA_MANIFEST_BYTES)
            except NotFoundError:
                continue
            return (f"trust data missing: the repository is awaiting its first signatures ({role} v1 is proposed "
                    f"in {self._store}; nothing is live until its key holders sign it)")
        return f"trust data missing: no '{TIMESTAMP_TAG}' tag in {self._store}: is the scope initialised?"

    def _by_tag(self, tag: str) -> bytes:
        manifest = parse_metadata_manifest(self._store.get_manifest(tag, max_bytes=MAX_METADATA_MANIFEST_BYTES).data)
        return self._blob(manifest.layer.digest, manifest.layer.size)

    def _blob(self, digest: str, length: int | None) -> bytes:
        cap = self._max_length if length is None else min(length, self._max_length)
        return self._store.get_blob(digest, max_bytes=cap)

    def _learn(self, data: bytes) -> None:
        """Remember where the files listed by a timestamp or snapshot live.

        Untrusted parse: if these bytes are rejected, ngclient never asks for
        the files they list; if accepted, ngclient re-checks each file's hash.
        """
        try:
            meta = json.loads(data)["signed"]["meta"]
            for name, info in meta.items():
                sha256 = info.get("hashes", {}).get("sha256")
                if isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256):
                    role = meta_role(name)
                    length = info.get("length")
                    self._locations[(role, int(info["version"]))] = (
                        f"sha256:{sha256}",
                        length if isinstance(length, int) and length >= 0 else None,
                    )
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            return  # OverflowError: a version of 1e400; RecursionError: absurdly nested JSON
