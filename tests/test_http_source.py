"""A trust pin can read metadata from a plain HTTP(S) TUF repository (a static mirror) while images
stay in a registry; `tufoci export-metadata` produces that mirror."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, publish_web

pytestmark = needs_registry


@pytest.fixture
def static_server(tmp_path: Path):
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_verify_through_an_http_metadata_mirror(registry, static_server, tmp_path: Path, home: Path, monkeypatch):
    directory, url = static_server
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    cluster = Machine("cluster", tmp_path, monkeypatch)
    maintainer.ok("export-metadata", scope, str(directory))
    assert sorted(p.name for p in directory.iterdir()) == [
        "1.root.json", "2.snapshot.json", "2.targets.json", "timestamp.json"]

    cluster.ok("trust", "add", scope, "--root", str(root), "--metadata", url)
    assert cluster.ok("verify", f"{scope}/web:1.0").stdout.startswith(f"{scope}/web@sha256:")
    assert cluster("publish", scope).exit_code != 0  # an HTTP source is read-only

    # a tampered mirror is rejected like a tampered registry
    targets = directory / "2.targets.json"
    targets.write_bytes(targets.read_bytes().replace(b'"length":', b'"length": '))
    (cluster.home / "cache").rename(cluster.home / "cache-before")
    assert cluster("verify", f"{scope}/web:1.0").exit_code == 12
