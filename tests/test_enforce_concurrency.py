"""200 concurrent admissions while a publisher re-signs a tag: every answer right, no digest ever crosses images.

A known failure of a peer under parallel load is to patch one container with
another container's digest. Here 20 clients send 200 Pods mixing signed tags,
a tag being re-signed meanwhile, unsigned tags, tag+digest pairs whose digest
belongs to another image ("moved"), digest-only references and exempt images,
over kept-alive HTTPS connections; the webhook refreshes every second
(freshness 2s) while the publisher publishes new versions of ``hot:1.0``. The
second half of the admissions waits until the first new version has been
published for W, so the run sees the tag change under load, whatever the speed
of the machine.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import Machine, init_scope_on, needs_registry, push_test_image
from tests.support.admission_server import WebhookProcess, decode_patch, pod_review, write_policy
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry

CLIENTS = 20
ADMISSIONS = 200


def test_concurrent_admissions_while_a_publisher_moves_a_tag(registry, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)

    def push(name: str, payload: bytes) -> str:
        push_test_image(tmp_path, payload, f"{scope}/{name}")
        repository, tag = name.split(":")
        return open_repository(Repository(registry.host, f"acme/{repository}")).get_manifest(tag).digest

    signed = {f"{scope}/app{i}:1.0": push(f"app{i}:1.0", f"app {i}".encode()) for i in range(4)}
    hot = f"{scope}/hot:1.0"
    hot_versions = [push("hot:1.0", b"hot 0")]
    unsigned = {f"{scope}/unsigned{i}:1.0": push(f"unsigned{i}:1.0", f"unsigned {i}".encode()) for i in range(2)}
    maintainer.ok("target", "add", "--publish", *signed, hot)
    next_hot = [push(f"hot:v{n}", f"hot {n}".encode()) for n in range(1, 4)]  # later pushed to hot:1.0 and signed

    server = WebhookProcess.start(tmp_path / "webhook", write_policy(tmp_path / "policy.yaml", {scope: root},
                                                                     freshness="2s"))
    lock = threading.Lock()
    hot_signed = set(hot_versions)  # every digest hot:1.0 was ever signed as

    def publisher() -> None:
        for n, digest in enumerate(next_hot, start=1):
            # the tag moves in the registry first (unsigned for a moment), then the new digest is signed
            push_test_image(tmp_path, f"hot {n}".encode(), hot)
            with lock:
                hot_signed.add(digest)
            maintainer.ok("target", "add", "--publish", hot)
            if not first_published.is_set():
                first_seen.append(time.monotonic() + 2.0)  # every view is at most W old: it has seen it
                first_published.set()

    # image as written -> (allowed, repository it must be pinned in, digests it may be pinned to; None: hot's)
    table: dict[str, tuple[bool, str | None, set[str] | None]] = {"registry.k8s.io/pause:3.9": (True, None, None)}
    apps = list(signed)
    for i, ref in enumerate(apps):
        repository = ref.rsplit(":", 1)[0]
        table[ref] = (True, repository, {signed[ref]})
        table[f"{repository}@{signed[ref]}"] = (True, repository, {signed[ref]})  # digest only
        table[f"{ref}@{signed[apps[(i + 1) % 4]]}"] = (False, None, None)  # moved: another image's digest
    table[hot] = (True, f"{scope}/hot", None)
    table.update({ref: (False, None, None) for ref in unsigned})
    rng = random.Random(13)
    pods = [rng.sample(sorted(table), rng.randint(1, 4)) for _ in range(ADMISSIONS)]
    local = threading.local()

    first_published, first_seen = threading.Event(), []

    def admit(job: tuple[int, list[str]]) -> tuple[list[str], dict]:
        index, images = job
        if not hasattr(local, "client"):
            local.client = server.apiserver()
        if index >= ADMISSIONS // 2:
            assert first_published.wait(120)
            time.sleep(max(0.0, first_seen[0] - time.monotonic()))
        elif publishing.is_alive():
            time.sleep(0.2)  # spread the first half over the first publish
        return images, server.review("mutate", pod_review(images), client=local.client)

    publishing = threading.Thread(target=publisher)
    try:
        publishing.start()
        with ThreadPoolExecutor(CLIENTS) as clients:
            results = list(clients.map(admit, enumerate(pods)))
        publishing.join(120)
    finally:
        server.stop()

    hot_answers = set()
    for images, response in results:
        denied = [image for image in images if not table[image][0]]
        assert response["allowed"] is not denied, (images, response)
        if denied:
            assert "patch" not in response
            assert all(f"{image}: " in response["status"]["message"] for image in denied), response
            continue
        replaced = {op["path"]: op["value"] for op in decode_patch(response) or [] if op["op"] == "replace"}
        for index, image in enumerate(images):
            value = replaced.get(f"/spec/containers/{index}/image", image)
            _, repository, digests = table[image]
            if repository is None:  # exempt: untouched
                assert value == image
                continue
            name, digest = value.split("@")
            assert name == repository, (image, value)  # never another image's repository...
            if digests is None:
                hot_answers.add(digest)
            else:
                assert digest in digests, (image, value)  # ...nor another image's digest
    assert hot_answers <= hot_signed  # only digests hot:1.0 was signed as at some point
    assert len(hot_answers) >= 2  # and the webhook did see the publisher's changes during the run
    assert len(hot_signed) == 4 and not publishing.is_alive()
