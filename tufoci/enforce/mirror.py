"""The verifying mirror's decisions: which manifest or blob it may serve, and from where.

A request names a repository (``/v2/<name>/…``) and, from containerd, the
upstream registry it is meant for (``?ns=registry.example.com``, sent when the
mirror is configured in ``hosts.toml``). Clients that send no ``ns`` (docker,
podman, skopeo) either put the upstream's name first in the path
(``/v2/registry.example.com/acme/web/…``) or get the policy's default upstream.
The image judged is always ``<upstream name>/<repository>``, exactly what the
node asked to pull, under the same policy as the admission webhook.

What may be served (OCI distribution spec, read API only):

- a manifest by tag: the tag's SIGNED digest, never what the upstream's tag says;
- a manifest by digest: a signed digest, or a manifest one of them references
  (the platforms of a signed index);
- a blob: one a servable manifest references (config and layers), with the size
  that manifest states.

The servable set of a repository is computed from signed content only (manifests
fetched by their signed digest and checked against it) and cached by signed
digest: it changes only when the signed digests do. Every failure is an
``OciError`` carrying the status and the spec's error code; the server sends it
as ``{"errors":[{"code":…,"message":…}]}``. Upstream I/O goes through the
registry client (timeouts, capped reads, auth from the docker config).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tufoci.enforce.decision import Reason, decide, signed_digests
from tufoci.enforce.policy import MirrorSection, Policy, Rule, Upstream
from tufoci.enforce.view import ScopeView, ViewFailure, Views
from tufoci.errors import ContentMismatchError, NotFoundError, TufociError
from tufoci.layout_spec import (
    DOCKER_LIST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
)
from tufoci.reference import DIGEST_RE, parse_reference, parse_repository
from tufoci.registry_config import RegistryConfig, TLSFlags
from tufoci.registry_options import CredentialSource, RegistryOptions
from tufoci.store.registry import RegistryClient

INDEX_TYPES = (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
MAX_DEPTH = 2  # an index of indexes at most; deeper nesting is served as not found
MAX_CLOSURES = 4096  # signed digests whose servable set is remembered
MANIFEST_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OciError(Exception):
    """An answer the mirror sends instead of content (distribution spec error codes)."""

    status: int
    code: str
    message: str

    def body(self) -> bytes:
        return json.dumps({"errors": [{"code": self.code, "message": self.message}]}).encode()


# how a verdict that is not "signed" is answered; documented in docs/mirror.md
_DENIALS = {
    Reason.NOT_SIGNED: (404, "MANIFEST_UNKNOWN"),
    Reason.NO_POLICY: (403, "DENIED"),
    Reason.EXEMPT: (403, "DENIED"),
    Reason.INVALID_REFERENCE: (400, "NAME_INVALID"),
    Reason.METADATA_REJECTED: (403, "DENIED"),
    Reason.UNREACHABLE: (503, "UNAVAILABLE"),
    Reason.STALE: (503, "UNAVAILABLE"),
}


@dataclass(frozen=True)
class Route:
    """Which upstream a request is for and the repository there."""

    upstream: Upstream
    repository: str

    @property
    def image(self) -> str:
        return f"{self.upstream.name}/{self.repository}"


def route(section: MirrorSection, name: str, ns: str | None) -> Route:
    """The upstream and repository a request names.

    ``ns`` (containerd's ``hosts.toml`` mirrors send it) wins; else the first
    path component when it names an upstream; else the default upstream.

    Raises:
        OciError: no such upstream (404 NAME_UNKNOWN), or no way to tell.
    """
    if ns is not None:
        upstream = section.upstream(ns)
        if upstream is None:
            raise OciError(404, "NAME_UNKNOWN", f"this mirror serves no registry {ns!r}")
        return Route(upstream, name)
    first, _, rest = name.partition("/")
    upstream = section.upstream(first)
    if upstream is not None and rest:
        return Route(upstream, rest)
    if section.default is None:
        raise OciError(404, "NAME_UNKNOWN", f"{name}: name the registry (?ns= or as the first path component)")
    return Route(section.upstream(section.default), name)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int


@dataclass(frozen=True)
class ParsedManifest:
    """What a manifest says: its media type (from its own bytes, never a header), children, blobs."""

    media_type: str
    children: tuple[Descriptor, ...]
    blobs: tuple[Descriptor, ...]


def parse_manifest(data: bytes) -> ParsedManifest:
    """Read an image manifest or index (OCI or Docker schema 2).

    The media type comes from the signed bytes: the ``mediaType`` field, else
    the shape (``manifests`` → index). An upstream's Content-Type is ignored.

    Raises:
        OciError: not JSON, or descriptors without a digest and size (502 MANIFEST_INVALID).
    """
    try:
        doc = json.loads(data)
        media_type = doc.get("mediaType") or (INDEX_MEDIA_TYPE if "manifests" in doc else MANIFEST_MEDIA_TYPE)
        children = tuple(_descriptor(d) for d in doc.get("manifests") or ())
        blobs = tuple(_descriptor(d) for d in ([doc["config"]] if doc.get("config") else []) + (doc.get("layers") or []))
    except (ValueError, AttributeError, TypeError, KeyError) as e:
        raise OciError(502, "MANIFEST_INVALID", f"a signed manifest cannot be read: {e}") from e
    if not isinstance(media_type, str):
        raise OciError(502, "MANIFEST_INVALID", "a signed manifest has no media type")
    return ParsedManifest(media_type, children, blobs)


def _descriptor(value: dict) -> Descriptor:
    digest, size = value["digest"], value["size"]
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest) or not isinstance(size, int) or size < 0:
        raise ValueError(f"invalid descriptor {digest!r}")
    return Descriptor(digest, size)


@dataclass
class Closure:
    """What one signed digest makes servable: manifests (with media type) and blobs (with size)."""

    manifests: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    data: bytes


class Upstreams:
    """One registry client per upstream endpoint: timeouts, capped reads, and the credentials of the docker
    config for the endpoint, looked up when the upstream first asks and again after it refuses them (a
    rotated helper token needs no restart).
    """

    def __init__(self, section: MirrorSection, credentials: CredentialSource = CredentialSource()):
        """``credentials``: where the upstreams' credentials come from (the CLI: docker's config.json).

        Raises:
            RegistryConfigError: an upstream's CA file cannot be used.
        """
        self._clients = {
            u.name: RegistryClient(u.endpoint, RegistryOptions(
                RegistryConfig(TLSFlags(u.plain_http, ca_file=u.ca_file)), credentials,
                read_timeout=section.timeout, deadline=section.timeout))
            for u in section.upstreams
        }
        self.latency: Callable[[str, float], None] = lambda upstream, seconds: None

    def client(self, route: Route) -> RegistryClient:
        return self._clients[route.upstream.name]

    def manifest(self, route: Route, digest: str) -> bytes:
        """The manifest ``digest`` of the route's repository, checked against the digest.

        Raises:
            OciError: not found upstream (404 MANIFEST_UNKNOWN), bytes that do not match
                (502 MANIFEST_INVALID), the upstream unreachable or failing (503 UNAVAILABLE).
        """
        started = time.monotonic()
        try:
            # distribution spec: a manifest fetched by digest must hash to it (get_manifest checks)
            return self.client(route).repository(route.repository).get_manifest(digest).data
        except NotFoundError as e:
            raise OciError(404, "MANIFEST_UNKNOWN", f"{route.image}@{digest}: signed but not found upstream") from e
        except ContentMismatchError as e:
            raise OciError(502, "MANIFEST_INVALID", f"{route.image}@{digest}: upstream served other bytes") from e
        except TufociError as e:
            raise OciError(503, "UNAVAILABLE", f"{route.image}: upstream failed: {e}") from e
        finally:
            self.latency(route.upstream.name, time.monotonic() - started)

    def tag_digest(self, route: Route, tag: str) -> str | None:
        """What the upstream's tag points at now (HEAD), or None when it cannot tell."""
        client = self.client(route)
        try:
            status, headers, _ = client.request(
                "HEAD", f"/v2/{route.repository}/manifests/{tag}", scope=f"repository:{route.repository}:pull",
                headers={"Accept": ", ".join((*INDEX_TYPES, MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE))})
        except TufociError:
            return None
        return headers.get("Docker-Content-Digest") if status == 200 else None


