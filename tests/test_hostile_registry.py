"""A hostile registry: every answer of the registry is the attacker's (issue "a hostile registry").

A ``TamperProxy`` sits where the registry would be. Consumers pin the scope at the
proxy's address (metadata never names a registry) and every test makes the
proxy lie in one way. Each attack must fail with its documented exit code and a
one-line message, leave the consumer's trusted cache byte for byte as it was,
and once the proxy stops lying, ``verify`` prints exactly what it printed before.

The honest world (one real registry, two trust repositories, two publishes) is
built once per module; the registry itself is never modified by a test: what the
attacker serves exists only in the proxy. Forged metadata signed with the online
key models the compromise of the timestamp/snapshot key, which TUF must still
contain (rollback, freeze and mix-and-match of targets).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, Signature

from tests.conftest import CliResult, Machine, needs_registry, push_test_image
from tests.support.registry import RegistryServer, registry_available
from tests.support.tamper_proxy import Exchange, Reply, TamperProxy, endless, on, require_basic_auth
from tests.test_attacks_core import cache_snapshot
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, build_metadata_manifest, parse_metadata_manifest
from tufoci.reference import Repository
from tufoci.store import open_repository
from tufoci.store.registry import registry_client

pytestmark = needs_registry

OCI = MANIFEST_MEDIA_TYPE
STALL_TIMEOUT = "0.5"  # TUFOCI_REGISTRY_TIMEOUT for every test: loopback answers in milliseconds
DEADLINE = "2"  # TUFOCI_REGISTRY_DEADLINE


# ---------------------------------------------------------------------------------------------- the world


@dataclass
class World:
    """The honest state, built once: what the proxy forwards to, and what attackers replay."""

    registry: RegistryServer
    base: Path
    maintainer: Path
    roots: dict[str, Path]  # scope name -> root v1 to pin
    digests: dict[str, str]  # "acme/web:1.0" -> manifest digest
    manifests: dict[str, bytes]  # "acme/web:evil" -> manifest bytes
    timestamps: dict[str, bytes]  # "A" / "B" -> acme's timestamp manifest after that publish
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # "acme/snapshot.3" -> (digest, bytes)

    def file(self, name: str) -> tuple[str, bytes]:
        return self.files[name]


def _collect_files(world: World, scope: str) -> None:
    store = open_repository(Repository(world.registry.host, f"{scope}/tuf"))
    for tag in store.list_tags():
        if tag == "timestamp" or tag.startswith(("staged.", "sig.")):
            continue
        layer = parse_metadata_manifest(store.get_manifest(tag).data).layer
        world.files[f"{scope}/{tag}"] = (layer.digest, store.get_blob(layer.digest, max_bytes=layer.size))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    if not registry_available():
        pytest.skip("docker-registry is not installed")
    base = tmp_path_factory.mktemp("hostile-world")
    mp = pytest.MonkeyPatch()
    mp.setenv("TUFOCI_PASSPHRASE", "correct horse")
    mp.setenv("DOCKER_CONFIG", str(base / "docker-config"))
    registry = RegistryServer.start(base)
    try:
        maintainer = Machine("maintainer", base, mp)
        host = registry.host
        images = {
            "acme/web:1.0": b"web 1.0", "acme/web:1.1": b"web 1.1", "acme/web:evil": b"evil",
            "acme/other:1.0": b"other 1.0", "acme/team/app:1.0": b"team 1.0", "acme/team/app:1.1": b"team 1.1",
            "rot/web:1.0": b"web 1.0",
        }
        for ref, payload in images.items():
            push_test_image(base, payload, f"{host}/{ref}")
        manifests = {ref: registry.get_manifest(ref.split(":")[0], ref.split(":")[1])[0] for ref in images}
        digests = {ref: "sha256:" + hashlib.sha256(data).hexdigest() for ref, data in manifests.items()}

        for name, options in (("root", ()), ("rot-root", ()), ("targets", ()), ("online", ("--unencrypted",)),
                              ("team", ())):
            maintainer.new_key(name, *options)
        roots = {}
        # distinct root keys: two scopes with byte-identical roots would share one client cache
        for scope, root_key in (("acme", "root"), ("rot", "rot-root")):
            roots[scope] = base / f"{scope}-root.json"
            maintainer.ok("init", f"{host}/{scope}", "--root-key", root_key, "--targets-key", "targets",
                          "--online-key", "online", "--root-out", str(roots[scope]))

        # acme, publish A: targets v2, team v1, snapshot v2, timestamp v2
        acme = f"{host}/acme"
        maintainer.ok("delegate", acme, "team", "--key", "team", "--path", "team/*")
        maintainer.ok("target", "add", f"{acme}/web:1.0", f"{acme}/other:1.0")
        maintainer.ok("target", "add", "--role", "team", f"{acme}/team/app:1.0")
        maintainer.ok("publish", acme)
        timestamps = {"A": registry.get_manifest("acme/tuf", "timestamp")[0]}
        # acme, publish B: targets v3, team v2, snapshot v3, timestamp v3
        maintainer.ok("target", "add", f"{acme}/web:1.1")
        maintainer.ok("target", "add", "--role", "team", f"{acme}/team/app:1.1")
        maintainer.ok("publish", acme)
        timestamps["B"] = registry.get_manifest("acme/tuf", "timestamp")[0]

        # rot: root v2 rotates the online key, so a client pinned to root v1 cannot do without root v2
        rot = f"{host}/rot"
        maintainer.ok("target", "add", f"{rot}/web:1.0")
        maintainer.ok("publish", rot)
        maintainer.new_key("online2", "--unencrypted")
        for role in ("snapshot", "timestamp"):
            maintainer.ok("rotate", rot, role, "--add-key", "online2", "--remove-key", "online")
        assert json.loads(maintainer.ok("publish", rot, "-o", "json").stdout)["published"]["root"] == 2

        w = World(registry, base, maintainer.home, roots, digests, manifests, timestamps)
        _collect_files(w, "acme")
        _collect_files(w, "rot")
        yield w
    finally:
        registry.stop()
        mp.undo()


# ---------------------------------------------------------------------------------------------- per test


class Hostile:
    """One test's hostile registry (a proxy in front of the world's registry) and its consumer."""

    def __init__(self, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.world, self.tmp_path, self.monkeypatch = world, tmp_path, monkeypatch
        self.proxy = TamperProxy.start(world.registry.host)
        self.host = self.proxy.host
        self.consumer = Machine("consumer", tmp_path, monkeypatch)

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"

    def pinned(self, name: str) -> str:
        """What an honest verify prints for ``name`` (``acme/web:1.0``): the repository at the signed digest."""
        repository, _, _ = name.partition(":")
        return f"{self.host}/{repository}@{self.world.digests[name]}\n"

    def trust(self, scope: str = "acme", machine: Machine | None = None) -> Machine:
        machine = machine or self.consumer
        machine.ok("trust", "add", self.ref(scope), "--root", str(self.world.roots[scope]))
        return machine

    def at(self, state: str) -> Machine:
        """A consumer whose trusted cache holds publish ``state`` (A or B) of acme: the proxy serves that
        publish's timestamp, and every other file is then read by the digests it names."""
        self.trust()
        self.proxy.add(serve_manifest("acme/tuf", "timestamp", self.world.timestamps[state]))
        self.consumer.ok("verify", self.ref("acme/web:1.0"))
        self.proxy.clear()
        return self.consumer

    def attack(self, ref: str, *rules, code: int, message: str | tuple[str, ...],
               within: float = 15.0, machine: Machine | None = None) -> CliResult:
        """Verify ``ref`` while ``rules`` lie: assert the code, the one-line message and the
        unchanged cache; then, with the proxy honest again, the output an honest verify gives."""
        machine = machine or self.consumer
        before = cache_snapshot(machine.home)
        # after the attack's own rules: the timestamp manifest loses its snapshot hint (layout §5.2), so the
        # snapshot blob is read and can be attacked; test_an_altered_snapshot_hint_is_ignored covers the hint
        self.proxy.add(*rules, on(r"/v2/acme/tuf/manifests/timestamp",
                                  upstream_with(lambda m: _edit_snapshot_hint(m, None))))
        started = time.monotonic()
        result = machine("verify", ref)
        elapsed = time.monotonic() - started
        self.proxy.clear()
        assert_rejected(result, code, message)
        assert elapsed < within, f"took {elapsed:.1f} s"
        assert cache_snapshot(machine.home) == before, "the trusted cache changed"
        honest = machine("verify", ref)
        assert honest.exit_code == 0, honest.stderr
        assert honest.stdout == self.pinned(ref.split("/", 1)[1])
        return result


