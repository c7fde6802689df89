"""Checks that the real-infrastructure test support works (registry, umoci, skopeo).

If these fail, every integration test built on tests/support is suspect, so
they exercise the real binaries end to end: no mocks.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    ToolError,
    build_image,
    build_index,
    images_available,
    layout_digest,
    push_image,
    skopeo_copy,
    skopeo_sync,
)
from tests.support.registry import (
    RegistryServer,
    RegistryStartError,
    parse_access_line,
    registry_available,
    write_htpasswd,
)

F = TypeVar("F", bound=Callable[..., Any])

_skip_no_registry = pytest.mark.skipif(
    not registry_available(), reason="docker-registry not installed (run scripts/install-system-deps)"
)


def needs_registry(fn: F) -> F:
    """Mark a test as using a real registry (pyproject's `registry` marker) and skip without one."""
    return cast(F, pytest.mark.registry(_skip_no_registry(fn)))


needs_image_tools = pytest.mark.skipif(
    not images_available(), reason="umoci/skopeo not installed (run scripts/install-system-deps)"
)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_parse_access_line() -> None:
    line = (
        '127.0.0.1 - - [21/Nov/2026:21:00:23 +0000] "PUT /v2/acme/web/manifests/1.0 HTTP/1.1" 201 0 "" "skopeo/1.9.3"'
    )
    parsed = parse_access_line(line)
    assert parsed is not None
    assert parsed.as_tuple() == ("PUT", "/v2/acme/web/manifests/1.0", 201)
    assert parsed.user_agent == "skopeo/1.9.3"
    assert parse_access_line('time="..." level=warning msg="No HTTP secret provided"') is None


@needs_registry
def test_registry_starts_counts_and_stops(tmp_path: Path) -> None:
    server = RegistryServer.start(tmp_path)
    try:
        assert server.host == f"127.0.0.1:{server.port}"
        assert server.url == f"http://{server.host}"
        assert server.root.is_dir()
        assert server.request_count() == 0  # readiness probes are not counted
        mark = server.mark()
        status, _, _ = server.request("GET", "/v2/")
        assert status == 200
        status, _, _ = server.request("GET", "/v2/acme/nope/tags/list")
        assert status == 404
        lines = server.access_log_lines(mark)
        assert [line.as_tuple() for line in lines] == [
            ("GET", "/v2/", 200),
            ("GET", "/v2/acme/nope/tags/list", 404),
        ]
        assert server.request_count(mark) == 2
        assert server.request_count() == mark + 2
    finally:
        server.stop()
    assert not server.running
    server.stop()  # idempotent
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0


@needs_registry
def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    with pytest.raises(RegistryStartError) as info:
        RegistryServer.start(tmp_path, extra_config={"storage": {"no-such-driver": {}}})
    assert "no-such-driver" in str(info.value)


@needs_registry
@needs_image_tools
def test_push_shows_in_tags_list_and_log(registry: RegistryServer, tmp_path: Path) -> None:
    layout = build_image(tmp_path / "img", b"payload one\n")
    mark = registry.mark()
    push_image(layout, "latest", f"{registry.host}/acme/web:1.0")
    pushed = registry.access_log_lines(mark)
    assert len(pushed) > 0
    assert ("PUT", "/v2/acme/web/manifests/1.0", 201) in [line.as_tuple() for line in pushed]

    # Independent of the helpers: plain urllib against the registry.
    import urllib.request

    with urllib.request.urlopen(f"{registry.url}/v2/acme/web/tags/list", timeout=5) as resp:
        assert json.load(resp) == {"name": "acme/web", "tags": ["1.0"]}
    assert registry.request_count(mark) == len(pushed) + 1

    status, headers, body = registry.request("GET", "/v2/acme/web/manifests/1.0", headers={"Accept": OCI_MANIFEST})
    assert status == 200
    assert headers["content-type"] == OCI_MANIFEST  # umoci omits mediaType in the body
    header_digest = headers["docker-content-digest"]
    assert _sha256(body) == header_digest == layout_digest(layout, "latest")


@needs_image_tools
def test_images_are_distinct_and_deterministic(tmp_path: Path) -> None:
    a = build_image(tmp_path / "a", b"alpha")
    b = build_image(tmp_path / "b", b"beta")
    again = build_image(tmp_path / "c", b"alpha")  # cache hit: copied layout
    assert layout_digest(a) != layout_digest(b)
    assert layout_digest(a) == layout_digest(again)
    assert again.parent == tmp_path / "c"
    arm = build_image(tmp_path / "a", b"alpha", architecture="arm64")
    assert layout_digest(arm) != layout_digest(a)


@needs_registry
@needs_image_tools
def test_sync_preserves_digests(registry: RegistryServer, registry2: RegistryServer, tmp_path: Path) -> None:
    for tag, payload in (("1.0", b"web 1.0\n"), ("2.0", b"web 2.0\n")):
        push_image(build_image(tmp_path / "img", payload), "latest", f"{registry.host}/acme/web:{tag}")

    dest_repo = skopeo_sync(f"{registry.host}/acme/web", f"{registry2.host}/acme")
    # skopeo keeps only the last component ("web") of the source repository.
    assert dest_repo == f"{registry2.host}/acme/web"
    assert sorted(registry2.tags("acme/web")) == ["1.0", "2.0"]

    for tag in ("1.0", "2.0"):
        src_body, src_digest = registry.get_manifest("acme/web", tag, accept=OCI_MANIFEST)
        dst_body, dst_digest = registry2.get_manifest("acme/web", tag, accept=OCI_MANIFEST)
        assert _sha256(src_body) == _sha256(dst_body) == src_digest == dst_digest

    # Sync into a different prefix: acme is not carried over.
    assert skopeo_sync(f"{registry.host}/acme/web:1.0", f"{registry2.host}/mirror") == f"{registry2.host}/mirror/web"
    assert registry2.tags("mirror/web") == ["1.0"]


@needs_registry
@needs_image_tools
def test_index_copy_all(registry: RegistryServer, registry2: RegistryServer, tmp_path: Path) -> None:
    layout = build_index(tmp_path / "idx")
    push_image(layout, "latest", f"{registry.host}/acme/multi:1.0", all_platforms=True)
    body, digest = registry.get_manifest("acme/multi", "1.0", accept=OCI_INDEX)
    index = json.loads(body)
    assert index["mediaType"] == OCI_INDEX
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    assert _sha256(body) == digest == layout_digest(layout, "latest")

    skopeo_copy(
        f"docker://{registry.host}/acme/multi:1.0", f"docker://{registry2.host}/acme/multi:1.0", all_platforms=True
    )
    body2, digest2 = registry2.get_manifest("acme/multi", "1.0", accept=OCI_INDEX)
    assert body2 == body and digest2 == digest
    for member in index["manifests"]:  # every platform's manifest came along
        registry2.get_manifest("acme/multi", member["digest"], accept=OCI_MANIFEST)


@needs_registry
@needs_image_tools
def test_htpasswd_auth(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    with RegistryServer.start(tmp_path, htpasswd=htpasswd) as server:
        status, headers, _ = server.request("GET", "/v2/")
        assert status == 401 and "basic" in headers.get("www-authenticate", "").lower()
        layout = build_image(tmp_path / "img", b"private\n")
        with pytest.raises(ToolError) as info:
            push_image(layout, "latest", f"{server.host}/acme/web:1.0")
        assert "unauthorized" in str(info.value).lower() or "authentication" in str(info.value).lower()
        push_image(layout, "latest", f"{server.host}/acme/web:1.0", dest_creds=("alice", "s3cret"))
        status, _, _ = server.request("GET", "/v2/acme/web/tags/list", credentials=("alice", "s3cret"))
        assert status == 200
