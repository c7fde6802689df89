"""10 containerd pulls of different images at once while a publisher moves and re-signs tags.

Seven images stay put; three ("hot") are moved by the publisher: first the
registry's tag moves to a new unsigned image, then the new digest is signed.
The clients pull in rounds for as long as the publisher works. Every pull must
land at a digest its tag was signed as when the pull ended (a digest is counted
as signed from just before its publish starts), never at the unsigned one the
registry's tag points at meanwhile; at the end the registry's tags move to
unsigned images once more and a last round must still get the signed ones.
The mirror refreshes every 0.5 s (freshness 1s).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Machine, init_scope_on, needs_registry, push_test_image
from tests.support.containerd import Containerd, containerd_available
from tests.support.mirror_server import SCOPE, UPSTREAM, MirrorProcess, write_mirror_config
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry
ROUNDS = 3


def test_concurrent_pulls_while_a_publisher_moves_tags_all_get_signed_digests(registry, tmp_path: Path, home: Path,
                                                                            monkeypatch):
    reason = containerd_available()
    if reason:
        pytest.skip(reason)
    scope = f"{registry.host}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)

    def push(name: str, payload: bytes) -> str:
        push_test_image(tmp_path, payload, f"{scope}/{name}:1.0")
        return open_repository(Repository(registry.host, f"acme/{name}")).get_manifest("1.0").digest

    names = [f"app{i}" for i in range(7)] + [f"hot{i}" for i in range(3)]
    signed = {name: {push(name, name.encode())} for name in names}  # every digest each tag was ever signed as
    maintainer.ok("target", "add", "--publish", *(f"{scope}/{name}:1.0" for name in names))
    latest = {name: next(iter(digests)) for name, digests in signed.items()}
    lock = threading.Lock()

    # the publisher starts once every client has pulled once, and each client pulls until it got the last
    # signed digest: the pulls overlap the publishes however slow the machine is (a test worker among others)
    first_pulls = threading.Barrier(len(names) + 1)

    def publisher() -> None:
        first_pulls.wait(timeout=120)
        for n in range(1, 3):
            moved = {name: push(name, f"{name} v{n}".encode()) for name in names[7:]}  # unsigned for now
            with lock:
                for name, digest in moved.items():
                    signed[name].add(digest)
            latest.update(moved)
            maintainer.ok("target", "add", "--publish", *(f"{scope}/{name}:1.0" for name in names[7:]))

    config = write_mirror_config(tmp_path / "mirror.yaml", registry.host, root, freshness="1s", default=False)
    mirror = MirrorProcess.start(tmp_path / "mirror", config)
    node = Containerd.start(tmp_path / "containerd")
    node.mirror(UPSTREAM, f"http://{mirror.host}")

    def pull(name: str) -> str:
        result = node.pull(f"{SCOPE}/{name}:1.0")
        assert result.returncode == 0, (name, result.stderr, mirror.log()[-3000:])
        digest = node.image_digest(f"{SCOPE}/{name}:1.0")
        with lock:
            assert digest in signed[name], (name, digest, signed[name])  # signed when the pull ended
        return digest

    def pulls(name: str) -> list[str]:
        got = [pull(name)]
        first_pulls.wait(timeout=120)
        deadline = time.monotonic() + 120
        while publishing.is_alive() or len(got) < ROUNDS or (got[-1] != latest[name] and time.monotonic() < deadline):
            got.append(pull(name))
        return got

    publishing = threading.Thread(target=publisher)
    try:
        publishing.start()
        with ThreadPoolExecutor(len(names)) as clients:
            results = dict(zip(names, clients.map(pulls, names), strict=True))
        publishing.join(120)
        for name in names[7:]:
            push(name, f"{name} unsigned".encode())  # the registry's tag moves once more, never signed
        final = {name: pull(name) for name in names}
    finally:
        node.stop()
        mirror.stop()
    assert not publishing.is_alive()
    for name in names[7:]:
        assert len(set(results[name])) >= 2, results[name]  # the pulls did see the publisher's changes
    assert final == latest  # the last signed digests, not the registry's last (unsigned) moves
