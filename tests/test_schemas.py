"""The JSON Schemas in schemas/ against what tufoci really writes (docs/layout.md §2, §3).

The integration tests init a trust repository in an OCI image-layout scope, publish
an image and a multi-platform index, then read the metadata repository directly
from disk (``index.json`` and ``blobs/``) and validate every manifest, the config
blob and each target's ``custom``. The unit tests check the schemas reject what
the layout forbids, with manifests from ``build_metadata_manifest``.
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

from tests.conftest import init_scope, ok, push_test_image, run_tufoci
from tests.support.images import build_index, images_available, skopeo_copy
from tufoci.errors import MetadataRejectedError
from tufoci.layout_spec import (
    EMPTY_CONFIG,
    MANIFEST_MEDIA_TYPE,
    build_metadata_manifest,
    metadata_filename,
    metadata_tag,
    parse_metadata_manifest,
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
        assert errors(CUSTOM, info["custom"]) == [], name
        repository, _, tag = name.rpartition(":")
        image = tagged(published / repository)[tag]
        assert info["length"] == image["size"]
        assert "sha256:" + info["hashes"]["sha256"] == image["digest"]
        assert info["custom"]["mediaType"] == image["mediaType"]

    assert "x-tufoci-platforms" not in targets["targets"]["web:1.0"]["custom"]
    assert targets["targets"]["multi:2.0"]["custom"]["x-tufoci-platforms"] == ["linux/amd64", "linux/arm64"]


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
        ({}, False),
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
