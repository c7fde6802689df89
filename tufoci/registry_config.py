"""How to reach each registry: TLS, client certificate, plain HTTP, proxy, from the files users already have.

Why: one command may talk to several registries (``copy`` from a private-CA registry to a plain
mirror, a multi-scope ``verify``, the admission webhook), each with its own CA, client certificate
or plain HTTP. Docker and podman users have said so already, in ``certs.d`` directories and
``registries.conf``; tufoci reads the same files instead of asking again.

Everything here is typed and immutable, and nothing reads the environment: the CLI passes the
directories, the registries.conf path and the proxy variables in (``docs/registries.md``). For one
registry, first match wins, field by field:

1. this registry's own flags (``copy --src-…``/``--dest-…``), then the command's flags;
2. its certs.d directory: ``<root>/<host[:port]>/`` with ``*.crt`` (CAs, added to the system's)
   and ``*.cert`` + ``*.key`` (a client certificate), under the first root that has one;
3. registries.conf ``[[registry]]`` whose prefix is the registry (``insecure``, ``location``, ``blocked``);
4. the defaults: HTTPS with the system's CAs, plain HTTP for loopback without any TLS setting.
"""

from __future__ import annotations

import os
import re

from tufoci.errors import RegistryError, UsageError
from tufoci.frozen import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import ssl  # imported where a TLS context is built: plain HTTP (the verify fast path on loopback) never loads it
    from collections.abc import Mapping


class RegistryConfigError(UsageError):
    """A certs.d directory, registries.conf or proxy variable cannot be used (exit 2), naming the file."""


