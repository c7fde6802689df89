"""What a proposal changes: a complete structural diff of the signed bytes, in words.

A signer must see every change they sign (issue 20.1/20.2): a key swapped under
its unchanged key id, an expiry of 2099 or an expiry period of ten years are
as much a change as an added tag. So the review is not assembled from the
fields a renderer happens to know: ``field_changes`` compares the two
``signed`` dicts (exactly what the canonical signed bytes encode, unrecognised
fields included) leaf by leaf, and ``describe`` words the leaves it knows and
shows every other one as a generic ``field a.b.c changed: old → new`` entry.
A proposal can therefore never look like "no changes" while it changes
something. Each entry becomes one line of text in tufoci/render.py
(``change_line``). Pure functions: no I/O, no python-tuf objects, no click.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class _Absent:
    """A field that one side does not have (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class FieldChange:
    """One leaf of the signed dict that differs: ``path`` from the top, old and new value (or ABSENT)."""

    path: tuple[str, ...]
    old: Any
    new: Any
    order: bool = False  # old and new are the role names of ``delegations.roles`` in search order


def fingerprint(signed_digest: str) -> str:
    """The hex of ``sha256:<hex>`` of the canonical signed bytes, what ``status`` shows and ``sign`` checks.

    All 256 bits: the proposer chooses the bytes of the proposal, so a truncated
    fingerprint only has to resist a collision (two proposals, one benign and one
    evil, sharing it), which costs the square root of its size: 128 bits fell to
    ~2**64 hashes, within reach of rented hardware.
    """
    return signed_digest.removeprefix("sha256:")


def fingerprint_matches(signed_digest: str, expected: str) -> bool:
    """Whether ``expected`` (the fingerprint, or it with ``sha256:``) names these signed bytes; no prefix does."""
    full = fingerprint(signed_digest)
    return expected.strip().lower() in (full, "sha256:" + full)


def _same(a: Any, b: Any) -> bool:
    # JSON equality with types: Python's 1 == True == 1.0 must not hide a change of the signed bytes
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _named_list(value: Any) -> dict | None:
    """A TUF list of named objects (``delegations.roles``) as a dict by name, if it is one."""
    if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value):
        return None
    named = {v["name"]: v for v in value}
    return named if len(named) == len(value) else None


