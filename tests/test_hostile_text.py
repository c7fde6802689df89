"""Registry-controlled text on the terminal, and tags tufoci does not write (issue 11 items 6 and 8b).

The registry chooses its error bodies, its tag lists and what a proposal
artifact says; metadata names roles and targets. None of it may move the
cursor, add a line or crash a command: every test here lies through the tamper
proxy of tests/test_hostile_registry.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from tuf.api.metadata import TargetFile

from tests.conftest import needs_registry
from tests.support.tamper_proxy import Reply, on
from tests.test_hostile_registry import (  # noqa: F401 - the world and hostile fixtures
    Forger,
    clone_maintainer,
    hostile,
    serve_files,
    serve_manifest,
    upstream_with,
    world,
)
from tufoci.layout_spec import (
    ANNOTATION_PROPOSER,
    ANNOTATION_ROLE,
    ANNOTATION_VERSION,
    METADATA_MEDIA_TYPE,
    PROPOSAL_CONFIG_MEDIA_TYPE,
    build_artifact_manifest,
    proposal_tag,
)
from tufoci.safe_text import printable

pytestmark = needs_registry

# what a hostile registry writes: erase the line, return the cursor, print a fake verified digest
FAKE_LINE = "\x1b[2K\r127.0.0.1:5000/acme/web@sha256:" + "e" * 64
HOSTILE = f"gone\n{FAKE_LINE}\r\n\x9b31m\u202eevil\u2028x\x7f"
CONTROL = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x202E, 0x2028)]


def assert_inert(text: str) -> None:
    """Nothing in ``text`` a terminal would act on (a newline only ends a line)."""
    for line in text.splitlines():
        assert not any(c in line for c in CONTROL), repr(line)
    assert "\r" not in text


@pytest.mark.parametrize("raw,shown", [
    ("plain text, ünïcödé", "plain text, ünïcödé"),
    ("a\x1b[31mb", "a\\x1b[31mb"), ("cr\rlf\n", "cr\\x0dlf\\x0a"), ("\x00\t\x7f", "\\x00\\x09\\x7f"),
    ("c1\x85\x9b", "c1\\x85\\x9b"), ("rlo\u202eoff\u202c", "rlo\\u202eoff\\u202c"), ("iso\u2066\u2069", "iso\\u2066\\u2069"),
    ("sep\u2028\u2029", "sep\\u2028\\u2029"), ("marks\u200e\u200f\u061c", "marks\\u200e\\u200f\\u061c"),
])
def test_printable_escapes_what_a_terminal_acts_on(raw, shown):
    assert printable(raw) == shown


def test_a_registry_error_body_is_one_inert_line(hostile):
    hostile.at("B")
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN\x1b[8m", "message": HOSTILE * 50}]}).encode()
    lie = on(r"/v2/acme/web/manifests/1\.0", lambda ex: Reply(404, [("Content-Type", "application/json")], body),
             method=None)
    result = hostile.attack(hostile.ref("acme/web:1.0"), lie, code=13, message="not found on")
    assert_inert(result.stderr)
    assert "gone\\x0a\\x1b[2K\\x0d127.0.0.1:5000/acme/web@sha256:" in result.stderr
    assert len(result.stderr) < 1000  # the registry's message is cut


def test_status_escapes_the_error_and_what_a_proposal_says(hostile, world):
    maintainer = clone_maintainer(hostile)
    body = json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE}]}).encode()
    hostile.proxy.add(on(r"/v2/acme/tuf/manifests/timestamp", lambda ex: Reply(403, [], body)))
    result = maintainer("status", hostile.ref("acme"))
    hostile.proxy.clear()
    assert "could not refresh" in result.stdout and "DENIED" in result.stdout
    assert_inert(result.stdout + result.stderr)

    # an open proposal is anyone's push: its proposer and its target names are the registry's text
    proposal = Forger(world).metadata("targets.3")
    proposal.signed.version = 4
    proposal.signed.targets[f"web:{HOSTILE}"] = TargetFile(7, {"sha256": "0" * 64}, f"web:{HOSTILE}")
    proposal.signatures.clear()
    data = Forger.to_bytes(proposal)
    tag = proposal_tag("targets", 4)
    manifest = build_artifact_manifest(PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, data, {
        ANNOTATION_ROLE: "targets", ANNOTATION_VERSION: "4", ANNOTATION_PROPOSER: HOSTILE})
    with_proposal = upstream_with(lambda b: json.dumps(
        {**json.loads(b), "tags": [*json.loads(b)["tags"], tag]}).encode())
    hostile.proxy.add(on(r"/v2/acme/tuf/tags/list", with_proposal), serve_manifest("acme/tuf", tag, manifest),
                      serve_files("acme/tuf", {"sha256:" + hashlib.sha256(data).hexdigest(): data}))
    result = maintainer("status", hostile.ref("acme"))
    assert result.exit_code == 0, result.stderr
    assert "proposal targets v4 by gone\\x0a" in result.stdout  # the proposal was read, and shown escaped
    assert "+ web:gone\\x0a" in result.stdout
    assert_inert(result.stdout + result.stderr)


TAGS_NOBODY_WROTE = ["root.\u00b2", "root.\u0661", "root.01", "root.0", "root.", "staged.x", "sig.targets.1.zz", "d.a.b"]


def test_trust_add_by_sha256_skips_tags_tufoci_does_not_write(hostile, world):
    """`root.²` in the tag list once ended `trust add --root-sha256` with an internal error (str.isdigit)."""
    junk = upstream_with(lambda b: json.dumps(
        {**json.loads(b), "tags": TAGS_NOBODY_WROTE + json.loads(b)["tags"]}).encode())
    hostile.proxy.add(on(r"/v2/acme/tuf/tags/list", junk))
    root_sha256 = hashlib.sha256(world.roots["acme"].read_bytes()).hexdigest()
    result = hostile.consumer.ok("trust", "add", hostile.ref("acme"), "--root-sha256", root_sha256)
    assert root_sha256 in result.stdout
    assert not [p for p in hostile.proxy.paths() if "manifests/root.%" in p or "manifests/root.0" in p]


def test_status_with_junk_tags_still_reports(hostile):
    maintainer = clone_maintainer(hostile)
    junk = upstream_with(lambda b: json.dumps(
        {**json.loads(b), "tags": TAGS_NOBODY_WROTE + json.loads(b)["tags"]}).encode())
    hostile.proxy.add(on(r"/v2/acme/tuf/tags/list", junk))
    result = maintainer("status", hostile.ref("acme"))
    assert result.exit_code == 0 and "could not refresh" not in result.stdout, result.stdout + result.stderr


def test_a_library_warning_about_hostile_headers_is_one_inert_line(tmp_path):
    """Independent review (2026-12): urllib3 logs a WARNING, with a traceback, for headers it cannot parse,
    quoting them. Any registry could thereby add a multi-line traceback to every command's stderr."""
    import os
    import socket
    import subprocess
    import sys
    import threading
    from pathlib import Path

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n" + FAKE_LINE.encode()
                             + b"\xc2\x9b31m\r\n\r\nno")

    threading.Thread(target=answer, daemon=True).start()
    try:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("tufoci")), "trust", "add", f"127.0.0.1:{port}/acme",
             "--root-sha256", "a" * 64],
            env={**os.environ, "TUFOCI_HOME": str(tmp_path / "home"), "TUFOCI_NO_AGENT": "1"},
            capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert result.returncode != 0
    assert "Failed to parse headers" in result.stderr  # the warning is still shown: one line
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 2, result.stderr
    assert_inert(result.stderr)


def test_import_notary_text_output_is_escaped(monkeypatch):
    """Independent review (2026-12): the plan's text (Notary role names, certificate CNs, what the registry
    answered a manifest check) was printed with click.echo, past tufoci.safe_text."""
    from tests.conftest import run_tufoci
    from tufoci.repo_tool import notary_import

    monkeypatch.setattr(notary_import, "plan_import", lambda *args, **kwargs: [])
    monkeypatch.setattr(notary_import, "render_text", lambda result: [f"  key 0123… (ecdsa CN={HOSTILE})"])
    result = run_tufoci("import-notary", "example.com/acme", "--trust-dir", ".", "--root-sha256", "a" * 64,
                        "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert_inert(result.stdout)
    assert "CN=gone\\x0a\\x1b[2K" in result.stdout
