"""The OCI layout: tags, the role-name encoding, manifests and hints."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from tufoci.errors import MetadataRejectedError
from tufoci.layout_spec import (
    ANNOTATION_TIMESTAMP_HINT,
    MetadataTag,
    build_metadata_manifest,
    encode_role,
    metadata_tag,
    parse_metadata_manifest,
    parse_metadata_tag,
    proposal_tag,
    root_versions,
    sha256_digest,
    signature_tag,
)
from tufoci.reference import TAG_RE

ROLE_NAMES = [
    "web", "web-team", "Web", "bins-0a", "web/frontend", "web_frontend", "web.frontend", "../etc/passwd",
    "a?b", "a#b", "a%2Fb", "a/b", "a%b", "ünïcödé", "_" + "0" * 64, "x" * 64, "x" * 65, "", " ", "\n",
    "d.web.1", "-", "--",
]


def test_role_encoding_is_tag_safe_and_injective():
    encoded = [encode_role(r) for r in ROLE_NAMES]
    assert len(set(encoded)) == len(ROLE_NAMES)
    for role in ROLE_NAMES:
        tag = metadata_tag(role, 10**11)
        assert TAG_RE.fullmatch(tag), (role, tag)
        assert "/" not in tag and ".." not in tag.removeprefix("d.")


def test_readable_role_names_stay_readable():
    assert metadata_tag("web-team", 3) == "d.web-team.3"
    assert metadata_tag("web/frontend", 3).startswith("d._")


@pytest.mark.parametrize("role,version,tag", [
    ("root", 1, "root.1"), ("targets", 7, "targets.7"), ("snapshot", 2, "snapshot.2"), ("timestamp", 9, "timestamp"),
])
def test_top_level_tags(role, version, tag):
    assert metadata_tag(role, version) == tag


TAG_CASES = [  # tag, what parse_metadata_tag makes of it (None: not a tag tufoci writes, skipped)
    ("root.1", MetadataTag("top-level", "root", 1)),
    ("targets.123456789012", MetadataTag("top-level", "targets", 123456789012)),
    ("snapshot.2", MetadataTag("top-level", "snapshot", 2)),
    ("timestamp", MetadataTag("timestamp", "timestamp")),
    ("d.web-team.3", MetadataTag("delegated", "web-team", 3)),
    (metadata_tag("web/frontend", 4), MetadataTag("delegated", encode_role("web/frontend"), 4)),
    (proposal_tag("targets", 5), MetadataTag("proposal", "targets", 5)),
    (signature_tag("root", 6, "ab" * 32), MetadataTag("signature", "root", 6, "ab" * 16)),
    ("root.\u00b2", None), ("root.\u0661", None), ("root.\uff11", None),  # digits str.isdigit() accepts
    ("root.01", None), ("root.0", None), ("root.", None), ("root", None), ("root.1.2", None), ("root.-1", None),
    ("root.1234567890123", None), ("root.1\n", None), ("ROOT.1", None), ("timestamp.1", None), ("timestamps", None),
    ("d.web.x", None), ("d..1", None), ("d._abc.1", None), ("d." + "x" * 65 + ".1", None),
    ("staged.targets", None), ("sig.targets.1.XYZ", None), ("sig.targets.1", None), ("latest", None), ("", None),
]


@pytest.mark.parametrize("tag,expected", TAG_CASES)
def test_metadata_tag_grammar(tag, expected):
    assert parse_metadata_tag(tag) == expected


def test_root_versions_skip_what_is_not_a_root_tag():
    assert root_versions(["root.2", "root.\u00b2", "root.10", "targets.3", "root.1", "root.01"]) == [1, 2, 10]


def test_manifest_round_trip_and_inline_timestamp_hint():
    data = b'{"signed":{"_type":"timestamp"}}'
    raw = build_metadata_manifest("timestamp", 5, data, root_version=3)
    parsed = parse_metadata_manifest(raw)
    assert parsed.layer.digest == sha256_digest(data) and parsed.layer.size == len(data)
    assert parsed.filename == "timestamp.json"
    assert parsed.root_hint == 3
    assert parsed.inline_data == data


def test_inline_hint_that_does_not_hash_to_the_layer_is_ignored():
    data = b'{"signed":{"_type":"timestamp"}}'
    manifest = json.loads(build_metadata_manifest("timestamp", 5, data))
    manifest["annotations"][ANNOTATION_TIMESTAMP_HINT] = base64.b64encode(b'{"forged":1}').decode()
    parsed = parse_metadata_manifest(json.dumps(manifest).encode())
    assert parsed.inline_data is None


@pytest.mark.parametrize("mutate", [
    lambda m: m["layers"].append(m["layers"][0]),
    lambda m: m["config"].update(mediaType="application/vnd.oci.image.config.v1+json"),
    lambda m: m["layers"][0].update(digest="sha256:../../etc"),
    lambda m: m.pop("layers"),
])
def test_malformed_manifests_are_rejected(mutate):
    manifest = json.loads(build_metadata_manifest("targets", 2, b"{}"))
    mutate(manifest)
    with pytest.raises(MetadataRejectedError):
        parse_metadata_manifest(json.dumps(manifest).encode())


def test_garbage_manifest_is_rejected():
    with pytest.raises(MetadataRejectedError):
        parse_metadata_manifest(b"\x00not json")


@pytest.mark.parametrize("name", ["abc\n", "web\n", "latest\n"])
def test_a_trailing_newline_never_passes_as_a_plain_name(name):
    assert encode_role(name).startswith("_")
    assert not TAG_RE.fullmatch(name)


def test_role_names_are_python_tufs_and_meta_keys_round_trip():
    """issue 12 §5: the role names are defined once (layout_spec, stdlib only) and are python-tuf's."""
    from tuf.api.metadata import TOP_LEVEL_ROLE_NAMES, Snapshot, Timestamp

    from tufoci.layout_spec import ONLINE_ROLES, TOP_LEVEL_ROLES, meta_key, meta_role

    assert set(TOP_LEVEL_ROLES) == TOP_LEVEL_ROLE_NAMES and set(ONLINE_ROLES) < TOP_LEVEL_ROLE_NAMES
    assert list(Snapshot().meta) == [meta_key("targets")]
    assert list(Timestamp().to_dict()["meta"]) == [meta_key("snapshot")]
    assert all(meta_role(meta_key(name)) == name for name in ROLE_NAMES)


# what building a metadata-repository tag by hand looks like (layout §3, §9): only layout_spec.py may
_TAG_BUILDING = re.compile(r"""f["'](?:root|targets|snapshot|d|staged|sig)\.\{|["'](?:d|staged|sig)\.["']\s*\+""")


def test_tags_are_built_and_parsed_in_layout_spec_only():
    """issue 12 §5: one formatter/parser of the tag format; everything else calls it."""
    root = Path(__file__).resolve().parent.parent
    for directory in ("tufoci", "repo_tool", "client"):
        for path in (root / directory).rglob("*.py"):
            if path.name != "layout_spec.py":
                assert not _TAG_BUILDING.findall(path.read_text()), path
