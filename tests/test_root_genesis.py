"""Issue 15.1: a root threshold this machine cannot meet, from ``init``.

Root v1 is proposed in the registry; its key holders pin the root file (root v1
with too few signatures, identified by its signed part), review and sign it;
the first complete set goes live. The attacker has push access to the registry:
they swap the proposal after review, write a root v1 of their own before the
maintainers sign, or hand out a wrong root file. Each is refused, and nothing
they wrote is ever trusted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Role, Root

from tests.conftest import Machine, needs_registry, push_test_image, reviewed_sign
from tufoci.client.genesis_root import bootstrap_root, signed_digest
from tufoci.errors import MetadataRejectedError, RegistryError


@pytest.fixture
def genesis(registry, tmp_path: Path, home: Path, monkeypatch):
    """alice inits root 2 of 3 (her key, bob's, carol's) and targets 1 of 1 (hers): root v1 is proposed."""
    scope = f"{registry.host}/acme"
    alice, bob, cluster = (Machine(n, tmp_path, monkeypatch) for n in ("alice", "bob", "cluster"))
    alice.new_key("alice-root")
    alice.new_key("alice")
    alice.new_key("online", "--unencrypted")
    bob_root = bob.new_key("bob-root")
    carol_root = Machine("carol", tmp_path, monkeypatch).new_key("carol-root")
    root_file = tmp_path / "root.json"
    init = alice.ok("init", scope, "--online-key", "online", "--root-out", str(root_file),
                    "--root-key", "alice-root", "--root-key", str(bob_root), "--root-key", str(carol_root),
                    "--root-threshold", "2", "--targets-key", "alice", "-o", "json")
    for machine in (bob, cluster):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    return {"scope": scope, "alice": alice, "bob": bob, "cluster": cluster, "root_file": root_file,
            "init": json.loads(init.stdout), "registry": registry, "tmp_path": tmp_path, "monkeypatch": monkeypatch}


def store_of(genesis):
    from tufoci.reference import parse_repository
    from tufoci.registry_config import RegistryConfig, TLSFlags
    from tufoci.registry_options import RegistryOptions
    from tufoci.store import open_repository

    plain = RegistryOptions(RegistryConfig(TLSFlags(plain_http=True)))
    return open_repository(parse_repository(f"{genesis['scope']}/tuf"), registry=plain)


def live_root_1(genesis) -> Metadata[Root]:
    from tufoci.layout_spec import parse_metadata_manifest

    store = store_of(genesis)
    layer = parse_metadata_manifest(store.get_manifest("root.1").data).layer
    return Metadata[Root].from_bytes(store.get_blob(layer.digest, max_bytes=layer.size))


@needs_registry
def test_root_threshold_from_init_goes_live_when_its_key_holders_sign(genesis):
    scope, alice, bob, cluster, registry = (genesis[k] for k in ("scope", "alice", "bob", "cluster", "registry"))
    assert genesis["init"]["awaiting"] == {"root": {"version": 1, "have": 1, "need": 2}}
    pinned = Metadata[Root].from_bytes(genesis["root_file"].read_bytes())
    assert genesis["init"]["rootFingerprint"] == signed_digest(pinned).removeprefix("sha256:")
    tags = registry.tags("acme/tuf")
    assert {"staged.root.1", "staged.targets.1"} <= set(tags) and "timestamp" not in tags
    missing = cluster("verify", f"{scope}/web:1.0")
    assert missing.exit_code == 13 and "awaiting its first signatures" in missing.stderr, missing.stderr

    held = json.loads(alice.ok("status", scope, "-o", "json").stdout)["proposals"]
    assert {p["role"]: p["held"] for p in held}["targets"] == "waits for root v1"  # complete, but not alone
    report = json.loads(bob.ok("status", scope, "-o", "json").stdout)
    (root_proposal,) = [p for p in report["proposals"] if p["role"] == "root"]
    assert root_proposal["fingerprint"] == genesis["init"]["rootFingerprint"]
    assert root_proposal["next"]["action"] == "sign" and "bob-root" in root_proposal["next"]["who"]
    reviewed_sign(bob, scope, "root")

    published = json.loads(alice.ok("publish", scope, "-o", "json").stdout)["published"]
    assert published == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    live = live_root_1(genesis)
    assert len(live.signatures) == 2 and signed_digest(live) == signed_digest(pinned)
    # every machine pinned the file with one signature: each bootstraps from the completed root v1
    assert cluster("verify", f"{scope}/web:1.0").exit_code == 10  # live; the tag is simply not signed
    late = Machine("late", genesis["tmp_path"], genesis["monkeypatch"])
    late.ok("trust", "add", scope, "--root", str(genesis["root_file"]))  # the same file, after it went live
    alice.ok("target", "add", f"{scope}/web:1.0")
    alice.ok("publish", scope)
    late.ok("verify", f"{scope}/web:1.0")
    assert not json.loads(bob.ok("status", scope, "-o", "json").stdout)["awaitingFirstSignatures"]


@needs_registry
def test_the_online_service_makes_root_v1_live_once_its_key_holders_signed(genesis):
    """Nobody with a root key needs the online key: the service promotes the first complete set."""
    from tests.test_trust_operations import start_service, stop_service, wait_until_live

    scope, alice, bob, cluster = (genesis[k] for k in ("scope", "alice", "bob", "cluster"))
    online = Machine("online", genesis["tmp_path"], genesis["monkeypatch"])
    online.ok("trust", "add", scope, "--root", str(genesis["root_file"]))
    alice.share_key(online, "online")
    service = start_service(online, scope)
    try:
        time.sleep(2)  # a few polls: nothing is complete, nothing goes live
        assert cluster("verify", f"{scope}/web:1.0").exit_code == 13
        reviewed_sign(bob, scope, "root")
        wait_until_live(cluster, f"{scope}/web:1.0")
    finally:
        log = stop_service(service)
    (published,) = [r for r in log if r["event"] == "published"]
    assert published["versions"] == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert sorted(published["promoted"]) == ["root", "targets"]


def _forged_root(genesis, *, complete: bool) -> tuple[Metadata[Root], CryptoSigner]:
    """The pinned root v1 with mallory's key as root key (threshold 1: complete by her signature alone)."""
    mallory = CryptoSigner.generate_ed25519()
    forged = Metadata[Root].from_bytes(genesis["root_file"].read_bytes())
    forged.signed.add_key(mallory.public_key, "root")
    if complete:
        forged.signed.roles["root"] = Role([mallory.public_key.keyid], 1)
    forged.signatures.clear()
    forged.sign(mallory)
    return forged, mallory