def assert_rejected(result: CliResult, code: int, message: str | tuple[str, ...]) -> None:
    assert result.exit_code == code, f"exit {result.exit_code} (wanted {code}): {result.stderr}"
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("tufoci: error: "), result.stderr
    for fragment in (message,) if isinstance(message, str) else message:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"


@pytest.fixture
def hostile(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hostile]:
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "correct horse")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("TUFOCI_REGISTRY_TIMEOUT", STALL_TIMEOUT)
    monkeypatch.setenv("TUFOCI_REGISTRY_DEADLINE", DEADLINE)
    h = Hostile(world, tmp_path, monkeypatch)
    try:
        yield h
    finally:
        h.proxy.stop()


# ---------------------------------------------------------------------------------------------- rules


def serve_manifest(repo: str, reference: str, data: bytes, media_type: str = OCI, **headers: str) -> Callable:
    return on(rf"/v2/{repo}/manifests/{re.escape(reference)}",
              lambda ex: Reply(200, [("Content-Type", media_type), *headers.items()], data))


def serve_blob(repo: str, digest: str, data: bytes) -> Callable:
    return on(rf"/v2/{repo}/blobs/{digest}", lambda ex: Reply(200, [("Content-Type", "application/octet-stream")], data))


def serve_files(repo: str, files: dict[str, bytes]) -> Callable:
    """Serve blobs that exist only in the attacker's hands (forged metadata), by digest."""

    def rule(ex: Exchange) -> Reply | None:
        prefix = f"/v2/{repo}/blobs/"
        if ex.method == "GET" and ex.path.startswith(prefix) and ex.path[len(prefix):] in files:
            return Reply(200, [("Content-Type", "application/octet-stream")], files[ex.path[len(prefix):]])
        return None

    return rule


def flip(data: bytes) -> bytes:
    """The same length, one bit different."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


def upstream_with(transform: Callable[[bytes], bytes], **headers: str) -> Callable[[Exchange], Reply]:
    def reply(ex: Exchange) -> Reply:
        answer = ex.upstream().with_body(transform(ex.upstream().data))
        for name, value in headers.items():
            answer = answer.with_header(name.replace("_", "-"), value)
        return answer

    return reply


# ---------------------------------------------------------------------------------------------- forging


class Forger:
    """What an attacker holding the online (timestamp/snapshot) key can sign."""

    def __init__(self, world: World, scope: str = "acme"):
        from tufoci.keys import env_secrets_handler, signer_for
        from tufoci.state import State

        self.world, self.scope = world, scope
        state = State.open(str(world.maintainer))
        keyid = state.key_named("online").keyid
        self.online = signer_for(state, keyid, env_secrets_handler())
        self.blobs: dict[str, bytes] = {}

    def metadata(self, tag: str) -> Metadata:
        return Metadata.from_bytes(self.world.file(f"{self.scope}/{tag}")[1])

    @staticmethod
    def to_bytes(md: Metadata) -> bytes:
        from tufoci.repo_tool.versions import to_bytes

        return to_bytes(md)

    def sign(self, md: Metadata, *, version: int | None = None, expires: datetime.datetime | None = None) -> bytes:
        if version is not None:
            md.signed.version = version
        md.signed.expires = expires or datetime.datetime.now(datetime.UTC).replace(microsecond=0) + \
            datetime.timedelta(hours=1)
        md.signatures.clear()
        md.sign(self.online)
        data = self.to_bytes(md)
        self.blobs["sha256:" + hashlib.sha256(data).hexdigest()] = data
        return data

    def snapshot(self, roles: dict[str, tuple[int, bytes]], version: int, **options) -> bytes:
        """A snapshot listing ``roles`` (role -> (version, the bytes to list))."""
        md = self.metadata("snapshot.3")
        for role, (role_version, data) in roles.items():
            md.signed.meta[f"{role}.json"] = MetaFile(role_version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})
        return self.sign(md, version=version, **options)

    def timestamp(self, snapshot_version: int, snapshot: bytes, version: int, **options) -> bytes:
        md = Metadata.from_bytes(base64.b64decode(json.loads(self.world.timestamps["B"])["annotations"]
                                                  ["dev.tufoci.hint.timestamp"]))
        md.signed.snapshot_meta = MetaFile(snapshot_version, len(snapshot), {"sha256": hashlib.sha256(snapshot).hexdigest()})
        return self.sign(md, version=version, **options)

    def rules(self, timestamp: bytes, *, root_version: int = 1) -> list[Callable]:
        """Serve ``timestamp`` as the live one, and every forged blob by digest."""
        manifest = build_metadata_manifest("timestamp", json.loads(timestamp)["signed"]["version"], timestamp,
                                           root_version=root_version)
        return [serve_manifest(f"{self.scope}/tuf", "timestamp", manifest), serve_files(f"{self.scope}/tuf", self.blobs)]


# ---------------------------------------------------------------------------------------------- tests


def test_through_an_honest_proxy_everything_verifies(hostile, world):
    hostile.trust()
    result = hostile.consumer.ok("verify", hostile.ref("acme/web:1.0"), hostile.ref("acme/team/app:1.1"))
    assert result.stdout == hostile.pinned("acme/web:1.0") + hostile.pinned("acme/team/app:1.1")


# -- bytes that are not what was asked for ---------------------------------------------------------------

ALTERED = {
    # what is altered -> (the consumer's cache: publish A, or none; the reference verified; the rule)
    # the snapshot rides on the timestamp manifest (layout §5.2): without the hint, or with the hint altered
    # too, the client reads the blob
    "snapshot blob": ("A", "acme/web:1.0", lambda w: on(rf"/v2/acme/tuf/blobs/{w.file('acme/snapshot.3')[0]}",
                                                         upstream_with(flip))),
    "snapshot hint and blob": ("A", "acme/web:1.0", lambda w: (
        on(r"/v2/acme/tuf/manifests/timestamp", upstream_with(lambda m: _edit_snapshot_hint(m, flip))),
        on(rf"/v2/acme/tuf/blobs/{w.file('acme/snapshot.3')[0]}", upstream_with(flip)))),
    "targets blob": ("A", "acme/web:1.0", lambda w: on(rf"/v2/acme/tuf/blobs/{w.file('acme/targets.3')[0]}",
                                                        upstream_with(flip))),
    "delegated role blob": ("A", "acme/team/app:1.0",
                            lambda w: on(rf"/v2/acme/tuf/blobs/{w.file('acme/d.team.2')[0]}", upstream_with(flip))),
    "timestamp bytes, manifest and inline hint rewritten to match": (None, "acme/web:1.0", lambda w: on(
        r"/v2/acme/tuf/manifests/timestamp", lambda ex: ex.upstream().with_body(_tamper_timestamp(ex.upstream().data)))),
}


def _edit_snapshot_hint(manifest: bytes, transform: Callable[[bytes], bytes] | None) -> bytes:
    """The timestamp manifest without its snapshot hint (``None``) or with the hint's bytes transformed."""
    doc = json.loads(manifest)
    hint = doc["annotations"].pop("dev.tufoci.hint.snapshot", None)
    if hint is None:
        return manifest
    if transform is not None:
        doc["annotations"]["dev.tufoci.hint.snapshot"] = base64.b64encode(transform(base64.b64decode(hint))).decode()
    return json.dumps(doc).encode()


