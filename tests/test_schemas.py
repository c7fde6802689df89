"""The JSON Schemas in schemas/ against what tufoci really writes (docs/layout.md §2, §3, §9).

The integration tests init a trust repository in an OCI image-layout scope, publish
an image and a multi-platform index, then read the metadata repository directly
from disk (``index.json`` and ``blobs/``) and validate every manifest, the config
blob and each target's ``custom``. Another one drives threshold signing (two
maintainers, proposals, detached signatures, promotion, a discard) in a layout
scope and validates every ``staged.*`` and ``sig.*`` artifact. The unit tests
check the schemas reject what the layout forbids, with manifests from
``build_metadata_manifest`` and ``build_artifact_manifest``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from pathlib import Path

import jsonschema
import pytest
from securesystemslib.signer import Signature
from tuf.api.metadata import Metadata

from tests.conftest import Machine, init_scope, ok, push_test_image, reviewed_sign, run_tufoci
from tests.support.images import build_index, images_available, skopeo_copy
from tufoci.errors import MetadataRejectedError
from tufoci.layout_spec import (
    EMPTY_CONFIG,
    MANIFEST_MEDIA_TYPE,
    METADATA_MEDIA_TYPE,
    PROPOSAL_CONFIG_MEDIA_TYPE,
    SIGNATURE_CONFIG_MEDIA_TYPE,
    SIGNATURE_MEDIA_TYPE,
    build_artifact_manifest,
    build_metadata_manifest,
    encode_keyid,
    encode_role,
    metadata_filename,
    metadata_tag,
    parse_artifact_manifest,
    parse_metadata_manifest,
    proposal_tag,
    signature_tag,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
REF_NAME = "org.opencontainers.image.ref.name"

# No registry needed, only the image tools; as in conftest, CI fails loudly instead of skipping.
needs_image_tools = pytest.mark.skipif(
    not os.environ.get("CI") and not images_available(),
    reason="umoci and skopeo are needed (make test installs them)",
)


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


MANIFEST = validator("metadata-manifest")
CONFIG = validator("metadata-config")
CUSTOM = validator("targets-custom")
PROPOSAL = validator("proposal-manifest")
SIGNATURE_MANIFEST = validator("signature-manifest")
SIGNATURE = validator("signature")


def errors(v: jsonschema.Draft202012Validator, instance: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(instance)]


def blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hexdigest = digest.partition(":")
    assert algorithm == "sha256", digest
    data = (layout / "blobs" / "sha256" / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} does not hash to its name"
    return data


def tagged(layout: Path) -> dict[str, dict]:
    """tag -> descriptor of a layout's index.json."""
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    return {d["annotations"][REF_NAME]: d for d in index["manifests"]}


# -- a published layout scope --------------------------------------------------


@pytest.fixture
def published(home: Path, tmp_path: Path) -> Path:
    """An initialised layout scope with one image and one index signed; returns the scope dir."""
    scope_dir = tmp_path / "acme"
    init_scope(f"oci:{scope_dir}", tmp_path)
    push_test_image(tmp_path, b"schema test payload\n", f"oci:{scope_dir}/web:1.0")
    index = build_index(tmp_path / "images")
    skopeo_copy(f"oci:{index}:latest", f"oci:{scope_dir}/multi:2.0", all_platforms=True)
    ok(run_tufoci("target", "add", f"oci:{scope_dir}/web:1.0", f"oci:{scope_dir}/multi:2.0"))
    ok(run_tufoci("publish", f"oci:{scope_dir}"))
    return scope_dir


