"""Registry credentials from where users already keep them.

Reads docker's ``config.json`` (the CLI says where: ``$DOCKER_CONFIG`` or ``~/.docker``): inline
``auths`` entries, and ``credHelpers`` / ``credsStore`` helpers run as
``docker-credential-<name> get``. Secrets are returned to the caller only; they
are never logged or put in an error message.

Nothing here reads the environment: a ``tufoci.registry_options.CredentialSource`` says where to
look, and only the CLI (``options_from_environment``) builds one from ``os.environ``. Its default is
anonymous access, what an embedder gets unless it passes a source. This module is imported when a
registry first asks for credentials, not before (the warm verify path rarely needs it).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tufoci.errors import UsageError

if TYPE_CHECKING:
    from tufoci.registry_options import CredentialSource

_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never show the secret
        return f"Credentials(username={self.username!r}, password=***)"


def _load_config(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _candidate_keys(registry: str) -> list[str]:
    if registry == "docker.io":
        return list(_DOCKER_HUB_KEYS)
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]


def _from_helper(helper: str, registry: str) -> Credentials | None:
    import subprocess  # only when config.json names a helper: the verify fast path never gets here

    server = "https://index.docker.io/v1/" if registry == "docker.io" else registry
    try:
        result = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=server.encode(),
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        answer = json.loads(result.stdout)
        return Credentials(str(answer["Username"]), str(answer["Secret"]))
    except (ValueError, KeyError, TypeError):
        return None


def _same_registry(a: str, b: str) -> bool:
    a, b = a.strip().lower().rstrip("/"), b.strip().lower().rstrip("/")
    return a == b or (a in _DOCKER_HUB_KEYS and b in _DOCKER_HUB_KEYS)


def lookup_credentials(source: CredentialSource, registry: str, *,
                       helper: Callable[[str, str], Credentials | None] | None = None) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``) from ``source``, or None for anonymous access.

    The source's username/password win for the registry its ``host`` names (for pipelines that
    inject secrets as environment variables), then docker's config.json. ``helper(name, registry)``
    is asked when config.json names a credential helper (default: run ``docker-credential-<name>``;
    the verify fast path passes one that gives up, and leaves helpers to the full path).

    Credentials that say nothing about where they belong would be sent to every registry a command
    talks to — a ``copy``'s source included, which can be anyone's registry. So they must name their
    registry.

    Raises:
        UsageError: a username and password that name no registry.
    """
    if source.username and source.password:
        if not source.host:
            raise UsageError(f"{registry} asks for credentials and TUFOCI_REGISTRY_USERNAME/PASSWORD are set, but "
                             "TUFOCI_REGISTRY_HOST does not name the registry they are for: set "
                             "TUFOCI_REGISTRY_HOST=HOST[:PORT] (they are sent to that registry only)")
        if _same_registry(source.host, registry):
            return Credentials(source.username, source.password)
    return _from_docker_config(_load_config(source.docker_config), registry, helper or _from_helper)


def _from_docker_config(config: dict, registry: str, helper: Callable[[str, str], Credentials | None]
                        ) -> Credentials | None:
    helpers = config.get("credHelpers") or {}
    for key in _candidate_keys(registry):
        if isinstance(helpers, dict) and key in helpers:
            return helper(str(helpers[key]), registry)
    auths = config.get("auths") or {}
    for key in _candidate_keys(registry):
        entry = auths.get(key) if isinstance(auths, dict) else None
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return Credentials(user, password)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return helper(store, registry)
    return None


def _config_key(registry: str) -> str:
    return "https://index.docker.io/v1/" if registry == "docker.io" else registry


def store_credentials(path: str, registry: str, credentials: Credentials) -> str:
    """Write an ``auths`` entry into docker's config.json at ``path`` (as ``docker login`` does), mode 0600."""
    from tufoci.atomic_file import atomic_write

    config = _load_config(path)
    auths = config.setdefault("auths", {})
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    auths[_config_key(registry)] = {"auth": token}
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    atomic_write(path, json.dumps(config, indent=2).encode(), mode=0o600)
    return path


def remove_credentials(path: str, registry: str) -> bool:
    """Drop the registry's ``auths`` entry from docker's config.json at ``path``; False when there was none."""
    from tufoci.atomic_file import atomic_write

    config = _load_config(path)
    auths = config.get("auths") or {}
    removed = [key for key in _candidate_keys(registry) if auths.pop(key, None) is not None]
    if removed:
        atomic_write(path, json.dumps(config, indent=2).encode(), mode=0o600)
    return bool(removed)
