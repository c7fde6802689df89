"""Resolving many tags at once: ``get_manifests`` over pipelined bare connections (store/manifest_batch.py).

The batch transport must give exactly what one ``get_manifest`` per tag gives, on a
real registry (plain HTTP, and TLS with basic auth), and must hand every answer it
does not understand back to the regular client, which retries or reports it: a
missing tag, a chunked body, a server hanging up in the middle of a pipeline, a
stalled answer, a body over the size cap. Those answers come from a proxy in
front of a real registry (tests/support/tamper_proxy.py).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import init_scope, needs_registry, ok, run_tufoci
from tests.support.registry import RegistryServer, write_htpasswd
from tests.support.tamper_proxy import Exchange, Reply, TamperProxy, endless, on
from tests.support.tls import TLSRegistryServer, make_server_pki
from tufoci.credentials import Credentials
from tufoci.errors import ContentMismatchError, NotFoundError, TooLargeError
from tufoci.layout_spec import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from tufoci.registry_config import RegistryConfig, TLSFlags
from tufoci.registry_options import RegistryOptions
from tufoci.store.manifest_batch import DEPTH, Endpoint, fetch_in_order, fetch_manifests
from tufoci.store.registry import BATCH_MIN, RegistryClient, RegistryRepository

pytestmark = needs_registry

REPO = "acme/app"
TAGS = [f"v{i:03d}" for i in range(3 * DEPTH + 5)]  # more than one pipeline's worth on each connection


def push_tags(repository: RegistryRepository, tags: list[str]) -> dict[str, str]:
    """One distinct image manifest per tag, plus an index as ``multi``; {tag: digest of the bytes pushed}."""
    config = repository.put_blob(b"{}")
    pushed = {}
    for tag in tags:
        body = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "layers": [],
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "annotations": {"tag": tag},
        }).encode()
        repository.put_manifest(tag, body, MANIFEST_MEDIA_TYPE)
        pushed[tag] = "sha256:" + hashlib.sha256(body).hexdigest()
    first = pushed[tags[0]]
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [
        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": first, "size": 10,
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    repository.put_manifest("multi", index, INDEX_MEDIA_TYPE)
    pushed["multi"] = "sha256:" + hashlib.sha256(index).hexdigest()
    return pushed


def manifest_gets(server: RegistryServer, since: int) -> list[str]:
    return [line.path for line in server.access_log_lines(since)
            if line.method == "GET" and "/manifests/" in line.path]


@pytest.fixture
def upstream(registry: RegistryServer) -> tuple[RegistryServer, dict[str, str]]:
    return registry, push_tags(RegistryClient(registry.host).repository(REPO), TAGS)


@pytest.fixture
def regular_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The references the regular client (``get_manifest``) fetched, in order."""
    reads: list[str] = []
    original = RegistryRepository.get_manifest

    def get_manifest(self, reference: str, **options):
        reads.append(reference)
        return original(self, reference, **options)

    monkeypatch.setattr(RegistryRepository, "get_manifest", get_manifest)
    return reads


def test_a_batch_gives_what_one_request_per_tag_gives(upstream, regular_reads):
    server, pushed = upstream
    references = [*TAGS, "multi", pushed[TAGS[1]]]  # a tag, an index and a digest
    mark = server.mark()
    batch = RegistryClient(server.host).repository(REPO).get_manifests(references)
    assert len(manifest_gets(server, mark)) == len(references)  # each read once
    assert regular_reads == [TAGS[0]]  # the first answers the auth challenge; the rest came batched
    single = RegistryClient(server.host).repository(REPO)
    assert [(m.digest, m.content_type, m.data) for m in batch] == [
        (m.digest, m.content_type, m.data) for m in (single.get_manifest(r) for r in references)]
    assert [m.digest for m in batch[: len(TAGS) + 1]] == [pushed[r] for r in [*TAGS, "multi"]]
    assert batch[len(TAGS)].content_type == INDEX_MEDIA_TYPE


def test_few_references_go_through_the_regular_client(upstream, regular_reads):
    server, pushed = upstream
    got = RegistryClient(server.host).repository(REPO).get_manifests(TAGS[: BATCH_MIN - 1])
    assert [m.digest for m in got] == [pushed[t] for t in TAGS[: BATCH_MIN - 1]]
    assert regular_reads == TAGS[: BATCH_MIN - 1]