@needs_registry
def test_a_root_v1_proposal_swapped_after_review_is_neither_signed_nor_published(genesis):
    from tufoci.repo_tool.proposals import discard_proposal, push_proposal

    scope, alice, bob, cluster = (genesis[k] for k in ("scope", "alice", "bob", "cluster"))
    reviewed = json.loads(bob.ok("status", scope, "-o", "json").stdout)
    (fingerprint,) = [p["fingerprint"] for p in reviewed["proposals"] if p["role"] == "root"]
    # mallory swaps in a root v1 that her own signature completes (and that keeps the maintainers' keys)
    forged, _ = _forged_root(genesis, complete=True)
    store = store_of(genesis)
    discard_proposal(store, "root", 1, "mallory")
    push_proposal(store, "root", forged, "alice")

    report = json.loads(bob.ok("status", scope, "-o", "json").stdout)
    assert [p["role"] for p in report["proposals"]] == ["targets"]
    (ignored,) = report["ignoredProposals"]
    assert ignored["tag"] == "staged.root.1" and "not the root v1 pinned here" in ignored["reason"]
    refused = bob("sign", scope, "root", "--expect", fingerprint)
    assert refused.exit_code == 2 and "not the root v1 pinned here" in refused.stderr, refused.stderr
    assert alice("publish", scope).exit_code != 0
    assert "timestamp" not in genesis["registry"].tags("acme/tuf")
    assert cluster("verify", f"{scope}/web:1.0").exit_code == 13


@needs_registry
def test_a_root_v1_written_by_an_attacker_before_the_maintainers_sign_is_refused(genesis):
    scope, alice, bob, cluster = (genesis[k] for k in ("scope", "alice", "bob", "cluster"))
    mallory = Machine("mallory", genesis["tmp_path"], genesis["monkeypatch"])
    mallory.new_key("m")
    mallory.new_key("m-online", "--unencrypted")
    mallory.ok("init", scope, "--root-key", "m", "--online-key", "m-online")  # a live repository of her own
    for machine in (cluster, bob):
        refused = machine("verify", f"{scope}/web:1.0")
        assert refused.exit_code == 12 and "not the root pinned here" in refused.stderr, refused.stderr
    assert "not the root pinned here" in json.loads(bob.ok("status", scope, "-o", "json").stdout)["error"]
    assert bob("sign", scope, "root", "--expect", genesis["init"]["rootFingerprint"]).exit_code == 12
    assert alice("publish", scope).exit_code == 12
    assert not (cluster.home / "cache").exists() or not any((cluster.home / "cache").rglob("timestamp.json"))