@needs_image_tools
def test_every_metadata_manifest_matches_the_schema(published: Path) -> None:
    tuf = published / "tuf"
    tags = tagged(tuf)
    assert set(tags) == {"root.1", "targets.1", "snapshot.1", "targets.2", "snapshot.2", "timestamp"}
    for tag, descriptor in tags.items():
        assert descriptor["mediaType"] == MANIFEST_MEDIA_TYPE
        raw = blob(tuf, descriptor["digest"])
        assert len(raw) == descriptor["size"]
        manifest = json.loads(raw)
        assert errors(MANIFEST, manifest) == [], tag

        # what the schema cannot say: tag, file name and annotations agree, blobs hash right
        annotations = manifest["annotations"]
        role, version = annotations["dev.tufoci.role"], int(annotations["dev.tufoci.version"])
        assert metadata_tag(role, version) == tag
        layer = manifest["layers"][0]
        expected_name = metadata_filename(role, None if role == "timestamp" else version)
        assert layer["annotations"]["tuf.io/filename"] == expected_name
        data = blob(tuf, layer["digest"])
        assert len(data) == layer["size"]
        signed = json.loads(data)["signed"]
        assert (signed["_type"], signed["version"]) == (role, version)

        config = blob(tuf, manifest["config"]["digest"])
        assert config == EMPTY_CONFIG
        assert errors(CONFIG, json.loads(config)) == []

        if role == "timestamp":
            # tufoci always writes both hints; the inline one is the blob itself
            assert annotations["dev.tufoci.hint.root-version"] == "1"
            assert base64.b64decode(annotations["dev.tufoci.hint.timestamp"], validate=True) == data
        # the reader accepts everything the writer wrote
        assert parse_metadata_manifest(raw).layer.digest == layer["digest"]


@needs_image_tools
def test_signed_targets_custom_matches_the_schema(published: Path) -> None:
    tuf = published / "tuf"
    # follow the live chain the way a client does: timestamp -> snapshot -> targets, by digest
    timestamp_manifest = json.loads(blob(tuf, tagged(tuf)["timestamp"]["digest"]))
    timestamp = json.loads(blob(tuf, timestamp_manifest["layers"][0]["digest"]))["signed"]
    snapshot = json.loads(blob(tuf, "sha256:" + timestamp["meta"]["snapshot.json"]["hashes"]["sha256"]))["signed"]
    targets = json.loads(blob(tuf, "sha256:" + snapshot["meta"]["targets.json"]["hashes"]["sha256"]))["signed"]

    assert set(targets["targets"]) == {"web:1.0", "multi:2.0"}
    for name, info in targets["targets"].items():
        custom = info.get("custom", {})
        assert errors(CUSTOM, custom) == [], name
        repository, _, tag = name.rpartition(":")
        image = tagged(published / repository)[tag]
        assert info["length"] == image["size"]
        assert "sha256:" + info["hashes"]["sha256"] == image["digest"]
        assert custom.get("mediaType", "application/vnd.oci.image.manifest.v1+json") == image["mediaType"]

    # an OCI image manifest, the common case, carries no custom at all (layout §1.3): bytes per target matter
    assert "custom" not in targets["targets"]["web:1.0"]
    assert targets["targets"]["multi:2.0"]["custom"] == {
        "mediaType": "application/vnd.oci.image.index.v1+json", "x-tufoci-platforms": ["linux/amd64", "linux/arm64"]}


# -- the schemas reject what the layout forbids ---------------------------------


def manifest_of(role: str, version: int = 3, **kwargs: object) -> dict:
    data = json.dumps({"signed": {"_type": role, "version": version}}).encode()
    return json.loads(build_metadata_manifest(role, version, data, **kwargs))


@pytest.mark.parametrize(
    "role,kwargs",
    [
        ("root", {}),
        ("targets", {}),
        ("snapshot", {}),
        ("timestamp", {"root_version": 2}),
        ("timestamp", {}),
        ("bins-0a", {}),
        ("team/a", {}),
    ],
)
def test_every_kind_of_manifest_builds_valid(role: str, kwargs: dict) -> None:
    assert errors(MANIFEST, manifest_of(role, **kwargs)) == []


def _two_layers(m: dict) -> None:
    m["layers"].append(copy.deepcopy(m["layers"][0]))


