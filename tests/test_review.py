"""The review shows every change a proposal makes (issue 20.1/20.2), in its text and in its JSON.

The table is generated, not hand-picked: for every field of every role type
(root with expiry periods, targets with path and hash-prefix delegations,
targets with succinct roles, snapshot, timestamp) it changes the value, removes
the field, renames it and adds an unknown field beside it, and fails when the
change does not appear in the words ``status`` prints AND in its JSON.
"""

from __future__ import annotations

import copy
import datetime
import functools
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

from tufoci.render import change_line
from tufoci.repo_tool.review import describe, fingerprint, fingerprint_matches

EXPIRES = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


@functools.cache
def _key(name: str):
    """The same key for a name in every process: the test ids below name keyids, and pytest-xdist's workers
    must collect the same ids."""
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())
    return SSlibKey.from_crypto(private.public_key())


def _root() -> dict:
    root = Root(version=3, expires=EXPIRES, consistent_snapshot=True,
                unrecognized_fields={"x-tufoci-expiry": {"root": "365d", "targets": "90d", "snapshot": "7d",
                                                         "timestamp": "1d"}})
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.add_key(_key(role), role)
    return root.to_dict()


def _targets_with_paths() -> dict:
    web, db = _key("web"), _key("db")
    roles = {
        "web": DelegatedRole("web", [web.keyid], 1, False, paths=["web/*"]),
        "db": DelegatedRole("db", [db.keyid], 2, True, path_hash_prefixes=["ab", "cd"]),
    }
    targets = Targets(version=4, expires=EXPIRES, targets={
        "web:1.0": TargetFile(1234, {"sha256": "aa" * 32}, "web:1.0",
                              unrecognized_fields={"custom": {"mediaType": "application/vnd.oci.image.index.v1+json"}}),
    }, delegations=Delegations({web.keyid: web, db.keyid: db}, roles=roles))
    return targets.to_dict()


def _targets_with_bins() -> dict:
    key = _key("bins")
    bins = SuccinctRoles([key.keyid], 1, 4, "bin")
    return Targets(version=2, expires=EXPIRES, delegations=Delegations({key.keyid: key}, succinct_roles=bins)).to_dict()


def _snapshot() -> dict:
    meta = {"targets.json": MetaFile(4, 900, {"sha256": "bb" * 32})}
    return Snapshot(version=5, expires=EXPIRES, meta=meta).to_dict()


def _timestamp() -> dict:
    return Timestamp(version=6, expires=EXPIRES, snapshot_meta=MetaFile(5, 700, {"sha256": "cc" * 32})).to_dict()


DOCUMENTS = {"root": _root, "targets": _targets_with_paths, "targets-bins": _targets_with_bins,
             "snapshot": _snapshot, "timestamp": _timestamp}


def _fields(node, path=()):
    """Every dict, key and value of a JSON document, as paths (list items by index), in the same order in every
    process (pytest-xdist's workers must collect the same tests)."""
    if isinstance(node, dict):
        yield "add", path
        for key, value in sorted(node.items()):  # python-tuf builds root's roles from a set: hash order
            yield "remove", (*path, key)
            yield "rename", (*path, key)
            yield from _fields(value, (*path, key))
    elif isinstance(node, list):
        yield "value", path
        for i, value in enumerate(node):
            if isinstance(value, dict):
                yield from _fields(value, (*path, i))
    else:
        yield "value", path


def _mutated(doc: dict, how: str, path: tuple, marker: str) -> tuple[dict, str]:
    """A copy of ``doc`` with one field changed; returns it and the text the review must show."""
    new = copy.deepcopy(doc)
    *parents, last = path or (None,)
    node = new
    for part in parents:
        node = node[part]
    if how == "add":
        (node[last] if path else new)[f"x-{marker}"] = marker
        return new, marker
    if how == "remove":
        removed = node.pop(last)
        # a whole object removed is shown as what it held (keys, roles, periods), not by its own name
        return new, "" if isinstance(removed, dict | list) and removed else str(last)
    if how == "rename":
        node[f"{last}{marker}"] = node.pop(last)
        return new, marker
    value = node[last]
    if isinstance(value, bool):
        node[last] = not value
        return new, str(last)
    if isinstance(value, int):
        node[last] = value + 424242
        return new, str(value + 424242)
    if isinstance(value, list):
        node[last] = [*value, marker]
        return new, marker
    node[last] = marker
    return new, marker