def field_changes(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[FieldChange]:
    """Every leaf that differs between two JSON values, in a stable order.

    Dicts are compared key by key (a non-empty dict against ABSENT too, so an
    added role or key is reported field by field); ``delegations.roles`` is
    compared by role name plus its order (the search order of delegations);
    anything else is a leaf compared as canonical JSON.
    """
    if path == ("delegations", "roles"):
        before, after = (_named_list(old) if old is not ABSENT else {}), (_named_list(new) if new is not ABSENT else {})
        if before is not None and after is not None:
            changes = []
            common = [n for n in before if n in after]
            if common != [n for n in after if n in before]:
                changes.append(FieldChange(path, list(before), list(after), order=True))  # the search order changed
            for name in sorted(set(before) | set(after)):
                changes += field_changes(before.get(name, ABSENT), after.get(name, ABSENT), (*path, name))
            return changes
    if (isinstance(old, dict) or old is ABSENT) and (isinstance(new, dict) or new is ABSENT) and (old or new):
        before = old if isinstance(old, dict) else {}
        after = new if isinstance(new, dict) else {}
        if (old is ABSENT and not after) or (new is ABSENT and not before):
            return [FieldChange(path, old, new)]  # an empty dict appeared or vanished
        changes = []
        for key in sorted(set(before) | set(after)):
            changes += field_changes(before.get(key, ABSENT), after.get(key, ABSENT), (*path, key))
        return changes
    if old is ABSENT or new is ABSENT or not _same(old, new):
        return [FieldChange(path, old, new)]
    return []


def _change(old: Any, new: Any) -> str:
    return "added" if old is ABSENT else "removed" if new is ABSENT else "changed"


def _value(value: Any) -> Any:
    return None if value is ABSENT else value


def _sha256(target: Any) -> str | None:
    hashes = target.get("hashes") if isinstance(target, dict) else None
    return "sha256:" + str(hashes.get("sha256", "")) if isinstance(hashes, dict) else None


def _key_summary(key: Any) -> dict | None:
    if not isinstance(key, dict):
        return None
    keyval = key.get("keyval")
    if not isinstance(keyval, dict):
        keyval = {}
    return {"keytype": key.get("keytype"), "scheme": key.get("scheme"), "public": keyval.get("public")}


_KEY_FIELDS = {("keytype",), ("scheme",), ("keyval", "public")}
_DELEGATION_FIELDS = ("keyids", "threshold", "paths", "path_hash_prefixes", "terminating")


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if path[:2] == ("delegations", "roles") and isinstance(doc, list):
            doc = (_named_list(doc) or {}).get(part, ABSENT)
        elif isinstance(doc, dict):
            doc = doc.get(part, ABSENT)
        else:
            return ABSENT
    return doc


def _friendly(kind: str, leaf: FieldChange, old: dict, new: dict) -> tuple[tuple, dict] | None:
    """(group, entry) for a leaf the review can put in words, else None (shown as a generic field change)."""
    p = leaf.path
    if p == ("expires",) or p == ("version",):
        return (p, {"kind": p[0], "from": _value(leaf.old), "to": _value(leaf.new)})
    key_base = ("keys",) if kind == "root" else ("delegations", "keys")
    if len(p) > len(key_base) and p[:len(key_base)] == key_base:
        keyid, rest = p[len(key_base)], p[len(key_base) + 1:]
        a, b = _at(old, (*key_base, keyid)), _at(new, (*key_base, keyid))
        if rest in _KEY_FIELDS or (rest == () and (a is ABSENT or b is ABSENT)):
            entry = {"kind": "key", "change": _change(a, b), "keyid": keyid, "in": kind, "from": _key_summary(a),
                     "to": _key_summary(b)}
            return (("key", keyid), entry)
        return None
    if kind == "root":
        if len(p) == 3 and p[0] == "roles" and p[2] in ("keyids", "threshold"):
            a, b = _at(old, p[:2]), _at(new, p[:2])
            a_ids = a.get("keyids", []) if isinstance(a, dict) else []
            b_ids = b.get("keyids", []) if isinstance(b, dict) else []
            return (p[:2], {
                "kind": "root-role", "role": p[1], "threshold": _value(_at(new, (*p[:2], "threshold"))),
                "fromThreshold": _value(_at(old, (*p[:2], "threshold"))),
                "keyids": b_ids, "addedKeys": [k for k in b_ids if k not in a_ids],
                "removedKeys": [k for k in a_ids if k not in b_ids],
            })
        if len(p) == 2 and p[0] == "x-tufoci-expiry":
            return (p, {"kind": "expiry-period", "role": p[1], "from": _value(leaf.old), "to": _value(leaf.new)})
        return None
    if len(p) >= 2 and p[0] == "targets":
        a, b = _at(old, p[:2]), _at(new, p[:2])
        entry = {"kind": "target", "change": _change(a, b), "target": p[1]}
        if a is ABSENT or b is ABSENT:  # an added or removed target is shown by its name and digest
            return (p[:2], {**entry, "digest": _sha256(b if a is ABSENT else a)})
        if p[2:] == ("hashes", "sha256"):
            return (p[:2], {**entry, "from": _sha256(a), "digest": _sha256(b)})
        return None
    if leaf.order:
        return (p, {"kind": "delegation-order", "from": leaf.old, "to": leaf.new})
    if len(p) >= 3 and p[:2] == ("delegations", "roles"):
        a, b = _at(old, p[:3]), _at(new, p[:3])
        if not (len(p) == 3 or (len(p) == 4 and p[3] in (*_DELEGATION_FIELDS, "name"))):
            return None  # an unrecognised field of the role: shown as a field change
        shown = b if b is not ABSENT else a
        entry = {"kind": "delegation", "change": _change(a, b), "role": p[2],
                 **{_camel(f): shown.get(f) for f in _DELEGATION_FIELDS if isinstance(shown, dict)}}
        if entry["change"] == "changed":
            entry["from"] = {_camel(f): a.get(f) for f in _DELEGATION_FIELDS if not _same(a.get(f), b.get(f))}
        return (p[:3], entry)
    return None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def describe(old: dict | None, new: dict) -> list[dict]:
    """Every change from ``old`` (the live ``signed`` dict; None for a role's first version) to ``new``.

    Known fields get a worded entry (targets, keys, delegations, root roles,
    expiry, expiry periods, version); every other changed leaf becomes a
    ``{"kind": "field", "field": "a.b.c", "change", "from", "to"}`` entry.
    The result is empty only when the two signed dicts are identical.
    """
    before = old or {}
    kind = new.get("_type")
    if not isinstance(kind, str):
        kind = ""
    entries: dict[tuple, dict] = {}
    for leaf in field_changes(before, new):
        found = _friendly(kind, leaf, before, new)
        if found is None:
            entry = {"kind": "field", "field": ".".join(leaf.path), "change": _change(leaf.old, leaf.new)}
            entry.update({k: v for k, v in (("from", leaf.old), ("to", leaf.new)) if v is not ABSENT})
            found = (("field", *leaf.path), entry)
        entries.setdefault(*found)
    return list(entries.values())
