"""Notary's format adapter and the translation rules, without a server: signatures, key ids, dates, path
prefixes → patterns (checked with python-tuf's own matcher), and the two resolution semantics."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import DelegatedRole

from tufoci.repo_tool.notary_format import (
    NotaryRejectedError,
    key_id,
    parse_date,
    parse_key,
    verify_signatures,
)
from tufoci.repo_tool.notary_plan import prefix_pattern, resolve
from tufoci.repo_tool.notary_verify import Collection, NotaryRole, NotaryTarget

_EC = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PRIVATE = [*_EC, _RSA]


def _notary_key(private) -> dict:
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    keytype = "rsa" if isinstance(private, rsa.RSAPrivateKey) else "ecdsa"
    return {"keytype": keytype, "keyval": {"private": None, "public": base64.b64encode(der).decode()}}


def _sign(private, data: bytes, *, der: bool = False) -> tuple[str, bytes]:
    if isinstance(private, rsa.RSAPrivateKey):
        return "rsapss", private.sign(
            data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        )
    signature = private.sign(data, ec.ECDSA(hashes.SHA256()))
    if der:
        return "ecdsa", signature
    r, s = decode_dss_signature(signature)
    return "ecdsa", r.to_bytes(32, "big") + s.to_bytes(32, "big")  # Notary's raw r‖s


KEYS = [_notary_key(p) for p in _PRIVATE]
IDS = [key_id(k) for k in KEYS]


def _envelope(signers: list[int], *, der: bool = False, method: str | None = None) -> dict:
    signed = {"_type": "Targets", "targets": {}, "version": 1, "expires": "2030-01-01T00:00:00Z"}
    data = encode_canonical(signed).encode()
    signatures = []
    for i in signers:
        m, sig = _sign(_PRIVATE[i], data, der=der)
        signatures.append({"keyid": IDS[i], "method": method or m, "sig": base64.b64encode(sig).decode()})
    return {"signed": signed, "signatures": signatures}


# keys in the role, threshold, who signed, options, accepted?
SIGNATURE_CASES = [
    ([0], 1, [0], {}, True),
    ([0, 1, 2], 2, [0, 2], {}, True),
    ([0, 1, 2], 2, [0], {}, False),
    ([0, 1, 2], 2, [0, 0], {}, False),  # the same key twice counts once
    ([0, 1], 1, [2], {}, False),  # a key outside the role
    ([0], 1, [0], {"der": True}, False),  # Notary's ecdsa is raw r‖s, never DER
    ([0], 1, [0], {"method": "rsapss"}, False),  # a method that does not fit the key
    ([3], 1, [3], {}, True),  # rsapss
    ([0, 3], 2, [0, 3], {}, True),
    ([0], 0, [0], {}, False),  # threshold 0 is no threshold
]


@pytest.mark.parametrize("role_keys,threshold,signers,options,accepted", SIGNATURE_CASES)
def test_signature_thresholds(role_keys, threshold, signers, options, accepted):
    keys = {IDS[i]: parse_key(IDS[i], KEYS[i], "t.json") for i in range(len(KEYS))}
    envelope = _envelope(signers, **options)
    keyids = [IDS[i] for i in role_keys]
    if accepted:
        verify_signatures(envelope, keys, keyids, threshold, "t.json")
    else:
        with pytest.raises(NotaryRejectedError):
            verify_signatures(envelope, keys, keyids, threshold, "t.json")


def test_key_ids_are_checked():
    key = dict(KEYS[0])
    assert key_id(key) == hashlib.sha256(encode_canonical(key).encode()).hexdigest()
    with pytest.raises(NotaryRejectedError, match="key id .* does not match"):
        parse_key(IDS[1], key, "targets.json")
    with pytest.raises(NotaryRejectedError, match="holds another kind of key"):
        wrong = {"keytype": "rsa", "keyval": key["keyval"]}
        parse_key(key_id(wrong), wrong, "targets.json")


@pytest.mark.parametrize("text,expected", [
    ("2036-12-01T23:48:58.110151902Z", datetime.datetime(2036, 12, 1, 23, 48, 58, 110151, datetime.UTC)),
    ("2030-01-01T00:00:00Z", datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)),
    ("2030-01-01T02:00:00.5+02:00", datetime.datetime(2030, 1, 1, 0, 0, 0, 500000, datetime.UTC)),
])
def test_nanosecond_dates(text, expected):
    assert parse_date(text, "x") == expected


@pytest.mark.parametrize("text", ["2030-01-01", "2030-01-01T00:00:00", 7, "2030-01-01T00:00:00.1234567890Z"])
def test_unreadable_dates_refuse(text):
    with pytest.raises(NotaryRejectedError):
        parse_date(text, "x")


# -- prefixes → patterns: exactly the same names, checked with python-tuf's matcher -------------------------
def _tuf_matches(pattern: str, name: str) -> bool:
    return DelegatedRole("r", [], 1, False, paths=[pattern]).is_delegated_path(name)


PREFIX_CASES = [
    ("", "1.0", True), ("1.", "1.0", True), ("1.", "10", False), ("v", "v1", True), ("v1", "v", False),
    ("*", "anything", False), ("*", "*", True), ("?", "a", False), ("[", "a", False), ("[a]", "a", False),
    ("a]", "a]", True), ("a[", "a[b", True), ("!", "a", False), ("v1/", "v1", False), ("/", "x", False), ("1.0", "1.0", True),
    ("rc", "rc1", True), ("rc", "RC1", False), ("latest", "latest", True), ("la", "latest", True),
]


@pytest.mark.parametrize("prefix,tag,matches", PREFIX_CASES)
def test_prefix_patterns_table(prefix, tag, matches):
    for repository in ("web", "team/web"):
        assert _tuf_matches(prefix_pattern(repository, prefix), f"{repository}:{tag}") is matches
        assert _tuf_matches(prefix_pattern(repository, prefix), f"other:{tag}") is False


_TAGS = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,20}\Z")
_PREFIXES = st.text(alphabet="ab1._-*?[]!/\\", max_size=6) | _TAGS.map(lambda t: t[: len(t) // 2])


@settings(max_examples=400, deadline=None)
@given(tag=_TAGS, prefix=_PREFIXES, repository=st.sampled_from(["web", "a/b", "x-y.z"]))
def test_prefix_patterns_match_what_the_prefix_matches(tag, prefix, repository):
    name = f"{repository}:{tag}"
    assert _tuf_matches(prefix_pattern(repository, prefix), name) == tag.startswith(prefix)


# -- resolution semantics ------------------------------------------------------------------------------------
def _collection(roles: list[tuple[str, str | None, list[str] | None, dict[str, str]]]) -> Collection:
    built = {}
    for name, parent, paths, targets in roles:
        built[name] = NotaryRole(name, parent, {}, 1, paths, published=True,
                                 targets={t: NotaryTarget(t, d * 64, 1) for t, d in targets.items()})
        if parent:
            built[parent].children.append(name)
    return Collection("r/ns/web", 1, "", [], 1, built, {})


RESOLVE_CASES = [
    # roles, tag, dct answer role, notary answer role
    ([("targets", None, None, {"1": "a"}), ("targets/releases", "targets", [""], {"1": "b"})], "1",
     "targets/releases", "targets"),
    ([("targets", None, None, {}), ("targets/qa", "targets", [""], {"1": "c"})], "1", None, "targets/qa"),
    ([("targets", None, None, {}), ("targets/releases", "targets", ["v"], {"1": "b"})], "1", None, None),
    # found first in a child of releases: docker refuses, it does not fall back to targets
    ([("targets", None, None, {"1": "a"}), ("targets/releases", "targets", [""], {}),
      ("targets/releases/x", "targets/releases", [""], {"1": "d"})], "1", None, "targets"),
    # breadth-first: a sibling before a grandchild
    ([("targets", None, None, {}), ("targets/a", "targets", [""], {}), ("targets/b", "targets", [""], {"1": "b"}),
      ("targets/a/c", "targets/a", [""], {"1": "c"})], "1", None, "targets/b"),
]


@pytest.mark.parametrize("roles,tag,dct,notary", RESOLVE_CASES)
def test_resolution_semantics(roles, tag, dct, notary):
    collection = _collection(roles)
    got = {s: resolve(collection, tag, s) for s in ("dct", "notary")}
    assert (got["dct"] and got["dct"].role, got["notary"] and got["notary"].role) == (dct, notary)


# -- a whole collection, simulated: the checks that a served file's hash cannot stand in for ---------------------
class _Simulator:
    """Notary's files made with keys held here (root as an x509 certificate, CN = GUN), served from a dict."""

    gun = "registry.example.com/acme/sim"

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        self.private = {role: ec.generate_private_key(ec.SECP256R1()) for role in ("root", "targets", "snapshot",
                                                                                     "timestamp")}
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.gun)])
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.private["root"].public_key()).serial_number(1).not_valid_before(start)
                .not_valid_after(start + datetime.timedelta(days=30)).sign(self.private["root"], hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        self.keys = {"root": {"keytype": "ecdsa-x509", "keyval": {"private": None,
                                                                  "public": base64.b64encode(pem).decode()}}}
        self.keys |= {r: _notary_key(self.private[r]) for r in ("targets", "snapshot", "timestamp")}
        self.files: dict[str, bytes] = {}

    @staticmethod
    def envelope(signed: dict, signers: list) -> bytes:
        data = encode_canonical(signed).encode()
        sigs = []
        for private in signers:
            method, sig = _sign(private, data)
            sigs.append({"keyid": key_id(_notary_key(private)), "method": method, "sig": base64.b64encode(sig).decode()})
        return json.dumps({"signed": signed, "signatures": sigs}).encode()

    def publish(self, delegate_keys: list, threshold: int, delegate_signers: list) -> None:
        expires = "2099-01-01T00:00:00.123456789Z"
        ids = {role: key_id(k) for role, k in self.keys.items()}
        root = {"_type": "Root", "consistent_snapshot": False, "expires": expires, "version": 1,
                "keys": {ids[r]: k for r, k in self.keys.items()},
                "roles": {r: {"keyids": [ids[r]], "threshold": 1} for r in ids}}
        root_env = json.loads(self.envelope(root, []))
        data = encode_canonical(root).encode()
        method, sig = _sign(self.private["root"], data)
        root_env["signatures"] = [{"keyid": ids["root"], "method": method, "sig": base64.b64encode(sig).decode()}]
        self.files["root"] = json.dumps(root_env).encode()
        dkeys = {key_id(_notary_key(p)): _notary_key(p) for p in delegate_keys}
        targets = {"_type": "Targets", "expires": expires, "version": 1, "targets": {},
                   "delegations": {"keys": dkeys, "roles": [{"name": "targets/releases", "keyids": list(dkeys),
                                                              "threshold": threshold, "paths": [""]}]}}
        releases = {"_type": "Targets", "expires": expires, "version": 1, "delegations": {"keys": {}, "roles": []},
                    "targets": {"1.0": {"hashes": {"sha256": base64.b64encode(bytes(32)).decode()}, "length": 9}}}
        self.files["targets"] = self.envelope(targets, [self.private["targets"]])
        self.files["targets/releases"] = self.envelope(releases, delegate_signers)

        def meta(data: bytes) -> dict:
            return {"length": len(data), "hashes": {"sha256": base64.b64encode(hashlib.sha256(data).digest()).decode()}}

        snapshot = {"_type": "Snapshot", "expires": expires, "version": 1,
                    "meta": {r: meta(self.files[r]) for r in ("root", "targets", "targets/releases")}}
        self.files["snapshot"] = self.envelope(snapshot, [self.private["snapshot"]])
        timestamp = {"_type": "Timestamp", "expires": expires, "version": 1,
                     "meta": {"snapshot": meta(self.files["snapshot"])}}
        self.files["timestamp"] = self.envelope(timestamp, [self.private["timestamp"]])

    # the NotarySource protocol
    def root_version(self, version: int) -> bytes | None:
        return None

    def current(self, role: str) -> bytes | None:
        return self.files.get(role)

    def by_hash(self, role: str, sha256_hex: str) -> bytes | None:
        return self.files.get(role)

    def describe(self, role: str) -> str:
        return f"{self.gun}/{role}.json"


# delegate keys (indexes into _EC), threshold, who signs targets/releases, accepted?
DELEGATION_CASES = [
    ([0], 1, [0], True),
    ([0], 1, [1], False),  # signed by a key the delegation does not name
    ([0, 1], 2, [0], False),
    ([0, 1], 2, [0, 1], True),
    ([0, 1, 2], 2, [2, 0], True),
]


@pytest.mark.parametrize("keys,threshold,signers,accepted", DELEGATION_CASES)
def test_delegated_roles_are_verified_by_their_delegation(keys, threshold, signers, accepted):
    from tufoci.repo_tool.notary_verify import RootPin, verify_collection

    sim = _Simulator()
    sim.publish([_EC[i] for i in keys], threshold, [_EC[i] for i in signers])
    if accepted:
        collection = verify_collection(sim, RootPin(tofu=True))
        assert collection.roles["targets/releases"].targets["1.0"].length == 9
    else:
        with pytest.raises(NotaryRejectedError, match="targets/releases.json: signature threshold not met"):
            verify_collection(sim, RootPin(tofu=True))
