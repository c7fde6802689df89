"""``tufoci import-notary`` against a real notary-server + notary-signer (Debian's ``notary`` package).

One collection is built once per module with the real ``notary`` client: top-level tags, ``targets/releases``
with a tag that ``targets`` lists with another digest (a conflict), ``targets/qa`` restricted to path prefixes,
a delegate with an RSA key (``rsapss`` signatures), a declared delegation never published, and a root rotation.
Tampering works on a trust-directory copy of the served files, so each case changes exactly one thing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import needs_registry, push_test_image, run_tufoci

notary_peer = pytest.importorskip("bench.peers.notary")

pytestmark = pytest.mark.notary

GUN = "registry.example.com/acme/web"


def _digest(n: int) -> str:
    return hashlib.sha256(f"manifest {n}".encode()).hexdigest()


# tag -> (role, sha256 hex, length); "1.0" is in targets and targets/releases with different digests
TAGS = [
    ("1.0", None, _digest(1), 501),
    ("2.0", None, _digest(2), 502),
    ("1.0", "targets/releases", _digest(11), 511),
    ("3.0", "targets/releases", _digest(13), 513),
    ("qa-1", "targets/qa", _digest(21), 521),
    ("rc1", "targets/qa", _digest(22), 522),
    ("v1", "targets/rsa", _digest(31), 531),
]


@dataclass
class Built:
    server: object
    publisher: object
    gun: str
    root1: bytes  # 1.root.json
    root_cert_fingerprint: str  # of the first root's certificate
    workdir: Path


def _rsa_delegate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa-dev")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30)).sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "rsa.key", directory / "rsa.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _get(server, gun: str, name: str) -> bytes | None:
    context = ssl.create_default_context(cafile=str(server.certs.ca))
    try:
        with urllib.request.urlopen(f"{server.url}/v2/{gun}/_trust/tuf/{name}.json", context=context) as r:
            return r.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _init(client, gun: str) -> None:
    for attempt in range(3):  # the signer's gRPC may not accept the server's first call yet
        try:
            client.init(gun)
            return
        except notary_peer.NotaryError:
            if attempt == 2:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    workdir = tmp_path_factory.mktemp("notary")
    try:
        server = notary_peer.NotaryServer.start(workdir)
    except notary_peer.NotaryError as exc:
        pytest.skip(f"notary is needed (scripts/install-system-deps installs it): {exc}")
    try:
        pub = server.client("publisher")
        _init(pub, GUN)
        for tag, role, digest, length in TAGS:
            if role is None:
                pub.addhash(GUN, tag, length, digest)
        pub.publish(GUN)
        root1 = _get(server, GUN, "1.root")
        releases_key, releases_cert = notary_peer.make_delegation_key(workdir / "keys", "releases")
        qa_key, qa_cert = notary_peer.make_delegation_key(workdir / "keys", "qa")
        ci_key, ci_cert = notary_peer.make_delegation_key(workdir / "keys", "ci")
        rsa_key, rsa_cert = _rsa_delegate(workdir / "keys")
        pub.key_import(releases_key, "targets/releases")
        pub.key_import(qa_key, "targets/qa")
        pub.key_import(rsa_key, "targets/rsa")
        pub.delegation_add(GUN, "targets/releases", releases_cert)
        pub.delegation_add(GUN, "targets/qa", qa_cert, paths=["qa-", "rc"])
        pub.delegation_add(GUN, "targets/rsa", rsa_cert, paths=["v"])
        pub.delegation_add(GUN, "targets/ci", ci_cert)  # declared, never published
        for tag, role, digest, length in TAGS:
            if role is not None:
                pub.addhash(GUN, tag, length, digest, role=role)
        pub.publish(GUN)
        # root rotation: the new root is signed by the old and the new root key
        subprocess.run(pub.argv("key", "rotate", GUN, "root"), env=pub.env, input="yes\n", text=True,
                       capture_output=True, check=True, timeout=120)
        assert _get(server, GUN, "2.root") is not None, "notary key rotate GUN root published no 2.root.json"
        from tufoci.repo_tool.notary_format import load_envelope, parse_key

        signed = load_envelope(root1, "1.root.json", "Root")["signed"]
        keyid = signed["roles"]["root"]["keyids"][0]
        fingerprint = parse_key(keyid, signed["keys"][keyid], "1.root.json").certificate_fingerprint()
        yield Built(server, pub, GUN, root1, fingerprint, workdir)
    finally:
        server.stop()


def trust_dir_copy(built: Built, dest: Path, gun: str = GUN) -> Path:
    """The collection as a docker trust dir: ``dest/tuf/<gun>/metadata/*.json`` (current versions)."""
    metadata = dest / "tuf" / gun / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    snapshot = json.loads(_get(built.server, built.gun, "snapshot"))
    for role in ["root", "timestamp", "snapshot", *snapshot["signed"]["meta"]]:
        data = _get(built.server, built.gun, role)
        path = metadata / f"{role}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


def _import(*args: str):
    return run_tufoci("import-notary", *args)


def _plan(result) -> dict:
    assert result.exit_code == 0, result.stderr
    (collection,) = json.loads(result.stdout)["collections"]
    return collection


def _server_args(built: Built) -> list[str]:
    return ["--server", built.server.url, "--ca-file", str(built.server.certs.ca)]


# -- verification and plan against the real server ------------------------------------------------------------
def test_dct_plan_from_the_server(built, home):
    root_pin = hashlib.sha256(built.root1).hexdigest()
    plan = _plan(_import(GUN, *_server_args(built), "--root-sha256", root_pin, "--dry-run", "-o", "json"))
    assert plan["scope"] == "registry.example.com/acme" and plan["repository"] == "web"
    assert plan["rootVersion"] == 2  # the rotation was followed from the pinned version 1
    tags = {t["tag"]: (t["notaryRole"], t["digest"], t["length"], t["role"]) for t in plan["tags"]}
    assert tags == {
        "1.0": ("targets/releases", f"sha256:{_digest(11)}", 511, "web/releases"),
        "2.0": ("targets", f"sha256:{_digest(2)}", 502, "targets"),
        "3.0": ("targets/releases", f"sha256:{_digest(13)}", 513, "web/releases"),
    }
    conflicts = {c["tag"]: c for c in plan["conflicts"]}
    assert set(conflicts) == {"1.0", "qa-1", "rc1", "v1"}
    assert conflicts["1.0"]["dct"]["sha256"] == _digest(11) and conflicts["1.0"]["notary"]["sha256"] == _digest(1)
    assert conflicts["v1"]["dct"] is None and conflicts["v1"]["notary"]["role"] == "targets/rsa"
    assert sorted(s.split("'")[1] for s in plan["skipped"]) == ["qa-1", "rc1", "v1"]
    delegations = {d["notaryRole"]: d for d in plan["delegations"]}
    assert delegations["targets/qa"]["patterns"] == ["web:qa-*", "web:rc*"]
    assert delegations["targets/rsa"]["keys"][0]["scheme"] == "rsassa-pss-sha256"
    assert delegations["targets/rsa"]["keys"][0]["certificateCn"] == "rsa-dev"
    assert delegations["targets/ci"]["published"] is False
    assert any("targets/ci" in w and "never published" in w for w in plan["warnings"])


def test_plan_json_field_names_are_camel_case(built, home):
    from tests.test_json_shapes import field_names
    from tufoci.json_keys import FIELD_NAME

    result = _import(GUN, *_server_args(built), "--tofu", "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.stderr
    names = field_names(json.loads(result.stdout))
    wrong = [(path, name) for path, name in names
             if not re.fullmatch(FIELD_NAME, name) and not path.endswith(".listedIn")]  # role → digest: data
    assert not wrong, wrong
    assert any(name == "listedIn" for _, name in names)


def test_unpublished_delegation_carried_over_empty_or_dropped_with_a_warning(built, home):
    carried = _plan(_import(GUN, *_server_args(built), "--tofu", "--dry-run", "-o", "json"))
    assert {d["notaryRole"]: d["published"] for d in carried["delegations"]}["targets/ci"] is False
    assert any(w == "targets/ci: declared but never published; carried over empty" for w in carried["warnings"])
    dropped = _import(GUN, *_server_args(built), "--tofu", "--dry-run", "--unpublished", "drop")
    assert dropped.exit_code == 0, dropped.stderr
    assert "targets/ci: declared but never published; dropped" in dropped.stdout
    assert "role targets/ci" not in dropped.stdout and "role targets/releases" in dropped.stdout


def test_notary_semantics_agree_with_notary_lookup(built, home):
    plan = _plan(_import(GUN, *_server_args(built), "--root-cert-fingerprint", built.root_cert_fingerprint,
                         "--semantics", "notary", "--dry-run", "-o", "json"))
    consumer = built.server.client("lookup")
    for t in plan["tags"]:
        looked_up = consumer.lookup(GUN, t["tag"])  # the real notary client's answer
        assert (f"sha256:{looked_up.sha256}", looked_up.length) == (t["digest"], t["length"]), t["tag"]
    assert {t["tag"] for t in plan["tags"]} == {"1.0", "2.0", "3.0", "qa-1", "rc1", "v1"}


def test_pin_on_the_rotated_root_and_text_output(built, home):
    root2 = _get(built.server, GUN, "2.root")
    result = _import(GUN, *_server_args(built), "--root-sha256", hashlib.sha256(root2).hexdigest(), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "CONFLICT 1.0: dct gives targets/releases" in result.stdout
    assert "tag web:1.0 sha256:" in result.stdout


def test_tofu_only_when_asked(built, home):
    refused = _import(GUN, *_server_args(built), "--dry-run")
    assert refused.exit_code == 2 and "--tofu" in refused.stderr
    plan = _plan(_import(GUN, *_server_args(built), "--tofu", "--dry-run", "-o", "json"))
    assert any("trusted on first use" in w for w in plan["warnings"])


def test_never_calls_key_endpoints(built, home):
    mark = built.server.mark()
    _plan(_import(GUN, *_server_args(built), "--tofu", "--dry-run", "-o", "json"))
    uris = [r.uri for r in built.server.requests(mark)]
    assert uris and all(u.endswith(".json") and "/_trust/tuf/" in u for u in uris), uris
    assert not any(u.endswith(".key") for u in uris)


def test_unknown_gun_is_refused_without_creating_anything(built, home):
    result = _import("registry.example.com/acme/nothing", *_server_args(built), "--tofu", "--dry-run")
    assert result.exit_code == 12 and "no root.json" in result.stderr
    assert _get(built.server, "registry.example.com/acme/nothing", "root") is None


# -- trust directory and tampering ------------------------------------------------------------------------------
def _flip_signature(path: Path) -> None:
    """One bit of the first signature flipped, every other byte of the file kept."""
    text = path.read_text()
    old = json.loads(text)["signatures"][0]["sig"]
    sig = bytearray(base64.b64decode(old))
    sig[5] ^= 0x01
    path.write_text(text.replace(old, base64.b64encode(bytes(sig)).decode()))


def _replace(old_of, new_of):
    """Replace one string value in the file's bytes by another of the same length."""
    def tamper(path: Path) -> None:
        text = path.read_text()
        old = old_of(json.loads(text)["signed"])
        new = new_of(old)
        assert len(new) == len(old) and old in text
        path.write_text(text.replace(old, new, 1))
    return tamper


_other_hash = _replace(lambda s: s["targets"]["2.0"]["hashes"]["sha256"], lambda old: base64.b64encode(bytes(32)).decode())
_other_delegation_key = _replace(
    lambda s: next(iter(s["delegations"]["keys"].values()))["keyval"]["public"], lambda old: old[:40] + "A" * 8 + old[48:]
)


TAMPER = [
    ("timestamp signature", "timestamp.json", _flip_signature, "signature threshold not met"),
    ("snapshot signature", "snapshot.json", _flip_signature, "sha256 hash differs"),
    ("releases signature", "targets/releases.json", _flip_signature, "sha256 hash differs"),
    ("a target's hash", "targets.json", _other_hash, "sha256 hash differs"),
    ("a delegation's keys", "targets.json", _other_delegation_key, "sha256 hash differs"),
    ("root signature", "root.json", _flip_signature, "signature threshold not met"),
]


def test_trust_dir_import(built, home, tmp_path):
    trust = trust_dir_copy(built, tmp_path / "trust")
    root = (trust / "tuf" / GUN / "metadata" / "root.json").read_bytes()
    plan = _plan(_import(GUN, "--trust-dir", str(trust), "--root-sha256", hashlib.sha256(root).hexdigest(),
                         "--dry-run", "-o", "json"))
    assert {t["tag"] for t in plan["tags"]} == {"1.0", "2.0", "3.0"}


@pytest.mark.parametrize("what,name,tamper,message", TAMPER, ids=[t[0] for t in TAMPER])
def test_tampered_file_is_refused(built, home, tmp_path, what, name, tamper, message):
    trust = trust_dir_copy(built, tmp_path / "trust")
    metadata = trust / "tuf" / GUN / "metadata"
    pin = hashlib.sha256((metadata / "root.json").read_bytes()).hexdigest()
    tamper(metadata / name)
    if name == "root.json":
        pin = hashlib.sha256((metadata / "root.json").read_bytes()).hexdigest()  # pinned, yet not signed
    result = _import(GUN, "--trust-dir", str(trust), "--root-sha256", pin, "--dry-run")
    assert result.exit_code == 12, result.stderr
    assert message in result.stderr and "nothing was imported" in result.stderr
    assert result.stdout == ""  # no plan
    assert not (home / "notary-seen.json").exists()  # nothing remembered either


def test_root_not_matching_the_pin_is_refused(built, home):
    result = _import(GUN, *_server_args(built), "--root-sha256", "ab" * 32, "--dry-run")
    assert result.exit_code == 12 and "no root version matches the pinned sha256" in result.stderr
    result = _import(GUN, *_server_args(built), "--root-cert-fingerprint", "cd" * 32, "--dry-run")
    assert result.exit_code == 12 and "certificate fingerprint" in result.stderr


def test_root_certificate_must_name_the_gun(built, home, tmp_path):
    other = "registry.example.com/acme/other"
    trust = trust_dir_copy(built, tmp_path / "trust", gun=other)  # GUN web's files under another GUN
    result = _import(other, "--trust-dir", str(trust), "--tofu", "--dry-run")
    assert result.exit_code == 12 and "expected the GUN" in result.stderr


def test_rolled_back_timestamp_is_refused(built, home, tmp_path):
    old = trust_dir_copy(built, tmp_path / "old")
    pin = hashlib.sha256((old / "tuf" / GUN / "metadata" / "root.json").read_bytes()).hexdigest()
    assert _import(GUN, "--trust-dir", str(old), "--root-sha256", pin, "--dry-run").exit_code == 0
    built.publisher.addhash(GUN, "4.0", 504, _digest(4))
    built.publisher.publish(GUN)
    assert _import(GUN, *_server_args(built), "--root-sha256", pin, "--dry-run").exit_code == 0
    rolled_back = _import(GUN, "--trust-dir", str(old), "--root-sha256", pin, "--dry-run")
    assert rolled_back.exit_code == 12 and "rollback" in rolled_back.stderr
    # a trust dir whose timestamp alone is old does not match the newer snapshot
    mixed = trust_dir_copy(built, tmp_path / "mixed")
    shutil.copy(old / "tuf" / GUN / "metadata" / "timestamp.json", mixed / "tuf" / GUN / "metadata")
    use_fresh = _import(GUN, "--trust-dir", str(mixed), "--root-sha256", pin, "--dry-run")
    assert use_fresh.exit_code == 12


def test_expired_collection_needs_allow_expired(built, tmp_path):
    from tufoci.repo_tool.notary_format import NotaryRejectedError
    from tufoci.repo_tool.notary_source import TrustDirSource
    from tufoci.repo_tool.notary_verify import RootPin, verify_collection

    source = TrustDirSource(trust_dir_copy(built, tmp_path / "trust"), GUN)
    later = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)  # targets expire after 3 years
    with pytest.raises(NotaryRejectedError, match="expired at .*--allow-expired"):
        verify_collection(source, RootPin(tofu=True), now=later)
    collection = verify_collection(source, RootPin(tofu=True), now=later, allow_expired=True)
    assert any("targets.json" in e for e in collection.expired)


# -- registry check and publishing the top-level tags (not --dry-run) --------------------------------------------
@needs_registry
def test_import_checks_manifests_and_publishes_top_level_tags(built, home, registry, tmp_path):
    from tests.conftest import init_scope
    from tufoci.store.registry import registry_client

    gun, scope = f"{registry.host}/acme/app", f"{registry.host}/acme"
    push_test_image(tmp_path, b"notary import", f"{gun}:latest")
    manifest = registry_client(registry.host).repository("acme/app").get_manifest("latest")
    digest = manifest.digest.removeprefix("sha256:")
    _init(built.publisher, gun)
    built.publisher.addhash(gun, "real", len(manifest.data), digest)
    built.publisher.addhash(gun, "gone", 100, _digest(99))
    built.publisher.addhash(gun, "short", len(manifest.data) + 1, digest)
    built.publisher.publish(gun)
    key, cert = notary_peer.make_delegation_key(tmp_path / "keys", "app-releases")
    built.publisher.key_import(key, "targets/releases")
    built.publisher.delegation_add(gun, "targets/releases", cert)
    built.publisher.addhash(gun, "rel", len(manifest.data), digest, role="targets/releases")
    built.publisher.publish(gun)
    args = [gun, *_server_args(built), "--tofu", "-o", "json"]

    not_initialised = _import(*args)
    assert not_initialised.exit_code == 1 and "tufoci init" in not_initialised.stderr
    assert json.loads(not_initialised.stdout)["published"] == []  # the plan is still shown
    assert registry_client(registry.host).repository("acme/tuf").list_tags() == []  # nothing written

    init_scope(scope, tmp_path)
    metadata_tags = sorted(registry_client(registry.host).repository("acme/tuf").list_tags())
    refused = _import(gun, *_server_args(built), "--root-sha256", "ab" * 32)  # not --dry-run, wrong pin
    assert refused.exit_code == 12 and refused.stdout == ""
    assert sorted(registry_client(registry.host).repository("acme/tuf").list_tags()) == metadata_tags

    result = _import(*args)
    assert result.exit_code == 0, result.stderr
    output = json.loads(result.stdout)
    (collection,) = output["collections"]
    status = {c["tag"]: c["status"] for c in collection["manifests"]}
    assert status == {"real": "ok", "gone": "missing", "short": "mismatch", "rel": "ok"}
    assert next(c for c in collection["manifests"] if c["tag"] == "real")["mediaType"] == manifest.content_type
    (published,) = output["published"]
    assert [(c["action"], c["role"], c["target"]) for c in published["changes"]] == [
        ("delegate", "targets", "app/releases"), ("add", "targets", "app:real"), ("add", "app/releases", "app:rel")]
    assert set(published["published"]) == {"targets", "snapshot", "timestamp"}
    assert set(published["proposed"]) == {"app/releases"}  # for its delegate to sign, never signed here
    verified = run_tufoci("verify", "--skip-registry-check", f"{gun}:real")  # Notary's tags are not registry tags
    assert verified.exit_code == 0 and verified.stdout.strip() == f"{gun}@{manifest.digest}"
    for tag in ("gone", "short", "rel"):
        assert run_tufoci("verify", "--skip-registry-check", f"{gun}:{tag}").exit_code == 10, tag


def test_an_unreachable_registry_publishes_nothing(built, home):
    from tests.support.processes import free_port

    gun = f"127.0.0.1:{free_port()}/acme/offline"  # nothing listens there
    _init(built.publisher, gun)
    built.publisher.addhash(gun, "1.0", 501, _digest(1))
    built.publisher.publish(gun)
    result = _import(gun, *_server_args(built), "--tofu", "-o", "json")
    assert result.exit_code == 13 and "nothing published, the images could not be checked" in result.stderr
    (collection,) = json.loads(result.stdout)["collections"]
    assert [c["status"] for c in collection["manifests"]] == ["unchecked"]


# -- Notary's key files -----------------------------------------------------------------------------------------
def test_reads_the_notary_clients_encrypted_key_files(built):
    from cryptography.hazmat.primitives import serialization

    from tufoci.errors import SigningKeyError
    from tufoci.repo_tool.notary_keyfile import load_notary_private_key, notary_key_headers

    root = json.loads(_get(built.server, GUN, "root"))["signed"]
    targets_keyid = root["roles"]["targets"]["keyids"][0]
    path = built.publisher.trust_dir / "private" / f"{targets_keyid}.key"
    text = path.read_text()
    assert notary_key_headers(text) == {"gun": GUN, "role": "targets"}
    with pytest.raises(ValueError):  # what cryptography alone says about it
        serialization.load_pem_private_key(text.encode(), notary_peer.CLIENT_ENV["NOTARY_TARGETS_PASSPHRASE"].encode())
    key = load_notary_private_key(text, notary_peer.CLIENT_ENV["NOTARY_TARGETS_PASSPHRASE"].encode())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64encode(der).decode() == root["keys"][targets_keyid]["keyval"]["public"]
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        load_notary_private_key(text, b"not the passphrase")
    # AES-CBC has no MAC: about one wrong passphrase in 256 decrypts to valid padding; it is still named as one
    from tufoci.repo_tool.notary_keyfile import _decrypt, _pem_body

    def padding_holds(password: bytes) -> bool:
        try:
            _decrypt(_pem_body(text), password)
        except ValueError:
            return False
        return True

    lucky = next(p for p in (f"wrong-{i}".encode() for i in range(20000)) if padding_holds(p))
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        load_notary_private_key(text, lucky)


def test_a_key_file_with_an_empty_algorithm_identifier_is_one_clear_error():
    """A hand-made or damaged key file: an OBJECT IDENTIFIER of length 0 was an IndexError (a traceback)."""
    from tufoci.errors import SigningKeyError
    from tufoci.repo_tool.notary_keyfile import load_notary_private_key

    der = bytes([0x30, 0x08, 0x30, 0x02, 0x06, 0x00, 0x04, 0x02, 0xAB, 0xCD])
    text = (f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{base64.b64encode(der).decode()}\n"
            "-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(SigningKeyError, match="empty OBJECT IDENTIFIER"):
        load_notary_private_key(text, b"anything")


def _tlv(tag: int, value: bytes) -> bytes:
    size = len(value)  # DER: the shortest length form
    length = bytes([size]) if size < 0x80 else bytes([0x80 | (size.bit_length() + 7) // 8]) + size.to_bytes(
        (size.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + value


def _oid_der(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytes([first * 40 + second])
    for arc in rest:
        septets = [arc & 0x7F]
        while arc := arc >> 7:
            septets.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(septets))
    return _tlv(0x06, body)


def _notary_envelope(plaintext: bytes, password: bytes) -> str:
    """A PEM ``ENCRYPTED PRIVATE KEY`` as Notary writes it (PBES2: PBKDF2-SHA256, AES-256-CBC) around ``plaintext``."""
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    salt, iv, iterations = b"s" * 16, b"i" * 16, 1000
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(password)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    kdf = _tlv(0x30, _oid_der("1.2.840.113549.1.5.12") + _tlv(0x30, _tlv(0x04, salt) + _tlv(
        0x02, iterations.to_bytes(2, "big")) + _tlv(0x30, _oid_der("1.2.840.113549.2.9"))))
    scheme = _tlv(0x30, _oid_der("2.16.840.1.101.3.4.1.42") + _tlv(0x04, iv))
    algorithm = _tlv(0x30, _oid_der("1.2.840.113549.1.5.13") + _tlv(0x30, kdf + scheme))
    der = _tlv(0x30, algorithm + _tlv(0x04, encrypted))
    return (f"-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: targets\n\n{base64.b64encode(der).decode()}\n"
            "-----END ENCRYPTED PRIVATE KEY-----\n")


@pytest.mark.parametrize("plaintext", [
    # an EncryptedPrivateKeyInfo inside: cryptography raised TypeError ("Password was not given …")
    pytest.param("nested", id="encrypted-twice"),
    # a PrivateKeyInfo of an unknown algorithm: cryptography raised UnsupportedAlgorithm
    pytest.param("unknown", id="unknown-key-algorithm"),
])
def test_a_hostile_key_file_that_decrypts_is_one_clear_error(plaintext):
    """Another user's or a damaged key file that the passphrase opens but whose content cryptography rejects with
    something other than ValueError: one SigningKeyError line, not a traceback."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tufoci.errors import SigningKeyError
    from tufoci.repo_tool.notary_keyfile import load_notary_private_key

    if plaintext == "nested":
        content = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"x"))
    else:
        content = _tlv(0x30, _tlv(0x02, b"\x00") + _tlv(0x30, _oid_der("1.2.3.4")) + _tlv(0x04, b"\x01" * 32))
    with pytest.raises(SigningKeyError, match="cannot open the Notary key file"):
        load_notary_private_key(_notary_envelope(content, b"pw"), b"pw")


# -- token auth through the registry's challenge -----------------------------------------------------------------
def test_token_auth_with_the_docker_login_of_the_guns_registry(home, tmp_path):
    from tests.support.token_service import TokenService

    with TokenService.start(tmp_path / "tokens", users={"alice": "s3cret"}, anonymous_pull=False) as tokens:
        token = tokens.registry_config()["auth"]["token"]
        try:
            server = notary_peer.NotaryServer.start(
                tmp_path / "notary", server_extra={"auth": {"type": "token", "options": token}}
            )
        except notary_peer.NotaryError as exc:
            pytest.skip(f"notary is needed: {exc}")
        with server:
            pub = server.client("publisher")
            pub.env["NOTARY_AUTH"] = base64.b64encode(b"alice:s3cret").decode()
            _init(pub, GUN)
            pub.addhash(GUN, "1.0", 501, _digest(1))
            pub.publish(GUN)
            args = [GUN, "--server", server.url, "--ca-file", str(server.certs.ca), "--tofu", "--dry-run"]
            refused = _import(*args)
            assert refused.exit_code == 13 and "401" in refused.stderr  # no login: no token
            config = Path(home.parent / "docker-config")
            config.mkdir(exist_ok=True)
            auth = base64.b64encode(b"alice:s3cret").decode()
            (config / "config.json").write_text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
            mark = tokens.mark()
            plan = _plan(_import(*args, "-o", "json"))
            assert [t["tag"] for t in plan["tags"]] == ["1.0"]
            issued = tokens.issued(mark)
            assert issued and all(r.account == "alice" for r in issued)


# -- mutual TLS -------------------------------------------------------------------------------------------------
def test_client_certificate_is_presented(built, home, tmp_path):
    """notary-server's Debian build has no client-CA option: a TLS server that requires a client certificate
    stands in for a front proxy, serving the real collection's files the way notary-server names them."""
    import http.server
    import re
    import threading

    from tests.support.tls import make_server_pki

    pki = make_server_pki(tmp_path / "pki")
    client = pki.ca.issue("importer")
    metadata = trust_dir_copy(built, tmp_path / "trust") / "tuf" / GUN / "metadata"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            match = re.fullmatch(rf"/v2/{re.escape(GUN)}/_trust/tuf/(.+?)(\.[0-9a-f]{{64}})?\.json", self.path)
            path = metadata / f"{match.group(1)}.json" if match else None
            body = path.read_bytes() if path is not None and path.is_file() else None
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.ca_file)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        args = [GUN, "--server", f"https://127.0.0.1:{server.server_address[1]}", "--ca-file", str(pki.ca_file),
                "--tofu", "--dry-run"]
        without = _import(*args)
        assert without.exit_code == 13, without.stderr
        with_cert = _import(*args, "--client-cert", str(client.cert_file), "--client-key", str(client.key_file))
        assert with_cert.exit_code == 0, with_cert.stderr
        assert "tag web:2.0" in with_cert.stdout
    finally:
        server.shutdown()
        server.server_close()


def test_key_import_from_a_notary_key_file(built, home, monkeypatch):
    from cryptography.hazmat.primitives import serialization

    root = json.loads(_get(built.server, GUN, "root"))["signed"]
    targets_keyid = root["roles"]["targets"]["keyids"][0]
    path = built.publisher.trust_dir / "private" / f"{targets_keyid}.key"
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "tufoci passphrase")
    monkeypatch.delenv("NOTARY_TARGETS_PASSPHRASE", raising=False)
    missing = run_tufoci("key", "import", "from-notary", "--from-notary-key", str(path))
    assert missing.exit_code == 2 and "NOTARY_TARGETS_PASSPHRASE" in missing.stderr
    monkeypatch.setenv("NOTARY_TARGETS_PASSPHRASE", "wrong")
    assert run_tufoci("key", "import", "from-notary", "--from-notary-key", str(path)).exit_code != 0
    monkeypatch.setenv("NOTARY_TARGETS_PASSPHRASE", notary_peer.CLIENT_ENV["NOTARY_TARGETS_PASSPHRASE"])
    imported = run_tufoci("key", "import", "from-notary", "--from-notary-key", str(path))
    assert imported.exit_code == 0, imported.stderr
    assert imported.stdout.split()[2].startswith("encfile:")  # kept encrypted with the tufoci passphrase
    exported = json.loads(run_tufoci("key", "export", "from-notary").stdout)
    public = serialization.load_pem_public_key(exported["keyval"]["public"].encode())
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64encode(der).decode() == root["keys"][targets_keyid]["keyval"]["public"]


# -- delegates sign their roles; re-runs import what changed ---------------------------------------------------
@needs_registry
def test_delegate_signs_with_the_key_notary_generated_and_reruns_import_only_changes(
        built, home, registry, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization

    from tests.conftest import Machine, init_scope_on, reviewed_sign
    from tufoci.repo_tool.notary_keyfile import load_notary_private_key
    from tufoci.store.registry import registry_client

    gun, scope = f"{registry.host}/acme/svc", f"{registry.host}/acme"
    digests = {}
    for tag in ("top", "rel-1", "rel-2", "rel-3"):
        push_test_image(tmp_path, f"svc {tag}".encode(), f"{gun}:{tag}")
        manifest = registry_client(registry.host).repository("acme/svc").get_manifest(tag)
        digests[tag] = (manifest.digest.removeprefix("sha256:"), len(manifest.data))
    pub = built.publisher
    _init(pub, gun)
    pub.addhash(gun, "top", digests["top"][1], digests["top"][0])
    # the delegate's key, generated by Notary in its key store (encrypted with NOTARY_DELEGATION_PASSPHRASE)
    private = pub.trust_dir / "private"
    before = set(private.glob("*.key"))
    pub.run("key", "generate", "ecdsa", "--role", "targets/releases")
    (notary_key,) = set(private.glob("*.key")) - before
    public_pem = tmp_path / "releases.pub.pem"
    public_pem.write_bytes(load_notary_private_key(
        notary_key.read_text(), notary_peer.CLIENT_ENV["NOTARY_DELEGATION_PASSPHRASE"].encode()
    ).public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    pub.run("delegation", "add", gun, "targets/releases", str(public_pem), "--all-paths")
    ci_key, ci_cert = notary_peer.make_delegation_key(tmp_path / "keys", "svc-ci")
    pub.delegation_add(gun, "targets/ci", ci_cert)  # declared, never published
    for tag in ("rel-1", "rel-2"):
        pub.addhash(gun, tag, digests[tag][1], digests[tag][0], role="targets/releases")
    pub.publish(gun)

    maintainer, delegate = Machine("maintainer", tmp_path, monkeypatch), Machine("delegate", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    args = [gun, *_server_args(built), "--tofu"]
    dry = json.loads(maintainer.ok("import-notary", *args, "--dry-run", "-o", "json").stdout)["collections"][0]
    assert dry["sinceLastImport"]["first"] and sorted(dry["sinceLastImport"]["added"]) == [
        "svc:rel-1", "svc:rel-2", "svc:top"]
    assert {p["role"]: p["tags"] for p in dry["forDelegates"]} == {
        "svc/releases": ["svc:rel-1", "svc:rel-2"], "svc/ci": []}
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "not the passphrase")  # staged, then publishing stops
    stopped = maintainer("import-notary", *args)
    assert stopped.exit_code != 0 and not (maintainer.home / "notary-imported.json").exists()
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "correct horse")
    imported = maintainer.ok("import-notary", *args)  # continues where it stopped
    assert "proposed svc/releases v1 to its delegates" in imported.stdout
    assert "targets/ci: declared but never published; carried over empty" in imported.stdout
    assert maintainer("verify", "--skip-registry-check", f"{gun}:rel-1").exit_code == 10  # not signed yet

    # the delegate: their own machine, the key Notary generated for them, a review, a signature
    monkeypatch.setenv("NOTARY_DELEGATION_PASSPHRASE", notary_peer.CLIENT_ENV["NOTARY_DELEGATION_PASSPHRASE"])
    delegate.ok("key", "import", "releases", "--from-notary-key", str(notary_key))
    delegate.ok("trust", "add", scope, "--root", str(root))
    review = json.loads(delegate.ok("status", scope, "-o", "json").stdout)["proposals"]
    assert [p["role"] for p in review] == ["svc/releases"]
    reviewed_sign(delegate, scope, "svc/releases")
    maintainer.ok("publish", scope)  # the complete proposal goes live (or the online service does it)

    consumer = Machine("consumer", tmp_path, monkeypatch)
    consumer.ok("trust", "add", scope, "--root", str(root))
    for tag in ("top", "rel-1", "rel-2"):
        dct = pub.lookup(gun, tag)  # what docker pull with content trust resolves
        assert consumer.ok("verify", "--skip-registry-check", f"{gun}:{tag}").stdout.strip() == \
            f"{gun}@sha256:{dct.sha256}"

    # Notary moves on: one tag added; a re-run imports only that one, for the delegate to sign again
    pub.addhash(gun, "rel-3", digests["rel-3"][1], digests["rel-3"][0], role="targets/releases")
    pub.publish(gun)
    again = json.loads(maintainer.ok("import-notary", *args, "-o", "json").stdout)
    since = again["collections"][0]["sinceLastImport"]
    assert (since["added"], since["changed"], since["removed"], since["unchanged"], since["delegations"]) == (
        ["svc:rel-3"], [], [], 3, [])
    (published,) = again["published"]
    assert [(c["action"], c["role"], c["target"]) for c in published["changes"]] == [
        ("add", "svc/releases", "svc:rel-3")]
    assert set(published["proposed"]) == {"svc/releases"} and published["proposed"]["svc/releases"]["version"] == 2
    reviewed_sign(delegate, scope, "svc/releases")
    maintainer.ok("publish", scope)
    assert consumer.ok("verify", "--skip-registry-check", f"{gun}:rel-3").stdout.strip() == \
        f"{gun}@sha256:{digests['rel-3'][0]}"
    nothing = json.loads(maintainer.ok("import-notary", *args, "-o", "json").stdout)
    assert nothing["published"] == [] and nothing["collections"][0]["sinceLastImport"]["unchanged"] == 4
    assert nothing["collections"][0]["manifests"] == []  # checked when imported: the registry is not asked again

    # a tag removed in Notary is removed by the next run (by the delegate's signature too)
    pub.run("remove", gun, "rel-1", "--roles", "targets/releases")
    pub.publish(gun)
    removed = json.loads(maintainer.ok("import-notary", *args, "-o", "json").stdout)
    assert removed["collections"][0]["sinceLastImport"]["removed"] == ["svc:rel-1"]
    assert [(c["action"], c["role"], c["target"]) for c in removed["published"][0]["changes"]] == [
        ("remove", "svc/releases", "svc:rel-1")]
    reviewed_sign(delegate, scope, "svc/releases")
    maintainer.ok("publish", scope)
    assert consumer("verify", "--skip-registry-check", f"{gun}:rel-1").exit_code == 10


def test_an_unreadable_import_record_stops_the_import(built, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "notary-imported.json").write_text("{not json")
    result = _import(GUN, *_server_args(built), "--tofu", "--dry-run")
    assert result.exit_code == 1 and "notary-imported.json is unreadable" in result.stderr
