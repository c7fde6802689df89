"""The verifying mirror's HTTP server: the OCI distribution read API, health, readiness, metrics.

One job: HTTP. What may be served comes from ``mirror.Mirror`` (signed content
only). Endpoints:

- ``GET``/``HEAD /v2/`` (API version check), ``/v2/<name>/manifests/<tag|digest>``,
  ``/v2/<name>/blobs/<digest>`` (``Range`` supported); ``?ns=<registry>`` as
  containerd sends it names the upstream. Push, ``tags/list`` and ``_catalog``
  are answered 405 ``UNSUPPORTED``; anything else 404.
- ``GET /healthz``, ``/readyz`` (every pinned scope verified once), ``/metrics``.

Blobs are streamed, never held whole: each upstream chunk is hashed and the part
the client asked for is written at once, except the response's LAST byte, which
is sent only after the whole blob (the full blob, also for a ``Range``) has
hashed to its digest with the size the signed manifest states. On a mismatch,
a short body, a stall or an overlong transfer the connection is reset before
that byte: with ``Content-Length`` framing the client can never take the body as
complete (docs/security.md §7). Plain HTTP on loopback by default, or TLS with
the admission webhook's certificate reload; SIGTERM drains like the webhook.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import time
import urllib.parse
from typing import Any

import urllib3

from tufoci.enforce.mirror import Mirror, OciError, Route, route
from tufoci.enforce.mirror_metrics import MirrorMetrics
from tufoci.enforce.policy import Policy
from tufoci.enforce.server import (
    DEFAULT_MAX_CONNECTIONS,
    IDLE_TIMEOUT,
    AdmissionServer,
    CertificateFiles,
    _Handler,
    log,
    run_until_signalled,
)
from tufoci.enforce.view import Views
from tufoci.errors import TufociError, UsageError

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
MIN_RATE = 64 * 1024  # bytes/s: a blob slower than this on average is cut off (after the read timeout)
CHUNK = 256 * 1024
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
_PATH = re.compile(r"/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<reference>[^/]+)")
_UNSUPPORTED = re.compile(r"/v2/(_catalog|.+/tags/list|.+/blobs/uploads/.*|.+/referrers/[^/]+)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Cut(Exception):
    """The blob transfer must end without its last byte."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions (inclusive) of a single ``Range: bytes=…``; None: the whole blob.

    Several ranges or an unreadable header are ignored (RFC 9110 §14.2 lets a
    server send the whole representation instead).

    Raises:
        OciError: a range that starts beyond the blob (416).
    """
    match = _RANGE.fullmatch((header or "").strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    if match.group(1):
        first = int(match.group(1))
        last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        if match.group(2) and int(match.group(2)) < first:
            return None
    else:  # a suffix: the last N bytes
        first, last = max(0, size - int(match.group(2))), size - 1
    if first >= size or last < first:
        raise OciError(416, "SIZE_INVALID", f"range {header} is not inside the blob's {size} bytes")
    return first, last


class _MirrorHandler(_Handler):
    server: MirrorServer

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"", *, head: bool = False) -> None:
        self.send_response(status)
        headers = {**API_HEADERS, "Content-Length": str(len(body)), **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _refuse(self, error: OciError, head: bool, extra: dict[str, str] | None = None) -> None:
        self._answer(error.status, {"Content-Type": "application/json", **(extra or {})}, error.body(), head=head)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._read(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._read(head=True)

    def _write_method(self) -> None:
        if self._discard_body():
            self._refuse(OciError(405, "UNSUPPORTED", "this mirror is read-only: push to the upstream registry"),
                         False)

    do_PUT = do_POST = do_PATCH = do_DELETE = _write_method

    def _read(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        path, server = url.path, self.server
        if path in ("/healthz", "/readyz", "/metrics"):
            if path == "/readyz" and not (server.views.ready() and not server.stopping.is_set()):
                self._answer(503, {"Content-Type": "text/plain"}, b"not ready\n", head=head)
            elif path == "/metrics":
                text = server.metrics.render(server.views.ages(), server.views.refresh_errors())
                text += server.connection_metrics()
                self._answer(200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, text.encode(),
                             head=head)
            else:
                self._answer(200, {"Content-Type": "text/plain"}, b"ok\n", head=head)
            return
        if path in ("/v2", "/v2/"):
            self._answer(200, {"Content-Type": "application/json"}, b"{}", head=head)
            return
        match = _PATH.fullmatch(path)
        if match is None:
            if _UNSUPPORTED.fullmatch(path):
                self._refuse(OciError(405, "UNSUPPORTED", "this mirror serves manifests and blobs only"), head)
            else:
                self._refuse(OciError(404, "NAME_UNKNOWN", f"{path}: not an endpoint of this mirror"), head)
            return
        ns = urllib.parse.parse_qs(url.query).get("ns", [None])[0]
        kind, reference = match.group("kind"), match.group("reference")
        self._body_started = False
        started = time.monotonic()
        where: Route | None = None
        try:
            where = route(server.mirror.section, match.group("name"), ns)
            if kind == "manifests":
                self._manifest(where, reference, head, started)
            else:
                self._blob(where, reference, head, started)
        except Exception as e:  # noqa: BLE001 - a bug answers 500 (or cuts a body off), never serves
            if self._body_started:
                self._reset()
                raise
            if not isinstance(e, OciError):
                log("internal-error", error=f"{type(e).__name__}: {e}", path=path)
                e = OciError(500, "UNKNOWN", "internal error of the mirror (see its log)")
            server.metrics.pull(kind[:-1], "refused", e.code)
            log("refused", kind=kind[:-1], image=where.image if where else match.group("name"), reference=reference,
                status=e.status, code=e.code, message=e.message, ms=_ms(started))
            self._refuse(e, head)

    def _manifest(self, where: Route, reference: str, head: bool, started: float) -> None:
        manifest = self.server.mirror.manifest_for(where, reference)
        self._answer(200, {"Content-Type": manifest.media_type, "Docker-Content-Digest": manifest.digest},
                     manifest.data, head=head)
        by = "digest" if reference.startswith("sha256:") else "tag"
        self.server.metrics.pull("manifest", "served", f"signed-{by}")
        log("manifest", image=where.image, reference=reference, digest=manifest.digest, head=head, ms=_ms(started))

    def _blob(self, where: Route, digest: str, head: bool, started: float) -> None:
        mirror, metrics = self.server.mirror, self.server.metrics
        size = mirror.blob_size(where, digest)
        try:
            span = parse_range(self.headers.get("Range"), size) if size else None
        except OciError as e:
            metrics.pull("blob", "refused", e.code)
            self._refuse(e, head, {"Content-Range": f"bytes */{size}"})
            return
        first, last = span or (0, size - 1)
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                   "Accept-Ranges": "bytes", "Content-Length": str(last - first + 1)}
        if span is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        if head or size == 0:
            if size == 0 and digest != EMPTY_DIGEST:
                raise OciError(502, "BLOB_UNKNOWN", f"{where.image}@{digest}: signed as empty, which it is not")
            self._answer(200, headers, head=True)
            metrics.pull("blob", "served", "signed")
            return
        response = self._open_upstream(where, digest)
        self._body_started = True
        self._answer(206 if span else 200, headers, head=True)
        try:
            sent = self._stream(response, digest, size, first, last)
        except _Cut as cut:
            metrics.add("blob_mismatches")
            metrics.pull("blob", "cut-off", "content-mismatch")
            log("blob-cut-off", image=where.image, digest=digest, reason=str(cut), ms=_ms(started))
            self._reset()
            return
        finally:
            # never reused: what follows the signed size (or a cut-off body) is never read
            response.close()
        metrics.add("bytes_streamed", sent)
        metrics.pull("blob", "served", "signed")
        log("blob", image=where.image, digest=digest, bytes=sent, range=span is not None, ms=_ms(started))

    def _open_upstream(self, where: Route, digest: str) -> urllib3.BaseHTTPResponse:
        client = self.server.mirror.upstreams.client(where)
        opened = time.monotonic()
        try:
            response = client.open_stream("GET", f"/v2/{where.repository}/blobs/{digest}",
                                          scope=f"repository:{where.repository}:pull",
                                          headers={"Accept-Encoding": "identity"})
        except TufociError as e:
            raise OciError(503, "UNAVAILABLE", f"{where.image}@{digest}: upstream failed: {e}") from e
        finally:
            self.server.metrics.upstream_latency(where.upstream.name, time.monotonic() - opened)
        if response.status != 200:
            response.close()
            if response.status == 404:
                raise OciError(404, "BLOB_UNKNOWN", f"{where.image}@{digest}: signed but not found upstream")
            raise OciError(503, "UNAVAILABLE", f"{where.image}@{digest}: upstream answered HTTP {response.status}")
        return response

    def _stream(self, response: urllib3.BaseHTTPResponse, digest: str, size: int, first: int, last: int) -> int:
        """Copy bytes ``first..last`` to the client while hashing all ``size``; the last byte only if they match.

        Raises:
            _Cut: the upstream bytes are not the blob (hash, size), stalled, or too slow.
        """
        timeout = self.server.mirror.section.timeout
        deadline = time.monotonic() + timeout + size / MIN_RATE
        digest_of, seen, sent, held = hashlib.sha256(), 0, 0, b""
        while seen < size:
            try:
                # read1: one socket read per call, so the deadline is checked at least every read timeout
                chunk = response.read1(CHUNK, decode_content=False)
            except (urllib3.exceptions.HTTPError, OSError, TufociError) as e:  # TufociError: the read deadline
                raise _Cut(f"upstream read failed after {seen} of {size} bytes: {type(e).__name__}") from e
            if not chunk:
                raise _Cut(f"upstream ended after {seen} of {size} bytes")
            if time.monotonic() > deadline:
                raise _Cut(f"upstream too slow: {seen} of {size} bytes in {timeout + size / MIN_RATE:.0f}s")
            chunk = chunk[: size - seen]  # bytes past the signed size are never looked at
            digest_of.update(chunk)
            low, high = max(first, seen), min(last + 1, seen + len(chunk))
            if low < high:
                piece = chunk[low - seen:high - seen]
                if high == last + 1:
                    piece, held = piece[:-1], piece[-1:]  # the response's last byte waits for the verdict
                self.wfile.write(piece)
                sent += len(piece)
            seen += len(chunk)
        if "sha256:" + digest_of.hexdigest() != digest:
            raise _Cut(f"upstream bytes hash to sha256:{digest_of.hexdigest()}")
        self.wfile.write(held)
        return sent + len(held)

    def _reset(self) -> None:
        """End the connection here: the body stays at least one byte short of its Content-Length.

        A plain FIN (no TLS close_notify either), so the client reads what was sent and then
        a premature end of the body, which HTTP/1.1 framing makes a failed transfer.
        """
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


class MirrorServer(AdmissionServer):
    """The webhook's server (thread per connection, drain on stop), with plain HTTP as an option."""

    def __init__(self, address: tuple[str, int], certificates: CertificateFiles | None, mirror: Mirror,
                 views: Views, metrics: MirrorMetrics, max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.mirror, self.views, self.metrics = mirror, views, metrics
        super().__init__(address, certificates, None, max_connections)  # type: ignore[arg-type]
        self.RequestHandlerClass = _MirrorHandler

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        sock.settimeout(IDLE_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body leave as written
        if self.certificates is None:
            return sock, address
        return self.certificates.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


def serve(
    policy: Policy,
    views: Views,
    mirror: Mirror,
    *,
    listen: tuple[str, int],
    cert_file: str | None = None,
    key_file: str | None = None,
    ready_file: str | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code (0 after a clean stop).

    Raises:
        UsageError: the certificate or key cannot be loaded.
        TufociError: the address cannot be bound.
    """
    certificates = None
    if cert_file or key_file:
        try:
            certificates = CertificateFiles(cert_file or "", key_file or "")
        except (OSError, ssl.SSLError) as e:
            raise UsageError(f"cannot load the TLS certificate {cert_file} and key {key_file}: {e}") from e
    metrics = mirror_metrics(mirror)
    try:
        server = MirrorServer(listen, certificates, mirror, views, metrics, max_connections)
    except OSError as e:
        raise TufociError(f"cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from e
    return run_until_signalled(server, views, "https" if certificates else "http", ready_file,
                               upstreams=[u.name for u in mirror.section.upstreams], freshness=policy.freshness)


def mirror_metrics(mirror: Mirror) -> MirrorMetrics:
    """Metrics wired to the mirror's upstream latency and moved-tag reports."""
    metrics = MirrorMetrics()
    mirror.upstreams.latency = metrics.upstream_latency

    def moved(where: Route, tag: str, signed: str, upstream: str) -> None:
        metrics.moved_tag(where.upstream.name)
        log("upstream-tag-moved", image=f"{where.image}:{tag}", signed=signed, upstream=upstream)

    mirror.on_moved = moved
    return metrics