def _with_ca(ca_file: Path) -> RegistryOptions:
    return RegistryOptions(RegistryConfig(TLSFlags(ca_file=str(ca_file))))


def test_over_tls_with_basic_auth_every_request_carries_the_credentials(tmp_path: Path, regular_reads):
    pki = make_server_pki(tmp_path / "pki")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "pw-1234"})
    with TLSRegistryServer.start_tls(tmp_path, pki, htpasswd=htpasswd, credentials=("alice", "pw-1234")) as server:
        client = RegistryClient(server.host, _with_ca(pki.ca_file), credentials=Credentials("alice", "pw-1234"))
        pushed = push_tags(client.repository(REPO), TAGS[:20])
        mark = server.mark()
        got = RegistryClient(server.host, _with_ca(pki.ca_file),
                             credentials=Credentials("alice", "pw-1234")).repository(REPO).get_manifests(TAGS[:20])
        assert [m.digest for m in got] == [pushed[t] for t in TAGS[:20]]
        statuses = [line.status for line in server.access_log_lines(mark) if "/manifests/" in line.path]
        assert statuses == [401] + [200] * 20  # one challenge, then the batch reuses the answer
        assert regular_reads == [TAGS[0]]  # over TLS too, everything after the first came batched


# -- answers the batch transport leaves to the regular client -------------------------------------------------

def _once(reply: Callable[[Exchange], Reply]) -> Callable[[Exchange], Reply | None]:
    """``reply`` the first time only; later requests for the same path reach the registry."""
    done, lock = set(), threading.Lock()

    def rule(exchange: Exchange) -> Reply | None:
        with lock:
            if exchange.path in done:
                return None
            done.add(exchange.path)
        return reply(exchange)

    return rule


def _chunked(exchange: Exchange) -> Reply:
    answer = exchange.upstream()
    headers = [(k, v) for k, v in answer.headers if k.lower() != "content-length"]
    return Reply(answer.status, headers, iter([answer.data[:7], answer.data[7:]]))


def _hang_up(exchange: Exchange) -> Reply:
    answer = exchange.upstream()  # announces more than it sends, then closes: the pipeline behind it is lost
    return answer.with_header("Content-Length", str(len(answer.data) + 100))


def _gzipped(exchange: Exchange) -> Reply:
    answer = exchange.upstream()  # the regular client decodes it; hashing the gzip bytes would sign garbage
    return answer.with_body(gzip.compress(answer.data)).with_header("Content-Encoding", "gzip")


CASES = {
    # name: (the tag the proxy interferes with, how); only that tag falls back to the regular client
    "gzip-encoded body": (TAGS[20], _once(_gzipped)),
    "chunked body": (TAGS[40], _once(_chunked)),
    "hangs up mid-pipeline": (TAGS[5], _once(_hang_up)),
    "not found once (a tag caught mid-push)": (TAGS[9], _once(lambda ex: Reply(404, [], b"{}"))),
}


@pytest.fixture
def proxy(upstream) -> Iterator[TamperProxy]:
    server, _ = upstream
    with TamperProxy.start(server.host) as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_an_answer_it_cannot_use_is_fetched_again_by_the_regular_client(case, upstream, proxy, regular_reads):
    _, pushed = upstream
    tag, rule = CASES[case]
    proxy.add(on(f"/v2/{REPO}/manifests/{tag}", rule))
    got = RegistryClient(proxy.host).repository(REPO).get_manifests(TAGS)
    assert [m.digest for m in got] == [pushed[t] for t in TAGS]
    # only that tag fell back: the requests queued behind it on a lost connection went out again batched
    assert regular_reads == [TAGS[0], tag]
    assert proxy.paths("GET").count(f"/v2/{REPO}/manifests/{tag}") == 2


STOPS = {
    # a server gone quiet, or a token that ran out: the regular client takes over what is left
    "stalls past the deadline": lambda ex: Reply(200, list(ex.upstream().headers), ex.upstream().data, stall=6.0),
    "401: the token ran out": lambda ex: Reply(401, [("WWW-Authenticate", 'Basic realm="r"')], b"{}"),
}


