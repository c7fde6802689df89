"""Resolving many tags at once: ``get_manifests`` over pipelined bare connections (store/manifest_batch.py).

The batch transport must give exactly what one ``get_manifest`` per tag gives, on a
real registry (plain HTTP, and TLS with basic auth), and must hand every answer it
does not understand back to the regular client, which retries or reports it: a
missing tag, a chunked body, a server hanging up in the middle of a pipeline, a
stalled answer, a body over the size cap. Those answers come from a proxy in
front of a real registry (tests/support/tamper_proxy.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
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
from tufoci.store.registry import BATCH_MIN, RegistryClient, RegistryRepository
from tufoci.store.manifest_batch import DEPTH

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


def test_over_tls_with_basic_auth_every_request_carries_the_credentials(tmp_path: Path):
    pki = make_server_pki(tmp_path / "pki")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "pw-1234"})
    with TLSRegistryServer.start_tls(tmp_path, pki, htpasswd=htpasswd, credentials=("alice", "pw-1234")) as server:
        client = RegistryClient(server.host, ca_file=str(pki.ca_file), credentials=Credentials("alice", "pw-1234"))
        pushed = push_tags(client.repository(REPO), TAGS[:20])
        mark = server.mark()
        got = RegistryClient(server.host, ca_file=str(pki.ca_file),
                             credentials=Credentials("alice", "pw-1234")).repository(REPO).get_manifests(TAGS[:20])
        assert [m.digest for m in got] == [pushed[t] for t in TAGS[:20]]
        statuses = [line.status for line in server.access_log_lines(mark) if "/manifests/" in line.path]
        assert statuses == [401] + [200] * 20  # one challenge, then the batch reuses the answer


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


def _stall(exchange: Exchange) -> Reply:
    answer = exchange.upstream()
    return Reply(answer.status, list(answer.headers), answer.data, stall=2.0)


def _gzipped(exchange: Exchange) -> Reply:
    answer = exchange.upstream()  # the regular client decodes it; hashing the gzip bytes would sign garbage
    return answer.with_body(gzip.compress(answer.data)).with_header("Content-Encoding", "gzip")


CASES = {
    "gzip-encoded body": (TAGS[20], _once(_gzipped)),
    # name: (the tag the proxy interferes with, how)
    "chunked body": (TAGS[40], _once(_chunked)),
    "hangs up mid-pipeline": (TAGS[5], _once(_hang_up)),
    "stalls past the deadline": (TAGS[70], _once(_stall)),
    "not found once (a tag caught mid-push)": (TAGS[9], _once(lambda ex: Reply(404, [], b"{}"))),
}


@pytest.fixture
def proxy(upstream) -> Iterator[TamperProxy]:
    server, _ = upstream
    with TamperProxy.start(server.host) as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_an_answer_it_cannot_use_is_fetched_again_by_the_regular_client(case, upstream, proxy, monkeypatch,
                                                                       regular_reads):
    _, pushed = upstream
    tag, rule = CASES[case]
    monkeypatch.setenv("TUFOCI_REGISTRY_DEADLINE", "1")
    proxy.add(on(f"/v2/{REPO}/manifests/{tag}", rule))
    got = RegistryClient(proxy.host).repository(REPO).get_manifests(TAGS)
    assert [m.digest for m in got] == [pushed[t] for t in TAGS]
    # only that tag fell back: the requests queued behind it on a lost connection went out again batched
    assert regular_reads == [TAGS[0], tag]
    assert proxy.paths("GET").count(f"/v2/{REPO}/manifests/{tag}") == 2


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
    with pytest.raises(ContentMismatchError, match=f"hash to sha256:"):
        RegistryClient(proxy.host).repository(REPO).get_manifests([*TAGS[:20], digest])


def test_target_add_stages_the_digests_of_many_tags_across_repositories(registry, home, tmp_path, regular_reads):
    """``target add`` groups references by repository: two batches and a lone tag, then signs and publishes."""
    scope = init_scope(f"{registry.host}/acme", tmp_path).name
    client = RegistryClient(registry.host)
    app = push_tags(client.repository("acme/app"), TAGS[:12])
    api = push_tags(client.repository("acme/api"), TAGS[:10])
    refs = [f"{scope}/app:{t}" for t in TAGS[:12]] + [f"{scope}/api:{t}" for t in TAGS[:10]] + [f"{scope}/api:multi"]
    result = ok(run_tufoci("target", "add", "--publish", "-o", "json", *refs))
    staged = json.loads(result.stdout)["staged"]
    expected = [("app", t, app[t]) for t in TAGS[:12]] + [("api", t, api[t]) for t in [*TAGS[:10], "multi"]]
    assert [(c["target"], c["digest"]) for c in staged] == [(f"{repo}:{tag}", d) for repo, tag, d in expected]
    image_reads = [r for r in regular_reads if r in TAGS or r == "multi"]
    assert image_reads == [TAGS[0], TAGS[0]]  # each repository's first tag: the rest came batched
    verified = ok(run_tufoci("verify", f"{scope}/api:{TAGS[9]}", "-o", "json"))
    assert api[TAGS[9]] in verified.stdout