def _tamper_timestamp(manifest: bytes) -> bytes:
    """The timestamp manifest with a consistent layer digest and inline hint for altered bytes (the
    snapshot version it lists, 3 -> 4): the manifest is only an untrusted pointer, so nothing but the TUF
    signature check can catch this."""
    doc = json.loads(manifest)
    data = bytearray(base64.b64decode(doc["annotations"]["dev.tufoci.hint.timestamp"]))
    data[data.index(b'"version":') + len('"version":')] += 1  # version 3 -> 4
    doc["annotations"]["dev.tufoci.hint.timestamp"] = base64.b64encode(bytes(data)).decode()
    doc["layers"][0]["digest"] = "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
    return json.dumps(doc).encode()


@pytest.mark.parametrize("what", list(ALTERED))
def test_metadata_bytes_that_differ_from_the_requested_digest_exit_12(hostile, world, what):
    state, ref, rule = ALTERED[what]
    if state:
        hostile.at(state)
    else:
        hostile.trust()
    message = "not signed by enough of the keys" if what.startswith("timestamp") else "hash differently"
    rules = rule(world)
    hostile.attack(hostile.ref(ref), *(rules if isinstance(rules, tuple) else (rules,)), code=12,
                   message=("metadata rejected", message))


def test_an_altered_snapshot_hint_is_ignored(hostile, world):
    """A hint that does not hash to what the timestamp lists is never served: the blob is read instead."""
    hostile.at("A")
    hostile.proxy.add(on(r"/v2/acme/tuf/manifests/timestamp", upstream_with(lambda m: _edit_snapshot_hint(m, flip))))
    result = hostile.consumer("verify", hostile.ref("acme/web:1.0"))
    hostile.proxy.clear()
    assert result.exit_code == 0, result.stderr
    assert result.stdout == hostile.pinned("acme/web:1.0")


def test_an_image_manifest_that_differs_from_the_signed_digest_exits_11(hostile, world):
    hostile.at("B")
    served = world.manifests["acme/web:1.0"] + b" "  # one byte more: the same JSON, another digest
    result = hostile.attack(hostile.ref("acme/web:1.0"), serve_manifest("acme/web", "1.0", served), code=11,
                            message=("sha256:" + hashlib.sha256(served).hexdigest(), world.digests["acme/web:1.0"]))
    assert "deploy " + hostile.pinned("acme/web:1.0").strip() in result.stderr


def test_a_manifest_fetched_by_digest_must_hash_to_it(hostile, world):
    """Maintainer side: `target add REF@DIGEST` reads the manifest by digest; other bytes are refused."""
    maintainer = clone_maintainer(hostile)
    ref = hostile.ref("acme/web:1.0") + "@" + world.digests["acme/web:1.0"]
    hostile.proxy.add(on(r"/v2/acme/web/manifests/sha256:.*", upstream_with(lambda data: data + b" ")))
    result = maintainer("target", "add", ref)
    assert_rejected(result, 13, ("served bytes that hash to", "acme/web"))


# -- Docker-Content-Digest is ignored ------------------------------------------------------------------------


def test_a_lying_docker_content_digest_header_is_ignored(hostile, world):
    hostile.trust()
    lie = "sha256:" + "0" * 64
    hostile.proxy.add(lambda ex: ex.upstream().with_header("Docker-Content-Digest", lie))
    result = hostile.consumer.ok("verify", hostile.ref("acme/web:1.0"))
    assert result.stdout == hostile.pinned("acme/web:1.0")
    lied_on = {r.path.split("/")[-2] for r in hostile.proxy.requests}
    assert {"manifests", "blobs"} <= lied_on  # metadata manifest, metadata blobs and the image manifest


@pytest.mark.parametrize("where", ["image manifest", "metadata blob"])
def test_a_lying_docker_content_digest_does_not_excuse_wrong_bytes(hostile, world, where):
    hostile.at("B" if where == "image manifest" else "A")
    if where == "image manifest":  # evil bytes, announced as the signed digest
        rule = serve_manifest("acme/web", "1.0", world.manifests["acme/web:evil"],
                              **{"Docker-Content-Digest": world.digests["acme/web:1.0"]})
        hostile.attack(hostile.ref("acme/web:1.0"), rule, code=11, message=world.digests["acme/web:evil"])
    else:
        digest = world.file("acme/targets.3")[0]
        rule = on(rf"/v2/acme/tuf/blobs/{digest}", upstream_with(flip, Docker_Content_Digest=digest))
        hostile.attack(hostile.ref("acme/web:1.0"), rule, code=12, message="hash differently")


# -- moved tags --------------------------------------------------------------------------------------------

MOVED = {
    "an unsigned image": "acme/web:evil",
    "an image signed for another tag": "acme/web:1.1",
    "an image of another repository": "acme/other:1.0",
}


@pytest.mark.parametrize("to", list(MOVED))
def test_a_tag_moved_to_another_image_exits_11_naming_both_digests(hostile, world, to):
    hostile.at("B")  # the metadata is honest here: a fresh cache would rightly be filled
    source = MOVED[to]
    rule = serve_manifest("acme/web", "1.0", world.manifests[source])
    hostile.attack(hostile.ref("acme/web:1.0"), rule, code=11,
                   message=(f"the registry serves {world.digests[source]}",
                            f"the signed digest is {world.digests['acme/web:1.0']}"))


# -- rollback ------------------------------------------------------------------------------------------------


def test_rollback_of_the_timestamp_exits_12(hostile, world):
    hostile.at("B")
    rule = serve_manifest("acme/tuf", "timestamp", world.timestamps["A"])
    hostile.attack(hostile.ref("acme/web:1.0"), rule, code=12,
                   message=("a rollback", "timestamp version 2 must be >= 3"))


REPLAYED = {  # an older version's bytes served for the file the live timestamp/snapshot names
    "snapshot": ("acme/snapshot.3", "acme/snapshot.2", "acme/web:1.0"),
    "targets": ("acme/targets.3", "acme/targets.2", "acme/web:1.0"),
    "delegated role": ("acme/d.team.2", "acme/d.team.1", "acme/team/app:1.0"),
}