@pytest.mark.parametrize("case", STOPS, ids=list(STOPS))
def test_a_stall_or_a_401_ends_the_batch(case, upstream, proxy, regular_reads):
    _, pushed = upstream
    tag = TAGS[30]
    proxy.add(on(f"/v2/{REPO}/manifests/{tag}", _once(STOPS[case])))
    # a deadline short enough for the test, long enough for the proxy to serve the fallback on a busy machine
    client = RegistryClient(proxy.host, RegistryOptions(deadline=3.0), credentials=Credentials("u", "p"))
    got = client.repository(REPO).get_manifests(TAGS)
    assert [m.digest for m in got] == [pushed[t] for t in TAGS]
    assert tag in regular_reads and len(regular_reads) > 2  # not only that tag: the batch stopped


def test_a_missing_tag_fails_the_batch_naming_it(upstream, proxy):
    proxy.add(on(f"/v2/{REPO}/manifests/{TAGS[30]}", lambda ex: Reply(404, [], b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')))
    with pytest.raises(NotFoundError, match=f"{REPO}:{TAGS[30]}: not found"):
        RegistryClient(proxy.host).repository(REPO).get_manifests(TAGS)


def test_a_body_over_the_cap_is_refused_without_being_read(upstream, proxy):
    big = lambda ex: Reply(200, [("Content-Type", MANIFEST_MEDIA_TYPE), ("Content-Length", str(64 << 20))],
                           endless(proxy=proxy))
    proxy.add(on(f"/v2/{REPO}/manifests/{TAGS[12]}", big))
    with pytest.raises(TooLargeError):
        RegistryClient(proxy.host).repository(REPO).get_manifests(TAGS)


def test_a_manifest_asked_for_by_digest_must_hash_to_it(upstream, proxy):
    _, pushed = upstream
    digest = pushed[TAGS[3]]
    other = lambda ex: ex.upstream().with_body(ex.upstream().data.replace(b'"tag"', b'"TAG"'))
    proxy.add(on(f"/v2/{REPO}/manifests/{digest}", other))
    with pytest.raises(ContentMismatchError, match="hash to sha256:"):
        RegistryClient(proxy.host).repository(REPO).get_manifests([*TAGS[:20], digest])


def test_target_add_stages_the_digests_of_many_tags_across_repositories(registry, home, tmp_path, regular_reads):
    """``target add`` groups references by repository (two batches and a lone tag), then signs and publishes."""
    scope = init_scope(f"{registry.host}/acme", tmp_path).name
    client = RegistryClient(registry.host)
    app = push_tags(client.repository("acme/app"), TAGS[:12])
    api = push_tags(client.repository("acme/api"), TAGS[:10])
    solo = push_tags(client.repository("acme/solo"), TAGS[:1])
    refs = [f"{scope}/app:{t}" for t in TAGS[:12]] + [f"{scope}/solo:{TAGS[0]}"] + \
        [f"{scope}/api:{t}" for t in [*TAGS[:10], "multi"]]
    result = ok(run_tufoci("target", "add", "--publish", "-o", "json", *refs))
    staged = json.loads(result.stdout)["staged"]
    expected = [("app", t, app[t]) for t in TAGS[:12]] + [("solo", TAGS[0], solo[TAGS[0]])] + \
        [("api", t, api[t]) for t in [*TAGS[:10], "multi"]]
    assert [(c["target"], c["digest"]) for c in staged] == [(f"{repo}:{tag}", d) for repo, tag, d in expected]
    image_reads = [r for r in regular_reads if r in TAGS or r == "multi"]
    assert image_reads == [TAGS[0]] * 3  # each repository's first tag: the rest came batched
    verified = ok(run_tufoci("verify", f"{scope}/api:{TAGS[9]}", "-o", "json"))
    assert api[TAGS[9]] in verified.stdout


# -- framing: answers no real registry sends, from a server that sends exactly the bytes a test gives ------------

def body_of(tag: str) -> bytes:
    return json.dumps({"tag": tag}).encode()


def plain(tag: str, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in ["HTTP/1.1 200 OK", f"Content-Type: {MANIFEST_MEDIA_TYPE}",
                                               f"Content-Length: {len(body_of(tag))}", *extra])
    return head.encode() + b"\r\n" + body_of(tag)


class RawServer:
    """Loopback HTTP/1.1: each request gets ``answer(tag, n)`` (n: its position on that connection) sent as
    is; ``None`` keeps quiet until the test ends, ``b""`` hangs up."""

    def __init__(self, answer: Callable[[str, int], bytes | None]):
        self.answer, self.paths, self.heads = answer, [], []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def endpoint(self, read_timeout: float = 5.0) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, f"127.0.0.1:{self.port}", None, 5.0, read_timeout, 10.0)

    def close(self) -> None:
        self._done.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client may hang up on an answer it refused
            self._answer_all(conn)

    def _answer_all(self, conn: socket.socket) -> None:
        buffer, served = b"", 0
        while chunk := conn.recv(65536):
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                self.paths.append(path)
                self.heads.append(head)
                data = self.answer(path.rsplit("/", 1)[1], served)
                served += 1
                if data is None:
                    self._done.wait()
                if not data:
                    return
                conn.sendall(data)


FRAMING = {
    # name: (answer, the tags the batch must leave to the caller)
    "a 304 claiming a body": (lambda t, n: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 11\r\n\r\n"
                              if t == "t03" else plain(t), ["t03"]),
    "a 204 claiming a body": (lambda t, n: b"HTTP/1.1 204 No Content\r\nContent-Length: 11\r\n\r\n"
                              if t == "t03" else plain(t), ["t03"]),
    "Content-Encoding twice": (lambda t, n: plain(t, "Content-Encoding: gzip", "Content-Encoding: identity")
                               if t == "t05" else plain(t), ["t05"]),
    "Content-Length twice": (lambda t, n: plain(t, "Content-Length: 11") if t == "t05" else plain(t), ["t05"]),
    "a folded header line": (lambda t, n: plain(t, "X-Note: a", " folded") if t == "t07" else plain(t), ["t07"]),
    "a bare LF hiding a header": (lambda t, n: plain(t, "X-Note: a\nContent-Length: 0") if t == "t07"
                                  else plain(t), ["t07"]),
    "a status code of other digits": (lambda t, n: plain(t).replace(b"200", "2²0".encode("latin-1"), 1)
                                      if t == "t08" else plain(t), ["t08"]),
    "a signed Content-Length": (lambda t, n: plain(t).replace(b"Content-Length: ", b"Content-Length: +", 1)
                                if t == "t08" else plain(t), ["t08"]),
    "HTTP/1.0, closing after each answer": (lambda t, n: plain(t).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
                                            if n == 0 else b"", []),
    "Connection: close after two": (lambda t, n: plain(t, "Connection: keep-alive, close") if n == 1
                                    else plain(t) if n < 1 else b"", []),
    "hangs up before a few": (lambda t, n: b"" if t in ("t02", "t11") else plain(t), ["t02", "t11"]),
}
FRAMING_TAGS = [f"t{i:02d}" for i in range(40)]


@pytest.mark.parametrize("case", FRAMING, ids=list(FRAMING))
def test_an_answer_framed_oddly_is_never_given_to_another_tag(case, monkeypatch):
    crashed = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    answer, left_expected = FRAMING[case]
    server = RawServer(answer)
    try:
        fetched, left = fetch_manifests(server.endpoint(), REPO, FRAMING_TAGS, {}, max_bytes=1 << 20,
                                        connections=2, depth=8)
    finally:
        server.close()
    assert {t: m.data for t, m in fetched.items()} == {t: body_of(t) for t in FRAMING_TAGS if t not in left}
    assert left == left_expected
    assert not crashed


IN_ORDER = {
    # name: (answer, how many answers fetch_in_order returns for t00..t04, the statuses it returns)
    "every answer a plain 200": (lambda t, n: plain(t), [200] * 5),
    "a 401 first: nothing after it is read": (lambda t, n: b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
                                              if n == 0 else plain(t), [401]),
    "a 404 in the middle": (lambda t, n: b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}" if n == 2
                            else plain(t), [200, 200, 404]),
    "Connection: close after the second": (lambda t, n: plain(t, "Connection: close") if n == 1 else plain(t),
                                           [200, 200]),
}


@pytest.mark.parametrize("case", IN_ORDER, ids=list(IN_ORDER))
def test_in_order_answers_stop_where_the_connection_cannot_go_on(case):
    """The warm verify's pipeline (timestamp and tags, any repositories, one write): each answer belongs to
    its position; after one that ends the connection nothing more is read, so nothing is given to another."""
    answer, statuses = IN_ORDER[case]
    server = RawServer(answer)
    tags = FRAMING_TAGS[:5]
    requests = [(REPO if i % 2 else "acme/tuf", t, 1 << 20) for i, t in enumerate(tags)]
    try:
        answers = fetch_in_order(server.endpoint(), requests, {})
    finally:
        server.close()
    assert [a.status for a in answers] == statuses
    assert [a.body for a in answers if a.status == 200] == [body_of(t) for t, s in zip(tags, statuses, strict=False)
                                                            if s == 200]
    asked = [f"/v2/{repository}/manifests/{tag}" for repository, tag, _ in requests]
    assert server.paths and server.paths == asked[:len(server.paths)]  # in order (the server may stop reading)


def test_in_order_refuses_anything_that_could_add_a_request():
    server = RawServer(lambda t, n: plain(t))
    try:
        with pytest.raises(ValueError):
            fetch_in_order(server.endpoint(), [(REPO, "t00", 1 << 20), (f"{REPO}\r\nX: y", "t01", 1 << 20)], {})
    finally:
        server.close()
    assert server.paths == []


@pytest.mark.parametrize("answer", [lambda t, n: plain(t) if n == 0 else None, lambda t, n: None],
                         ids=["answers only the first of a pipeline", "never answers"])
def test_a_server_gone_quiet_ends_the_batch_within_one_read_timeout(answer):
    server = RawServer(answer)
    started = time.monotonic()
    try:
        fetched, left = fetch_manifests(server.endpoint(read_timeout=0.5), REPO, FRAMING_TAGS, {},
                                        max_bytes=1 << 20, connections=2, depth=8)
    finally:
        server.close()
    assert time.monotonic() - started < 5  # one read timeout, not one per round of pipelines (9.6 s before)
    assert sorted([*fetched, *left]) == FRAMING_TAGS and left
    assert all(m.data == body_of(t) for t, m in fetched.items())


@pytest.mark.parametrize("repository, headers", [
    (REPO, {"Authorization": "Bearer x\r\n\r\nGET /v2/acme/app/manifests/evil HTTP/1.1\r\nHost: h"}),
    ("acme/app/manifests/evil HTTP/1.1\r\nHost: h\r\n\r\nGET /v2/acme/app", {}),
], ids=["a token with a line break", "a repository path with one"])
def test_nothing_that_could_add_a_request_goes_into_a_pipeline(repository, headers):
    server = RawServer(lambda t, n: plain(t))
    try:
        fetched, left = fetch_manifests(server.endpoint(), repository, FRAMING_TAGS, headers, max_bytes=1 << 20)
    finally:
        server.close()
    assert (fetched, left, server.paths) == ({}, FRAMING_TAGS, [])


@pytest.mark.parametrize("registry, host, port, header", [
    ("127.0.0.1:5000", "127.0.0.1", 5000, "127.0.0.1:5000"),
    ("Registry.Example.com", "registry.example.com", 443, "registry.example.com"),
    ("ghcr.io:443", "ghcr.io", 443, "ghcr.io"),
    ("[::1]:5000", "::1", 5000, "[::1]:5000"),
    ("localhost:80", "localhost", 80, "localhost"),
])
def test_the_batch_connects_and_names_the_host_as_the_regular_client_does(registry, host, port, header):
    endpoint = RegistryClient(registry).endpoint()
    assert (endpoint.host, endpoint.port, endpoint.host_header) == (host, port, header)
    assert (endpoint.tls is None) == registry.startswith(("127.", "[::1]", "localhost"))  # loopback: plain HTTP


def test_verify_checks_a_repository_s_tags_in_one_batch_and_reports_each_failure_on_its_own(
        registry, home, tmp_path, regular_reads):
    scope = init_scope(f"{registry.host}/acme", tmp_path).name
    repository = RegistryClient(registry.host).repository("acme/app")
    pushed = push_tags(repository, TAGS[:12])
    refs = [f"{scope}/app:{t}" for t in TAGS[:12]]
    ok(run_tufoci("target", "add", "--publish", *refs))

    regular_reads.clear()
    verified = json.loads(ok(run_tufoci("verify", "-o", "json", *refs)).stdout)["results"]
    assert [r["digest"] for r in verified] == [pushed[t] for t in TAGS[:12]]
    assert [r for r in regular_reads if r in TAGS] == [TAGS[0]]  # the other 11 tags: one batch

    repository.put_manifest(  # v003 now serves other bytes
        TAGS[3], json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "layers": [],
                             "config": json.loads(repository.get_manifest(TAGS[0]).data)["config"]}).encode(),
        MANIFEST_MEDIA_TYPE)
    result = run_tufoci("verify", "-o", "json", *refs)
    assert result.exit_code == 11
    failed = {r["reference"]: r["error"]["type"] for r in json.loads(result.stdout)["results"] if not r["verified"]}
    assert failed == {refs[3]: "DigestMismatchError"}

    status, _, _ = registry.request("DELETE", f"/v2/acme/app/manifests/{pushed[TAGS[5]]}")
    assert status == 202  # v005 is gone: the batch fails
    result = run_tufoci("verify", "-o", "json", *refs)
    failed = {r["reference"]: r["error"]["type"] for r in json.loads(result.stdout)["results"] if not r["verified"]}
    assert failed == {refs[3]: "DigestMismatchError", refs[5]: "NotFoundError"}  # each tag read alone then