def _wrong_config_type(m: dict) -> None:
    m["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"


def test_schema_rejects_two_layers() -> None:
    manifest = manifest_of("targets")
    _two_layers(manifest)
    assert errors(MANIFEST, manifest)
    with pytest.raises(MetadataRejectedError):  # and so does the reader
        parse_metadata_manifest(json.dumps(manifest).encode())


def test_schema_rejects_a_wrong_config_media_type() -> None:
    manifest = manifest_of("targets")
    _wrong_config_type(manifest)
    assert errors(MANIFEST, manifest)
    with pytest.raises(MetadataRejectedError):
        parse_metadata_manifest(json.dumps(manifest).encode())


def _set(*path: str | int, value: object):
    """A mutation setting ``manifest[path[0]][path[1]]... = value``."""

    def mutate(m: dict) -> None:
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    "role,mutate",
    [
        pytest.param("targets", lambda m: m["layers"].clear(), id="no-layer"),
        pytest.param("targets", _set("layers", 0, "mediaType", value="application/json"), id="layer-media-type"),
        pytest.param("targets", _set("layers", 0, "digest", value="sha256:" + "A" * 64), id="digest-uppercase"),
        pytest.param("targets", _set("layers", 0, "digest", value="sha512:" + "a" * 128), id="digest-sha512"),
        pytest.param("targets", _set("layers", 0, "size", value=-1), id="size-negative"),
        pytest.param("targets", _set("layers", 0, "size", value="766"), id="size-string"),
        pytest.param("targets", _set("config", "size", value=3), id="config-size"),
        pytest.param("targets", _set("artifactType", value="application/vnd.tufoci.metadata.config.v1+json"),
                     id="artifact-type"),
        pytest.param("targets", _set("annotations", "org.example.extra", value="x"), id="extra-annotation"),
        pytest.param("targets", _set("layers", 0, "annotations", "org.example.extra", value="x"),
                     id="extra-layer-annotation"),
        pytest.param("targets", _set("annotations", "dev.tufoci.layout.version", value="2"), id="layout-version"),
        pytest.param("targets", _set("annotations", "dev.tufoci.version", value="03"), id="version-leading-zero"),
        pytest.param("targets", _set("layers", 0, "annotations", "tuf.io/filename", value="3.snapshot.json"),
                     id="filename-other-role"),
        pytest.param("targets", _set("layers", 0, "annotations", "tuf.io/filename", value="targets.json"),
                     id="filename-unversioned"),
        pytest.param("targets", _set("annotations", "dev.tufoci.hint.root-version", value="1"), id="hint-on-targets"),
        pytest.param("team/a", _set("annotations", "dev.tufoci.hint.timestamp", value="e30="), id="hint-on-delegated"),
        pytest.param("team/a", _set("layers", 0, "annotations", "tuf.io/filename", value="team/a.json"),
                     id="delegated-filename-unversioned"),
        pytest.param("timestamp", _set("layers", 0, "annotations", "tuf.io/filename", value="3.timestamp.json"),
                     id="timestamp-filename-versioned"),
        pytest.param("timestamp", _set("annotations", "dev.tufoci.hint.timestamp", value="not base64!"),
                     id="hint-not-base64"),
        pytest.param("timestamp", _set("annotations", "dev.tufoci.hint.root-version", value="0"), id="root-hint-zero"),
        pytest.param("timestamp", lambda m: m["annotations"].pop("dev.tufoci.role"), id="no-role"),
        pytest.param("timestamp", lambda m: m.pop("mediaType"), id="no-media-type"),
    ],
)
def test_schema_rejects_off_layout_manifests(role: str, mutate) -> None:
    manifest = manifest_of(role, root_version=1) if role == "timestamp" else manifest_of(role)
    assert errors(MANIFEST, manifest) == []
    mutate(manifest)
    assert errors(MANIFEST, manifest)


def test_config_schema_accepts_only_the_empty_object() -> None:
    assert errors(CONFIG, json.loads(EMPTY_CONFIG)) == []
    assert errors(CONFIG, {"created": "1970-01-01T00:00:00Z"})
    assert errors(CONFIG, [])