def is_loopback(registry: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1: plain HTTP by default, like docker."""
    try:
        host = split_address(registry)[0]
    except ValueError:  # a port out of range: the host is still the host
        import urllib.parse

        host = urllib.parse.urlsplit(f"//{registry}").hostname or ""
    if host == "localhost":
        return True
    if ":" not in host:  # an IPv4 address or a name: ipaddress's rules for the first, without its import
        octets = host.split(".")
        return len(octets) == 4 and all(_is_octet(octet) for octet in octets) and octets[0] == "127"
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_octet(text: str) -> bool:
    """One part of a dotted IPv4 address as ``ipaddress`` reads it: 0–255, no sign, no leading zero."""
    return text.isascii() and text.isdigit() and len(text) <= 3 and (text == "0" or text[0] != "0") and int(text) <= 255


_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def split_address(address: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (or ``[IPV6][:PORT]``) as ``urllib.parse.urlsplit("//" + address)`` reads it: the host,
    lower case and without brackets, and the port (None without one).

    The usual shape — a name or IPv4 address, digits for a port — is read here; anything else (IPv6 among
    it) by urlsplit itself. Why: urllib.parse and the ipaddress it imports are ~2 ms of a warm verify
    (docs/performance.md), which connects to one such address.

    Raises:
        ValueError: the port is not a number from 0 to 65535, or a bracketed host is no IPv6 address (as urlsplit).
    """
    host, _, port = address.partition(":")
    if host and all(c in _NAME_CHARACTERS for c in host) and (
            not port or (port.isascii() and port.isdigit() and int(port) <= 65535)):
        return host.lower(), int(port) if port else None
    import urllib.parse

    parts = urllib.parse.urlsplit(f"//{address}")
    return parts.hostname or "", parts.port


class TLSFlags(Frozen):
    """What a command line says about a registry; unset fields leave the files to decide.

    The classes here are ``Frozen`` (tufoci/frozen.py), not dataclasses: the warm verify builds them."""

    __slots__ = ("plain_http", "insecure", "ca_file", "cert_dir", "client_cert", "client_key")
    plain_http: bool | None
    insecure: bool
    ca_file: str | None
    cert_dir: str | None  # one registry's files directly (skopeo's --src-cert-dir), instead of certs.d
    client_cert: str | None  # a client certificate (PEM), over any certs.d one
    client_key: str | None  # its key, when not in the same file

    def __init__(self, plain_http: bool | None = None, insecure: bool = False, ca_file: str | None = None,
                 cert_dir: str | None = None, client_cert: str | None = None, client_key: str | None = None) -> None:
        self._init(plain_http, insecure, ca_file, cert_dir, client_cert, client_key)

    def over(self, other: TLSFlags) -> TLSFlags:
        """These flags, and ``other``'s where these say nothing."""
        return TLSFlags(
            self.plain_http if self.plain_http is not None else other.plain_http,
            self.insecure or other.insecure,
            self.ca_file or other.ca_file,
            self.cert_dir or other.cert_dir,
            self.client_cert or other.client_cert,
            self.client_key or other.client_key,
        )


class RegistryEntry(Frozen):
    """One whole-registry ``[[registry]]`` of registries.conf (v2 format)."""

    __slots__ = ("prefix", "location", "insecure", "blocked")
    prefix: str
    location: str | None  # None: the registry itself
    insecure: bool
    blocked: bool

    def __init__(self, prefix: str, location: str | None, insecure: bool = False, blocked: bool = False) -> None:
        self._init(prefix, location, insecure, blocked)

    def matches(self, registry: str) -> bool:
        if self.prefix.startswith("*."):  # containers: a wildcard matches subdomains only
            return registry.split(":")[0].endswith(self.prefix[1:])
        return registry == self.prefix


class Proxies(Frozen):
    """HTTP(S)_PROXY and NO_PROXY as given: which proxy, if any, a request to a URL goes through."""

    __slots__ = ("http", "https", "no_proxy")
    http: str | None
    https: str | None
    no_proxy: tuple[str, ...]

    def __init__(self, http: str | None = None, https: str | None = None, no_proxy: tuple[str, ...] = ()) -> None:
        self._init(http, https, no_proxy)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Proxies:
        """The lowercase variable wins over the uppercase one, as in curl and Python's urllib.

        Raises:
            RegistryConfigError: a proxy variable is not an ``http://HOST:PORT`` URL.
        """
        def get(name: str) -> str:
            return environ.get(name.lower()) or environ.get(name.upper()) or ""

        proxies = {}
        for scheme in ("http", "https"):
            value = get(f"{scheme}_proxy").strip()
            if value and "://" not in value:
                value = f"http://{value}"  # curl: a proxy without a scheme is an HTTP proxy
            if value:
                import urllib.parse  # here: only a proxy needs it, and a warm verify without one never loads it

                url = urllib.parse.urlsplit(value)
                if url.scheme not in ("http", "https") or not url.hostname:
                    raise RegistryConfigError(f"{scheme.upper()}_PROXY: not an http://HOST:PORT proxy URL")
            proxies[scheme] = value or None
        no_proxy = tuple(part.strip().lower() for part in get("no_proxy").split(",") if part.strip())
        return cls(proxies["http"], proxies["https"], no_proxy)

    def for_url(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through, or None for a direct connection."""
        if self.http is None and self.https is None:
            return None
        import urllib.parse

        parts = urllib.parse.urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http
        return None if proxy is None or self._bypassed(parts.hostname or "", parts.port) else proxy

    def _bypassed(self, host: str, port: int | None) -> bool:
        for entry in self.no_proxy:
            if entry == "*":
                return True
            if entry.startswith("["):  # [V6] or [V6]:PORT
                name, _, entry_port = entry[1:].partition("]")
                entry_port = entry_port.removeprefix(":")
            elif entry.count(":") == 1:  # HOST:PORT (more colons: a bare IPv6 address)
                name, _, entry_port = entry.rpartition(":")
            else:
                name, entry_port = entry, ""
            if entry_port and str(port) != entry_port:
                continue
            name = name.lstrip(".")
            if host == name or host.endswith("." + name):
                return True
            try:
                import ipaddress

                if "/" in name and ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
        return False


class RegistrySettings(Frozen):
    """How the client for one registry connects: resolved, checked, ready to use."""

    __slots__ = ("address", "plain_http", "verify", "ca_files", "system_cas", "client_cert", "proxies")
    address: str  # host[:port] connected to: the registry, or its registries.conf location
    plain_http: bool
    verify: bool
    ca_files: tuple[str, ...]
    system_cas: bool  # certs.d CAs add to the system's; --ca-file replaces them (as before)
    client_cert: tuple[str, str] | None  # (certificate, key)
    proxies: Proxies

    def __init__(self, address: str, plain_http: bool, verify: bool = True, ca_files: tuple[str, ...] = (),
                 system_cas: bool = True, client_cert: tuple[str, str] | None = None,
                 proxies: Proxies = Proxies()) -> None:
        self._init(address, plain_http, verify, ca_files, system_cas, client_cert, proxies)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context both transports (urllib3, manifest_batch) use.

        Raises:
            RegistryConfigError: a CA or the client certificate cannot be loaded (names the file).
        """
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.system_cas:
            context.load_default_certs()
        for ca in self.ca_files:
            try:
                context.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                raise RegistryConfigError(f"CA file {ca}: cannot be loaded: {_reason(e)}") from e
        if self.client_cert is not None:
            cert, key = self.client_cert
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as e:
                raise RegistryConfigError(f"client certificate {cert} with key {key}: cannot be loaded: "
                                          f"{_reason(e)}") from e
        return context


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error) or type(error).__name__


class RegistryConfig(Frozen):
    """Everything a command knows about registries; ``settings_for`` resolves one host.

    Hashable, so the registry client cache can key on it.
    """

    __slots__ = ("flags", "per_registry", "certs_roots", "registries", "proxies")
    flags: TLSFlags
    per_registry: tuple[tuple[str, TLSFlags], ...]  # copy's --src-… and --dest-…
    certs_roots: tuple[str, ...]  # certs.d roots, searched in order
    registries: tuple[RegistryEntry, ...]
    proxies: Proxies

    def __init__(self, flags: TLSFlags = TLSFlags(), per_registry: tuple[tuple[str, TLSFlags], ...] = (),
                 certs_roots: tuple[str, ...] = (), registries: tuple[RegistryEntry, ...] = (),
                 proxies: Proxies = Proxies()) -> None:
        self._init(flags, per_registry, certs_roots, registries, proxies)

    def with_flags_for(self, registry: str, flags: TLSFlags) -> RegistryConfig:
        """This configuration with ``flags`` for ``registry`` alone.

        Raises:
            RegistryConfigError: ``registry`` already has different flags (a copy within one registry
                cannot use two sets of TLS options).
        """
        for name, existing in self.per_registry:
            if name == registry and existing != flags:
                raise RegistryConfigError(f"{registry} is both source and destination: give its options once "
                                          "(--ca-file, --plain-http, --insecure, --certs-dir)")
        return self.replace(per_registry=(*self.per_registry, (registry, flags)))

    def settings_for(self, registry: str) -> RegistrySettings:
        """The resolved settings for ``registry`` (``host[:port]``).

        Raises:
            RegistryConfigError: its certs.d directory is unreadable or holds a key without its certificate.
            RegistryError: registries.conf blocks it.
        """
        flags = dict(self.per_registry).get(registry, TLSFlags()).over(self.flags)
        entry = next((e for e in self.registries if e.matches(registry)), None)
        if entry is not None and entry.blocked:
            raise RegistryError(f"{registry} is blocked in registries.conf")
        address = entry.location if entry is not None and entry.location else registry
        directory = flags.cert_dir or self._certs_directory(registry)
        cas, client_cert = read_cert_dir(directory) if directory else ((), None)
        if flags.client_cert:
            client_cert = (flags.client_cert, flags.client_key or flags.client_cert)
        if flags.ca_file:
            cas, system_cas = (flags.ca_file,), False
        else:
            system_cas = True
        tls_asked = bool(flags.insecure or cas or client_cert)
        plain = flags.plain_http if flags.plain_http is not None else is_loopback(address) and not tls_asked
        verify = not (flags.insecure or (entry is not None and entry.insecure))
        return RegistrySettings(address, plain, verify, cas, system_cas, client_cert, self.proxies)

    def _certs_directory(self, registry: str) -> str | None:
        # docker and containers: the first root holding a directory named host[:port] is used alone
        for root in self.certs_roots:
            candidate = os.path.join(root, registry)
            if os.path.isdir(candidate):
                return candidate
        return None


def read_cert_dir(directory: str) -> tuple[tuple[str, ...], tuple[str, str] | None]:
    """One registry's directory: its CAs (``*.crt``) and client certificate (``X.cert`` + ``X.key``).

    Raises:
        RegistryConfigError: the directory or a file in it is unreadable, a key has no certificate
            or a certificate no key, or it holds more than one client certificate.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise RegistryConfigError(f"certificate directory {directory}: cannot be read: {_reason(e)}") from e
    cas, pairs = [], []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith((".crt", ".cert", ".key")) and not os.access(path, os.R_OK):
            raise RegistryConfigError(f"{path}: cannot be read")
        stem, extension = os.path.splitext(name)
        if extension == ".crt":
            cas.append(path)
        elif extension == ".cert":
            if f"{stem}.key" not in names:
                raise RegistryConfigError(f"{path}: client certificate without its key {stem}.key")
            pairs.append((path, os.path.join(directory, f"{stem}.key")))
        elif extension == ".key" and f"{stem}.cert" not in names:
            raise RegistryConfigError(f"{path}: client key without its certificate {stem}.cert")
    if len(pairs) > 1:
        raise RegistryConfigError(f"certificate directory {directory}: more than one client certificate")
    return tuple(cas), pairs[0] if pairs else None


def read_registries_conf(path: str) -> tuple[RegistryEntry, ...]:
    """The whole-registry ``[[registry]]`` entries of a containers registries.conf (v2).

    Only entries whose prefix (or location, without a prefix) is a registry host apply: tufoci
    talks to a registry, not to a namespace inside one, so an entry with a path is not used.
    Mirrors are not used either (docs/registries.md).

    Raises:
        RegistryConfigError: the file cannot be read, is not TOML, or an entry is malformed.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RegistryConfigError(f"{path}: cannot be read: {_reason(e)}") from e
    if _only_comments(data):
        return ()  # the file distributions install (all comments): no entries, and no tomllib to import (~11 ms under -X importtime)
    import tomllib  # only when a registries.conf has content

    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RegistryConfigError(f"{path}: not valid TOML: {e}") from e
    if "registries" in document:
        raise RegistryConfigError(f"{path}: the v1 [registries.*] format is not supported: use [[registry]]")
    tables = document.get("registry", [])
    if not isinstance(tables, list):
        raise RegistryConfigError(f"{path}: 'registry' must be an array of tables ([[registry]])")
    entries = []
    for index, table in enumerate(tables):
        where = f"{path}: registry[{index}]"
        if not isinstance(table, dict):
            raise RegistryConfigError(f"{where}: not a table")
        location, prefix = table.get("location", ""), table.get("prefix", "")
        if not isinstance(location, str) or not isinstance(prefix, str):
            raise RegistryConfigError(f"{where}: 'location' and 'prefix' must be strings")
        for name in ("insecure", "blocked"):
            if not isinstance(table.get(name, False), bool):
                raise RegistryConfigError(f"{where}: '{name}' must be true or false")
        prefix = prefix or location
        if not prefix:
            raise RegistryConfigError(f"{where}: needs a 'location' or a 'prefix'")
        if "/" in prefix or "/" in location:
            continue
        entries.append(RegistryEntry(prefix, location or None, table.get("insecure", False),
                                     table.get("blocked", False)))
    return tuple(entries)


def _only_comments(data: bytes) -> bool:
    """Whether ``data`` is a TOML document of blank and comment lines only (TOML v1.0.0: whitespace is space
    and tab, a comment may hold any character but the control ones other than tab, a line ends in LF or CRLF),
    so an empty table. Anything else, even a comment tomllib would refuse, is for tomllib to read."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for line in text.split("\n"):
        line = line.removesuffix("\r").strip(" \t")
        if line and (line[0] != "#" or _CONTROL.search(line)):
            return False
    return True


# the control characters a TOML comment may not hold (all but tab); one search per line, not a Python loop per
# character: the all-comments file Debian installs took ~1 ms per verify that way
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


# where docker and containers keep them (containers-certs.d(5), containers-registries.conf(5))
SYSTEM_CERTS_ROOTS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
SYSTEM_REGISTRIES_CONF = "/etc/containers/registries.conf"


def load_config(
    flags: TLSFlags,
    *,
    home: str | None,
    certs_dir: str | None = None,
    registries_conf: str | None = None,
    proxies: Proxies = Proxies(),
) -> RegistryConfig:
    """A command's configuration from the usual places, or the ones given.

    ``certs_dir`` (``--certs-dir``/``$TUFOCI_CERTS_DIR``) replaces the certs.d roots
    (``~/.config/containers/certs.d``, ``/etc/containers/certs.d``, ``/etc/docker/certs.d``);
    ``registries_conf`` (``$CONTAINERS_REGISTRIES_CONF``) replaces the first of
    ``~/.config/containers/registries.conf`` and ``/etc/containers/registries.conf`` that exists.

    Raises:
        RegistryConfigError: registries.conf cannot be read or is malformed.
    """
    user = os.path.join(home, ".config", "containers") if home else None
    if certs_dir:
        roots: tuple[str, ...] = (certs_dir,)
    else:
        roots = ((os.path.join(user, "certs.d"),) if user else ()) + SYSTEM_CERTS_ROOTS
    if registries_conf is None:
        candidates = ([os.path.join(user, "registries.conf")] if user else []) + [SYSTEM_REGISTRIES_CONF]
        registries_conf = next((path for path in candidates if os.path.isfile(path)), None)
    registries = read_registries_conf(registries_conf) if registries_conf else ()
    return RegistryConfig(flags, (), roots, registries, proxies)


def config_from_environment(flags: TLSFlags, environ: Mapping[str, str], certs_dir: str | None = None) -> RegistryConfig:
    """The configuration a command runs with: its flags, ``certs_dir`` (``--certs-dir``) or ``$TUFOCI_CERTS_DIR``,
    ``$CONTAINERS_REGISTRIES_CONF`` and the proxy variables of ``environ``: the TLS part of
    ``tufoci.registry_options.options_from_environment``, which the CLI and the verify fast path both call, so
    both connect to a registry exactly alike.

    Raises:
        RegistryConfigError: registries.conf or a proxy variable is malformed.
    """
    return load_config(flags, home=environ.get("HOME"), certs_dir=certs_dir or environ.get("TUFOCI_CERTS_DIR"),
                       registries_conf=environ.get("CONTAINERS_REGISTRIES_CONF"),
                       proxies=Proxies.from_environment(environ))