class Mirror:
    """Answers manifest and blob requests from the verified views and signed content only."""

    def __init__(self, policy: Policy, views: Views, upstreams: Upstreams, *,
                 on_moved: Callable[[Route, str, str, str], None] = lambda route, tag, signed, upstream: None):
        assert policy.mirror is not None
        self.policy, self.section, self.views, self.upstreams = policy, policy.mirror, views, upstreams
        self.on_moved = on_moved
        self._lock = threading.Lock()
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()  # by digest: content-addressed, verified
        self._manifest_bytes = 0
        self._closures: OrderedDict[tuple[str, str, str], Closure] = OrderedDict()
        self._tag_checked: dict[tuple[str, str, str], float] = {}

    # -- trust -----------------------------------------------------------------------------------
    def _view(self, scope: str) -> ScopeView | ViewFailure:
        return self.views.view(scope, self.section.timeout)

    def resolve_tag(self, route: Route, tag: str) -> str:
        """The tag's signed digest.

        Raises:
            OciError: not signed (404 MANIFEST_UNKNOWN), no policy or rejected trust data (403 DENIED),
                trust data unreachable or stale (503 UNAVAILABLE), not a valid name (400).
        """
        verdict = decide(f"{route.image}:{tag}", self.policy, self._view, now=time.time())
        if not verdict.allowed or verdict.reason is not Reason.SIGNED:
            status, code = _DENIALS.get(verdict.reason, (403, "DENIED"))
            message = verdict.message
            if verdict.reason is Reason.EXEMPT:
                message += "; the mirror serves only signed images: pull exempt images from their registry"
            raise OciError(status, code, message)
        return (verdict.pinned or "").rpartition("@")[2]

    def servable_digests(self, route: Route) -> set[str]:
        """The signed digests of the route's repository (every tag, every required role).

        Raises:
            OciError: as ``resolve_tag``, for the repository as a whole.
        """
        # judged as a digest-only reference, so policy, view and freshness fail exactly as for tags
        probe = f"{route.image}@sha256:{'0' * 64}"
        verdict = decide(probe, self.policy, self._view, now=time.time())
        if verdict.reason is not Reason.NOT_SIGNED:  # anything else is a refusal of the repository as a whole
            status, code = _DENIALS.get(verdict.reason, (403, "DENIED"))
            raise OciError(status, code, verdict.message.replace(probe, route.image))
        reference = parse_reference(probe)  # decide() parsed it already: it is valid
        rule = self.policy.match(reference)
        assert isinstance(rule, Rule)  # decide() found a rule
        view = self._view(rule.scope)
        assert isinstance(view, ScopeView)
        relative = reference.repository.relative_to(parse_repository(rule.scope)) or ""
        return signed_digests(rule, view, relative)

    # -- content ---------------------------------------------------------------------------------
    def manifest(self, route: Route, digest: str) -> Manifest:
        """The verified manifest ``digest`` (memory first, then upstream by digest)."""
        with self._lock:
            cached = self._manifests.get(digest)
            if cached is not None:
                self._manifests.move_to_end(digest)
                return cached
        data = self.upstreams.manifest(route, digest)
        manifest = Manifest(digest, parse_manifest(data).media_type, data)
        with self._lock:
            if digest not in self._manifests:
                self._manifests[digest] = manifest
                self._manifest_bytes += len(data)
                while self._manifest_bytes > MANIFEST_CACHE_BYTES and len(self._manifests) > 1:
                    _, dropped = self._manifests.popitem(last=False)
                    self._manifest_bytes -= len(dropped.data)
        return manifest

    def closure(self, route: Route, signed: str) -> Closure:
        """Everything the signed digest ``signed`` makes servable in the route's repository (cached)."""
        key = (route.upstream.name, route.repository, signed)
        with self._lock:
            cached = self._closures.get(key)
            if cached is not None:
                self._closures.move_to_end(key)
                return cached
        closure = Closure()
        pending = [(signed, 0)]
        while pending:
            digest, depth = pending.pop()
            if digest in closure.manifests or depth > MAX_DEPTH:
                continue
            manifest = self.manifest(route, digest)
            parsed = parse_manifest(manifest.data)
            closure.manifests[digest] = manifest.media_type
            closure.blobs.update((b.digest, b.size) for b in parsed.blobs)
            pending.extend((child.digest, depth + 1) for child in parsed.children)
        with self._lock:
            self._closures[key] = closure
            while len(self._closures) > MAX_CLOSURES:
                self._closures.popitem(last=False)
        return closure

    def _find(self, route: Route, found: Callable[[Closure], bool]) -> bool:
        """Whether some signed digest's closure satisfies ``found``: cached closures first, then the rest."""
        digests = self.servable_digests(route)
        with self._lock:
            known = {d for d in digests if (route.upstream.name, route.repository, d) in self._closures}
        for digest in [*known, *(digests - known)]:
            try:
                if found(self.closure(route, digest)):
                    return True
            except OciError as e:
                if e.status >= 500 and e.code == "UNAVAILABLE":
                    raise
                continue  # one signed tag whose manifest is gone upstream does not hide the others
        return False

    # -- requests --------------------------------------------------------------------------------
    def manifest_for(self, route: Route, reference: str) -> Manifest:
        """The manifest to serve for ``GET /v2/<name>/manifests/<reference>``.

        Raises:
            OciError: refused or unavailable, with the status and code to send.
        """
        if DIGEST_RE.fullmatch(reference):
            if not self._find(route, lambda closure: reference in closure.manifests):
                raise OciError(404, "MANIFEST_UNKNOWN",
                               f"{route.image}@{reference}: not signed, nor referenced by a signed manifest")
            return self.manifest(route, reference)
        if ":" in reference or "/" in reference or reference.startswith("sha256"):
            raise OciError(400, "MANIFEST_INVALID", f"{reference!r} is neither a tag nor a digest")
        digest = self.resolve_tag(route, reference)
        manifest = self.manifest(route, digest)
        self._check_tag_later(route, reference, digest)
        return manifest

    def blob_size(self, route: Route, digest: str) -> int:
        """The size a signed manifest states for blob ``digest``: it may be served.

        Raises:
            OciError: not referenced by any signed manifest (404 BLOB_UNKNOWN), or refused.
        """
        if not DIGEST_RE.fullmatch(digest):
            raise OciError(400, "DIGEST_INVALID", f"{digest!r} is not a digest")
        sizes: list[int] = []

        def found(closure: Closure) -> bool:
            if digest in closure.blobs:
                sizes.append(closure.blobs[digest])
                return True
            return False

        if not self._find(route, found):
            raise OciError(404, "BLOB_UNKNOWN", f"{route.image}@{digest}: not referenced by a signed manifest")
        return sizes[0]

    def _check_tag_later(self, route: Route, tag: str, signed: str) -> None:
        """Compare the upstream's tag with the signed digest in the background (at most every W/2).

        Only for the metric and the log: the answer is the signed digest whatever upstream says.
        """
        key = (route.upstream.name, route.repository, tag)
        now = time.monotonic()
        with self._lock:
            if now - self._tag_checked.get(key, -1e9) < self.policy.freshness / 2:
                return
            self._tag_checked[key] = now

        def check() -> None:
            current = self.upstreams.tag_digest(route, tag)
            if current is not None and current != signed:
                self.on_moved(route, tag, signed, current)

        threading.Thread(target=check, name="tufoci-tag-check", daemon=True).start()
