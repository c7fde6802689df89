"""Keys in an HSM, for real: SoftHSM2 through PKCS#11 (securesystemslib's HSMSigner, python-pkcs11).

The root and targets keys are generated inside a SoftHSM token; tufoci stores
only their public keys and ``hsm:`` URIs, and signs a publish and a root
rotation through the token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, push_test_image

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321"

try:
    import pkcs11
    import pkcs11.util.ec
except ImportError:  # pragma: no cover - CI installs it with the test extra
    pkcs11 = None

pytestmark = [
    needs_registry,
    pytest.mark.skipif(
        not os.environ.get("CI") and (pkcs11 is None or shutil.which("softhsm2-util") is None
                                       or not os.path.exists(SOFTHSM_MODULE)),
        reason="SoftHSM2 (Debian softhsm2) and python-pkcs11 are needed",
    ),
]


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """One SoftHSM token for the module (the PKCS#11 library reads its config once per process),
    holding two ECDSA P-256 keys with ids 2 and 3."""
    base = tmp_path_factory.mktemp("softhsm")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf), "PYKCS11LIB": SOFTHSM_MODULE, "TUFOCI_HSM_PIN": PIN}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    label = "tufoci-test"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "87654321"],
                   check=True, capture_output=True)
    lib = pkcs11.lib(SOFTHSM_MODULE)
    with lib.get_token(token_label=label).open(rw=True, user_pin=PIN) as session:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC,
            {pkcs11.Attribute.EC_PARAMS: pkcs11.util.ec.encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        for keyid in (2, 3):
            params.generate_keypair(store=True, id=pkcs11.util.biginteger(keyid), label=f"key{keyid}")
    yield {**env, "label": label}
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def token(softhsm: dict[str, str], monkeypatch) -> str:
    for name in ("SOFTHSM2_CONF", "PYKCS11LIB", "TUFOCI_HSM_PIN"):
        monkeypatch.setenv(name, softhsm[name])
    return softhsm["label"]


def test_hsm_keys_sign_a_publish_and_a_root_rotation(registry, token, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    security, cluster = Machine("security", tmp_path, monkeypatch), Machine("cluster", tmp_path, monkeypatch)
    root = security.ok("key", "import-hsm", "hsm-root", "--hsm-keyid", "2", "--token-label", token).stdout.split()
    security.ok("key", "import-hsm", "hsm-targets", "--hsm-keyid", "3", "--token-label", token)
    assert root[2] == f"hsm:2?label={token}"
    security.new_key("online", "--unencrypted")
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "hsm-root", "--targets-key", "hsm-targets", "--online-key", "online",
                "--root-out", str(root_file))
    push_test_image(tmp_path, b"web", f"{scope}/web:1.0")
    security.ok("target", "add", f"{scope}/web:1.0")
    security.ok("publish", scope)  # targets signed inside the token
    cluster.ok("trust", "add", scope, "--root", str(root_file))
    cluster.ok("verify", f"{scope}/web:1.0")

    # rotate: add a file-based second root key and require both (root v2 signed by the HSM key)
    security.new_key("root-backup")
    security.ok("rotate", scope, "root", "--add-key", "root-backup", "--threshold", "2")
    assert json.loads(security.ok("publish", scope, "-o", "json").stdout)["published"]["root"] == 2
    cluster.ok("verify", f"{scope}/web:1.0")

    # nothing of the private keys ever touched tufoci's state
    keys = {k["name"]: k for k in json.loads(security.ok("key", "list", "-o", "json").stdout)}
    assert keys["hsm-root"]["uri"].startswith("hsm:") and keys["hsm-targets"]["uri"].startswith("hsm:")
    assert sorted(p.name for p in (security.home / "keys").iterdir()) == ["online.pem", "root-backup.pem"]
    assert b"PRIVATE" not in (security.home / "state.db").read_bytes()


def test_wrong_pin_is_one_clear_line(registry, token, tmp_path: Path, home: Path, monkeypatch):
    security = Machine("security", tmp_path, monkeypatch)
    security.ok("key", "import-hsm", "hsm-root", "--hsm-keyid", "2", "--token-label", token)
    security.new_key("online", "--unencrypted")
    monkeypatch.setenv("TUFOCI_HSM_PIN", "0000")
    result = security("init", f"{registry.host}/acme", "--root-key", "hsm-root", "--online-key", "online")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "signing root failed" in result.stderr


@pytest.mark.parametrize("key", ["online", "targets"])
def test_an_hsm_uri_holding_another_key_is_named_and_nothing_is_pushed(registry, token, tmp_path: Path, home: Path,
                                                                       monkeypatch, key):
    """Issue 20.8: an operator pairs a key's public half with ``hsm:`` URI of ANOTHER key in the token
    (nothing can check that at import without the PIN). Its first signature does not verify: the command
    names the key and URI, and nothing reaches the registry (before, the timestamp moved to metadata
    every client rejects)."""
    from tufoci.reference import Repository
    from tufoci.store import open_repository

    scope = f"{registry.host}/acme"
    security, operator, cluster = (Machine(n, tmp_path, monkeypatch) for n in ("security", "operator", "cluster"))
    security.ok("key", "import-hsm", "online", "--hsm-keyid", "2", "--token-label", token)
    security.new_key("root")
    security.new_key("targets", "--type", "ecdsa-p256")
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                "--root-out", str(root_file))
    records = tmp_path / "build.txt"
    records.write_text(f"{scope}/web:1.0 sha256:{'1' * 64} 100\n")
    security.ok("target", "add", "--from-file", str(records), "--publish")
    for machine in (operator, cluster):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    public = tmp_path / f"{key}.pub.json"
    public.write_text(security.ok("key", "export", key).stdout)
    wrong = f"hsm:3?label={token}"
    operator.ok("key", "import", key, str(public), "--uri", wrong)
    store = open_repository(Repository(registry.host, "acme/tuf"))
    before = {tag: store.get_manifest(tag).digest for tag in store.list_tags()}

    if key == "online":
        result = operator("timestamp", scope)
    else:
        records.write_text(f"{scope}/web:2.0 sha256:{'2' * 64} 100\n")
        operator.ok("target", "add", "--from-file", str(records))
        result = operator("publish", scope)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert f"key {key} ({wrong})" in result.stderr and "does not verify" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert {tag: store.get_manifest(tag).digest for tag in store.list_tags()} == before  # nothing pushed
    cluster.ok("verify", "--skip-registry-check", f"{scope}/web:1.0")
