"""The warm verify record's own format (client/verified_record.py): what is written is what is read, exactly.

The record is lines of tab-separated, ``unicode_escape``d fields (issue 19: no json import on the warm path),
so these check what a line format could get wrong: a field holding a tab, a newline, a backslash, text beyond
ASCII or a lone surrogate must come back as written and must never add a line or a field of its own.
The fast path's refusals of damaged records are in tests/test_fast_verify.py.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tufoci.client.verified_record import read_record, record_path, target_names, write_record
from tufoci.sha256 import sha256_digest, sha256_hex
from tufoci.state import Pin
from tufoci.tuf_compat import cached_file

HOSTILE = ["a\tb", "line\nanother\tline", "back\\slash\\t", "\\x41", "wéb ünïcode ✓", "lone \udcff surrogate", "",
           "\r\x00\x1b[31m", "target\tfake:1\tsha256:" + "0" * 64 + "\t1"]


def _cache(tmp_path: Path) -> tuple[str, str]:
    cache = tmp_path / "cache" / "pin"
    cache.mkdir(parents=True)
    timestamp = b'{"signed": {"_type": "timestamp"}}'
    Path(cached_file(str(cache), "timestamp")).write_bytes(timestamp)
    return str(cache), hashlib.sha256(timestamp).hexdigest()


@pytest.mark.parametrize("text", HOSTILE)
def test_any_text_comes_back_exactly_and_adds_no_line(tmp_path: Path, text: str):
    cache, trusted = _cache(tmp_path)
    pin = Pin(f"reg.example/{text}", f"oci:/{text}", "a" * 64, "/roots/a.root.json")
    expires = datetime.datetime(2031, 5, 6, 7, 8, 9, 999999, tzinfo=datetime.UTC)
    targets = {"web:1.0": ("sha256:" + "1" * 64, 345, text), "web:1.1": ("sha256:" + "2" * 64, 0, None),
               text or "empty": ("sha256:" + "3" * 64, 10**12, "application/vnd.oci.image.manifest.v1+json")}
    assert write_record(cache, pin, timestamp_manifest="sha256:" + "f" * 64, trusted_timestamp=trusted,
                        expires=expires, targets=targets)
    assert len(Path(record_path(cache)).read_bytes().splitlines()) == 5 + len(targets)
    record = read_record(cache, pin)
    assert record == {
        "pin": {"scope": pin.scope, "rootSha256": pin.root_sha256, "metadata": pin.metadata},
        "timestampManifest": "sha256:" + "f" * 64, "trustedTimestamp": trusted,
        "expires": int(datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC).timestamp()),  # rounded down
        "targets": {name: {"digest": digest, "length": length, "mediaType": media_type}
                    for name, (digest, length, media_type) in targets.items()},
    }
    assert target_names(cache, pin) == sorted(targets)


def test_a_record_is_not_written_over_a_cache_that_moved_on(tmp_path: Path):
    cache, _ = _cache(tmp_path)
    pin = Pin("reg.example/acme", "reg.example/acme/tuf", "a" * 64, "/roots/a.root.json")
    assert not write_record(cache, pin, timestamp_manifest="sha256:" + "f" * 64, trusted_timestamp="0" * 64,
                            expires=datetime.datetime.now(datetime.UTC), targets={})
    assert not Path(record_path(cache)).exists()


_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # every code point, surrogates too


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_ANY_TEXT, min_size=1, max_size=3, unique=True), media_type=st.one_of(st.none(), _ANY_TEXT),
       scope=_ANY_TEXT, metadata=_ANY_TEXT,
       expires=st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9000, 1, 1),
                            timezones=st.just(datetime.UTC)))
def test_no_text_in_any_field_reads_back_otherwise_and_the_expiry_is_never_later(
        tmp_path_factory: pytest.TempPathFactory, names: list[str], media_type: str | None, scope: str,
        metadata: str, expires: datetime.datetime):
    """Review of session 6 (§11.4): whatever signed metadata (a delegated role's target names and media types)
    or the pin put in a field, the record reads back exactly that, with one line per target and no other;
    and its expiry is the role's, never later."""
    cache, trusted = _cache(tmp_path_factory.mktemp("record"))
    pin = Pin(scope, metadata, "a" * 64, "/roots/a.root.json")
    targets = {name: ("sha256:" + "1" * 64, i, media_type) for i, name in enumerate(names)}
    assert write_record(cache, pin, timestamp_manifest="sha256:" + "f" * 64, trusted_timestamp=trusted,
                        expires=expires, targets=targets)
    assert len(Path(record_path(cache)).read_bytes().split(b"\n")) == 5 + len(targets) + 1
    record = read_record(cache, pin)
    assert record is not None and record["pin"]["scope"] == scope and record["pin"]["metadata"] == metadata
    assert record["targets"] == {name: {"digest": digest, "length": length, "mediaType": media}
                                 for name, (digest, length, media) in targets.items()}
    assert expires.timestamp() - 1 < record["expires"] <= expires.timestamp()


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 300])
def test_the_warm_paths_sha256_is_hashlibs(data: bytes):
    """tufoci/sha256.py: the interpreter's own SHA-256, not OpenSSL's, for the same digests."""
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    assert sha256_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()
