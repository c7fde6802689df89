"""Property-based fuzzing of every parser that reads untrusted bytes.

The property is the same everywhere: a parser fed anything returns a clean
result or raises one of tufoci's documented exceptions (``TufociError`` and its
families, which the CLI turns into one line and an exit code) — never
``AttributeError``, ``OverflowError``, ``RecursionError``, ``UnicodeError``…,
and never hangs (every example has a deadline). Where a parser has a writer,
the round trip is checked too.

The run is short by default (the whole directory stays well under 20 s); see
``tests/fuzz/README.md`` for longer campaigns (``TUFOCI_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from tufoci.errors import NotFoundError, TooLargeError, TufociError
from tufoci.layout_spec import (
    CONFIG_MEDIA_TYPE,
    MAX_METADATA_MANIFEST_BYTES,
    METADATA_MEDIA_TYPE,
    PROPOSAL_CONFIG_MEDIA_TYPE,
    SIGNATURE_CONFIG_MEDIA_TYPE,
    SIGNATURE_MEDIA_TYPE,
    TIMESTAMP_TAG,
    TOP_LEVEL_VERSIONED,
    build_artifact_manifest,
    build_metadata_manifest,
    encode_role,
    image_media_type,
    index_platforms,
    metadata_filename,
    metadata_tag,
    parse_artifact_manifest,
    parse_metadata_manifest,
    proposal_tag,
    sha256_digest,
    signature_tag,
)
from tufoci.reference import (
    DIGEST_RE,
    TAG_RE,
    Reference,
    Repository,
    parse_reference,
    parse_repository,
    reference_for_target,
    target_name,
)
from tufoci.store.base import Manifest, RepositoryStore
from tufoci.store.layout import REF_NAME_ANNOTATION, LayoutRepository

# -- run length ---------------------------------------------------------------------
# Short in the suite; TUFOCI_FUZZ_EXAMPLES=20000 (README) for a campaign.
EXAMPLES = int(os.environ.get("TUFOCI_FUZZ_EXAMPLES", "60"))
DEADLINE_MS = int(os.environ.get("TUFOCI_FUZZ_DEADLINE_MS", "2000"))
_DB = os.environ.get("TUFOCI_FUZZ_DB")  # a directory: keep failing examples between runs
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    # hypothesis caches things in ./.hypothesis; keep the work tree clean
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "tufoci-hypothesis"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=datetime.timedelta(milliseconds=DEADLINE_MS),  # "never a hang": per-example wall clock
    database=DirectoryBasedExampleDatabase(_DB) if _DB else None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,
)


def clean_or_tufoci(call, *args, **kwargs):
    """Run a parser; a documented error is an answer, anything else fails the test."""
    try:
        return call(*args, **kwargs)
    except TufociError as e:
        assert str(e), "a tufoci error must carry a message"
        return e


# -- generic strategies -------------------------------------------------------------
# Every str, including lone surrogates (JSON's "\ud800" escape produces them).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=80)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)  # json.dumps writes Infinity / NaN, Python reads them back
    | ANY_TEXT
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)


def dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def deeply_nested(draw) -> bytes:
    """Absurd nesting, the way to make a recursive-descent JSON parser raise RecursionError."""
    depth = draw(st.integers(min_value=500, max_value=60_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return (opener * depth + "1" + closer * depth).encode()


def _slots(value: object, path: tuple = ()) -> Iterator[tuple]:
    """Every (container path, key) in a JSON value, in a stable order."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield path + (key,)
            yield from _slots(value[key], path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield path + (i,)
            yield from _slots(item, path + (i,))


@st.composite
def mutated_json(draw, base: object) -> object:
    """``base`` with a few fields replaced by arbitrary JSON, deleted, or retyped."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        slots = list(_slots(value))
        if not slots:
            break
        path = draw(st.sampled_from(slots))
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "wrap"]))
        if action == "delete":
            del parent[key]
        elif action == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"x": parent[key]}, str(parent[key])]))
        else:
            parent[key] = draw(JSON)
    return value


@st.composite
def mutated_bytes(draw, base: bytes) -> bytes:
    """Byte-level damage: truncation, flipped bytes, inserted garbage."""
    data = bytearray(base)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(st.sampled_from(["truncate", "flip", "insert"]))
        position = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if action == "truncate":
            del data[position:]
        elif action == "flip" and data:
            data[position] ^= draw(st.integers(min_value=1, max_value=255))
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def untrusted_document(valid: bytes) -> st.SearchStrategy[bytes]:
    """What a hostile store may serve instead of ``valid``: anything at all, shaped or not."""
    return st.one_of(
        st.binary(max_size=512),
        JSON.map(dumps),
        mutated_json(json.loads(valid)).map(dumps),
        mutated_bytes(valid),
        deeply_nested(),
    )


# =============================================================================
# 1. references, scopes, target names
# =============================================================================
_REF_ALPHABET = "abcxyzABZ0189._-/:@[]" + "é\x00 \t\n"
REF_LIKE = st.one_of(
    ANY_TEXT,
    st.text(alphabet=_REF_ALPHABET, max_size=60),
    st.builds(lambda body: "oci:" + body, st.text(alphabet=_REF_ALPHABET, max_size=40)),
    st.builds(lambda body, hexes: f"{body}@sha256:{hexes}", st.text(alphabet=_REF_ALPHABET, max_size=30),
              st.text(alphabet="0123456789abcdefA", min_size=63, max_size=65)),
)

COMPONENT = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)
HOST = st.sampled_from(["localhost:5000", "127.0.0.1:5000", "registry.example.com", "Registry.local", "[::1]:5000"])


@FUZZ
@given(REF_LIKE)
@example("oci:")
@example("a" * 300)
@example("localhost:5000/" + "a-" * 200 + "a")
@example("Registry:99999999999999999999/x")
def test_parse_reference_only_documented_errors(text: str) -> None:
    result = clean_or_tufoci(parse_reference, text)
    if isinstance(result, Reference):
        # what parses prints back to the same reference (no normalisation drift)
        assert parse_reference(str(result)) == result
        assert result.tag is None or TAG_RE.fullmatch(result.tag)
        assert result.digest is None or DIGEST_RE.fullmatch(result.digest)


@FUZZ
@given(REF_LIKE)
def test_parse_repository_only_documented_errors(text: str) -> None:
    result = clean_or_tufoci(parse_repository, text)
    if isinstance(result, Repository):
        assert parse_repository(str(result)) == result


@FUZZ
@given(HOST, st.lists(COMPONENT, min_size=1, max_size=3), st.lists(COMPONENT, min_size=1, max_size=3), TAG,
       st.booleans())
def test_target_name_round_trip(host: str, scope_parts: list[str], image_parts: list[str], tag: str, layout: bool):
    base = "oci:/tmp/fuzz-store" if layout else host
    scope = parse_repository(f"{base}/{'/'.join(scope_parts)}")
    relative = "/".join(image_parts)
    reference = parse_reference(f"{base}/{'/'.join(scope_parts)}/{relative}:{tag}")
    name = target_name(reference, scope)
    assert name == f"{relative}:{tag}"
    back = reference_for_target(name, scope)
    assert back == Reference(reference.repository, tag)
    assert parse_reference(str(back)) == back


@FUZZ
@given(st.one_of(ANY_TEXT, st.text(alphabet="ab/.:_-@ ", max_size=30)), st.booleans())
@example("../../etc/passwd:1", True)
@example("/etc:1", True)
@example("a//b:1", True)
@example("./a:1", True)
@example("a:b:1", True)
def test_reference_for_target_stays_inside_the_scope(name: str, layout: bool) -> None:
    scope = parse_repository("oci:/tmp/fuzz-store/acme" if layout else "localhost:5000/acme")
    result = clean_or_tufoci(reference_for_target, name, scope)
    if isinstance(result, Reference):
        # a signed name can only ever name an image below the scope, and names it back
        assert result.repository.relative_to(scope) is not None
        assert target_name(result, scope) == name
        if len(str(result.repository)) <= 255:
            assert parse_reference(str(result)) == result


# =============================================================================
# 2. role and tag encodings
# =============================================================================
ROLE = st.one_of(
    ANY_TEXT,
    st.from_regex(r"[A-Za-z0-9-]{1,64}", fullmatch=True),  # the readable form
    st.from_regex(r"[A-Za-z0-9-]{65,70}", fullmatch=True),  # just too long to stay readable
    st.builds(lambda h: "_" + h, st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),  # looks hashed
    st.sampled_from(["a/b", "../x", "d", "web.1", "x\x00", "\ud800", "ß", "A", "a"]),
)
VERSION = st.integers(min_value=1, max_value=10**12 - 1)  # the fetcher accepts at most 12 digits


@FUZZ
@given(ROLE)
def test_encode_role_is_tag_safe(role: str) -> None:
    encoded = encode_role(role)
    assert "/" not in encoded and "\\" not in encoded and ".." not in encoded
    assert re.fullmatch(r"[A-Za-z0-9_-]+", encoded), encoded  # no '.', the tag's own separator
    if re.fullmatch(r"[A-Za-z0-9-]{1,64}", role):
        assert encoded == role


@FUZZ
@given(st.lists(st.tuples(st.one_of(ROLE, st.sampled_from(TOP_LEVEL_VERSIONED)), VERSION), min_size=2,
                max_size=12, unique=True))
def test_metadata_tags_are_valid_and_injective(entries: list[tuple[str, int]]) -> None:
    entries = [(role, version) for role, version in entries if role != TIMESTAMP_TAG]
    tags = [metadata_tag(role, version) for role, version in entries]
    for tag in tags:
        assert TAG_RE.fullmatch(tag), tag
        assert "/" not in tag
    assert len(set(tags)) == len(tags), list(zip(entries, tags, strict=True))
    # encode_role alone is injective too
    roles = {role for role, _ in entries}
    assert len({encode_role(r) for r in roles}) == len(roles)
    # the three families of tags never collide with each other
    staged = {proposal_tag(role, version) for role, version in entries}
    signatures = {signature_tag(role, version, "ab" * 16) for role, version in entries}
    assert not (set(tags) & staged) and not (set(tags) & signatures) and not (staged & signatures)
    for tag in staged | signatures:
        assert TAG_RE.fullmatch(tag), tag


@FUZZ
@given(ROLE, VERSION, ANY_TEXT)
def test_proposal_and_signature_tags_are_valid(role: str, version: int, keyid: str) -> None:
    for tag in (proposal_tag(role, version), signature_tag(role, version, keyid)):
        assert TAG_RE.fullmatch(tag) and "/" not in tag, tag


# =============================================================================
# 3. metadata manifests (layout §2, §5)
# =============================================================================
_VALID_TIMESTAMP_MANIFEST = build_metadata_manifest("timestamp", 7, b'{"signed":{}}', root_version=3)
_VALID_TARGETS_MANIFEST = build_metadata_manifest("targets", 4, b"x" * 100)


@FUZZ
@given(st.one_of(untrusted_document(_VALID_TIMESTAMP_MANIFEST), untrusted_document(_VALID_TARGETS_MANIFEST)))
@example(b'{"config":{"mediaType":"' + CONFIG_MEDIA_TYPE.encode() + b'"},"layers":[{"mediaType":"'
         + METADATA_MEDIA_TYPE.encode() + b'","digest":"sha256:' + b"a" * 64 + b'","size":1e400}]}')
@example(b"[" * 100_000)
def test_parse_metadata_manifest_only_documented_errors(raw: bytes) -> None:
    result = clean_or_tufoci(parse_metadata_manifest, raw)
    if isinstance(result, TufociError):
        assert result.exit_code == 12
        return
    assert DIGEST_RE.fullmatch(result.layer.digest) and result.layer.size >= 0
    assert result.root_hint is None or (isinstance(result.root_hint, int) and result.root_hint >= 0)
    if result.inline_data is not None:  # a hint is only kept when it is exactly the blob
        assert sha256_digest(result.inline_data) == result.layer.digest
        assert len(result.inline_data) == result.layer.size
    assert isinstance(result.filename, str)


@FUZZ
@given(st.one_of(st.sampled_from(TOP_LEVEL_VERSIONED + (TIMESTAMP_TAG,)), ROLE), VERSION, st.binary(max_size=2048),
       st.none() | st.integers(min_value=1, max_value=10**11 - 1))
def test_metadata_manifest_round_trip(role: str, version: int, data: bytes, root_version: int | None) -> None:
    raw = build_metadata_manifest(role, version, data, root_version=root_version)
    parsed = parse_metadata_manifest(raw)
    assert parsed.layer.digest == sha256_digest(data) and parsed.layer.size == len(data)
    assert parsed.filename == metadata_filename(role, None if role == TIMESTAMP_TAG else version)
    if role == TIMESTAMP_TAG:
        assert parsed.inline_data == data and parsed.root_hint == root_version
    else:
        assert parsed.inline_data is None and parsed.root_hint is None


# =============================================================================
# 4. proposal and signature artifacts (layout §9)
# =============================================================================
_VALID_PROPOSAL = build_artifact_manifest(PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, b"{}",
                                          {"dev.tufoci.role": "targets", "dev.tufoci.version": "2"})
_VALID_SIGNATURE = build_artifact_manifest(SIGNATURE_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, b"{}",
                                           {"dev.tufoci.signature.keyid": "ab" * 32})


@FUZZ
@given(st.one_of(untrusted_document(_VALID_PROPOSAL), untrusted_document(_VALID_SIGNATURE)),
       st.sampled_from([PROPOSAL_CONFIG_MEDIA_TYPE, SIGNATURE_CONFIG_MEDIA_TYPE]))
def test_parse_artifact_manifest_only_documented_errors(raw: bytes, kind: str) -> None:
    result = clean_or_tufoci(parse_artifact_manifest, raw, kind)
    if isinstance(result, TufociError):
        assert result.exit_code == 12
        return
    assert result.config_media_type == kind
    assert DIGEST_RE.fullmatch(result.layer.digest) and result.layer.size >= 0
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.annotations.items())


@FUZZ
@given(st.sampled_from([PROPOSAL_CONFIG_MEDIA_TYPE, SIGNATURE_CONFIG_MEDIA_TYPE]), ANY_TEXT, st.binary(max_size=256),
       st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=4))
def test_artifact_manifest_round_trip(kind: str, layer_type: str, data: bytes, annotations: dict[str, str]) -> None:
    raw = build_artifact_manifest(kind, layer_type, data, annotations)
    parsed = parse_artifact_manifest(raw, kind)
    assert parsed.layer.digest == sha256_digest(data) and parsed.layer.media_type == layer_type
    assert {k: v for k, v in parsed.annotations.items() if k != "dev.tufoci.layout.version"} == {
        k: v for k, v in annotations.items() if k != "dev.tufoci.layout.version"}


class DictStore(RepositoryStore):
    """An in-memory store serving whatever bytes a test hands it, with the real caps and hash checks."""

    def __init__(self, manifests: dict[str, bytes], blobs: list[bytes] = ()):  # type: ignore[assignment]
        self.manifests = dict(manifests)
        self.blobs = {sha256_digest(b): b for b in blobs}

    def __repr__(self) -> str:
        return "DictStore()"

    def get_manifest(self, reference: str, *, max_bytes: int = 4 << 20) -> Manifest:
        if reference in self.manifests:
            data = self.manifests[reference]
        elif reference in self.blobs:
            data = self.blobs[reference]
        else:
            raise NotFoundError(f"{reference} not found")
        if len(data) > max_bytes:
            raise TooLargeError(f"{reference} is larger than {max_bytes}")
        return Manifest(data, None)

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        self.manifests[tag] = data
        return sha256_digest(data)

    def get_blob(self, digest: str, *, max_bytes: int) -> bytes:
        if digest not in self.blobs:
            raise NotFoundError(f"blob {digest} not found")
        if len(self.blobs[digest]) > max_bytes:
            raise TooLargeError(f"blob {digest} is larger than {max_bytes}")
        return self.blobs[digest]

    def has_blob(self, digest: str) -> bool:
        return digest in self.blobs

    def put_blob(self, data: bytes) -> str:
        self.blobs[sha256_digest(data)] = data
        return sha256_digest(data)

    def list_tags(self) -> list[str]:
        return list(self.manifests)


def _one_key_root():
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root, Targets

    signer = CryptoSigner.generate_ed25519()
    root = Root()
    root.add_key(signer.public_key, "targets")
    proposal = Metadata(Targets(version=2))
    return signer, root, proposal


_SIGNER, _ROOT, _PROPOSED = _one_key_root()


@FUZZ
@given(st.data())
def test_read_proposals_and_evaluate_never_crash(data) -> None:
    """A garbage proposal or signature artifact is skipped or reported as not counting:
    one bad artifact must never stop maintainers from signing (repo_tool/proposals.py)."""
    from tufoci.repo_tool.proposals import evaluate, push_proposal, read_proposals

    store = DictStore({})
    proposal = push_proposal(store, "targets", _PROPOSED, "fuzzer")
    keyid = _SIGNER.public_key.keyid
    valid_payload = {"keyid": keyid, "sig": "ab" * 64, "signed": proposal.signed_digest}
    payload = data.draw(st.one_of(untrusted_document(dumps(valid_payload)), mutated_json(valid_payload).map(dumps)))
    store.put_blob(payload)
    store.manifests[signature_tag("targets", 2, keyid)] = build_artifact_manifest(
        SIGNATURE_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, payload, {"dev.tufoci.signature.keyid": keyid})
    # and sometimes a damaged proposal manifest, or a stray artifact under another proposal tag
    if data.draw(st.booleans()):
        tag = data.draw(st.sampled_from([proposal_tag("targets", 2), proposal_tag("targets", 3), "staged.x.1"]))
        store.manifests[tag] = data.draw(untrusted_document(store.manifests[proposal_tag("targets", 2)]))
    proposals = read_proposals(store)
    for found in proposals:
        merged = evaluate(found, [("root", _ROOT)])
        assert all(not check.counted for check in found.checks)  # nobody signed with _SIGNER
        assert not merged.signatures


# =============================================================================
# 5. the OCI layout index.json
# =============================================================================
@pytest.fixture(scope="module")
def layout_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="tufoci-fuzz-layout-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


_BLOB = b'{"schemaVersion":2}'
_BLOB_DIGEST = sha256_digest(_BLOB)
_VALID_INDEX = {
    "schemaVersion": 2,
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _BLOB_DIGEST, "size": len(_BLOB),
         "annotations": {REF_NAME_ANNOTATION: "timestamp"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 3,
         "annotations": {REF_NAME_ANNOTATION: "root.1"}},
    ],
}


@FUZZ
@given(untrusted_document(dumps(_VALID_INDEX)),
       st.sampled_from(["timestamp", "root.1", "nope", _BLOB_DIGEST, "sha256:" + "0" * 64, "../../etc/passwd"]))
@example(b'{"manifests":[1]}', "timestamp")
@example(b'{"manifests":[{"annotations":[1]}]}', "timestamp")
@example(b'{"manifests":[{"digest":"' + _BLOB_DIGEST.encode() + b'","mediaType":{}}]}', _BLOB_DIGEST)
def test_layout_index_only_documented_errors(layout_dir: str, raw: bytes, reference: str) -> None:
    os.makedirs(os.path.join(layout_dir, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout_dir, "blobs", "sha256", _BLOB_DIGEST.split(":")[1]), "wb") as f:
        f.write(_BLOB)
    with open(os.path.join(layout_dir, "index.json"), "wb") as f:
        f.write(raw)
    store = LayoutRepository(layout_dir)
    tags = clean_or_tufoci(store.list_tags)
    if not isinstance(tags, TufociError):
        assert all(isinstance(t, str) for t in tags)
    manifest = clean_or_tufoci(store.get_manifest, reference)
    if isinstance(manifest, TufociError):
        assert manifest.exit_code == 13
    else:
        assert manifest.data == _BLOB and manifest.digest == _BLOB_DIGEST  # the only blob there is
        assert manifest.content_type is None or isinstance(manifest.content_type, str)
        # what target add does with it next
        assert isinstance(image_media_type(manifest.data, manifest.content_type), str)


@FUZZ
@given(untrusted_document(dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]})),
    st.none() | ANY_TEXT)
def test_image_manifest_helpers_never_raise(raw: bytes, content_type: str | None) -> None:
    """``target add`` reads the registry's image manifest for its media type and platforms."""
    assert isinstance(image_media_type(raw, content_type), str)
    platforms = index_platforms(raw)
    assert all(isinstance(p, str) and "/" in p for p in platforms)


# =============================================================================
# 6. the fetcher's hints (client/fetcher.py)
# =============================================================================
def _meta(entries: dict) -> bytes:
    return dumps({"signed": {"_type": "timestamp", "version": 2, "meta": entries}, "signatures": []})


_VALID_META = {"snapshot.json": {"version": 3, "length": 20, "hashes": {"sha256": "ab" * 32}}}


@FUZZ
@given(st.one_of(untrusted_document(_meta(_VALID_META)), JSON.map(lambda m: _meta({"snapshot.json": m})),
                 st.dictionaries(ANY_TEXT, JSON, max_size=4).map(_meta)))
@example(_meta({"snapshot.json": {"version": float("inf"), "hashes": {"sha256": "ab" * 32}}}))
@example(b"[" * 100_000)
def test_fetcher_learn_accepts_any_json(raw: bytes) -> None:
    from tufoci.client.fetcher import OCIMetadataFetcher

    fetcher = OCIMetadataFetcher(DictStore({}))
    fetcher._learn(raw)  # noqa: SLF001 - the hint parser itself: it must never raise
    for (role, version), (digest, length) in fetcher._locations.items():  # noqa: SLF001
        assert isinstance(role, str) and isinstance(version, int)
        assert DIGEST_RE.fullmatch(digest)
        assert length is None or (isinstance(length, int) and length >= 0)


@FUZZ
@given(st.data())
def test_fetcher_serves_bytes_or_documented_errors(data) -> None:
    """ngclient's view: every download either yields bytes or fails with an error whose
    cause is a tufoci error (mapped to an exit code), never an internal exception."""
    from tuf.api import exceptions

    from tufoci.client.fetcher import OCIMetadataFetcher
    from tufoci.client.refresh import translate_tuf_errors

    snapshot = _meta({"targets.json": {"version": 5, "hashes": {"sha256": hashlib.sha256(b"T" * 10).hexdigest()},
                                        "length": 10}})
    timestamp = _meta({"snapshot.json": {"version": 4, "length": len(snapshot),
                                          "hashes": {"sha256": hashlib.sha256(snapshot).hexdigest()}}})
    timestamp_manifest = data.draw(untrusted_document(build_metadata_manifest("timestamp", 2, timestamp,
                                                                              root_version=2)))
    store = DictStore(
        {
            TIMESTAMP_TAG: timestamp_manifest,
            "root.1": data.draw(untrusted_document(build_metadata_manifest("root", 1, b"R" * 5))),
            "root.2": build_metadata_manifest("root", 2, b"R2"),
            "snapshot.4": data.draw(untrusted_document(build_metadata_manifest("snapshot", 4, snapshot))),
            "d." + encode_role("a/b") + ".1": data.draw(untrusted_document(build_metadata_manifest("a/b", 1, b"D"))),
        },
        [timestamp, snapshot, b"T" * 10, b"R" * 5, b"R2", b"D", data.draw(st.binary(max_size=64))],
    )
    fetcher = OCIMetadataFetcher(store)
    urls = data.draw(st.lists(st.sampled_from(
        ["timestamp.json", "1.root.json", "2.root.json", "3.root.json", "4.snapshot.json", "5.targets.json",
         "1.a%2Fb.json", "0.root.json", "x.json", "99999999999999.root.json", "..%2F1.root.json"]),
        min_size=1, max_size=6))
    for name in urls:
        max_length = data.draw(st.sampled_from([MAX_METADATA_MANIFEST_BYTES, 16, 1]))
        try:
            with translate_tuf_errors():
                body = fetcher.download_bytes(f"oci://localhost:5000/acme/tuf/{name}", max_length)
        except TufociError as e:
            # no internal exception hides behind it: what python-tuf wrapped is one of ours
            # (which may itself name the parse error that caused it)
            cause = e.__cause__
            if cause is not None:
                assert isinstance(cause, (TufociError, exceptions.DownloadError)), repr(cause)
                inner = cause.__cause__
                if isinstance(cause, exceptions.DownloadError) and inner is not None:
                    assert isinstance(inner, (TufociError, exceptions.DownloadError)), repr(inner)
            continue
        assert isinstance(body, bytes) and len(body) <= max_length
        if name == "timestamp.json":  # inline hint or blob: either way exactly the layer's bytes
            layer = parse_metadata_manifest(timestamp_manifest).layer
            assert sha256_digest(body) == layer.digest


def test_inline_timestamp_hint_must_match_the_layer() -> None:
    """A hint that does not hash to the layer is ignored, never served."""
    raw = json.loads(build_metadata_manifest("timestamp", 2, b"real", root_version=1))
    raw["annotations"]["dev.tufoci.hint.timestamp"] = base64.b64encode(b"fake").decode()
    assert parse_metadata_manifest(dumps(raw)).inline_data is None
