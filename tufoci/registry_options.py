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

from tufoci.frozen import Frozen
from tufoci.registry_config import RegistryConfig, TLSFlags, config_from_environment
from tufoci.registry_http import CONNECT_TIMEOUT, READ_TIMEOUT, REQUEST_DEADLINE

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tufoci.credentials import Credentials
    from tufoci.store.registry import RegistryClients  # urllib3: not for the verify fast path


class CredentialSource(Frozen):
    """Where registry credentials come from; the default, ``CredentialSource()``, is anonymous access.

    ``docker_config``: docker's ``config.json`` (None: none). ``username``/``password``: credentials
    a pipeline injected (``TUFOCI_REGISTRY_USERNAME``/``_PASSWORD``), sent only to the registry
    ``host`` names (``TUFOCI_REGISTRY_HOST``). The reading is ``tufoci.credentials``'s. ``Frozen``
    (tufoci/frozen.py), not a dataclass: the warm verify builds it.
    """

    __slots__ = ("docker_config", "username", "password", "host")
    docker_config: str | None
    username: str | None
    password: str | None
    host: str | None

    def __init__(self, docker_config: str | None = None, username: str | None = None, password: str | None = None,
                 host: str | None = None) -> None:
        self._init(docker_config, username, password, host)

    def __repr__(self) -> str:  # the password is never shown
        return (f"CredentialSource(docker_config={self.docker_config!r}, username={self.username!r}, "
                f"password={'***' if self.password else None}, host={self.host!r})")

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


class RegistryOptions(Frozen):
    """How to reach registries: TLS and proxies (``config``), credentials, timeouts, a connection pool.

    ``connect_timeout`` and ``read_timeout`` bound each socket wait, ``deadline`` each request as a
    whole (status line, headers and body), all in seconds; a command's overall ``--timeout`` is
    ``tufoci.budget``'s. ``clients``: the pool whose connections and tokens are reused (None: each
    store opened gets a client of its own; a ``Verifier`` makes itself a pool when given none); it
    takes no part in equality or hashing (two options that differ only in their pool are equal).
    """

    __slots__ = ("config", "credentials", "connect_timeout", "read_timeout", "deadline", "clients")
    config: RegistryConfig
    credentials: CredentialSource
    connect_timeout: float
    read_timeout: float
    deadline: float
    clients: RegistryClients | None

    def __init__(self, config: RegistryConfig = RegistryConfig(), credentials: CredentialSource = CredentialSource(),
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 deadline: float = REQUEST_DEADLINE, clients: RegistryClients | None = None) -> None:
        self._init(config, credentials, connect_timeout, read_timeout, deadline, clients)

    def _compared(self) -> tuple:
        return self._values()[:-1]  # without the pool

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__[:-1])
        return f"RegistryOptions({fields})"

    def with_flags(self, flags: TLSFlags) -> RegistryOptions:
        """These options with ``flags`` over the command's TLS flags (a policy entry's ``plainHttp``, ``caFile``)."""
        if flags == TLSFlags():
            return self
        return self.replace(config=self.config.replace(flags=flags.over(self.config.flags)))

    def pooled(self) -> RegistryOptions:
        """These options with a connection pool: their own if they have one, else a new one."""
        if self.clients is not None:
            return self
        from tufoci.store.registry import RegistryClients

        return self.replace(clients=RegistryClients())


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
