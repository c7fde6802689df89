"""The warm ``tufoci verify`` as a plain process: answer from the last full refresh's record (stdlib only).

A warm verify of an unchanged repository needs nothing python-tuf would compute:
when the registry serves the timestamp manifest the last full refresh verified
(same digest), every file it leads to is the same, and so is every answer
(docs/performance.md, "Revalidation"). ``Verifier`` knows this within one
process; the record (client/verified_record.py) carries it to the next.

This module answers only when all of it holds, for every reference of the call:
the home and its state pass the ownership checks; the pin covering each
reference is the pin the record was written under; the record is readable and
well formed, its earliest expiry is ahead, and the trusted cache still holds the
timestamp it names; every name was resolved by that refresh (and, for
``repo:tag@digest``, to that digest); the registry serves the recorded timestamp
manifest; and each tag check finds the signed digest. Anything else — another
digest, a registry error or challenge it does not answer (a token flow, a
credential helper), a redirect, a digest-only reference, a layout or HTTP
source, an option it does not know — returns None, and the full refresh runs as
always, which says what is wrong. So the fast path only ever prints what the
full path would print for success, through the same ``Outcome`` and renderer.

Registry URL, TLS context, timeouts, User-Agent, Accept and Basic credentials
come from tufoci/registry_http.py and tufoci/credentials.py, the code the full
client uses; the requests run under the command's ``--timeout`` budget, which
tufoci/entry.py opens around this and the full path alike.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import threading
import time
import urllib.parse

from tufoci import budget
from tufoci.errors import TufociError
from tufoci.layout_spec import MAX_MANIFEST_BYTES, MAX_METADATA_MANIFEST_BYTES, TIMESTAMP_TAG
from tufoci.ownership import home_problem
from tufoci.reference import parse_reference, parse_repository, target_name
from tufoci.registry_http import (
    CONNECT_TIMEOUT,
    MANIFEST_ACCEPT,
    USER_AGENT,
    DeadlineResponse,
    base_url,
    basic_authorization,
    parse_challenge,
    read_timeout,
    reading,
    request_deadline,
    tls_context,
)
from tufoci.client.verified_record import cache_dir, file_sha256, read_record

MAX_CONNECTIONS = 4  # per registry: tag checks side by side on kept-alive connections
_CHUNK = 64 * 1024


class _FallThrough(Exception):
    """Something the fast path does not answer: the full refresh will."""


def parse_options(args: list[str]) -> dict | None:
    """``verify``'s arguments as the fast path knows them, or None for anything else (the full CLI's)."""
    options: dict = {"output": "text", "check_registry": True, "plain_http": None, "insecure": False,
                     "ca_file": None, "timeout": None, "references": []}
    i = 0
    while i < len(args):
        arg, value = args[i], args[i + 1] if i + 1 < len(args) else None
        if arg in ("-o", "--output") and value in ("text", "json"):
            options["output"], i = value, i + 2
        elif arg == "--skip-registry-check":
            options["check_registry"], i = False, i + 1
        elif arg == "--plain-http":
            options["plain_http"], i = True, i + 1
        elif arg == "--insecure":
            options["insecure"], i = True, i + 1
        elif arg == "--ca-file" and value and os.path.isfile(value):
            options["ca_file"], i = value, i + 2
        elif arg == "--timeout" and value is not None:
            options["timeout"], i = value, i + 2
        elif arg.startswith("-") or not arg:
            return None  # an option (or spelling: --output=json) only the full CLI knows
        else:
            options["references"].append(arg)
            i += 1
    return options if options["references"] else None


def fast_verify(args: list[str], home: str) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of ``tufoci verify ARGS`` answered from the record; None: run the full path.

    Never raises: whatever goes wrong here is for the full path to find and report.
    """
    options = parse_options(args)
    if options is None:
        return None
    try:
        return _answer(options, home)
    except (_FallThrough, TufociError, OSError, ValueError, http.client.HTTPException):
        return None


def _answer(options: dict, home: str) -> tuple[int, str, str]:
    from tufoci.client.trust_pins import pin_for_reference
    from tufoci.verify_output import Outcome, VerifiedImage, render_results

    if home_problem(home):
        raise _FallThrough
    pins = _pins(home)
    registry = {"plain_http": options["plain_http"], "insecure": options["insecure"], "ca_file": options["ca_file"]}
    now = time.time()
    records: dict[str, tuple] = {}  # scope -> (pin, its record)
    images, checks = [], []
    for text in options["references"]:
        reference = parse_reference(text)
        pin, scope = pin_for_reference(pins, reference)
        if reference.tag is None or scope.is_layout or pin.metadata.startswith(("http://", "https://")):
            raise _FallThrough  # digest-only references, layouts and HTTP sources: the full path
        name = target_name(reference, scope)
        if pin.scope not in records:
            cache = cache_dir(home, pin)
            record = read_record(cache, pin)
            if record is None or now >= record["expires"]:
                raise _FallThrough
            # another process's refresh trusted a newer timestamp since: a registry serving the recorded
            # manifest again is a rollback for this machine, which only the full refresh can tell
            if file_sha256(os.path.join(cache, "timestamp.json")) != record["trustedTimestamp"]:
                raise _FallThrough
            records[pin.scope] = (pin, record)
        info = records[pin.scope][1]["targets"].get(name)
        if info is None or (reference.digest and reference.digest != info["digest"]):
            raise _FallThrough
        image = VerifiedImage(str(reference), name, pin.scope, str(reference.repository), info["digest"],
                              info["length"], info["mediaType"])
        images.append(image)
        if options["check_registry"] and not reference.digest:
            checks.append((reference.repository, reference.tag, image.digest, MAX_MANIFEST_BYTES))
    metadata = [(parse_repository(pin.metadata), TIMESTAMP_TAG, record["timestampManifest"], MAX_METADATA_MANIFEST_BYTES)
                for pin, record in records.values()]
    _expect_all(metadata + checks, registry)
    out, err = io.StringIO(), io.StringIO()
    code = render_results([Outcome(i.reference, image=i).to_dict() for i in images], options["output"], out, err)
    return code, out.getvalue(), err.getvalue()