# -- the warm verify's pipeline (client/fast_verify.py): it prints only what hashes to the record's digests ----------

def redirect(tag: str) -> bytes:
    return f"HTTP/1.1 307 Temporary Redirect\r\nLocation: /v2/{REPO}/manifests/{tag}\r\nContent-Length: 0\r\n\r\n".encode()


UNAUTHORIZED = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n'
HOSTILE_PIPELINE = {
    # name: answer(tag, n) to the timestamp manifest and four tags, asked in one pipeline
    "two answers swapped": lambda t, n: plain({"t01": "t02", "t02": "t01"}.get(t, t)),
    "an unsolicited answer first": lambda t, n: plain("t00") + plain(t) if n == 0 else plain(t),
    "the answer of another request": lambda t, n: plain("t00") if n == 3 else plain(t),
    "a 401 on the second answer only": lambda t, n: UNAUTHORIZED if n == 1 else plain(t),
    "a redirect mid-pipeline": lambda t, n: redirect(t) if n == 2 else plain(t),
    "a HEAD-like empty body": lambda t, n: plain(t).replace(f"Content-Length: {len(body_of(t))}".encode(),
                                                            b"Content-Length: 0").removesuffix(body_of(t))
                                            if n == 3 else plain(t),
    "a length that swallows the next answer": lambda t, n: plain(t).replace(
        f"Content-Length: {len(body_of(t))}".encode(), f"Content-Length: {len(body_of(t) + plain('t02'))}".encode())
        if n == 1 else plain(t),
    "a chunked body": lambda t, n: plain(t, "Transfer-Encoding: chunked") if n == 1 else plain(t),
    "a body over the cap": lambda t, n: plain(t).replace(f"Content-Length: {len(body_of(t))}".encode(),
                                                         b"Content-Length: 999999999") if n == 4 else plain(t),
    "the last answer cut short": lambda t, n: plain(t)[:-3] if n == 4 else plain(t),
}