@pytest.mark.parametrize(
    "custom,valid",
    [
        ({"mediaType": "application/vnd.oci.image.manifest.v1+json"}, True),
        ({"mediaType": "application/vnd.docker.distribution.manifest.v2+json"}, True),
        ({"mediaType": "application/vnd.oci.image.index.v1+json", "x-tufoci-platforms": ["linux/arm/v7"]}, True),
        ({"mediaType": "application/vnd.oci.image.manifest.v1+json", "x-tufoci-signed-by": "alice"}, True),
        ({}, True),
        ({"x-tufoci-platforms": ["linux/amd64"]}, False),
        ({"mediaType": "not a media type"}, False),
        ({"mediaType": "application/vnd.oci.image.manifest.v1+json", "platforms": []}, False),
        ({"mediaType": "application/vnd.oci.image.manifest.v1+json", "x-tufoci-platforms": ["linux/amd64"]}, False),
        ({"mediaType": "application/vnd.oci.image.index.v1+json", "x-tufoci-platforms": []}, False),
        ({"mediaType": "application/vnd.oci.image.index.v1+json", "x-tufoci-platforms": ["linux"]}, False),
        ({"mediaType": "application/vnd.oci.image.index.v1+json", "x-tufoci-platforms": ["a/b/c/d"]}, False),
    ],
)
def test_targets_custom_schema(custom: dict, valid: bool) -> None:
    assert (errors(CUSTOM, custom) == []) is valid


# -- threshold signing: proposals and detached signatures (layout §9) ------------

TEAM = "team/a"  # a role name outside [A-Za-z0-9-]: its tags carry the hashed encoding


def signed_digest(md: Metadata) -> str:
    return "sha256:" + hashlib.sha256(md.signed_bytes).hexdigest()


