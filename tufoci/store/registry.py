"""The OCI Distribution API over HTTP(S), on urllib3.

Why not oras-py here: it hides raw manifest bytes, has no manifest HEAD, does
not verify digests, sets no timeouts and retries for minutes on connection
errors, and ``import oras.client`` alone costs ~380 ms on the verify path.
urllib3 is already loaded by python-tuf's ngclient, so this module adds no
import cost. It does exactly what tufoci needs and nothing else:

* raw manifest GET/PUT and blob GET (capped, hashed by us: the
  ``Docker-Content-Digest`` header is ignored) and blob upload (POST then PUT:
  distribution 2.8 ignores the monolithic single POST);
* ``tags/list`` with ``Link`` pagination and a page cap;
* basic auth and the bearer-token flow (anonymous tokens too), tokens reused per
  repository scope; credentials never follow a redirect to another host;
* per-registry TLS (CAs, client certificate, plain HTTP) and HTTP proxies as
  ``tufoci.registry_config`` resolves them for the host;
* timeouts on every request, an overall per-request deadline, and bounded
  retries with backoff only for idempotent reads, all inside the command's
  budget (``tufoci.budget``). The deadline holds for every byte: each read from
  the socket (status line, headers, body) waits at most what is left of it, so
  a server dripping one byte at a time cannot stretch a request.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import urllib3
import urllib3.connection

from tufoci import budget
from tufoci.credentials import Credentials, lookup_credentials
from tufoci.errors import ContentMismatchError, NotFoundError, RegistryError, TimedOutError, TooLargeError
from tufoci.layout_spec import MAX_MANIFEST_BYTES, sha256_digest
from tufoci.reference import DIGEST_RE
from tufoci.registry_config import RegistryConfig, RegistrySettings, TLSFlags
from tufoci.registry_http import (  # the decisions the verify fast path shares (registry_http's docstring)
    CONNECT_TIMEOUT,
    MANIFEST_ACCEPT,
    USER_AGENT,
    basic_authorization,
    endpoint,
    read_timeout,
    request_deadline,
)
from tufoci.registry_http import (
    parse_challenge as _parse_challenge,
)
from tufoci.safe_text import printable
from tufoci.store.base import Manifest, Readable, RepositoryStore, VerifyingReader

if TYPE_CHECKING:
    from tufoci.store.manifest_batch import Endpoint

READ_RETRIES = 2
MAX_REDIRECTS = 5
MAX_TAG_PAGES = 100
MAX_DETAIL = 300  # characters of a registry's own error message kept in ours
BATCH_MIN = 8  # fewer manifests than this: the regular client alone
BATCH_FALLBACK_WORKERS = 16
PARALLEL_UPLOADS = 8
_CHUNK = 64 * 1024
_RETRY_STATUSES = {500, 502, 503, 504}  # 500: distribution serves a tag link caught mid-write as a 500
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)
_BUDGET_SPENT = 0.05  # seconds: a timeout that fired with less of the budget left than this is the budget's


def resolve_settings(
    registry: str,
    config: RegistryConfig | None = None,
    *,
    plain_http: bool | None = None,
    insecure: bool = False,
    ca_file: str | None = None,
) -> RegistrySettings:
    """``registry``'s settings from ``config``, the loose ``plain_http``/``insecure``/``ca_file``
    options (what callers without a ``RegistryConfig`` pass) winning over it.

    Raises:
        RegistryConfigError: the registry's certs.d directory or a CA file cannot be used.
        RegistryError: registries.conf blocks the registry.
    """
    config = config or RegistryConfig()
    flags = TLSFlags(plain_http, insecure, ca_file)
    if flags != TLSFlags():
        config = config.replace(flags=flags.over(config.flags))
    return config.settings_for(registry)


class _DeadlinePassed(TimedOutError):
    """The request's deadline passed while reading. Not an OSError, so urllib3 neither retries nor wraps
    it; a TufociError, so one that escapes (a streamed blob read by the caller) is still one clear line."""

    def __init__(self, what: str):
        super().__init__(str(budget.exceeded(what)))


_reading = threading.local()  # .until, .what: the deadline and the request this thread is sending


class _DeadlineReader(io.RawIOBase):
    """The socket as http.client reads a response from it, every read bounded by the deadline.

    A socket timeout restarts with each byte received; here each read waits at
    most the read timeout and never past ``until``, so the status line, the
    headers and the body all finish by then or fail.
    """

    def __init__(self, sock: Any, until: float, what: str):
        self._sock, self._until, self._what, self._timeout = sock, until, what, sock.gettimeout()
        self._raw = sock.makefile("rb", buffering=0)  # counts as a reference: the socket stays open while read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._until - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed(self._what)
        limited = self._timeout is None or left < self._timeout
        self._sock.settimeout(left if limited else self._timeout)
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            if limited:  # it was the deadline, not the read timeout, that ran out
                raise _DeadlinePassed(self._what) from None
            raise

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``http.client.HTTPResponse`` is built on: only ``makefile`` is asked of it."""

    def __init__(self, sock: Any, until: float, what: str):
        self._sock, self._until, self._what = sock, until, what

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._until, self._what))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any):
        until = getattr(_reading, "until", None)
        if until is not None:
            sock = _DeadlineSocket(sock, until, _reading.what)
        super().__init__(sock, *args, **kwargs)