def expect_pipelined(server: RawServer, registry: RegistryOptions = RegistryOptions(read_timeout=1.0)) -> None:
    """client/fast_verify.py's registry step for t00 (as the timestamp manifest) and t01..t04, each expected to
    be its own ``body_of``: returns when the fast path may answer, raises (it falls through) otherwise."""
    from tufoci.client.fast_verify import _expect_all
    from tufoci.reference import parse_repository

    requests = [(parse_repository(f"127.0.0.1:{server.port}/{'acme/tuf' if i == 0 else REPO}"), t,
                 "sha256:" + hashlib.sha256(body_of(t)).hexdigest(), 1 << 20) for i, t in enumerate(FRAMING_TAGS[:5])]
    _expect_all(requests, registry)


@pytest.mark.parametrize("case", HOSTILE_PIPELINE, ids=list(HOSTILE_PIPELINE))
def test_the_warm_verify_answers_only_when_every_pipelined_answer_hashes_to_the_record(case):
    """Answers tie to requests by position alone: however a registry reorders, adds, splits or reframes them,
    the fast path answers only when each position's bytes hash to what the record holds for it (which an
    honest registry would serve too); anything else raises, and ``fast_verify`` runs the full path."""
    honest = RawServer(lambda t, n: plain(t))
    try:
        expect_pipelined(honest)  # the control: the same requests, answered as they should be
    finally:
        honest.close()
    hostile = RawServer(HOSTILE_PIPELINE[case])
    try:
        with pytest.raises(Exception):  # noqa: B017,PT011  (any: fast_verify turns every one into the full path)
            expect_pipelined(hostile)
    finally:
        hostile.close()


