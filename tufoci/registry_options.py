"""``RegistryOptions``: everything a registry client needs, in one typed, immutable object passed in.

Why: the library must be embeddable (an admission controller, a mirror, a script), so nothing below
the CLI reads the environment for registry matters, as python-tuf's ``UpdaterConfig`` and sigstore's
``Verifier(trusted_root=…)`` take ready material. The CLI builds one ``RegistryOptions`` per
command with ``options_from_environment`` (the verify fast path, client/fast_verify.py, calls the
same function, so both decide TLS, timeouts and credentials alike) and passes it down as
``registry=``. The default, ``RegistryOptions()``, is what an embedder gets without saying more:
HTTPS with the system's CAs, plain HTTP for a loopback registry, anonymous access, the standard
timeouts.

The options are hashable (a client pool keys on them); the pool itself (``clients``, a
``tufoci.store.registry.RegistryClients``) rides along but is not part of the value: two options
that say the same thing are equal whichever connections they carry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tufoci.registry_config import RegistryConfig, TLSFlags, config_from_environment
from tufoci.registry_http import CONNECT_TIMEOUT, READ_TIMEOUT, REQUEST_DEADLINE

if TYPE_CHECKING:
    from tufoci.credentials import Credentials
    from tufoci.store.registry import RegistryClients  # urllib3: not for the verify fast path


@dataclass(frozen=True)
class CredentialSource:
    """Where registry credentials come from; the default, ``CredentialSource()``, is anonymous access.

    ``docker_config``: docker's ``config.json`` (None: none). ``username``/``password``: credentials
    a pipeline injected (``TUFOCI_REGISTRY_USERNAME``/``_PASSWORD``), sent only to the registry
    ``host`` names (``TUFOCI_REGISTRY_HOST``). The reading is ``tufoci.credentials``'s.
    """

    docker_config: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never shown
    host: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> CredentialSource:
        """What the CLI uses: ``$DOCKER_CONFIG`` (or ``$HOME/.docker``) and the ``TUFOCI_REGISTRY_*`` variables."""
        return cls(docker_config_path(environ), environ.get("TUFOCI_REGISTRY_USERNAME") or None,
                   environ.get("TUFOCI_REGISTRY_PASSWORD") or None, environ.get("TUFOCI_REGISTRY_HOST") or None)

    def lookup(self, registry: str, *, helper: Callable[[str, str], Credentials | None] | None = None
               ) -> Credentials | None:
        """Credentials for ``registry`` (``host[:port]``), or None: ``tufoci.credentials.lookup_credentials``.

        Raises:
            UsageError: a username and password that name no registry.
        """
        from tufoci.credentials import lookup_credentials  # when a registry first asks: not on the warm path

        return lookup_credentials(self, registry, helper=helper)


def docker_config_path(environ: Mapping[str, str]) -> str:
    """docker's ``config.json``: in ``$DOCKER_CONFIG``, else ``$HOME/.docker`` (docker's own rule)."""
    directory = environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: TLS and proxies (``config``), credentials, timeouts, a connection pool.

    ``connect_timeout`` and ``read_timeout`` bound each socket wait, ``deadline`` each request as a
    whole (status line, headers and body), all in seconds; a command's overall ``--timeout`` is
    ``tufoci.budget``'s. ``clients``: the pool whose connections and tokens are reused (None: each
    store opened gets a client of its own; a ``Verifier`` makes itself a pool when given none).
    """

    config: RegistryConfig = RegistryConfig()
    credentials: CredentialSource = CredentialSource()  # anonymous
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    deadline: float = REQUEST_DEADLINE
    clients: RegistryClients | None = field(default=None, compare=False, repr=False)

    def with_flags(self, flags: TLSFlags) -> RegistryOptions:
        """These options with ``flags`` over the command's TLS flags (a policy entry's ``plainHttp``, ``caFile``)."""
        if flags == TLSFlags():
            return self
        return replace(self, config=replace(self.config, flags=flags.over(self.config.flags)))

    def pooled(self) -> RegistryOptions:
        """These options with a connection pool: their own if they have one, else a new one."""
        if self.clients is not None:
            return self
        from tufoci.store.registry import RegistryClients

        return replace(self, clients=RegistryClients())


def options_from_environment(flags: TLSFlags, environ: Mapping[str, str], certs_dir: str | None = None
                             ) -> RegistryOptions:
    """The options a command runs with: its TLS flags, certs.d (``certs_dir`` or ``$TUFOCI_CERTS_DIR``),
    ``$CONTAINERS_REGISTRIES_CONF``, the proxy variables, docker's config.json (``$DOCKER_CONFIG``),
    ``$TUFOCI_REGISTRY_USERNAME``/``_PASSWORD``/``_HOST`` and the ``$TUFOCI_REGISTRY_TIMEOUT``/``_DEADLINE``
    overrides. The one place that reads the environment for them: the CLI and the verify fast path call it.

    Raises:
        RegistryConfigError: registries.conf or a proxy variable is malformed.
    """
    return RegistryOptions(
        config_from_environment(flags, environ, certs_dir),
        CredentialSource.from_environment(environ),
        read_timeout=_seconds(environ, "TUFOCI_REGISTRY_TIMEOUT", READ_TIMEOUT),
        deadline=_seconds(environ, "TUFOCI_REGISTRY_DEADLINE", REQUEST_DEADLINE),
    )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A timeout override in seconds (for slow links or impatient tests); unset, malformed or ≤ 0: ``default``."""
    try:
        value = float(environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default
