"""What decides how tufoci talks to a registry, standard library only (shared by both verify paths).

The full client (tufoci/store/registry.py, on urllib3) and the warm verify fast
path (client/fast_verify.py, on tufoci/store/manifest_batch.py's bare connections) must reach the same URL with the
same TLS settings, limits and credentials: a fast path that chose differently
could answer where the full path would refuse. So the decisions live here,
once, and both import them: plain HTTP or TLS, the TLS context, the default timeouts
(``tufoci.registry_options`` carries the ones in use), the User-Agent and Accept headers, the Basic
authorization header, and the bare-connection ``Endpoint``.
"""

from __future__ import annotations

import re

from tufoci import __version__, budget
from tufoci.layout_constants import IMAGE_MEDIA_TYPES
from tufoci.registry_config import split_address

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import ssl

    from tufoci.credentials import Credentials
    from tufoci.store.manifest_batch import Endpoint

MANIFEST_ACCEPT = ", ".join(IMAGE_MEDIA_TYPES)
USER_AGENT = f"tufoci/{__version__}"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
REQUEST_DEADLINE = 120.0


def endpoint(base: str, *, tls: ssl.SSLContext | None, read_timeout: float, deadline: float,
             connect_timeout: float = CONNECT_TIMEOUT) -> Endpoint:
    """Where ``base`` (``http(s)://host[:port]``) is reached by bare connections (``manifest_batch``), with the
    TLS context, limits and the ``--timeout`` budget of the regular client (``tls`` for an https base)."""
    from tufoci.store.manifest_batch import Endpoint

    scheme, _, address = base.partition("://")
    tls = tls if scheme == "https" else None
    host, port = split_address(address)
    default_port = 443 if tls else 80
    port = port or default_port
    # the Host header urllib3 sends: lowercase, IPv6 in brackets, no default port
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == default_port else f":{port}")
    return Endpoint(host, port, host_header, tls, connect_timeout, read_timeout, deadline, budget.until())


def basic_authorization(credentials: Credentials) -> str:
    """The ``Authorization`` header value of HTTP Basic authentication."""
    import base64  # only for a registry that asks for credentials: the warm verify of an open one never does

    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """A ``WWW-Authenticate`` header: its scheme (lower case) and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params