@pytest.fixture
def threshold_scope(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A layout scope where this home holds one of two keys of targets and of team/a (threshold 2).

    One publish proposes root v2 (complete, held), targets v3 and team/a v2 (1 of 2
    each); carol signs both; the next publish promotes all three. A further targets
    proposal (v4) is then discarded. No server and no image tools are needed.
    """
    scope_dir = tmp_path / "acme"
    scope = f"oci:{scope_dir}"
    root_file = init_scope(scope, tmp_path).root_file
    me = Machine("home", tmp_path, monkeypatch)  # the `home` fixture's TUFOCI_HOME
    assert me.home == home
    carol = Machine("carol", tmp_path, monkeypatch)
    carol_public = carol.new_key("carol")
    me.ok("key", "generate", "team-key")

    me.ok("delegate", scope, TEAM, "--key", "team-key", "--path", "web/*")
    assert json.loads(me.ok("publish", scope, "-o", "json").stdout)["published"][TEAM] == 1

    # targets and team/a each get carol's key as a second key, threshold 2
    me.ok("rotate", scope, "targets", "--add-key", str(carol_public), "--threshold", "2")
    me.ok("rotate", scope, TEAM, "--add-key", str(carol_public), "--threshold", "2")
    proposed = json.loads(me.ok("publish", scope, "-o", "json").stdout)
    assert proposed["published"] == {}
    assert {role: p["version"] for role, p in proposed["proposed"].items()} == {"root": 2, "targets": 3, TEAM: 2}
    assert proposed["proposed"]["root"]["held"]  # complete, waits for targets signed by its new keys

    carol.ok("trust", "add", scope, "--root", str(root_file))
    reviewed_sign(carol, scope)
    live = json.loads(me.ok("publish", scope, "-o", "json").stdout)
    assert {r: live["published"][r] for r in ("root", "targets", TEAM)} == {"root": 2, "targets": 3, TEAM: 2}

    # a proposal that is then discarded: its tag becomes a tombstone
    me.ok("delegate", scope, "web", "--key", "team-key", "--path", "x/*")
    assert json.loads(me.ok("publish", scope, "-o", "json").stdout)["proposed"]["targets"]["version"] == 4
    tuf = scope_dir / "tuf"
    before = json.loads(blob(tuf, tagged(tuf)["staged.targets.4"]["digest"]))
    discarded = Metadata.from_bytes(blob(tuf, before["layers"][0]["digest"]))
    me.ok("discard", scope, "targets")
    return {"tuf": tuf, "discarded": {("targets", 4): discarded}}


def test_every_proposal_and_signature_matches_the_schemas(threshold_scope: dict) -> None:
    tuf = threshold_scope["tuf"]
    tags = tagged(tuf)
    team = encode_role(TEAM)
    assert team.startswith("_")
    assert {t for t in tags if t.startswith("staged.")} == {
        "staged.root.2", "staged.targets.3", f"staged.{team}.2", "staged.targets.4"}

    proposals: dict[tuple[str, int], Metadata] = dict(threshold_scope["discarded"])
    for tag, descriptor in tags.items():
        raw = blob(tuf, descriptor["digest"])
        assert descriptor["mediaType"] == MANIFEST_MEDIA_TYPE and len(raw) == descriptor["size"]
        manifest = json.loads(raw)
        if not tag.startswith(("staged.", "sig.")):
            assert errors(MANIFEST, manifest) == [], tag  # threshold signing leaves §2 untouched
            assert errors(PROPOSAL, manifest) and errors(SIGNATURE_MANIFEST, manifest)
            continue
        if not tag.startswith("staged."):
            continue
        assert errors(PROPOSAL, manifest) == [], tag
        assert errors(MANIFEST, manifest) and errors(SIGNATURE_MANIFEST, manifest), tag
        with pytest.raises(MetadataRejectedError):  # a client can never take a proposal for metadata
            parse_metadata_manifest(raw)
        annotations = manifest["annotations"]
        role, version = annotations["dev.tufoci.role"], int(annotations["dev.tufoci.version"])
        assert proposal_tag(role, version) == tag
        assert blob(tuf, manifest["config"]["digest"]) == EMPTY_CONFIG
        layer = manifest["layers"][0]
        data = blob(tuf, layer["digest"])
        assert len(data) == layer["size"]
        assert parse_artifact_manifest(raw, PROPOSAL_CONFIG_MEDIA_TYPE).layer.digest == layer["digest"]
        if "dev.tufoci.proposal.discarded" in annotations:
            assert (role, version) == ("targets", 4) and data == b"{}"
            continue
        # the proposed metadata, serialised like a metadata file, without signatures
        assert data == json.dumps(json.loads(data), separators=(",", ":"), sort_keys=True).encode()
        assert json.loads(data)["signatures"] == []
        md = Metadata.from_bytes(data)
        assert md.signed.version == version
        assert md.signed.type == ("root" if role == "root" else "targets")
        proposals[(role, version)] = md

    counted: dict[tuple[str, int], dict[str, str]] = {}
    signature_tags = {t for t in tags if t.startswith("sig.")}
    assert len(signature_tags) == 6
    for tag in signature_tags:
        raw = blob(tuf, tags[tag]["digest"])
        manifest = json.loads(raw)
        assert errors(SIGNATURE_MANIFEST, manifest) == [], tag
        assert errors(MANIFEST, manifest) and errors(PROPOSAL, manifest), tag
        with pytest.raises(MetadataRejectedError):
            parse_metadata_manifest(raw)
        assert blob(tuf, manifest["config"]["digest"]) == EMPTY_CONFIG
        layer = manifest["layers"][0]
        data = blob(tuf, layer["digest"])
        assert len(data) == layer["size"]
        payload = json.loads(data)
        assert errors(SIGNATURE, payload) == [], tag

        annotations = manifest["annotations"]
        role, version = annotations["dev.tufoci.role"], int(annotations["dev.tufoci.version"])
        keyid = payload["keyid"]
        assert annotations["dev.tufoci.signature.keyid"] == keyid
        assert signature_tag(role, version, keyid) == tag
        assert tag.endswith("." + keyid[:32]) and encode_keyid(keyid) == keyid[:32]
        # over exactly the canonical signed bytes of the proposal of the same role and version
        proposal = proposals[(role, version)]
        assert payload["signed"] == signed_digest(proposal)
        counted.setdefault((role, version), {})[keyid] = payload["sig"]

    assert set(counted) == {("root", 2), ("targets", 3), (TEAM, 2), ("targets", 4)}
    assert [len(counted[k]) for k in (("root", 2), ("targets", 3), (TEAM, 2), ("targets", 4))] == [1, 2, 2, 1]

    # promotion: the live file is the proposal with exactly the counted signatures merged in,
    # and they meet the thresholds of the (new) delegators
    live_md = {}
    for key in (("root", 1), ("root", 2), ("targets", 3), (TEAM, 2)):
        manifest = json.loads(blob(tuf, tags[metadata_tag(*key)]["digest"]))
        live_md[key] = Metadata.from_bytes(blob(tuf, manifest["layers"][0]["digest"]))
    for key in (("root", 2), ("targets", 3), (TEAM, 2)):
        md = live_md[key]
        assert md.signed_bytes == proposals[key].signed_bytes
        assert {k: s.signature for k, s in md.signatures.items()} == counted[key]
    root2, targets3 = live_md[("root", 2)].signed, live_md[("targets", 3)].signed

    def verify(delegator: object, key: tuple[str, int]) -> None:  # raises UnsignedMetadataError below threshold
        delegator.verify_delegate(key[0], live_md[key].signed_bytes, live_md[key].signatures)

    verify(live_md[("root", 1)].signed, ("root", 2))  # the old root's threshold
    verify(root2, ("root", 2))  # and its own
    verify(root2, ("targets", 3))
    verify(targets3, (TEAM, 2))
    # the discarded proposal's signature verifies over the bytes it named, which no open proposal has now
    ((keyid, sig),) = counted[("targets", 4)].items()
    root2.get_key(keyid).verify_signature(Signature(keyid, sig), proposals[("targets", 4)].signed_bytes)


def proposal_manifest_of(role: str = "targets", version: int = 3, *, discarded: bool = False) -> dict:
    if discarded:
        data, extra = b"{}", {"dev.tufoci.proposal.discarded": "alice@build-1"}
    else:
        data = json.dumps({"signatures": [], "signed": {"_type": "targets", "version": version}},
                          separators=(",", ":"), sort_keys=True).encode()
        extra = {"dev.tufoci.proposal.by": "alice@build-1"}
    annotations = {"dev.tufoci.role": role, "dev.tufoci.version": str(version), **extra}
    return json.loads(build_artifact_manifest(PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, data, annotations))


KEYID = "590f0f1d36ff12ce7d07c736dc3cfebdf8900ca468accad0a70b7715e9094d32"


def signature_payload_of() -> dict:
    return {"keyid": KEYID, "sig": "ab" * 64, "signed": "sha256:" + "9f" * 32}


def signature_manifest_of(role: str = "targets", version: int = 3) -> dict:
    data = json.dumps(signature_payload_of(), sort_keys=True).encode()
    annotations = {"dev.tufoci.role": role, "dev.tufoci.version": str(version), "dev.tufoci.signature.keyid": KEYID}
    return json.loads(build_artifact_manifest(SIGNATURE_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, data, annotations))


@pytest.mark.parametrize("role", ["root", "targets", "bins-0a", TEAM])
@pytest.mark.parametrize("discarded", [False, True])
def test_every_kind_of_proposal_and_signature_builds_valid(role: str, discarded: bool) -> None:
    assert errors(PROPOSAL, proposal_manifest_of(role, discarded=discarded)) == []
    assert errors(SIGNATURE_MANIFEST, signature_manifest_of(role)) == []
    assert errors(SIGNATURE, signature_payload_of()) == []


def test_tag_shapes() -> None:
    assert proposal_tag("targets", 4) == "staged.targets.4"
    assert signature_tag("targets", 4, KEYID) == "sig.targets.4.590f0f1d36ff12ce7d07c736dc3cfebd"
    assert signature_tag(TEAM, 2, KEYID) == f"sig._{hashlib.sha256(TEAM.encode()).hexdigest()}.2.{KEYID[:32]}"
    # a keyid that is not lowercase hex of at least 32 characters is hashed
    assert encode_keyid("ABCDEF" * 8) == hashlib.sha256(("ABCDEF" * 8).encode()).hexdigest()[:32]
    assert encode_keyid("abc") == hashlib.sha256(b"abc").hexdigest()[:32]
    longest = signature_tag("a" * 65, 10**12 - 1, "x")
    assert len(longest) == 115 and len(longest) <= 128


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_wrong_config_type, id="config-media-type"),
        pytest.param(_set("config", "mediaType", value="application/vnd.tufoci.metadata.config.v1+json"),
                     id="metadata-config-media-type"),
        pytest.param(_two_layers, id="two-layers"),
        pytest.param(lambda m: m["layers"].clear(), id="no-layer"),
        pytest.param(_set("layers", 0, "mediaType", value="application/vnd.tufoci.signature.v1+json"),
                     id="layer-media-type"),
        pytest.param(_set("layers", 0, "annotations", value={"tuf.io/filename": "3.targets.json"}),
                     id="layer-filename"),
        pytest.param(_set("layers", 0, "size", value=33554433), id="layer-too-large"),
        pytest.param(_set("annotations", "dev.tufoci.proposal.discarded", value="bob@host"), id="open-and-discarded"),
        pytest.param(lambda m: m["annotations"].pop("dev.tufoci.proposal.by"), id="no-proposer"),
        pytest.param(_set("annotations", "dev.tufoci.proposal.by", value=""), id="empty-proposer"),
        pytest.param(_set("annotations", "dev.tufoci.role", value="snapshot"), id="role-snapshot"),
        pytest.param(_set("annotations", "dev.tufoci.role", value="timestamp"), id="role-timestamp"),
        pytest.param(_set("annotations", "dev.tufoci.version", value="0"), id="version-zero"),
        pytest.param(_set("annotations", "dev.tufoci.version", value="03"), id="version-leading-zero"),
        pytest.param(lambda m: m["annotations"].pop("dev.tufoci.version"), id="no-version"),
        pytest.param(_set("annotations", "dev.tufoci.layout.version", value="2"), id="layout-version"),
        pytest.param(_set("annotations", "dev.tufoci.signature.keyid", value=KEYID), id="signature-annotation"),
        pytest.param(_set("artifactType", value=PROPOSAL_CONFIG_MEDIA_TYPE), id="artifact-type"),
        pytest.param(_set("subject", value={"mediaType": MANIFEST_MEDIA_TYPE, "digest": "sha256:" + "0" * 64,
                                            "size": 2}), id="subject"),
    ],
)
def test_schema_rejects_off_layout_proposals(mutate) -> None:
    manifest = proposal_manifest_of()
    assert errors(PROPOSAL, manifest) == []
    mutate(manifest)
    assert errors(PROPOSAL, manifest)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set("layers", 0, "digest", value="sha256:" + "1" * 64), id="layer-not-empty-object"),
        pytest.param(_set("layers", 0, "size", value=3), id="layer-size"),
        pytest.param(_set("annotations", "dev.tufoci.proposal.by", value="alice@build-1"), id="discarded-and-open"),
        pytest.param(lambda m: m["annotations"].pop("dev.tufoci.proposal.discarded"), id="no-marker"),
        pytest.param(lambda m: m["annotations"].pop("dev.tufoci.role"), id="no-role"),
    ],
)
def test_schema_rejects_off_layout_tombstones(mutate) -> None:
    manifest = proposal_manifest_of(discarded=True)
    assert errors(PROPOSAL, manifest) == []
    mutate(manifest)
    assert errors(PROPOSAL, manifest)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set("config", "mediaType", value=PROPOSAL_CONFIG_MEDIA_TYPE), id="config-media-type"),
        pytest.param(_set("layers", 0, "mediaType", value=METADATA_MEDIA_TYPE), id="layer-media-type"),
        pytest.param(_two_layers, id="two-layers"),
        pytest.param(_set("layers", 0, "size", value=65537), id="payload-over-the-readers-cap"),
        pytest.param(_set("layers", 0, "annotations", value={"org.example": "x"}), id="layer-annotation"),
        pytest.param(lambda m: m["annotations"].pop("dev.tufoci.signature.keyid"), id="no-keyid"),
        pytest.param(_set("annotations", "dev.tufoci.signature.keyid", value=""), id="empty-keyid"),
        pytest.param(_set("annotations", "dev.tufoci.proposal.by", value="alice@build-1"), id="proposal-annotation"),
        pytest.param(_set("annotations", "dev.tufoci.role", value="timestamp"), id="role-timestamp"),
        pytest.param(_set("annotations", "dev.tufoci.version", value="v3"), id="version-not-decimal"),
        pytest.param(_set("artifactType", value=SIGNATURE_CONFIG_MEDIA_TYPE), id="artifact-type"),
    ],
)
def test_schema_rejects_off_layout_signature_manifests(mutate) -> None:
    manifest = signature_manifest_of()
    assert errors(SIGNATURE_MANIFEST, manifest) == []
    mutate(manifest)
    assert errors(SIGNATURE_MANIFEST, manifest)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: p.pop("keyid"), id="no-keyid"),
        pytest.param(lambda p: p.pop("sig"), id="no-sig"),
        pytest.param(lambda p: p.pop("signed"), id="no-signed"),
        pytest.param(lambda p: p.update(keyid=""), id="empty-keyid"),
        pytest.param(lambda p: p.update(keyid=1), id="keyid-number"),
        pytest.param(lambda p: p.update(sig=""), id="empty-sig"),
        pytest.param(lambda p: p.update(signed="9f" * 32), id="signed-without-prefix"),
        pytest.param(lambda p: p.update(signed="sha256:" + "9F" * 32), id="signed-uppercase"),
        pytest.param(lambda p: p.update(signed="sha512:" + "9f" * 64), id="signed-sha512"),
        pytest.param(lambda p: p.update(signed="sha256:" + "9f" * 31), id="signed-short"),
    ],
)
def test_signature_schema_rejects_off_layout_payloads(mutate) -> None:
    payload = signature_payload_of()
    assert errors(SIGNATURE, payload) == []
    mutate(payload)
    assert errors(SIGNATURE, payload)


def test_signature_schema_rejects_what_is_not_an_object() -> None:
    assert errors(SIGNATURE, [KEYID, "ab", "sha256:" + "9f" * 32])
    assert errors(SIGNATURE, json.loads(EMPTY_CONFIG))


def test_artifact_kinds_are_not_interchangeable() -> None:
    """A proposal is never a metadata file or a signature, for the schemas and for the readers."""
    proposal, signature = proposal_manifest_of(), signature_manifest_of()
    metadata = manifest_of("targets")
    assert errors(MANIFEST, proposal) and errors(MANIFEST, signature)
    assert errors(PROPOSAL, metadata) and errors(PROPOSAL, signature)
    assert errors(SIGNATURE_MANIFEST, metadata) and errors(SIGNATURE_MANIFEST, proposal)
    for raw in (proposal, signature):
        with pytest.raises(MetadataRejectedError):
            parse_metadata_manifest(json.dumps(raw).encode())
    with pytest.raises(MetadataRejectedError):
        parse_artifact_manifest(json.dumps(signature).encode(), PROPOSAL_CONFIG_MEDIA_TYPE)
    with pytest.raises(MetadataRejectedError):
        parse_artifact_manifest(json.dumps(proposal).encode(), SIGNATURE_CONFIG_MEDIA_TYPE)
    with pytest.raises(MetadataRejectedError):
        parse_artifact_manifest(json.dumps(metadata).encode(), PROPOSAL_CONFIG_MEDIA_TYPE)