@needs_registry
def test_a_pin_to_the_wrong_root_is_refused(genesis):
    scope, alice, bob = genesis["scope"], genesis["alice"], genesis["bob"]
    forged, _ = _forged_root(genesis, complete=False)  # looks like the real one: awaiting signatures too
    wrong = genesis["tmp_path"] / "wrong-root.json"
    wrong.write_bytes(forged.to_bytes())
    victim = Machine("victim", genesis["tmp_path"], genesis["monkeypatch"])
    pinned = victim.ok("trust", "add", scope, "--root", str(wrong))
    assert signed_digest(forged).removeprefix("sha256:") in pinned.stderr  # the fingerprint to compare
    assert genesis["init"]["rootFingerprint"] not in pinned.stderr
    # the victim's review would not even show the real proposal: it is not the root they pinned
    report = json.loads(victim.ok("status", scope, "-o", "json").stdout)
    assert "not the root v1 pinned here" in report["ignoredProposals"][0]["reason"]

    reviewed_sign(bob, scope, "root")
    alice.ok("publish", scope)
    refused = victim("verify", f"{scope}/web:1.0")
    assert refused.exit_code == 12 and "not the root pinned here" in refused.stderr, refused.stderr
    late = Machine("late", genesis["tmp_path"], genesis["monkeypatch"])
    assert late("trust", "add", scope, "--root", str(wrong)).exit_code == 12  # compared with the live root v1


def _root(signers: list[CryptoSigner], threshold: int, version: int = 1) -> Metadata[Root]:
    root = Metadata(Root(version=version))
    for signer in signers:
        root.signed.add_key(signer.public_key, "root")
    root.signed.roles["root"].threshold = threshold
    return root


def _signed(root: Metadata[Root], *signers: CryptoSigner) -> bytes:
    copy = Metadata[Root].from_bytes(root.to_bytes())
    copy.signatures.clear()
    for signer in signers:
        copy.sign(signer, append=True)
    return copy.to_bytes()


KEYS = [CryptoSigner.generate_ed25519() for _ in range(3)]
OTHER = _root(KEYS[:2], 1)
CASES = [  # pinned root (signed by), registry root.1 (None: absent), expected: "pinned", "live" or an error
    (("2of3", [0, 1]), None, "pinned"),  # complete: used as it is, the registry is not asked
    (("2of3", [0]), ("2of3", [0, 1]), "live"),  # same signed part, now complete
    (("2of3", [0]), None, RegistryError),  # awaiting its first signatures
    (("2of3", [0]), ("other", [0]), MetadataRejectedError),  # another root v1
    (("2of3v2", [0]), None, "pinned"),  # not a version 1: python-tuf rejects it as usual
    (("2of3", [0]), "garbage", MetadataRejectedError),  # not metadata (python-tuf's DeserializationError)
]


@pytest.mark.parametrize("pinned,live,expected", CASES)
def test_bootstrap_root(pinned, live, expected):
    roots = {"2of3": _root(KEYS, 2), "2of3v2": _root(KEYS, 2, version=2), "other": OTHER}
    pinned_bytes = _signed(roots[pinned[0]], *(KEYS[i] for i in pinned[1]))
    live_bytes = b'{"signed": {"_type": "root"}}' if live == "garbage" else \
        _signed(roots[live[0]], *(KEYS[i] for i in live[1])) if live else None

    def fetch() -> bytes | None:
        assert expected != "pinned", "a pin that needs no completing must not cost a request"
        return live_bytes

    if isinstance(expected, type):
        with pytest.raises(expected):
            bootstrap_root(pinned_bytes, "acme", fetch)
    else:
        assert bootstrap_root(pinned_bytes, "acme", fetch) == {"pinned": pinned_bytes, "live": live_bytes}[expected]


def _push_as_live(store, role: str, md: Metadata, data: bytes | None = None) -> None:
    """What push access alone can do: tag any bytes (by default ``md``'s) as a published version of ``md``."""
    from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, build_metadata_manifest, metadata_tag

    data = data or md.to_bytes()
    store.put_blob(data)
    store.put_manifest(metadata_tag(role, md.signed.version),
                       build_metadata_manifest(role, md.signed.version, data), MANIFEST_MEDIA_TYPE)