@pytest.mark.parametrize("host, sent", [(None, True), ("elsewhere.example:5000", False)])
def test_the_warm_verify_sends_credentials_only_to_the_host_they_name(host, sent):
    """A Basic challenge on the first answer is answered with the credentials of the host connected to (the
    full client's lookup); credentials that name another registry are not sent: the full path decides."""
    from tufoci.registry_options import CredentialSource

    def answer(tag: str, n: int) -> bytes:
        return plain(tag) if b"authorization: basic" in server.heads[-1].lower() else UNAUTHORIZED

    server = RawServer(answer)
    credentials = CredentialSource(username="alice", password="s3cret", host=host or f"127.0.0.1:{server.port}")
    try:
        if sent:
            expect_pipelined(server, RegistryOptions(credentials=credentials, read_timeout=1.0))
        else:
            with pytest.raises(Exception):  # noqa: B017,PT011  (the fast path's fall-through)
                expect_pipelined(server, RegistryOptions(credentials=credentials, read_timeout=1.0))
    finally:
        server.close()
    assert any(b"authorization" in head.lower() for head in server.heads) == sent
    assert "s3cret" not in repr(RegistryOptions(credentials=credentials, read_timeout=1.0))


def test_each_address_of_the_host_is_tried_until_one_answers(upstream, monkeypatch: pytest.MonkeyPatch):
    """Plain HTTP connects on ``_socket`` itself (issue 19: ``import socket`` is ~2 ms of a warm verify), so it
    does what ``socket.create_connection`` did: an address that refuses is followed by the next, and when
    every one refuses, the connection fails (OSError: the caller's regular client takes over)."""
    import _socket

    from tests.support.processes import free_port
    from tufoci.registry_http import MANIFEST_ACCEPT, endpoint
    from tufoci.store import manifest_batch

    server, pushed = upstream
    resolve, refused = _socket.getaddrinfo, free_port()
    tried: list[int] = []

    def addresses(host, port, *rest):  # a host with two addresses: the first one refuses
        answer = resolve(host, refused, *rest) + resolve(host, port, *rest)
        tried.extend(address[4][1] for address in answer)
        return answer

    monkeypatch.setattr(manifest_batch._socket, "getaddrinfo", addresses)
    base = endpoint(f"http://{server.host}", tls=None, read_timeout=10, deadline=30)
    (answer,) = fetch_in_order(base, [(REPO, TAGS[0], 1 << 20)], {"Accept": MANIFEST_ACCEPT})
    assert answer.status == 200 and "sha256:" + hashlib.sha256(answer.body).hexdigest() == pushed[TAGS[0]]
    assert tried == [refused, base.port]

    monkeypatch.setattr(manifest_batch._socket, "getaddrinfo", lambda host, port, *rest: resolve(host, refused, *rest))
    with pytest.raises(ConnectionRefusedError):
        fetch_in_order(base, [(REPO, TAGS[0], 1 << 20)], {})


