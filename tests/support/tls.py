"""Throwaway X.509 material for TLS tests: a CA, a server certificate for loopback, a TLS registry.

Everything is generated with ``cryptography`` (EC P-256 by default) into a
directory the caller owns (a pytest ``tmp_path``), valid for one day. The CA
signs a server certificate whose subjectAltName names ``127.0.0.1``, ``::1``
and ``localhost`` (IP SANs, as Go and OpenSSL require; no CN matching), and can
issue more certificates, e.g. the signing certificate of a token service.

:class:`TLSRegistryServer` is :class:`~tests.support.registry.RegistryServer`
serving HTTPS (``http.tls`` in its config); its own readiness and log-sync
probes skip verification, everything a test exercises (tufoci, skopeo) must
verify against :attr:`ServerPKI.ca_file` or explicitly opt out.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.registry import SUPPORT_USER_AGENT, RegistryServer, _deep_merge

__all__ = [
    "LOOPBACK_NAMES",
    "CertificateAuthority",
    "Issued",
    "ServerPKI",
    "MutualTLSRegistryServer",
    "TLSRegistryServer",
    "make_server_pki",
    "new_private_key",
]

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_private_key(key_type: str = "ec") -> PrivateKey:
    """``ec`` (P-256, the default) or ``rsa`` (2048 bits)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def _write_pem(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@dataclass(frozen=True)
class Issued:
    """A certificate the CA issued, its key, and where both were written (PEM)."""

    certificate: x509.Certificate
    private_key: PrivateKey
    cert_file: Path
    key_file: Path

    @property
    def der_b64(self) -> str:
        """Standard base64 of the DER certificate: an ``x5c`` entry of a JWS header."""
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """A self-signed root CA (EC P-256) in ``directory``: ``ca.pem`` and ``ca-key.pem``."""

    def __init__(self, directory: Path, *, name: str = "tufoci throwaway test CA", days: int = 1) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._days = days
        self.private_key = new_private_key("ec")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = self.private_key.public_key()
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        ca_pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        self.cert_file = _write_pem(self.directory / "ca.pem", ca_pem)
        self.key_file = _write_pem(self.directory / "ca-key.pem", _key_pem(self.private_key), 0o600)

    def issue(self, name: str, *, hosts: Iterable[str] = (), key_type: str = "ec",
              private_key: PrivateKey | None = None) -> Issued:
        """A leaf certificate for ``name`` (``<name>.pem``, ``<name>-key.pem``).

        With ``hosts`` it is a TLS server certificate for those names/IPs;
        without, a plain signing certificate (digitalSignature only).
        """
        key = private_key or new_private_key(key_type)
        public = key.public_key()
        hosts = list(hosts)
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=self._days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=isinstance(key, rsa.RSAPrivateKey) and bool(hosts),
                              data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        certificate = builder.sign(self.private_key, hashes.SHA256())
        cert_file = _write_pem(self.directory / f"{name}.pem", certificate.public_bytes(serialization.Encoding.PEM))
        key_file = _write_pem(self.directory / f"{name}-key.pem", _key_pem(key), 0o600)
        return Issued(certificate, key, cert_file, key_file)


@dataclass(frozen=True)
class ServerPKI:
    """A CA and one server certificate for loopback, as files."""

    ca: CertificateAuthority
    server: Issued

    @property
    def ca_file(self) -> Path:
        """The CA bundle a client must trust (``tufoci --ca-file``)."""
        return self.ca.cert_file

    @property
    def cert_file(self) -> Path:
        return self.server.cert_file

    @property
    def key_file(self) -> Path:
        return self.server.key_file

    @property
    def cert_dir(self) -> Path:
        """A containers-style certificate directory (``ca.crt``): ``skopeo --dest-cert-dir``."""
        directory = self.ca.directory / "certs.d"
        if not directory.is_dir():
            directory.mkdir()
            (directory / "ca.crt").write_bytes(self.ca_file.read_bytes())
        return directory

    def registry_config(self) -> dict[str, Any]:
        """The ``http.tls`` part of a docker-registry config."""
        return {"http": {"tls": {"certificate": str(self.cert_file), "key": str(self.key_file)}}}


def make_server_pki(directory: Path, hosts: Iterable[str] = LOOPBACK_NAMES) -> ServerPKI:
    """A fresh CA and a server certificate (EC P-256) for ``hosts``, written under ``directory``."""
    ca = CertificateAuthority(directory)
    return ServerPKI(ca, ca.issue("server", hosts=hosts))


# Support-side requests only: tufoci and skopeo are what must verify the certificate.
_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE
_TLS_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                          urllib.request.HTTPSHandler(context=_UNVERIFIED))


class TLSRegistryServer(RegistryServer):
    """A docker-registry speaking HTTPS on 127.0.0.1 (start it with :meth:`start_tls`)."""

    _opener = _TLS_OPENER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = f"https://{self.host}"

    @classmethod
    def start_tls(cls, workdir: Path, pki: ServerPKI, *, extra_config: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> TLSRegistryServer:
        """:meth:`RegistryServer.start` with ``http.tls`` from ``pki`` merged into the config."""
        config = _deep_merge(pki.registry_config(), dict(extra_config or {}))
        server = cls.start(workdir, extra_config=config, **kwargs)
        assert isinstance(server, TLSRegistryServer)
        return server

    def _probe(self, path: str) -> int | None:
        req = urllib.request.Request(self.url + path, headers={"User-Agent": SUPPORT_USER_AGENT})
        try:
            with self._opener.open(req, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None

    def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                data: bytes | None = None, credentials: tuple[str, str] | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """As :meth:`RegistryServer.request`, over HTTPS (certificate not checked)."""
        hdrs = dict(headers or {})
        creds = credentials or self.credentials
        if creds is not None and "Authorization" not in hdrs:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return int(resp.status), {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            return int(err.code), {k.lower(): v for k, v in err.headers.items()}, err.read()


class MutualTLSRegistryServer(TLSRegistryServer):
    """A TLS registry that requires a client certificate issued by its CA (``http.tls.clientcas``).

    Its own probes present ``client``; everything a test exercises must bring its own.
    """

    @classmethod
    def start_mutual(cls, workdir: Path, pki: ServerPKI, client: Issued, **kwargs: Any) -> MutualTLSRegistryServer:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(client.cert_file, client.key_file)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        probing = type(cls.__name__, (cls,), {"_opener": opener})
        config = {"http": {"tls": {"clientcas": [str(pki.ca_file)]}}}
        server = probing.start_tls(workdir, pki, extra_config=config, **kwargs)
        assert isinstance(server, MutualTLSRegistryServer)
        return server