class _Connection(urllib3.connection.HTTPConnection):
    response_class = _DeadlineResponse


class _TLSConnection(urllib3.connection.HTTPSConnection):
    response_class = _DeadlineResponse


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class RegistryClient:
    """A connection pool and the auth state for one registry host."""

    def __init__(
        self,
        registry: str,
        *,
        config: RegistryConfig | None = None,
        plain_http: bool | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        credentials: Credentials | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ):
        """Raises: RegistryConfigError, RegistryError as ``resolve_settings``."""
        self.registry = registry
        self.settings = resolve_settings(registry, config, plain_http=plain_http, insecure=insecure, ca_file=ca_file)
        # loopback defaults to plain HTTP, but any TLS setting (a CA, a client certificate, --insecure) means TLS
        self.base_url = f"{'http' if self.settings.plain_http else 'https'}://{self.settings.address}"
        timeout = read_timeout(timeout)
        self._deadline = request_deadline(deadline)
        if not self.settings.verify:  # asked for explicitly: no warning on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # one context for every connection (urllib3 would build one, and load the system's CAs, per connection)
        self._tls = None if self.settings.plain_http else self.settings.ssl_context()
        self._read_timeout = timeout
        self._pools: dict[str | None, urllib3.PoolManager] = {}  # by proxy URL (None: direct)
        self._credentials = credentials
        self._credentials_given = credentials is not None
        self._credentials_loaded = credentials is not None
        self._auth: dict[str, str] = {}  # scope -> Authorization header
        self._lock = threading.Lock()
        self.request_count = 0

    def close(self) -> None:
        """Close every pooled connection."""
        for pool in list(self._pools.values()):
            pool.clear()

    def _pool_for(self, url: str) -> urllib3.PoolManager:
        """The pool a request to ``url`` goes through: direct, or its proxy's (CONNECT for HTTPS).

        A proxy's own credentials (``http://user:pass@proxy``) go to the proxy alone, as
        Proxy-Authorization; the registry's never do (see ``_is_own``).
        """
        proxy = self.settings.proxies.for_url(url)
        with self._lock:
            pool = self._pools.get(proxy)
            if pool is None:
                options: dict[str, Any] = {
                    "num_pools": 4, "maxsize": 16, "headers": {"User-Agent": USER_AGENT}, "retries": False,
                    "timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT, read=self._read_timeout),
                    "ssl_context": self._tls,
                }
                if proxy is None:
                    pool = urllib3.PoolManager(**options)
                else:
                    parsed = urllib3.util.parse_url(proxy)
                    if parsed.auth:
                        auth = urllib.parse.unquote(parsed.auth)
                        options["proxy_headers"] = urllib3.make_headers(proxy_basic_auth=auth)
                    pool = urllib3.ProxyManager(parsed._replace(auth=None).url, **options)
                pool.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}  # responses read under a deadline
                self._pools[proxy] = pool
            return pool

    def repository(self, path: str) -> RegistryRepository:
        return RegistryRepository(self, path)

    def endpoint(self) -> Endpoint | None:
        """Where ``manifest_batch`` connects, with this client's TLS settings and limits; None when
        requests to this registry go through a proxy (the regular client alone then reads)."""
        if self.settings.proxies.for_url(self.base_url) is not None:
            return None
        return endpoint(self.base_url, tls=self._tls, read_timeout=self._read_timeout, deadline=self._deadline)

    def authorization(self, scope: str) -> dict[str, str]:
        """The Authorization header this client holds for ``scope`` (empty before the first challenge)."""
        return {"Authorization": self._auth[scope]} if scope in self._auth else {}

    # -- auth ----------------------------------------------------------------
    def _get_credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            # the host they are sent to: a registries.conf location gets its own, not the name's
            self._credentials = lookup_credentials(self.settings.address)
            self._credentials_loaded = True
        return self._credentials

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = _parse_challenge(challenge)
        credentials = self._get_credentials()
        if scheme == "basic":
            if credentials is None:
                raise RegistryError(f"{self.registry} refused access (HTTP 401): it requires credentials; "
                                    f"run 'tufoci login {self.registry}'")
            header = basic_authorization(credentials)
        elif scheme == "bearer" and params.get("realm"):
            header = f"Bearer {self._fetch_token(params, scope, credentials)}"
        else:
            raise RegistryError(f"{self.registry} asked for unsupported authentication {scheme!r}")
        with self._lock:
            self._auth[scope] = header

    def _fetch_token(self, params: Mapping[str, str], scope: str, credentials: Credentials | None) -> str:
        # token spec: one scope parameter per scope (a cross-repository mount needs two)
        query = [("service", params.get("service", ""))]
        query += [("scope", part) for part in (scope or params.get("scope", "")).split()]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        headers = {}
        if credentials is not None:
            headers["Authorization"] = basic_authorization(credentials)
        status, _, body = self._send("GET", url, headers, None, max_bytes=1024 * 1024, idempotent=True)
        if status == 401:
            raise RegistryError(f"token service for {self.registry} refused the credentials (HTTP 401): "
                                f"check them, or run 'tufoci login {self.registry}'")
        if status != 200:
            raise RegistryError(f"token service for {self.registry} answered HTTP {status}")
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service for {self.registry} returned no token")
        return token

    # -- transport -----------------------------------------------------------
    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        max_bytes: int,
        idempotent: bool,
    ) -> tuple[int, urllib3.HTTPHeaderDict, bytes]:
        """One logical request: redirects followed, reads retried, body capped, all within the budget.

        Raises:
            TimedOutError: the command's budget ran out (whatever attempt or back-off it was in).
            RegistryError: the registry could not be reached, or did not answer within the deadline.
        """
        attempts = READ_RETRIES + 1 if idempotent else 1
        for attempt in range(attempts):
            try:
                status, response_headers, data = self._send_once(method, url, headers, body, max_bytes)
            except TooLargeError:
                raise
            except _TRANSPORT_ERRORS as e:
                left, backoff = budget.remaining(math.inf), 0.25 * 3**attempt
                if attempt + 1 < attempts and left > backoff:
                    time.sleep(backoff)
                    continue
                if left < _BUDGET_SPENT:  # the connect or read timeout was what was left of the budget
                    raise budget.exceeded(self._waiting_for(method, url)) from e
                raise RegistryError(f"cannot reach registry {self.registry}: {_describe(e)}") from e
            backoff = 0.25 * 3**attempt
            if status in _RETRY_STATUSES and attempt + 1 < attempts and budget.remaining(math.inf) > backoff:
                time.sleep(backoff)
                continue
            return status, response_headers, data
        raise AssertionError("unreachable")

    def _waiting_for(self, method: str, url: str) -> str:
        """What a timed-out request waited for: the registry host and the request, without its query."""
        return f"registry {self.registry} to answer {method} {urllib.parse.urlsplit(url).path}"

    def _send_once(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, max_bytes: int
    ) -> tuple[int, urllib3.HTTPHeaderDict, bytes]:
        until = time.monotonic() + self._deadline
        overall = budget.until()
        try:
            response = self._open(method, url, headers, body, until=until if overall is None else min(until, overall))
            try:
                data = self._read_capped(response, max_bytes)
            except BaseException:
                # the body was not read to its end: this connection must never serve another request
                response.close()
                raise
        except _DeadlinePassed:
            if overall is not None and overall <= until:
                raise budget.exceeded(self._waiting_for(method, url)) from None
            raise RegistryError(f"{self.registry} did not finish a response within {self._deadline:g} s "
                                f"({method} {urllib.parse.urlsplit(url).path})") from None
        response.release_conn()
        return response.status, response.headers, data

    def _open(
        self, method: str, url: str, headers: dict[str, str], body: bytes | Readable | None, *, until: float | None
    ) -> urllib3.BaseHTTPResponse:
        """Send one request following redirects; the caller reads and releases the response.

        ``until`` (a ``time.monotonic()`` instant) bounds connecting, sending and every read of the
        answers, its body included (None: the connect and read timeouts alone, for streamed blobs).
        """
        origin = urllib.parse.urlsplit(url)[:2]  # scheme and host:port: no credentials over a downgrade either
        for _ in range(MAX_REDIRECTS + 1):
            self.request_count += 1
            # None would mean no timeout at all to urllib3: without a deadline, the pool's own timeouts
            timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=self._read_timeout)
            what = self._waiting_for(method, url)
            if until is not None:
                left = until - time.monotonic()
                if left <= 0:
                    raise _DeadlinePassed(what)
                timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT, left), read=min(self._read_timeout, left))
            _reading.until, _reading.what = until, what
            try:
                # urllib3 streams any body with read() (body_to_chunks); its annotation names only typing.IO
                response = self._pool_for(url).request(
                    method, url, headers=headers, body=body,  # type: ignore[arg-type]
                    preload_content=False, redirect=False, timeout=timeout,
                )
            finally:
                _reading.until = None
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                response.drain_conn()
                response.release_conn()
                url = urllib.parse.urljoin(url, response.headers["Location"])
                if urllib.parse.urlsplit(url)[:2] != origin:
                    # never forward credentials to another host
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if response.status == 303:
                    method, body = "GET", None
                continue
            if urllib.parse.urlsplit(url)[:2] != origin:
                # a host we were redirected to must not get credentials by asking for them (a Bearer
                # realm of its choosing would receive them): its challenge is not answered
                response.headers.discard("WWW-Authenticate")
            return response
        raise RegistryError(f"{self.registry}: too many redirects")

    def open_stream(
        self, method: str, path_or_url: str, *, scope: str, headers: dict[str, str] | None = None,
        body: bytes | Readable | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Like ``request`` but the body is not read: for streaming blobs of any size.

        A streamed request body cannot be re-sent, so callers authenticate
        first (an upload starts with a POST that obtains the push token).
        """
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        own = self._is_own(url)
        for attempt in range(2):
            all_headers = dict(headers or {})
            if scope in self._auth and own:
                all_headers["Authorization"] = self._auth[scope]
            try:
                response = self._open(method, url, all_headers, body, until=budget.until())
            except _TRANSPORT_ERRORS as e:
                raise RegistryError(f"cannot reach registry {self.registry}: {_describe(e)}") from e
            challenge = response.headers.get("WWW-Authenticate")
            if response.status == 401 and challenge and own and attempt == 0 and body is None:
                response.drain_conn()
                response.release_conn()
                self._authenticate(challenge, scope)
                continue
            return response
        raise AssertionError("unreachable")

    def _is_own(self, url: str) -> bool:
        """Whether ``url`` is on this registry (scheme, host and port): only such requests carry credentials."""
        return urllib.parse.urlsplit(url)[:2] == urllib.parse.urlsplit(self.base_url)[:2]

    def _read_capped(self, response: urllib3.BaseHTTPResponse, max_bytes: int) -> bytes:
        """The body, at most ``max_bytes``; the response's reader enforces the deadline on every read."""
        chunks, total = [], 0
        while chunk := response.read1(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise TooLargeError(f"{self.registry} sent more than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        max_bytes: int = MAX_MANIFEST_BYTES,
    ) -> tuple[int, urllib3.HTTPHeaderDict, bytes]:
        """A request with auth: on 401 answer the challenge once and resend."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        idempotent = method in ("GET", "HEAD")

        own = self._is_own(url)  # a Link or Location may name another host: it gets no credentials

        def send() -> tuple[int, urllib3.HTTPHeaderDict, bytes]:
            all_headers = dict(headers or {})
            if scope in self._auth and own:
                all_headers["Authorization"] = self._auth[scope]
            return self._send(method, url, all_headers, body, max_bytes=max_bytes, idempotent=idempotent)

        had_auth = scope in self._auth
        status, response_headers, data = send()
        challenge = response_headers.get("WWW-Authenticate")
        if status == 401 and challenge and own:
            # distribution auth: answer the challenge (a new or expired token) once; when
            # what we sent was refused, look the credentials up again (a login or a
            # rotated helper token since, in a long-running process)
            if had_auth and not self._credentials_given:
                self._credentials_loaded = False
            self._authenticate(challenge, scope)
            status, response_headers, data = send()
        return status, response_headers, data

    def error(self, status: int, what: str, body: bytes) -> RegistryError:
        """A one-line error naming the registry, the status and the registry's error code.

        The code and message are the registry's words: escaped (no ESC, CR or
        newline reaches a terminal) and cut to MAX_DETAIL characters.
        """
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            if errors:
                detail = printable(f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip())
        except (ValueError, AttributeError, TypeError, RecursionError):
            pass
        if len(detail) > MAX_DETAIL:
            detail = detail[:MAX_DETAIL] + "…"
        if status == 404:
            return NotFoundError(f"{what}: not found on {self.registry}{detail}")
        if status == 401:
            return RegistryError(f"{what}: {self.registry} refused access (HTTP 401){detail}; "
                                 f"wrong or missing credentials: run 'tufoci login {self.registry}'")
        if status == 403:
            return RegistryError(f"{what}: {self.registry} refused access (HTTP 403){detail}")
        if status == 400 and self.base_url.startswith("http://") and b"HTTPS server" in body:
            # Go's answer to plain HTTP on a TLS port (distribution, Harbor, zot)
            return RegistryError(f"{what}: {self.registry} speaks HTTPS, not plain HTTP (loopback registries "
                                 "default to plain HTTP): give --ca-file FILE for its CA, or --insecure")
        return RegistryError(f"{what}: {self.registry} answered HTTP {status}{detail}")


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    text = str(reason or error)
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(error, urllib3.exceptions.ProxyError):
        return f"through the proxy: {_describe(error.original_error)}"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return ("its TLS certificate is not trusted (a private CA: its ca.crt in certs.d, or --ca-file FILE; "
                "--insecure to skip checks)")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "it does not speak TLS here (--plain-http for an HTTP-only registry)"
    if "timed out" in text.lower():
        return "timed out"
    return printable(text.splitlines()[0][:200]) if text else type(error).__name__


class RegistryRepository(RepositoryStore):
    """One repository path in a registry."""

    def __init__(self, client: RegistryClient, path: str):
        self.client = client
        self.path = path
        self._pull = f"repository:{path}:pull"
        self._push = f"repository:{path}:pull,push"

    def __repr__(self) -> str:
        return f"RegistryRepository({self.client.registry}/{self.path})"

    def __str__(self) -> str:  # the name users know, for messages (issue 18: no Python internals)
        return f"{self.client.registry}/{self.path}"

    def get_manifest(self, reference: str, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
        what = f"manifest {self.client.registry}/{self.path}:{reference}"
        status, headers, data = self.client.request(
            "GET",
            f"/v2/{self.path}/manifests/{reference}",
            scope=self._pull,
            headers={"Accept": MANIFEST_ACCEPT},
            max_bytes=max_bytes,
        )
        if status != 200:
            raise self.client.error(status, what, data)
        manifest = Manifest(data, headers.get("Content-Type"))
        # distribution spec: a manifest fetched by digest must hash to it
        if DIGEST_RE.fullmatch(reference) and manifest.digest != reference:
            raise ContentMismatchError(f"{what}: the registry served bytes that hash to {manifest.digest}")
        return manifest

    def get_manifests(self, references: list[str]) -> list[Manifest]:
        """Many manifests at the cost of few: the first through the regular client (it answers the
        auth challenge), from ``BATCH_MIN`` on the rest over pipelined bare connections
        (``manifest_batch``), and whatever those did not bring back plainly through the regular
        client again, side by side, which retries and reports.
        """
        if not references:
            return []
        first = self.get_manifest(references[0])
        fetched: dict[str, Manifest] = {}
        left = references[1:]
        if len(references) >= BATCH_MIN:
            from tufoci.store.manifest_batch import fetch_manifests  # 1.6 ms a verify process need not pay

            headers = {"Accept": MANIFEST_ACCEPT, "Accept-Encoding": "identity", "User-Agent": USER_AGENT,
                       **self.client.authorization(self._pull)}
            endpoint = self.client.endpoint()
            if endpoint is not None:
                fetched, left = fetch_manifests(endpoint, self.path, left, headers, max_bytes=MAX_MANIFEST_BYTES)
        fetched.update(zip(left, _side_by_side(self.get_manifest, left, BATCH_FALLBACK_WORKERS), strict=True))
        return [first, *(fetched[reference] for reference in references[1:])]

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        status, _, body = self.client.request(
            "PUT",
            f"/v2/{self.path}/manifests/{tag}",
            scope=self._push,
            headers={"Content-Type": media_type},
            body=data,
        )
        if status not in (200, 201):
            raise self.client.error(status, f"push manifest {self.path}:{tag}", body)
        return sha256_digest(data)

    def get_blob(self, digest: str, *, max_bytes: int) -> bytes:
        status, _, data = self.client.request(
            "GET", f"/v2/{self.path}/blobs/{digest}", scope=self._pull, max_bytes=max_bytes
        )
        if status != 200:
            raise self.client.error(status, f"blob {self.path}@{digest}", data)
        if sha256_digest(data) != digest:
            raise ContentMismatchError(f"blob {self.path}@{digest}: the registry served bytes that hash differently")
        return data

    def has_blob(self, digest: str) -> bool:
        status, _, body = self.client.request("HEAD", f"/v2/{self.path}/blobs/{digest}", scope=self._pull)
        if status == 200:
            return True
        if status == 404:
            return False
        raise self.client.error(status, f"blob {self.path}@{digest}", body)

    def put_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            self._upload(data)
        return digest

    def _upload(self, data: bytes) -> None:
        digest = sha256_digest(data)
        location = self._start_upload()
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        status, _, body = self.client.request(
            "PUT",
            location,
            scope=self._push,
            headers={"Content-Type": "application/octet-stream"},
            body=data,
        )
        if status != 201:
            raise self.client.error(status, f"upload blob to {self.path}", body)

    def put_blobs(self, blobs: list[bytes]) -> list[str]:
        """Uploads side by side (each is three round trips of waiting, not work), after the first
        missing one alone: it obtains the push token the others reuse instead of each asking for one."""
        digests = [sha256_digest(data) for data in blobs]
        present = _side_by_side(self.has_blob, digests, PARALLEL_UPLOADS)
        missing = [data for data, there in zip(blobs, present, strict=True) if not there]
        if missing:
            self._upload(missing[0])
            _side_by_side(self._upload, missing[1:], PARALLEL_UPLOADS)
        return digests

    @contextlib.contextmanager
    def open_blob(self, digest: str, size: int) -> Iterator[Readable]:
        response = self.client.open_stream("GET", f"/v2/{self.path}/blobs/{digest}", scope=self._pull)
        try:
            if response.status != 200:
                raise self.client.error(response.status, f"blob {self.path}@{digest}", response.read(65536))
            yield VerifyingReader(response, digest, size, f"blob {self.path}@{digest}")
        except BaseException:
            response.close()  # possibly unread body: never reuse this connection
            raise
        response.release_conn()

    def put_blob_from(self, digest: str, size: int, stream: Readable) -> None:
        if self.has_blob(digest):
            return
        location = self._start_upload()
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        response = self.client.open_stream(
            "PUT",
            location,
            scope=self._push,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=stream,
        )
        if response.status != 201:
            error = self.client.error(response.status, f"upload blob to {self.path}", response.read(65536))
            response.close()
            raise error
        response.drain_conn()
        response.release_conn()

    def mount_blob(self, digest: str, source: RepositoryStore) -> bool:
        """Cross-repository mount (distribution spec): no bytes move when both sit in this registry."""
        if not isinstance(source, RegistryRepository) or source.client.registry != self.client.registry:
            return False
        query = urllib.parse.urlencode({"mount": digest, "from": source.path})
        scope = f"{self._push} repository:{source.path}:pull"
        status, _, _ = self.client.request("POST", f"/v2/{self.path}/blobs/uploads/?{query}", scope=scope)
        return status == 201

    def _start_upload(self) -> str:
        # distribution spec: POST opens an upload session, PUT ?digest= completes it
        status, headers, body = self.client.request("POST", f"/v2/{self.path}/blobs/uploads/", scope=self._push)
        if status != 202 or not headers.get("Location"):
            raise self.client.error(status, f"start blob upload to {self.path}", body)
        return urllib.parse.urljoin(self.client.base_url + "/", headers["Location"])

    def list_tags(self) -> list[str]:
        tags: list[str] = []
        url = f"/v2/{self.path}/tags/list"
        for _ in range(MAX_TAG_PAGES):
            status, headers, data = self.client.request("GET", url, scope=self._pull)
            if status == 404:
                return tags
            if status != 200:
                raise self.client.error(status, f"tags of {self.path}", data)
            try:
                page = json.loads(data).get("tags") or []
            except (ValueError, AttributeError) as e:
                raise RegistryError(f"tags of {self.path}: malformed answer from {self.client.registry}") from e
            tags.extend(t for t in page if isinstance(t, str))
            match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", headers.get("Link", ""))
            if not match:
                return tags
            url = urllib.parse.urljoin(self.client.base_url + "/", match.group(1))
        raise RegistryError(f"tags of {self.path}: more than {MAX_TAG_PAGES} pages")


def _side_by_side(function, items: list, workers: int) -> list:
    """``[function(item) for item in items]`` on up to ``workers`` threads; the first failure raises."""
    if len(items) < 2:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor  # the verify path never pays for this import

    with ThreadPoolExecutor(max_workers=min(len(items), workers)) as pool:
        return list(pool.map(budget.carry(function), items))


_CLIENTS: dict[tuple, RegistryClient] = {}
_CLIENTS_LOCK = threading.Lock()


def registry_client(registry: str, **options: Any) -> RegistryClient:
    """A shared client per registry and options, so connections and tokens are reused.

    The timeouts are resolved here, from the environment when not given, and are part
    of the key: a client made before TUFOCI_REGISTRY_TIMEOUT or _DEADLINE changed must
    not go on serving with the old limits.
    """
    options["timeout"] = read_timeout(options.get("timeout"))
    options["deadline"] = request_deadline(options.get("deadline"))
    key = (registry, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = RegistryClient(registry, **options)
            _CLIENTS[key] = client
        return client


def forget_clients() -> None:
    """Drop the shared clients, their pooled connections and tokens.

    For a process that outlives the registries it talked to (a test session,
    where a later registry may be given a port an earlier one had).
    """
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()


def check_login(registry: str, credentials: Credentials, **options: Any) -> None:
    """Prove ``credentials`` work against ``GET /v2/`` (basic or token flow); raises RegistryError."""
    client = RegistryClient(registry, credentials=credentials, **options)
    status, _, body = client.request("GET", "/v2/", scope="")
    if status == 401:
        raise RegistryError(f"login to {registry}: {registry} refused the credentials (HTTP 401)")
    if status != 200:
        raise client.error(status, f"login to {registry}", body)