CASES = [(name, how, path) for name, build in DOCUMENTS.items() for how, path in _fields(build())]


@pytest.mark.parametrize("name,how,path", CASES, ids=[f"{n}:{h}:{'.'.join(map(str, p))}" for n, h, p in CASES])
def test_every_change_to_every_field_is_shown_in_text_and_json(name, how, path):
    old = DOCUMENTS[name]()
    new, shown = _mutated(old, how, path, "zq9")
    changes = describe(old, new)
    text = "\n".join(change_line(c) for c in changes)
    assert changes, f"{how} {path} is invisible: no change described"
    camel = shown.split("_")[0] + "".join(part.title() for part in shown.split("_")[1:])  # status JSON is camelCase
    assert shown in json.dumps(changes) or camel in json.dumps(changes), f"{how} {path}: {shown!r} not in {changes}"
    if how == "remove":  # a removal may be worded ("- key …", "threshold 2 → None"): the field is named in the JSON
        assert text.strip(), f"{how} {path}: no text"
    else:
        # a value too long for one line is shown with the hash of the whole (tests: they differ)
        assert shown in text or "chars, sha256" in text, f"{how} {path}: {shown!r} not in the text:\n{text}"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_identical_versions_show_no_change(name):
    doc = DOCUMENTS[name]()
    assert describe(doc, copy.deepcopy(doc)) == []


def test_a_key_replaced_under_its_key_id_is_worded_as_such():
    old = _targets_with_paths()
    new = copy.deepcopy(old)
    keyid = old["delegations"]["roles"][0]["keyids"][0]
    new["delegations"]["keys"][keyid] = _key("mallory").to_dict()
    (change,) = describe(old, new)
    assert change["kind"] == "key" and change["change"] == "changed" and change["keyid"] == keyid
    assert change["from"]["public"] != change["to"]["public"]
    assert "DIFFERENT KEY under the same key id" in change_line(change)


def test_expiry_periods_and_renewal_are_worded():
    old = _root()
    new = copy.deepcopy(old)
    new["version"], new["expires"] = 4, "2031-01-01T00:00:00Z"
    new["x-tufoci-expiry"]["snapshot"] = new["x-tufoci-expiry"]["timestamp"] = "3650d"
    lines = [change_line(c) for c in describe(old, new)]
    assert sorted(lines) == ["expires 2030-01-01T00:00:00Z → 2031-01-01T00:00:00Z",
                     "expiry period of snapshot 7d → 3650d", "expiry period of timestamp 1d → 3650d",
                     "version 3 → 4"]


def test_the_delegation_search_order_is_a_change():
    old = _targets_with_paths()
    new = copy.deepcopy(old)
    new["delegations"]["roles"].reverse()
    (change,) = describe(old, new)
    assert change_line(change) == "delegation search order web, db → db, web"


def test_a_type_change_that_json_equality_would_hide_is_shown():
    old = _targets_with_paths()
    new = copy.deepcopy(old)
    new["delegations"]["roles"][0]["threshold"] = True  # == 1 in Python, another byte string when signed
    assert describe(old, new)


def test_fingerprints():
    digest = "sha256:" + "0123456789abcdef" * 4
    assert fingerprint(digest) == "0123456789abcdef" * 4
    for text in (fingerprint(digest), digest, digest.removeprefix("sha256:"), fingerprint(digest).upper() + " "):
        assert fingerprint_matches(digest, text)
    for text in ("", "0123456789abcdef", fingerprint("sha256:" + "f" * 64)):
        assert not fingerprint_matches(digest, text)


def test_a_fingerprint_tells_apart_proposals_that_share_128_bits():
    """A proposer who grinds two proposals sharing the first 128 bits of their digest (~2**64 hashes, a
    collision, not a preimage) must not get a signature for the evil one with the benign one's fingerprint."""
    benign = "sha256:" + "0123456789abcdef" * 2 + "a" * 32
    evil = "sha256:" + "0123456789abcdef" * 2 + "b" * 32
    assert fingerprint(benign) != fingerprint(evil)
    assert not fingerprint_matches(evil, fingerprint(benign))
    assert not fingerprint_matches(evil, benign[:39])  # no prefix of the digest is accepted
