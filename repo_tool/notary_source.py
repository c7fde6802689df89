"""Where Notary metadata comes from: a notary-server over HTTPS, or a docker trust directory. Read only.

Both sources answer the same four questions (a root version, the current root, the current timestamp, a file by
role name and expected sha256) and nothing else. The server source only ever sends ``GET`` for
``…/_trust/tuf/<file>.json``: never ``…/<role>.key``, whose GET makes notary-server *create* a timestamp or
snapshot key for an unknown GUN. Every read is capped and has a timeout; the registry client does the token
flow (the notary-server's ``WWW-Authenticate`` challenge, answered with docker credentials).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from tufoci.errors import RegistryError, UsageError
from tufoci.registry_config import RegistryConfig, TLSFlags
from tufoci.registry_options import RegistryOptions
from tufoci.store.registry import RegistryClient

MAX_FILE_BYTES = 16 * 1024 * 1024  # a 1,000-tag targets.json is ~100 kB; delegations are smaller
MAX_ROOT_VERSIONS = 1024
_ROLE_RE = re.compile(r"^(root|timestamp|snapshot|targets(/[A-Za-z0-9_.-]+)*)$")


def _check_role(role: str) -> str:
    # a role name becomes a URL or file path: no '..', no empty segment, no query
    if not _ROLE_RE.fullmatch(role) or any(part in ("", ".", "..") for part in role.split("/")):
        raise UsageError(f"refusing Notary role name {role!r}: not a plain targets/... name")
    return role


class NotarySource(Protocol):
    """Read access to one collection (GUN)."""

    gun: str

    def root_version(self, version: int) -> bytes | None:
        """``<version>.root.json``, or None when the source does not have it."""

    def current(self, role: str) -> bytes | None:
        """The current ``<role>.json`` (root, timestamp), or None when missing."""

    def by_hash(self, role: str, sha256_hex: str) -> bytes | None:
        """``<role>.json`` as the snapshot/timestamp names it by hash; None when missing. The caller checks it."""

    def describe(self, role: str) -> str:
        """Where a file came from, for messages."""


class TrustDirSource:
    """``~/.docker/trust/tuf/<gun>/metadata`` (or a notary client's ``trust_dir/tuf/<gun>/metadata``).

    The directory keeps only the current version of each file: the root chain is the one root there, unless
    versioned ``<N>.root.json`` files were put beside it.
    """

    def __init__(self, trust_dir: str | os.PathLike, gun: str) -> None:
        self.gun = gun
        base = Path(trust_dir)
        self.metadata = base / "tuf" / gun / "metadata"
        if not self.metadata.is_dir() and (base / "metadata").is_dir():
            self.metadata = base / "metadata"  # given the GUN's own directory
        if not self.metadata.is_dir():
            raise UsageError(f"no Notary metadata for {gun} under {trust_dir} (expected {self.metadata})")

    def _read(self, name: str) -> bytes | None:
        path = self.metadata / f"{name}.json"
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc}") from exc
        if len(data) > MAX_FILE_BYTES:
            raise RegistryError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return data

    def root_version(self, version: int) -> bytes | None:
        return self._read(f"{version}.root")

    def current(self, role: str) -> bytes | None:
        return self._read(_check_role(role))

    def by_hash(self, role: str, sha256_hex: str) -> bytes | None:
        return self._read(_check_role(role))

    def describe(self, role: str) -> str:
        return f"{self.gun}/{role}.json (trust dir {self.metadata})"


class ServerSource:
    """A notary-server's read API: ``GET /v2/<gun>/_trust/tuf/{<role>|<N>.root|<role>.<sha256>}.json``."""

    def __init__(
        self,
        url: str,
        gun: str,
        *,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        insecure: bool = False,
        credentials_registry: str | None = None,
        registry: RegistryOptions = RegistryOptions(),
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("", "/"):
            raise UsageError(f"--server {url!r}: expected https://HOST[:PORT]")
        self.gun, self.url = gun, f"{parts.scheme}://{parts.netloc}"
        # docker keeps the login under the registry's name, and the registry's token service is the one
        # a notary-server's challenge points to: look the credentials up there first
        credentials = registry.credentials.lookup(credentials_registry) if credentials_registry else None
        # mutual TLS: the client certificate goes into the client's TLS context, as certs.d ones do
        tls = TLSFlags(parts.scheme == "http", insecure, ca_file, client_cert=client_cert, client_key=client_key)
        self._client = RegistryClient(parts.netloc, registry.replace(config=RegistryConfig(tls)),
                                      credentials=credentials)
        self._scope = f"repository:{gun}:pull"
        self.request_count = 0

    def _get(self, name: str) -> bytes | None:
        path = f"/v2/{urllib.parse.quote(self.gun, safe='/:')}/_trust/tuf/{name}.json"
        status, _, body = self._client.request("GET", path, scope=self._scope, max_bytes=MAX_FILE_BYTES)
        self.request_count += 1
        if status == 404:
            return None
        if status != 200:
            raise self._client.error(status, f"notary {self.gun}/{name}.json", body)
        return body

    def root_version(self, version: int) -> bytes | None:
        return self._get(f"{version}.root")

    def current(self, role: str) -> bytes | None:
        return self._get(_check_role(role))

    def by_hash(self, role: str, sha256_hex: str) -> bytes | None:
        # by checksum: the file the signed snapshot names, even if a publish lands meanwhile
        if not re.fullmatch(r"[0-9a-f]{64}", sha256_hex):
            raise UsageError(f"bad sha256 {sha256_hex!r}")
        return self._get(f"{_check_role(role)}.{sha256_hex}")

    def describe(self, role: str) -> str:
        return f"{self.gun}/{role}.json ({self.url})"


def open_source(
    gun: str,
    *,
    server: str | None = None,
    trust_dir: str | None = None,
    **server_options: Any,
) -> NotarySource:
    """The source for ``gun``: exactly one of a server URL or a trust directory.

    Raises:
        UsageError: neither or both given, or a trust directory without this GUN.
    """
    if (server is None) == (trust_dir is None):
        raise UsageError("give exactly one of --server URL or --trust-dir DIR")
    if trust_dir is not None:
        return TrustDirSource(trust_dir, gun)
    return ServerSource(server, gun, **server_options)  # type: ignore[arg-type]