def _pins(home: str) -> list:
    """The trust pins in state.db, read as ``State.pins`` reads them (read-only: nothing is created here)."""
    import sqlite3

    from tufoci.state import PINS_QUERY, Pin

    path = os.path.join(home, "state.db")
    if not os.path.exists(path):
        raise _FallThrough
    try:
        connection = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=5)
        try:
            return [Pin(*row) for row in connection.execute(PINS_QUERY)]
        finally:
            connection.close()
    except sqlite3.Error as e:
        raise _FallThrough from e


def _expect_all(requests: list[tuple], registry: dict) -> None:
    """GET each manifest (repository, reference, expected digest, size cap) and require the expected bytes.

    Per registry, up to ``MAX_CONNECTIONS`` kept-alive connections side by side.
    """
    by_host: dict[str, list[tuple]] = {}
    for repository, reference, digest, cap in requests:
        by_host.setdefault(repository.registry, []).append((repository.path, reference, digest, cap))
    for host, items in by_host.items():
        session = _Session(host, **registry)
        workers = min(MAX_CONNECTIONS, len(items))
        if workers == 1:
            session.expect(items)
            continue
        failures: list[BaseException] = []
        chunks = [items[i::workers] for i in range(workers)]
        run = budget.carry(session.expect)

        def work(chunk: list[tuple]) -> None:
            try:
                run(chunk)
            except BaseException as e:  # noqa: BLE001  (any failure means: the full path)
                failures.append(e)

        threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks[1:]]
        for thread in threads:
            thread.start()
        work(chunks[0])
        for thread in threads:
            thread.join()
        if failures:
            raise _FallThrough from failures[0]


class _Connection(http.client.HTTPConnection):
    response_class = DeadlineResponse


class _TLSConnection(http.client.HTTPSConnection):
    response_class = DeadlineResponse


class _Session:
    """One registry as the full client would reach it: same URL, TLS, limits and Basic credentials."""

    def __init__(self, registry: str, *, plain_http: bool | None, insecure: bool, ca_file: str | None):
        self.registry = registry
        url = urllib.parse.urlsplit(base_url(registry, plain_http=plain_http, insecure=insecure, ca_file=ca_file))
        self._https = url.scheme == "https"
        self._tls = tls_context(insecure=insecure, ca_file=ca_file) if self._https else None
        self._host = url.netloc
        self._read_timeout, self._deadline = read_timeout(), request_deadline()
        self._authorization: str | None = None
        self._lock = threading.Lock()

    def connect(self) -> http.client.HTTPConnection:
        if self._https:
            return _TLSConnection(self._host, timeout=CONNECT_TIMEOUT, context=self._tls)
        return _Connection(self._host, timeout=CONNECT_TIMEOUT)

    def expect(self, items: list[tuple]) -> None:
        """Each (path, reference, digest, cap) must be served as exactly those bytes, on one connection."""
        connection = self.connect()
        try:
            for path, reference, digest, cap in items:
                if self._get(connection, f"/v2/{path}/manifests/{reference}", cap) != digest:
                    raise _FallThrough
        finally:
            connection.close()

    def _get(self, connection: http.client.HTTPConnection, path: str, cap: int) -> str:
        """The digest of what the registry serves for ``path`` (answering a Basic challenge once)."""
        for attempt in range(2):
            headers = {"Accept": MANIFEST_ACCEPT, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if self._authorization:
                headers["Authorization"] = self._authorization
            status, challenge, digest = self._send(connection, path, headers, cap)
            if status == 200:
                return digest
            if status == 401 and challenge and attempt == 0:
                self._answer(challenge)
                continue
            raise _FallThrough  # 404, a redirect, a 5xx the full client would retry: its answer
        raise _FallThrough

    def _answer(self, challenge: str) -> None:
        """HTTP Basic with the credentials the full client would send; any other flow is the full path's."""
        from tufoci.credentials import lookup_credentials

        scheme, _ = parse_challenge(challenge)
        if scheme != "basic":
            raise _FallThrough  # the token flow (and whatever else) stays with the full client

        def no_helpers(name: str, registry: str) -> None:
            raise _FallThrough  # docker-credential-* helpers: a subprocess the full path runs

        credentials = lookup_credentials(self.registry, helper=no_helpers)
        if credentials is None:
            raise _FallThrough
        with self._lock:
            self._authorization = basic_authorization(credentials)

    def _send(self, connection: http.client.HTTPConnection, path: str, headers: dict[str, str],
              cap: int) -> tuple[int, str | None, str]:
        until = time.monotonic() + self._deadline
        overall = budget.until()
        until = until if overall is None else min(until, overall)
        left = until - time.monotonic()
        if left <= 0:
            raise _FallThrough
        connection.timeout = min(CONNECT_TIMEOUT, left)
        if connection.sock is None:
            connection.connect()
        connection.sock.settimeout(min(self._read_timeout, left))
        reading.until, reading.what = until, f"registry {self.registry} to answer GET {path}"
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            hasher, total = hashlib.sha256(), 0
            while chunk := response.read1(_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise _FallThrough
                hasher.update(chunk)
            response.close()  # read to its end: the connection serves the next request (http.client needs this)
        finally:
            reading.until = None
        if response.will_close:
            connection.close()
        return response.status, response.getheader("WWW-Authenticate"), f"sha256:{hasher.hexdigest()}"