@pytest.mark.parametrize("role", list(REPLAYED))
def test_rollback_by_replaying_an_older_file_exits_12(hostile, world, role):
    new, old, ref = REPLAYED[role]
    hostile.at("A")
    rule = serve_blob("acme/tuf", world.file(new)[0], world.file(old)[1])
    hostile.attack(hostile.ref(ref), rule, code=12, message=("metadata rejected", "hash differently"))


SIGNED_ROLLBACK = {  # with the online key the attacker signs a newer timestamp/snapshot naming older files
    "snapshot": ("New snapshot version must be >= 3, got version 2",),
    "targets": ("Expected targets.json version 2, got 3",),  # python-tuf's words: new 2, trusted 3
    "delegated role": ("Expected team.json version 1, got 2",),
}


@pytest.mark.parametrize("role", list(SIGNED_ROLLBACK))
def test_rollback_signed_with_a_stolen_online_key_exits_12(hostile, world, role):
    hostile.at("B")
    forger = Forger(world)
    if role == "snapshot":
        snapshot_version, snapshot = 2, world.file("acme/snapshot.2")[1]
    else:
        tag, name, version = {"targets": ("targets.2", "targets", 2), "delegated role": ("d.team.1", "team", 1)}[role]
        snapshot_version = 4
        snapshot = forger.snapshot({name: (version, world.file(f"acme/{tag}")[1])}, version=4)
    timestamp = forger.timestamp(snapshot_version, snapshot, version=4)
    ref = "acme/team/app:1.0" if role == "delegated role" else "acme/web:1.0"
    hostile.attack(hostile.ref(ref), *forger.rules(timestamp), code=12,
                   message=("a rollback", *SIGNED_ROLLBACK[role]))


def test_rollback_of_root_exits_12(hostile, world):
    """The (unsigned) root hint claims a root v3; root.1 is served under root.3."""
    hostile.trust("rot")
    hostile.consumer.ok("verify", hostile.ref("rot/web:1.0"))  # now on root v2
    timestamp = json.loads(world.registry.get_manifest("rot/tuf", "timestamp")[0])
    timestamp["annotations"]["dev.tufoci.hint.root-version"] = "3"
    root1 = world.registry.get_manifest("rot/tuf", "root.1")[0]
    rules = [serve_manifest("rot/tuf", "timestamp", json.dumps(timestamp).encode()),
             serve_manifest("rot/tuf", "root.3", root1)]
    hostile.attack(hostile.ref("rot/web:1.0"), *rules, code=12,
                   message=("a rollback", "root version 3 instead got version 1"))


def clone_maintainer(hostile: Hostile) -> Machine:
    """A copy of the world's maintainer machine that reaches the registry through the proxy."""
    home = hostile.tmp_path / "maintainer"
    shutil.copytree(hostile.world.maintainer, home)
    machine = Machine("maintainer", hostile.tmp_path, hostile.monkeypatch)
    hostile.trust("acme", machine)
    return machine


