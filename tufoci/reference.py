"""OCI references, scopes and target names.

References are parsed here, not by oras-py: its normalisation differs from the
docker/containerd rules users expect (``nginx`` must mean
``docker.io/library/nginx:latest``, ``localhost`` and ``host:port`` are registry
names, a digest wins over a tag). An ``oci:PATH[:TAG][@DIGEST]`` reference names
a repository in an OCI image-layout directory, with the same syntax as skopeo.

A *target name* is the repository path relative to the scope, a colon and the
tag (``web/frontend:1.4``): no registry and no scope prefix appear in metadata,
so the same signed bytes verify on any registry or mirror (DESIGN §2).
"""

from __future__ import annotations

import os
import re

from tufoci.errors import InvalidReferenceError
from tufoci.frozen import Frozen

DOCKER_HUB = "docker.io"
LAYOUT_PREFIX = "oci:"

# distribution/reference grammar
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN_RE = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


class Repository(Frozen):
    """One OCI repository: a path in a registry, or an image-layout directory.

    ``registry`` is ``None`` for a layout repository, whose ``path`` is then an
    absolute directory path.
    """

    __slots__ = ("registry", "path")
    registry: str | None
    path: str

    def __init__(self, registry: str | None, path: str) -> None:
        self._init(registry, path)

    @property
    def is_layout(self) -> bool:
        return self.registry is None

    def child(self, relative: str) -> Repository:
        """The repository ``relative`` below this one (``acme`` + ``tuf``)."""
        if self.is_layout:
            return Repository(None, os.path.join(self.path, relative))
        return Repository(self.registry, f"{self.path}/{relative}")

    def relative_to(self, scope: Repository) -> str | None:
        """This repository's path below ``scope``, or None when outside it."""
        if self.registry != scope.registry:
            return None
        prefix = scope.path.rstrip("/") + "/"
        if not self.path.startswith(prefix):
            return None
        rest = self.path[len(prefix):]
        return rest or None

    def __str__(self) -> str:
        if self.is_layout:
            return f"{LAYOUT_PREFIX}{self.path}"
        return f"{self.registry}/{self.path}"


class Reference(Frozen):
    """A repository plus a tag and/or a digest."""

    __slots__ = ("repository", "tag", "digest")
    repository: Repository
    tag: str | None
    digest: str | None

    def __init__(self, repository: Repository, tag: str | None = None, digest: str | None = None) -> None:
        self._init(repository, tag, digest)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.repository, None, digest)

    def __str__(self) -> str:
        text = str(self.repository)
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    name, digest = text.rsplit("@", 1)
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReferenceError(f"invalid digest {digest!r}: expected sha256:<64 hex>")
    return name, digest


def _split_tag(name: str) -> tuple[str, str | None]:
    colon = name.rfind(":")
    if colon == -1 or "/" in name[colon + 1:]:
        return name, None
    tag = name[colon + 1:]
    if not TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(f"invalid tag {tag!r}")
    return name[:colon], tag


def parse_repository(text: str) -> Repository:
    """Parse a repository or scope name (no tag, no digest)."""
    if text.startswith(LAYOUT_PREFIX):
        path = text[len(LAYOUT_PREFIX):]
        if not path:
            raise InvalidReferenceError(f"invalid layout reference {text!r}: no path")
        if "@" in path or ":" in path:
            raise InvalidReferenceError(
                f"invalid layout path {path!r}: ':' and '@' separate tags and digests"
            )
        if "\x00" in path:
            raise InvalidReferenceError(f"invalid layout path {path!r}: NUL byte")
        return Repository(None, os.path.abspath(path).rstrip("/") or "/")
    if not text or len(text) > _MAX_NAME:
        raise InvalidReferenceError(f"invalid repository name {text!r}")
    first, sep, rest = text.partition("/")
    if not sep and ":" in first and _DOMAIN_RE.fullmatch(first):
        # issue 18: 'localhost:5000' is a registry; read as a Docker Hub path it would be 'library/localhost:5000'
        raise InvalidReferenceError(f"{text!r} names a registry, not a scope: a scope needs a namespace "
                                    f"(e.g. {text}/acme)")
    is_domain = sep and ("." in first or ":" in first or first == "localhost" or first != first.lower())
    if is_domain:
        registry, path = first, rest
        if not _DOMAIN_RE.fullmatch(registry):
            raise InvalidReferenceError(f"invalid registry name {registry!r} in {text!r}")
    else:
        registry, path = DOCKER_HUB, text
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not PATH_RE.fullmatch(path):
        raise InvalidReferenceError(
            f"invalid repository path {path!r} in {text!r}: lowercase letters, digits and "
            "separators (. _ __ -) between '/'-separated components"
        )
    return Repository(registry, path)


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse an image reference the way docker and containerd do.

    A digest wins over a tag for what gets pulled, but both are kept: verify
    needs the tag to find the target and checks the digest against it.
    """
    text = text.strip()
    if not text:
        raise InvalidReferenceError("empty reference")
    is_layout = text.startswith(LAYOUT_PREFIX)
    body = text[len(LAYOUT_PREFIX):] if is_layout else text
    name, digest = _split_digest(body)
    name, tag = _split_tag(name)
    repository = parse_repository(LAYOUT_PREFIX + name if is_layout else name)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(repository, tag, digest)


def target_name(reference: Reference, scope: Repository) -> str:
    """The TUF target name of a tagged reference inside ``scope``."""
    relative = reference.repository.relative_to(scope)
    if relative is None:
        raise InvalidReferenceError(f"{reference} is not inside the scope {scope}")
    if not reference.tag:
        raise InvalidReferenceError(f"{reference} has no tag: targets are named by tag")
    return f"{relative}:{reference.tag}"


def reference_for_target(name: str, scope: Repository) -> Reference:
    """Inverse of ``target_name``: where a target lives in a given scope."""
    relative, sep, tag = name.rpartition(":")
    if not sep or not relative or not TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(f"invalid target name {name!r}: expected <path>:<tag>")
    if not scope.is_layout and not PATH_RE.fullmatch(f"{scope.path}/{relative}"):
        raise InvalidReferenceError(f"invalid target name {name!r}")
    if scope.is_layout and any(
        part in ("", ".", "..") or ":" in part or "@" in part or "\x00" in part for part in relative.split("/")
    ):
        # a signed name must name a directory below the scope, never ../ or /abs
        raise InvalidReferenceError(f"invalid target name {name!r}: not a path below the scope")
    return Reference(scope.child(relative), tag)