@needs_registry
def test_history_trusts_nothing_under_a_root_v1_below_its_own_threshold(genesis):
    """``history`` anchors at the pinned root as python-tuf does: a root v1 still awaiting its signatures
    anchors nothing (the targets v1 its proposer signed, tagged as published, is not history), the
    registry's root v1 of the same signed part must meet its own threshold, and once it does it is the anchor."""
    from tufoci.repo_tool.proposals import evaluate, scan_proposals

    scope, alice, bob, cluster = (genesis[k] for k in ("scope", "alice", "bob", "cluster"))
    store = store_of(genesis)
    pinned = Metadata[Root].from_bytes(genesis["root_file"].read_bytes())
    proposals = {p.role: p for p in scan_proposals(store)[0]}
    _push_as_live(store, "targets", evaluate(proposals["targets"], [("root", pinned.signed)]))
    awaiting = cluster("history", scope, "-o", "json")
    assert awaiting.exit_code == 13 and "awaiting its first signatures" in awaiting.stderr, (awaiting.exit_code, awaiting.stdout[:600], awaiting.stderr)

    _push_as_live(store, "root", pinned)  # the pinned signed part, with alice's signature only
    short = cluster("history", scope, "-o", "json")
    assert short.exit_code == 12 and "root" in short.stderr, (short.exit_code, short.stdout[:600], short.stderr)

    reviewed_sign(bob, scope, "root")
    alice.ok("publish", scope)
    report = json.loads(cluster.ok("history", scope, "-o", "json").stdout)
    (root_1,) = [v for v in report["versions"] if v["role"] == "root"]
    assert root_1["verified"] and len(root_1["signedBy"]) == 2  # the completed root v1, not the pinned file
    assert all(v["verified"] for v in report["versions"])


def _bob_root_keyid(genesis) -> str:
    pinned = Metadata[Root].from_bytes(genesis["root_file"].read_bytes())
    (alice_sig,) = pinned.signatures
    return next(k for k in pinned.signed.roles["root"].keyids if k != alice_sig)


@needs_registry
@pytest.mark.parametrize("forge", ["a key not in root", "a duplicate of a real signature", "a copy under bob's key"])
def test_a_root_v1_of_the_pinned_signed_part_with_forged_signatures_is_refused(genesis, forge):
    """Push access: root.1 with exactly the pinned signed part and too few real signatures, padded with
    signatures by a key root does not list, the one real signature twice, or it copied under another root key id:
    python-tuf counts distinct root keys whose signature verifies, so every machine refuses it."""
    scope, cluster, bob = genesis["scope"], genesis["cluster"], genesis["bob"]
    pinned = Metadata[Root].from_bytes(genesis["root_file"].read_bytes())
    document = pinned.to_dict()
    (real,) = document["signatures"]
    if forge == "a key not in root":
        mallory = CryptoSigner.generate_ed25519()
        document["signatures"].append(mallory.sign(pinned.signed_bytes).to_dict())
    elif forge == "a duplicate of a real signature":
        document["signatures"].append(dict(real))
    else:
        document["signatures"].append({"keyid": _bob_root_keyid(genesis), "sig": real["sig"]})
    _push_as_live(store_of(genesis), "root", pinned, json.dumps(document).encode())
    for machine in (cluster, bob):
        refused = machine("verify", f"{scope}/web:1.0")
        assert refused.exit_code == 12, (refused.exit_code, refused.stderr)
    assert not (cluster.home / "cache").exists() or not any((cluster.home / "cache").rglob("root.json"))


@needs_registry
def test_a_pinned_root_python_tuf_cannot_read_is_a_rejection_before_version_1(genesis):
    """A root file with its one signature listed twice passes as root metadata at 'trust add' (JSON, _type root);
    before version 1 went live the maintainer commands read it themselves: a rejection (exit 12), one line."""
    document = json.loads(genesis["root_file"].read_bytes())
    document["signatures"].append(dict(document["signatures"][0]))
    doubled = genesis["tmp_path"] / "doubled-root.json"
    doubled.write_text(json.dumps(document))
    victim = Machine("victim", genesis["tmp_path"], genesis["monkeypatch"])
    victim.ok("trust", "add", genesis["scope"], "--root", str(doubled))
    refused = victim("publish", genesis["scope"])
    assert refused.exit_code == 12 and "is not valid root metadata" in refused.stderr, (refused.exit_code, refused.stderr)
    assert "is not valid root metadata" in victim.ok("status", genesis["scope"]).stdout