# -- freeze --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian faketime is needed")
def test_freeze_a_held_back_timestamp_expires_exit_12(hostile, world):
    """Two days later the registry still serves the timestamp it held back: a real process under faketime."""
    consumer = hostile.at("B")
    before = cache_snapshot(consumer.home)
    hostile.proxy.add(serve_manifest("acme/tuf", "timestamp", world.timestamps["B"]))  # nothing newer gets through
    tufoci = str(Path(sys.executable).with_name("tufoci"))
    env = {**os.environ, "TUFOCI_HOME": str(consumer.home), "TUFOCI_NO_AGENT": "1"}
    done = subprocess.run(["faketime", "-f", "+2d", tufoci, "verify", hostile.ref("acme/web:1.0")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert_rejected(CliResult(done.returncode, done.stdout, done.stderr), 12, ("timestamp expired", "tufoci timestamp"))
    assert cache_snapshot(consumer.home) == before
    hostile.proxy.clear()
    assert consumer.ok("verify", hostile.ref("acme/web:1.0")).stdout == hostile.pinned("acme/web:1.0")


@pytest.mark.parametrize("role", ["timestamp", "snapshot"])
def test_freeze_validly_signed_but_expired_metadata_exits_12(hostile, world, role):
    hostile.at("A")
    forger = Forger(world)
    past = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(minutes=5)
    if role == "snapshot":
        snapshot = forger.snapshot({}, version=4, expires=past)
        timestamp = forger.timestamp(4, snapshot, version=4)
    else:
        timestamp = forger.timestamp(3, world.file("acme/snapshot.3")[1], version=4, expires=past)
    hostile.attack(hostile.ref("acme/web:1.0"), *forger.rules(timestamp), code=12, message=f"{role} expired")


# -- mix-and-match -------------------------------------------------------------------------------------------

MIXED = {
    # the live timestamp served, {file asked for: file served instead}, why it fails: every file after the
    # timestamp is read by the digest and capped at the length its (signed) parent lists
    "snapshot of publish A under timestamp B": ("B", {"acme/snapshot.3": "acme/snapshot.2"}, "hash differently"),
    "targets of publish B under snapshot A": ("A", {"acme/targets.2": "acme/targets.3"}, "sent more than"),
    "delegated role of publish B under snapshot A": ("A", {"acme/d.team.1": "acme/d.team.2"}, "sent more than"),
}


@pytest.mark.parametrize("mix", list(MIXED))
def test_mix_and_match_of_files_from_different_publishes_exits_12(hostile, world, mix):
    live, swaps, why = MIXED[mix]
    hostile.trust()
    rules = [serve_manifest("acme/tuf", "timestamp", _edit_snapshot_hint(world.timestamps[live], None))]
    rules += [serve_blob("acme/tuf", world.file(asked)[0], world.file(served)[1]) for asked, served in swaps.items()]
    ref = "acme/team/app:1.0" if "delegated" in mix else "acme/web:1.0"
    hostile.attack(hostile.ref(ref), *rules, code=12, message=("metadata rejected", why))


def test_mix_and_match_signed_with_a_stolen_online_key_exits_12(hostile, world):
    """The attacker's snapshot lists targets v3 with the hashes of targets v2: the bytes match the
    hashes, but their version does not match the version the snapshot lists."""
    hostile.trust()
    forger = Forger(world)
    snapshot = forger.snapshot({"targets": (3, world.file("acme/targets.2")[1])}, version=4)
    hostile.attack(hostile.ref("acme/web:1.0"), *forger.rules(forger.timestamp(4, snapshot, version=4)), code=12,
                   message=("a rollback", "Expected targets v3, got v2"))


# -- endless data --------------------------------------------------------------------------------------------


def _endless_rule(path: str, hostile: Hostile, **options) -> Callable:
    return on(path, lambda ex: Reply(200, [("Content-Type", "application/octet-stream")],
                                     endless(proxy=hostile.proxy, **options)))


ENDLESS = {
    # where, consumer cache, code, message
    "snapshot blob, larger than listed": ("A", 12, "sent more than 594 bytes"),
    "snapshot blob, never-ending chunked body": ("A", 12, "sent more than 594 bytes"),
    "timestamp manifest, never-ending chunked body": ("A", 12, "sent more than 131072 bytes"),
    "image manifest, never-ending chunked body": ("B", 13, "sent more than 4194304 bytes"),
    "image manifest, larger than signed": ("B", 11, "the signed digest is"),
}


@pytest.mark.parametrize("where", list(ENDLESS))
def test_endless_data_is_cut_off(hostile, world, where):
    state, code, message = ENDLESS[where]
    hostile.at(state)
    snapshot = rf"/v2/acme/tuf/blobs/{world.file('acme/snapshot.3')[0]}"
    rule = {
        "snapshot blob, larger than listed": on(snapshot, upstream_with(lambda data: data + b" " * 100_000)),
        "snapshot blob, never-ending chunked body": _endless_rule(snapshot, hostile),
        "timestamp manifest, never-ending chunked body": _endless_rule(r"/v2/acme/tuf/manifests/timestamp", hostile),
        "image manifest, never-ending chunked body": _endless_rule(r"/v2/acme/web/manifests/1.0", hostile),
        "image manifest, larger than signed": on(r"/v2/acme/web/manifests/1\.0",
                                                 upstream_with(lambda data: data + b" " * 1_000_000)),
    }[where]
    hostile.attack(hostile.ref("acme/web:1.0"), rule, code=code, message=message, within=5)


# -- slow retrieval ------------------------------------------------------------------------------------------

STALLS = {
    # what the registry does -> (consumer cache, rule factory, message)
    "never answers": ("A", lambda h, w: on(r"/v2/acme/tuf/manifests/timestamp", lambda ex: Reply(stall=60)),
                      "timed out"),
    "sends headers, then nothing": ("A", lambda h, w: _endless_rule(r"/v2/acme/tuf/manifests/timestamp", h, delay=60),
                                    "timed out"),
    "drips a chunked body": ("A", lambda h, w: _endless_rule(r"/v2/acme/tuf/manifests/timestamp", h, chunk=b"x",
                                                             delay=0.1), "did not finish a response within 2 s"),
    "drips a body of announced length": ("A", lambda h, w: on(
        rf"/v2/acme/tuf/blobs/{w.file('acme/snapshot.3')[0]}",
        lambda ex: Reply(200, [("Content-Length", "594")], endless(b"x", delay=0.1, proxy=h.proxy))),
        "did not finish a response within 2 s"),
    "drips the image manifest": ("B", lambda h, w: on(
        r"/v2/acme/web/manifests/1.0",
        lambda ex: Reply(200, [("Content-Length", "100000")], endless(b"x", delay=0.1, proxy=h.proxy))),
        "did not finish a response within 2 s"),
}


@pytest.mark.parametrize("how", list(STALLS))
def test_a_stalled_registry_fails_within_the_deadline_exit_13(hostile, world, how):
    state, rule, message = STALLS[how]
    hostile.at(state)
    # 3 attempts of a 0.5 s read timeout plus backoff, or one 2 s deadline: never the minutes a drip could take
    hostile.attack(hostile.ref("acme/web:1.0"), rule(hostile, world), code=13, message=message, within=6)


def test_a_client_made_under_longer_limits_is_not_reused_once_they_change(hostile, world, monkeypatch):
    """The CI flake this pins: an earlier client for the same host:port (a reused port, or a library
    caller that tightened the limits) kept its 120 s deadline and read a 59 s drip to the end."""
    state, rule, message = STALLS["drips a body of announced length"]
    monkeypatch.setenv("TUFOCI_REGISTRY_TIMEOUT", "30")
    monkeypatch.setenv("TUFOCI_REGISTRY_DEADLINE", "120")
    registry_client(hostile.host)
    monkeypatch.setenv("TUFOCI_REGISTRY_TIMEOUT", STALL_TIMEOUT)
    monkeypatch.setenv("TUFOCI_REGISTRY_DEADLINE", DEADLINE)
    hostile.at(state)
    hostile.attack(hostile.ref("acme/web:1.0"), rule(hostile, world), code=13, message=message, within=6)


# -- redirects and credentials -------------------------------------------------------------------------------

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture
def guarded(hostile: Hostile) -> Iterator[tuple[Hostile, TamperProxy]]:
    """The proxy demands Basic auth (docker config.json holds the credentials for it only), and
    ``other`` is another host (``localhost:PORT``, a CDN) in front of the same registry."""
    config = Path(os.environ["DOCKER_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {hostile.host: {"auth": auth}}}))
    hostile.proxy.add(require_basic_auth(USER, PASSWORD))
    other = TamperProxy.start(hostile.world.registry.host, name="other-host")
    try:
        yield hostile, other
    finally:
        other.stop()


def redirect_blobs_to(other: TamperProxy) -> Callable:
    return on(r"/v2/acme/tuf/blobs/.*", lambda ex: Reply(307, [("Location", f"http://localhost:{other.port}{ex.path}")]))


def assert_no_credentials(proxy: TamperProxy) -> None:
    assert proxy.requests, "the other host was never asked"
    leaked = [(r.method, r.path) for r in proxy.requests if r.header("Authorization")]
    assert not leaked, f"credentials sent to {proxy.name}: {leaked}"


def test_a_redirect_to_another_host_gets_no_credentials(guarded):
    hostile, other = guarded
    hostile.trust()
    hostile.proxy.add(redirect_blobs_to(other))
    result = hostile.consumer.ok("verify", hostile.ref("acme/web:1.0"))
    assert result.stdout == hostile.pinned("acme/web:1.0")
    assert_no_credentials(other)
    assert {r.path.split("/")[-2] for r in other.requests} == {"blobs"}
    authorized = [r for r in hostile.proxy.requests if r.header("Authorization")]
    assert authorized, "the registry itself was never sent its credentials"


def test_content_from_another_host_is_still_verified(guarded, world):
    hostile, other = guarded
    hostile.trust()
    other.add(on(rf"/v2/acme/tuf/blobs/{world.file('acme/targets.3')[0]}", upstream_with(flip)))
    hostile.attack(hostile.ref("acme/web:1.0"), redirect_blobs_to(other), code=12, message="hash differently")
    assert_no_credentials(other)


def test_another_host_cannot_obtain_the_credentials_with_its_own_challenge(guarded):
    """A redirect target that answers 401 with a Bearer realm of its own must not receive the registry's
    credentials at that realm (regression: tufoci answered the challenge and sent them there)."""
    hostile, other = guarded
    hostile.at("B")  # authenticated to the registry already
    realm = f"http://localhost:{other.port}/token"
    other.add(on(r"/token", lambda ex: Reply(200, [("Content-Type", "application/json")], b'{"token":"stolen"}')),
              on(r"/v2/.*", lambda ex: Reply(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="cdn"')])))
    hostile.proxy.add(on(r"/v2/acme/web/manifests/1\.0",
                         lambda ex: Reply(307, [("Location", f"http://localhost:{other.port}{ex.path}")])))
    hostile.attack(hostile.ref("acme/web:1.0"), code=13, message="refused access (HTTP 401)")
    assert_no_credentials(other)
    assert "/token" not in {r.path.split("?")[0] for r in other.requests}


def test_a_redirect_loop_exits_13(hostile):
    hostile.at("A")
    loop = on(r"/v2/acme/tuf/blobs/.*", lambda ex: Reply(302, [("Location", ex.path)]))
    hostile.attack(hostile.ref("acme/web:1.0"), loop, code=13, message="too many redirects")


def test_a_tag_list_link_to_another_host_gets_no_credentials(guarded, world):
    """`trust add --root-sha256` lists tags; the registry's Link names another host for the next page."""
    hostile, other = guarded
    link = f'<http://localhost:{other.port}/v2/acme/tuf/tags/list?last=x>; rel="next"'
    hostile.proxy.add(on(r"/v2/acme/tuf/tags/list", lambda ex: ex.upstream().with_header("Link", link)))
    root_sha256 = hashlib.sha256(world.roots["acme"].read_bytes()).hexdigest()
    hostile.consumer.ok("trust", "add", hostile.ref("acme"), "--root-sha256", root_sha256)
    assert_no_credentials(other)


# -- the next root -------------------------------------------------------------------------------------------

NEXT_ROOT = {
    # what the registry answers for root.2, after a rotation that changed the online key
    "401 without challenge": (lambda w: Reply(401, [], b"{}"), 13, "refused access (HTTP 401)"),
    "401 with a Basic challenge": (lambda w: Reply(401, [("WWW-Authenticate", 'Basic realm="x"')], b"{}"), 13,
                                   "requires credentials"),
    "403": (lambda w: Reply(403, [], b"{}"), 13, "refused access (HTTP 403)"),
    "500": (lambda w: Reply(500, [], b"{}"), 13, "answered HTTP 500"),
    "404 (withheld)": (lambda w: Reply(404, [], b"{}"), 12, "not signed by enough of the keys"),
    "garbage manifest": (lambda w: Reply(200, [("Content-Type", OCI)], b"\x00garbage{"), 12,
                         "malformed metadata manifest"),
    "root.1 again": (lambda w: Reply(200, [("Content-Type", OCI)], w.registry.get_manifest("rot/tuf", "root.1")[0]), 12,
                     "Expected root version 2 instead got version 1"),
    "a root signed by nobody": (lambda w: Reply(200, [("Content-Type", OCI)], _unsigned_root(w)), 12,
                                "not signed by enough of the keys"),
}


def _unsigned_root(world: World) -> bytes:
    root = Metadata.from_bytes(world.file("rot/root.2")[1])
    root.signatures.clear()
    return build_metadata_manifest("root", 2, Forger.to_bytes(root))


@pytest.mark.parametrize("answer", list(NEXT_ROOT))
def test_a_bad_answer_for_the_next_root_is_never_success(hostile, world, answer):
    make, code, message = NEXT_ROOT[answer]
    hostile.trust("rot")
    reply = make(world)
    rules = [on(r"/v2/rot/tuf/manifests/root\.2", lambda ex: reply)]
    if answer == "a root signed by nobody":
        data = Forger.to_bytes(Metadata.from_bytes(world.file("rot/root.2")[1]))
        unsigned = json.loads(data)
        unsigned["signatures"] = []
        blob = Forger.to_bytes(Metadata.from_dict(unsigned))
        rules.append(serve_files("rot/tuf", {"sha256:" + hashlib.sha256(blob).hexdigest(): blob}))
    hostile.attack(hostile.ref("rot/web:1.0"), *rules, code=code, message=message, within=5)


def test_a_garbage_root_blob_exits_12(hostile, world):
    hostile.trust("rot")
    digest = world.file("rot/root.2")[0]
    hostile.attack(hostile.ref("rot/web:1.0"), on(rf"/v2/rot/tuf/blobs/{digest}", upstream_with(flip)), code=12,
                   message="hash differently")


# -- endless tag lists (maintainers) ---------------------------------------------------------------------------


def _endless_pages(ex: Exchange) -> Reply:
    page = int(ex.path.rsplit("page=", 1)[1]) if "page=" in ex.path else 0
    return Reply(200, [("Content-Type", "application/json"),
                       ("Link", f'</v2/acme/tuf/tags/list?page={page + 1}>; rel="next"')],
                 json.dumps({"name": "acme/tuf", "tags": [f"junk.{page}"]}).encode())


ENDLESS_PAGES = on(r"/v2/acme/tuf/tags/list", _endless_pages)


def test_an_endless_tag_list_stops_publish_with_a_clear_error(hostile, world):
    maintainer = clone_maintainer(hostile)
    maintainer.ok("target", "add", hostile.ref("acme/web:evil"))
    hostile.proxy.add(ENDLESS_PAGES)
    started = time.monotonic()
    result = maintainer("publish", hostile.ref("acme"))
    assert time.monotonic() - started < 10
    assert_rejected(result, 13, "tags of acme/tuf: more than 100 pages")
    assert len([p for p in hostile.proxy.paths() if "/tags/list" in p]) == 100
    assert world.registry.get_manifest("acme/tuf", "timestamp")[0] == world.timestamps["B"]  # nothing published


def test_an_endless_tag_list_makes_status_report_the_error(hostile):
    maintainer = clone_maintainer(hostile)
    hostile.proxy.add(ENDLESS_PAGES)
    result = maintainer("status", hostile.ref("acme"), "--check")
    assert result.exit_code == 1, result.stderr
    assert "could not refresh: tags of acme/tuf: more than 100 pages" in result.stdout
    assert "Traceback" not in result.stderr


def test_trust_add_by_sha256_caps_an_endless_root_blob(hostile, world):
    digest, data = world.file("acme/root.1")
    root_sha256 = digest.split(":")[1]
    manifest = json.loads(world.registry.get_manifest("acme/tuf", "root.1")[0])
    manifest["layers"][0]["size"] = 10**12  # the registry's word only
    hostile.proxy.add(serve_manifest("acme/tuf", "root.1", json.dumps(manifest).encode()),
                      _endless_rule(rf"/v2/acme/tuf/blobs/{digest}", hostile, delay=0.01))  # ~1.6 MB/s: kind to the host
    result = hostile.consumer("trust", "add", hostile.ref("acme"), "--root-sha256", root_sha256)
    assert_rejected(result, 13, "sent more than")


def test_an_endless_tag_list_stops_trust_add_by_sha256(hostile, world):
    hostile.proxy.add(ENDLESS_PAGES)
    root_sha256 = hashlib.sha256(world.roots["acme"].read_bytes()).hexdigest()
    result = hostile.consumer("trust", "add", hostile.ref("acme"), "--root-sha256", root_sha256)
    assert_rejected(result, 13, "more than 100 pages")


# -- names with / .. ? # % and unicode -------------------------------------------------------------------------

ODD_ROLES = {"../../evil": "evil", "a/b?c#d%2F": "odd", "équipe/δ": "uni"}  # role -> the namespace it signs


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("backend", ["registry", "layout"])
def test_odd_role_names_publish_verify_and_write_nowhere_else(hostile, world, tmp_path, backend):
    maintainer = Machine("odd-maintainer", tmp_path, hostile.monkeypatch)
    for name, options in (("root", ()), ("targets", ()), ("online", ("--unencrypted",)), ("team", ())):
        maintainer.new_key(name, *options)
    if backend == "registry":  # the maintainer publishes to the registry, the consumer reads through the proxy
        scope = f"{world.registry.host}/odd-{tmp_path.name.lower()}"
        consumer_scope = f"{hostile.host}/{scope.split('/', 1)[1]}"
    else:
        scope = consumer_scope = f"oci:{tmp_path / 'layouts' / 'acme'}"
    watched = [tmp_path, world.registry.root]
    before = {root: _files(root) for root in watched}
    root_file = tmp_path / "odd-root.json"
    maintainer.ok("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                  "--root-out", str(root_file))
    refs = []
    for role, namespace in ODD_ROLES.items():
        push_test_image(tmp_path, f"{role} app".encode(), f"{scope}/{namespace}/app:1.0")
        maintainer.ok("delegate", scope, role, "--key", "team", "--path", f"{namespace}/*")
        maintainer.ok("target", "add", "--role", role, f"{scope}/{namespace}/app:1.0")
        refs.append(f"{consumer_scope}/{namespace}/app:1.0")
    published = json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)["published"]
    assert {role for role in ODD_ROLES} <= set(published)

    consumer = hostile.consumer
    consumer.ok("trust", "add", consumer_scope, "--root", str(root_file))
    result = consumer.ok("verify", *refs)
    assert len(result.stdout.splitlines()) == 3
    assert consumer.ok("verify", *refs).stdout == result.stdout  # and again from the cache

    cached = {p.name for p in (consumer.home / "cache").rglob("*.json")}
    assert {"..%2F..%2Fevil.json", "a%2Fb%3Fc%23d%252F.json", "%C3%A9quipe%2F%CE%B4.json"} <= cached
    allowed = [maintainer.home, consumer.home, root_file, tmp_path / "images", tmp_path / "layouts", world.registry.root]
    for root in watched:
        for new in _files(root) - before[root]:
            assert any(new.is_relative_to(a) for a in allowed), f"unexpected file {new}"
    # no file is named after a role except ngclient's quoted cache files; nothing escaped a directory
    for path in [*tmp_path.parent.rglob("*"), *world.registry.root.rglob("*")]:
        assert not any(raw in path.name for raw in ("équipe", "?c#d", "δ")), f"raw role name in {path}"
        if path.name.endswith("evil.json"):
            assert path.name == "..%2F..%2Fevil.json" and path.parent.parent.name == "cache", path
    if backend == "layout":
        assert sorted(p.name for p in (tmp_path / "layouts" / "acme").iterdir()) == ["evil", "odd", "tuf", "uni"]


@pytest.mark.parametrize("ref,message", [
    ("acme/../web:1.0", "invalid repository path 'acme/../web'"),
    ("acme/web:1.0?x=1", "invalid tag '1.0?x=1'"),
    ("acme/web:1.0#frag", "invalid tag '1.0#frag'"),
    ("acme/w%2Feb:1.0", "invalid repository path 'acme/w%2Feb'"),
    ("acme/wéb:1.0", "invalid repository path 'acme/wéb'"),
    ("acme/web:../../1.0", "invalid repository path"),
])
def test_target_names_outside_the_reference_grammar_are_refused(hostile, ref, message):
    """Target names come from references: what the distribution grammar refuses never becomes a name."""
    hostile.trust()
    hostile.proxy.reset_log()  # trust add compares the root with the registry's root.1
    before = cache_snapshot(hostile.consumer.home)
    result = hostile.consumer("verify", f"{hostile.host}/{ref}")
    assert_rejected(result, 2, message)
    assert hostile.proxy.requests == [] and cache_snapshot(hostile.consumer.home) == before


# -- signatures and keys -------------------------------------------------------------------------------------


def _duplicate_signatures(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["signatures"] = doc["signatures"] * 2
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@pytest.mark.parametrize("role", ["timestamp", "targets"])
def test_duplicate_signatures_in_a_metadata_file_exit_12(hostile, world, role):
    """One key's signature listed twice, to meet a threshold of 2 with one key: the file is refused."""
    hostile.at("A")
    forger = Forger(world)
    if role == "timestamp":
        timestamp = _duplicate_signatures(forger.timestamp(3, world.file("acme/snapshot.3")[1], version=4))
    else:  # the snapshot key holder re-lists targets v3 with its signature doubled
        targets = _duplicate_signatures(world.file("acme/targets.3")[1])
        forger.blobs["sha256:" + hashlib.sha256(targets).hexdigest()] = targets
        snapshot = forger.snapshot({"targets": (3, targets)}, version=4)
        timestamp = forger.timestamp(4, snapshot, version=4)
    hostile.attack(hostile.ref("acme/web:1.0"), *forger.rules(timestamp), code=12,
                   message=("metadata rejected", "Failed to deserialize"))


def test_python_tuf_counts_one_key_listed_under_two_keyids_twice():
    """What python-tuf 7 does (a finding, see docs/security.md): thresholds count keyids, not keys. A
    delegator that lists one key under two keyids with threshold 2 lets that one key meet the threshold,
    so tufoci's maintainer side must never write such a delegation (next test)."""
    from securesystemslib.signer import CryptoSigner, SSlibKey
    from tuf.api.metadata import DelegatedRole, Delegations, Targets

    signer = CryptoSigner.generate_ed25519()
    key = signer.public_key
    alias = SSlibKey("f" * 64, key.keytype, key.scheme, dict(key.keyval))
    parent = Targets(delegations=Delegations(keys={key.keyid: key, alias.keyid: alias}, roles={
        "dup": DelegatedRole("dup", [key.keyid, alias.keyid], 2, False, paths=["dup/*"])}))
    child = Metadata(Targets())
    signature = signer.sign(child.signed_bytes).signature
    signatures = {k: Signature(k, signature) for k in (key.keyid, alias.keyid)}
    parent.verify_delegate("dup", child.signed_bytes, signatures)  # no error: 2 of 2 "keys", one signer
    assert parent.get_verification_result("dup", child.signed_bytes, signatures).verified


def test_delegate_refuses_one_key_under_two_keyids(hostile):
    maintainer = clone_maintainer(hostile)
    team = json.loads(maintainer.ok("key", "export", "team").stdout)
    alias = json.dumps({**team, "keyid": "f" * 64})
    result = maintainer("delegate", hostile.ref("acme"), "dup", "--key", "team", "--key", alias,
                        "--threshold", "2", "--path", "dup/*")
    # key ids are computed from key material (issue 20.3): the alias is refused for its id alone
    assert_rejected(result, 2, "f" * 64)


def _mismatched(team: dict, scheme: str) -> dict:
    key = {k: v for k, v in team.items() if k != "keyid"}
    return {**key, "scheme": scheme}


def test_delegate_refuses_a_key_whose_type_does_not_match_its_scheme(hostile):
    maintainer = clone_maintainer(hostile)
    team = json.loads(maintainer.ok("key", "export", "team").stdout)
    result = maintainer("delegate", hostile.ref("acme"), "bad", "--key",
                        json.dumps(_mismatched(team, "ecdsa-sha2-nistp256")), "--path", "bad/*")
    assert_rejected(result, 2, "scheme")


def _forge_mismatched_delegation(world: World, forger: Forger) -> bytes:
    """What a careless or malicious delegator (the targets key) can publish: a delegation to ``bad``
    whose key claims ed25519 bytes under the ecdsa scheme, and ``bad`` metadata signed by that key."""
    from securesystemslib.signer import SSlibKey
    from tuf.api.metadata import DelegatedRole, Delegations, TargetFile, Targets

    from tufoci.keys import env_secrets_handler, signer_for
    from tufoci.state import State

    state = State.open(str(world.maintainer))
    keyids = {key.name: key.keyid for key in state.keys()}
    targets_signer = signer_for(state, keyids["targets"], env_secrets_handler())
    team_signer = signer_for(state, keyids["team"], env_secrets_handler())
    team = team_signer.public_key
    bad_key = SSlibKey("b" * 64, team.keytype, "ecdsa-sha2-nistp256", dict(team.keyval))

    targets = forger.metadata("targets.3")
    delegations = targets.signed.delegations or Delegations(keys={}, roles={})
    delegations.keys[bad_key.keyid] = bad_key
    delegations.roles["bad"] = DelegatedRole("bad", [bad_key.keyid], 1, False, paths=["bad/*"])
    targets.signed.delegations = delegations
    targets.signed.version = 4
    targets.signatures.clear()
    targets.sign(targets_signer)
    targets_data = Forger.to_bytes(targets)

    expires = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    digest = world.digests["acme/web:1.0"].split(":")[1]
    target = TargetFile(len(world.manifests["acme/web:1.0"]), {"sha256": digest}, "bad/app:1.0")
    bad = Metadata(Targets(expires=expires, targets={"bad/app:1.0": target}))
    bad.signatures[bad_key.keyid] = Signature(bad_key.keyid, team_signer.sign(bad.signed_bytes).signature)
    bad_data = Forger.to_bytes(bad)
    for data in (targets_data, bad_data):
        forger.blobs["sha256:" + hashlib.sha256(data).hexdigest()] = data
    snapshot = forger.snapshot({"targets": (4, targets_data), "bad": (1, bad_data)}, version=4)
    return forger.timestamp(4, snapshot, version=4)


def test_a_delegated_key_whose_type_does_not_match_its_scheme_is_rejected_exit_12(hostile, world):
    """python-tuf refuses to deserialize a key whose (keytype, scheme) pair it does not know: the whole
    delegating targets file is rejected, so every target of the scope fails (12), not only bad/*."""
    hostile.at("B")
    forger = Forger(world)
    timestamp = _forge_mismatched_delegation(world, forger)
    before = cache_snapshot(hostile.consumer.home)
    hostile.proxy.add(*forger.rules(timestamp))
    assert_rejected(hostile.consumer("verify", hostile.ref("acme/bad/app:1.0")), 12, "Failed to deserialize")
    hostile.proxy.clear()
    assert cache_snapshot(hostile.consumer.home) == before
    hostile.attack(hostile.ref("acme/web:1.0"), *forger.rules(timestamp), code=12,
                   message=("metadata rejected", "Failed to deserialize"))


# -- the warm verify fast path (issue 19) ---------------------------------------------------------------------
# For every attack above, a consumer that verified honestly before (so the full path left its record) must get
# from the fast path either exactly the full path's answer or nothing (the full path then runs): it can never
# say more. The fast path only ever answers success, so under an attack it must fall through.


def _at_rot(hostile: Hostile) -> str:
    hostile.trust("rot")
    hostile.consumer.ok("verify", hostile.ref("rot/web:1.0"))  # on root v2, the record written
    return hostile.ref("rot/web:1.0")


def _root_rollback_rules(hostile: Hostile, world: World) -> list[Callable]:
    timestamp = json.loads(world.registry.get_manifest("rot/tuf", "timestamp")[0])
    timestamp["annotations"]["dev.tufoci.hint.root-version"] = "3"
    return [serve_manifest("rot/tuf", "timestamp", json.dumps(timestamp).encode()),
            serve_manifest("rot/tuf", "root.3", world.registry.get_manifest("rot/tuf", "root.1")[0])]


def _revoked_key_rules(hostile: Hostile, world: World) -> list[Callable]:
    """A newer rot timestamp signed with the online key root v2 revoked."""
    forger = Forger(world, "rot")
    live = json.loads(world.registry.get_manifest("rot/tuf", "timestamp")[0])
    md = Metadata.from_bytes(base64.b64decode(live["annotations"]["dev.tufoci.hint.timestamp"]))
    return forger.rules(forger.sign(md, version=md.signed.version + 1), root_version=2)


def _signed_snapshot_rollback(hostile: Hostile, world: World) -> list[Callable]:
    forger = Forger(world)
    return forger.rules(forger.timestamp(2, world.file("acme/snapshot.2")[1], version=4))


def _expired_timestamp(hostile: Hostile, world: World) -> list[Callable]:
    forger = Forger(world)
    past = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(minutes=5)
    return forger.rules(forger.timestamp(3, world.file("acme/snapshot.3")[1], version=4, expires=past))


FAST_PATH_CASES = {  # case: (the consumer's warm state, the attacker's rules, the full path's exit code)
    "honest": ("B", lambda h, w: [], 0),
    "moved tag": ("B", lambda h, w: [serve_manifest("acme/web", "1.0", w.manifests["acme/web:evil"])], 11),
    "rollback of the timestamp": ("B", lambda h, w: [serve_manifest("acme/tuf", "timestamp", w.timestamps["A"])], 12),
    "rollback signed with a stolen online key": ("B", _signed_snapshot_rollback, 12),
    "validly signed but expired": ("B", _expired_timestamp, 12),
    "tampered timestamp": ("B", lambda h, w: [on(r"/v2/acme/tuf/manifests/timestamp",
                                                upstream_with(_tamper_timestamp))], 12),
    "rollback of a rotated root": ("rot", _root_rollback_rules, 12),
    "a key the root rotation revoked": ("rot", _revoked_key_rules, 12),
}


@pytest.mark.parametrize("case", list(FAST_PATH_CASES))
def test_the_fast_path_never_says_more_than_the_full_path(hostile, world, case):
    from tufoci.client.fast_verify import fast_verify

    state, rules, code = FAST_PATH_CASES[case]
    if state == "rot":
        ref = _at_rot(hostile)
    else:
        hostile.at(state)
        ref = hostile.ref("acme/web:1.0")
    hostile.proxy.add(*rules(hostile, world))
    fast = fast_verify([ref], str(hostile.consumer.home))
    full = hostile.consumer("verify", ref)
    assert full.exit_code == code, full.stderr
    if code == 0:
        assert fast == (full.exit_code, full.stdout, full.stderr)  # the honest case is answered, identically
    else:
        assert fast is None  # an attack: the full refresh, which rejects it


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian faketime is needed")
def test_the_fast_path_leaves_a_frozen_timestamp_to_the_full_refresh(hostile, world):
    """Freeze: two days later the registry still serves the recorded timestamp manifest, now expired: the
    process (fast path first) must say what the full path says: exit 12, timestamp expired."""
    hostile.at("B")
    hostile.proxy.add(serve_manifest("acme/tuf", "timestamp", world.timestamps["B"]))
    env = {**os.environ, "TUFOCI_HOME": str(hostile.consumer.home), "TUFOCI_NO_AGENT": "1"}
    command = [sys.executable, "-m", "tufoci.entry", "verify", hostile.ref("acme/web:1.0")]
    now = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert now.returncode == 0 and now.stdout == hostile.pinned("acme/web:1.0"), now.stderr
    later = subprocess.run(["faketime", "-f", "+2d", *command], capture_output=True, text=True, env=env, timeout=60)
    assert_rejected(CliResult(later.returncode, later.stdout, later.stderr), 12, ("timestamp expired",))
