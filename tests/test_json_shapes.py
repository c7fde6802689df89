"""Every command's ``-o json`` follows one naming convention: lowerCamelCase field names (issue 11 item 8c).

One scenario runs every command that prints JSON, on two maintainers' machines
(so that a proposal, a signature and a copy exist), and checks every field
name at every depth. Keys that are data (role names, a target's ``custom``)
are exempt, and named here so that a new one is a decision, not an accident.
"""

from __future__ import annotations

import json
import re

from tests.conftest import Machine, needs_registry, push_test_image
from tufoci.json_keys import FIELD_NAME, camel

pytestmark = needs_registry

DATA_KEYED = {"published", "proposed", "wouldSign", "custom", "versions"}  # maps whose keys are data


def field_names(value: object, path: str = "") -> list[tuple[str, str]]:
    """(path, name) of every field name in a JSON value."""
    names = []
    if isinstance(value, dict):
        for key, item in value.items():
            if path.rsplit(".", 1)[-1] not in DATA_KEYED:
                names.append((path, key))
            names += field_names(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            names += field_names(item, path)
    return names


def test_camel_case_names():
    assert [camel(n) for n in ("root_sha256", "manifests_copied", "mediaType", "scope", "snapshot_resigned")] == [
        "rootSha256", "manifestsCopied", "mediaType", "scope", "snapshotResigned"]


def test_every_command_prints_camel_case_field_names(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "correct horse")
    scope = f"{registry.host}/acme"
    alice, bob = Machine("alice", tmp_path, monkeypatch), Machine("bob", tmp_path, monkeypatch)
    outputs: list[tuple[str, object]] = []

    def record(machine: Machine, *args: str) -> object:
        answer = json.loads(machine.ok(*args, "-o", "json").stdout)
        outputs.append((" ".join(args[:2]), answer))
        return answer

    record(alice, "key", "generate", "root")
    alice.new_key("online", "--unencrypted")
    alice.new_key("alice")
    alice.ok("key", "import", "bob", str(bob.new_key("bob")))
    root = tmp_path / "root.json"
    record(alice, "init", scope, "--root-key", "root", "--targets-key", "alice", "--online-key", "online",
           "--root-out", str(root))
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    record(alice, "target", "add", f"{scope}/web:1.0")
    alice.ok("rotate", scope, "targets", "--add-key", "bob", "--threshold", "2")
    record(alice, "publish", scope, "--dry-run")
    record(alice, "publish", scope)  # a proposal: bob's signature is missing
    bob.ok("trust", "add", scope, "--root", str(root))
    status = record(bob, "status", scope)
    expect = sum((["--expect", p["fingerprint"]] for p in status["proposals"]), [])
    signed = record(bob, "sign", scope, *expect)
    record(alice, "publish", scope)  # the complete proposal goes live
    push_test_image(tmp_path, b"web 1.1", f"{scope}/web:1.1")
    record(alice, "target", "add", "--publish", f"{scope}/web:1.1")
    record(alice, "key", "list")
    record(alice, "target", "list", scope)
    record(alice, "trust", "list")
    record(alice, "log")
    record(alice, "verify", f"{scope}/web:1.0")
    record(alice, "copy", scope, f"{registry.host}/mirror", "-q")
    record(bob, "history", scope)

    assert signed and status["proposals"], "a proposal was shown and signed"
    wrong = [(command, path, name) for command, answer in outputs
             for path, name in field_names(answer) if not re.fullmatch(FIELD_NAME, name)]
    assert wrong == [], wrong
