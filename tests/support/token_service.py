"""A small bearer-token service for docker-registry's ``auth.token`` (the Docker token flow), for tests.

The registry answers an unauthenticated request with ``401`` and
``WWW-Authenticate: Bearer realm="<this service>/token",service="…",scope="…"``;
a client then GETs ``/token?service=…&scope=repository:NAME:pull,push`` here
(Basic credentials, or none for anonymous access) and replays its request with
``Authorization: Bearer <JWT>``. This service:

* checks the Basic credentials against its ``users`` (wrong ones: ``401``);
  without credentials it issues anonymous tokens granting ``pull`` only, when
  ``anonymous_pull`` is on, and answers ``401`` otherwise;
* grants exactly the requested actions that the caller may have (users:
  ``pull`` and ``push``; anonymous: ``pull``), scopes given as repeated
  ``scope`` parameters and/or space-separated in one;
* answers ``{"token", "access_token", "expires_in", "issued_at"}`` with a JWT
  signed ES256 (EC P-256) or RS256 carrying ``iss``, ``sub``, ``aud``, ``exp``,
  ``nbf``, ``iat``, ``jti`` and ``access``.

distribution 2.8 (``registry/auth/token``) checks ``iss`` against its
``issuer``, ``aud`` (a string) against its ``service``, ``exp``/``nbf`` with 60 s
leeway, then finds the signing key either from the ``x5c`` header (a chain that
must verify up to a certificate in ``rootcertbundle``) or from ``kid``, the
libtrust fingerprint of a public key whose certificate is itself in the bundle.
Both are offered (``key_id="x5c"`` or ``"kid"``). :meth:`registry_config`
writes the bundle and returns the ``auth.token`` config to pass as
``RegistryServer.start(..., extra_config=…)``.

Every request is recorded (:attr:`requests`), so a test can assert that a
client reuses its tokens instead of asking for one per registry request.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.tls import CertificateAuthority, Issued

__all__ = ["TokenRequest", "TokenService", "libtrust_key_id", "parse_scopes"]

USER_ACTIONS = ("pull", "push")
ANONYMOUS_ACTIONS = ("pull",)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: Any) -> str:
    """docker/libtrust's key ID: base32 of the first 240 bits of sha256(DER SPKI), in groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def parse_scopes(values: Iterable[str]) -> list[tuple[str, str, list[str]]]:
    """``repository:acme/web:pull,push`` → ``("repository", "acme/web", ["pull", "push"])``.

    Several scopes may come as repeated parameters or space-separated in one;
    the name may itself contain ``:`` (the actions follow the last one).
    """
    scopes = []
    for value in values:
        for item in value.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                scopes.append((kind, name, [a for a in actions.split(",") if a]))
    return scopes


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint, as the service saw and answered it."""

    path: str
    account: str | None
    """The Basic-auth user name (``None`` when anonymous); never the password."""
    scopes: tuple[str, ...]
    status: int
    granted: tuple[dict[str, Any], ...] = field(default=())
    """The ``access`` claim of the issued token (empty on refusal)."""


class TokenService:
    """A bearer-token service on 127.0.0.1 (start with :meth:`start`, stop with :meth:`stop` or ``with``)."""

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] | None = None,
        anonymous_pull: bool = True,
        algorithm: str = "ES256",
        key_id: str = "x5c",
        service: str = "tufoci-test-registry",
        issuer: str = "tufoci-test-token-issuer",
        ttl: int = 300,
        ca: CertificateAuthority | None = None,
    ) -> None:
        if algorithm not in ("ES256", "RS256"):
            raise ValueError("algorithm must be ES256 or RS256")
        if key_id not in ("x5c", "kid"):
            raise ValueError("key_id must be 'x5c' or 'kid'")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.anonymous_pull = anonymous_pull
        self.algorithm = algorithm
        self.key_id = key_id
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.ca = ca or CertificateAuthority(self.directory / "token-ca", name="tufoci test token CA")
        self.signing: Issued = self.ca.issue("token-signing", key_type="ec" if algorithm == "ES256" else "rsa")
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def start(cls, directory: Path, **options: Any) -> TokenService:
        service = cls(directory, **options)
        owner = service

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                owner._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        service._server = server
        service._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                           name="token-service", daemon=True)
        service._thread.start()
        return service

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_config(self) -> dict[str, Any]:
        """Write the root certificate bundle and return ``{"auth": {"token": …}}`` for the registry."""
        bundle = self.directory / "rootcertbundle.pem"
        pems = [self.ca.certificate.public_bytes(serialization.Encoding.PEM)]
        if self.key_id == "kid":
            pems.append(self.signing.pem())  # libtrust kid lookup: the signing key's own certificate
        bundle.write_bytes(b"".join(pems))
        return {"auth": {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                                   "rootcertbundle": str(bundle)}}}

    # -- requests ----------------------------------------------------------------
    def mark(self) -> int:
        """Requests so far; slice :attr:`requests` from it to see what followed."""
        with self._lock:
            return len(self.requests)

    def issued(self, since: int = 0) -> list[TokenRequest]:
        """Requests answered with a token since ``since``."""
        with self._lock:
            return [r for r in self.requests[since:] if r.status == 200]

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(ok, account): account None means anonymous."""
        if not header:
            return self.anonymous_pull, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        expected = self.users.get(user)
        if not sep or expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return False, user
        return True, user

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        scopes = tuple(query.get("scope", []))
        if url.path != "/token":
            self._reply(handler, 404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            return
        if query.get("service", [""])[0] not in ("", self.service):
            self._record(TokenRequest(handler.path, None, scopes, 400))
            self._reply(handler, 400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
            return
        ok, account = self._authenticate(handler.headers.get("Authorization"))
        if not ok:
            self._record(TokenRequest(handler.path, account, scopes, 401))
            self._reply(handler, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                        {"WWW-Authenticate": 'Basic realm="tufoci-test-token-service"'})
            return
        allowed = USER_ACTIONS if account is not None else ANONYMOUS_ACTIONS
        access: list[dict[str, Any]] = []
        for kind, name, actions in parse_scopes(scopes):
            granted = [a for a in actions if kind == "repository" and a in allowed]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        token, issued_at = self._sign(account or "", access)
        self._record(TokenRequest(handler.path, account, scopes, 200, tuple(access)))
        self._reply(handler, 200, {"token": token, "access_token": token, "expires_in": self.ttl,
                                   "issued_at": issued_at})

    @staticmethod
    def _reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: Mapping[str, Any],
               headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    # -- JWT -----------------------------------------------------------------------
    def _sign(self, subject: str, access: list[dict[str, Any]]) -> tuple[str, str]:
        now = datetime.datetime.now(datetime.UTC)
        epoch = int(now.timestamp())
        header: dict[str, Any] = {"typ": "JWT", "alg": self.algorithm}
        if self.key_id == "x5c":
            header["x5c"] = [self.signing.der_b64]
        else:
            header["kid"] = libtrust_key_id(self.signing.private_key.public_key())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": epoch + self.ttl,
                  "nbf": epoch, "iat": epoch, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        key = self.signing.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS: raw r||s, not DER
        else:
            assert isinstance(key, rsa.RSAPrivateKey)
            signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return signing_input.decode() + "." + _b64url(signature), now.strftime("%Y-%m-%dT%H:%M:%SZ")