@contextlib.contextmanager
def _never_accepting() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connection to it neither succeeds nor is refused (the
    kernel drops the handshake), as a remote host that never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # the one connection the queue holds
    try:
        yield port
    finally:
        filler.close()
        listener.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain HTTP", "TLS"])
def test_a_host_of_many_silent_addresses_is_given_up_on_within_the_budget(tls, monkeypatch: pytest.MonkeyPatch):
    """Each address of a host is tried in turn, as ``socket.create_connection`` does, but within one connect
    timeout (and the ``--timeout`` budget) in all: create_connection gives every address the whole timeout, so
    a registry name resolving to many addresses that never answer held a warm verify (or its worker threads)
    that many times its budget before the full path even started. Review of session 6 (§11.4)."""
    import _socket
    import ssl

    from tufoci.store import manifest_batch

    with _never_accepting() as port:
        resolve = _socket.getaddrinfo
        monkeypatch.setattr(manifest_batch._socket, "getaddrinfo",
                            lambda host, _port, *rest: resolve("127.0.0.1", port, *rest) * 4)
        started = time.monotonic()
        base = Endpoint("127.0.0.1", port, f"127.0.0.1:{port}", ssl.create_default_context() if tls else None,
                        30.0, 30.0, 30.0, started + 0.6)
        with pytest.raises(TimeoutError):
            fetch_in_order(base, [(REPO, TAGS[0], 1 << 20)], {})
        assert time.monotonic() - started < 1.5  # the budget (0.6 s), not four times it (2.4 s)
