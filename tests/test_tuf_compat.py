"""tufoci/tuf_compat.py against the python-tuf installed: the upgrade check of issue 12 §5.

Each test drives a real ngclient ``Updater`` over a small repository built with python-tuf's Metadata API and
served from memory, and checks one thing tufoci assumes about python-tuf beyond its public API. When python-tuf
changes one of them, a test here fails, naming the function of tuf_compat.py to revise.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.ngclient import FetcherInterface, Updater

from tufoci import tuf_compat

REPO_ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
LATER = NOW + datetime.timedelta(days=1)
DELEGATED = "team/web"  # a name ngclient quotes in URLs and file names
UNPUBLISHED = "later"


class _Served(FetcherInterface):
    """Files by name, and the names ngclient asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.asked = files, []

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.rsplit("/", 1)[-1]
        self.asked.append(name)
        if name not in self.files:
            raise exceptions.DownloadHTTPError(name, 404)
        return iter([self.files[name]])


def _repository(*, timestamp_expires: datetime.datetime = LATER, roots: int = 1, delegated_name: str = DELEGATED,
                delegated_expires: datetime.datetime = LATER) -> tuple[bytes, _Served]:
    signer = CryptoSigner.generate_ed25519()
    key = signer.public_key
    root = Metadata(Root(expires=LATER))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.signed.add_key(key, role)
    targets = Metadata(Targets(expires=LATER))
    targets.signed.delegations = Delegations(
        {key.keyid: key}, {name: DelegatedRole(name, [key.keyid], 1, False, paths=[f"{name}/*"])
                           for name in (delegated_name, UNPUBLISHED)})
    delegated = Metadata(Targets(expires=delegated_expires))
    snapshot = Metadata(Snapshot(expires=LATER))
    snapshot.signed.meta = {"targets.json": MetaFile(1), f"{delegated_name}.json": MetaFile(1)}
    timestamp = Metadata(Timestamp(expires=timestamp_expires))
    files = {}
    for version in range(2, roots + 1):  # the same keys, a newer version
        newer = Metadata(Root(version=version, expires=LATER, keys=root.signed.keys, roles=root.signed.roles))
        newer.sign(signer)
        files[f"{version}.root.json"] = newer.to_bytes()
    for md, name in ((root, "1.root.json"), (targets, "1.targets.json"), (delegated, f"1.{delegated_name}.json"),
                     (snapshot, "1.snapshot.json"), (timestamp, "timestamp.json")):
        md.sign(signer)
        files[name.replace("/", "%2F")] = md.to_bytes()
    return files["1.root.json"], _Served(files)


def _updater(tmp_path: Path, **kwargs) -> tuple[Updater, _Served]:
    root, served = _repository(**kwargs)
    return Updater(str(tmp_path), "https://example.invalid/", fetcher=served, bootstrap=root), served


def test_cache_file_names_are_ngclients(tmp_path: Path):
    updater, _ = _updater(tmp_path)
    updater.refresh()
    tuf_compat.load_delegated_targets(updater, DELEGATED, "targets")
    for role in ("root", "timestamp", "snapshot", "targets", DELEGATED):
        assert os.path.isfile(tuf_compat.cached_file(str(tmp_path), role)), role
    assert tuf_compat.cached_root_versions(str(tmp_path)) == [1]
    assert os.path.isfile(tuf_compat.cached_root(str(tmp_path), 1))
    assert os.path.samefile(tuf_compat.cached_file(str(tmp_path), "root"), tuf_compat.cached_root(str(tmp_path), 1))


def test_every_trusted_root_is_kept_in_the_history(tmp_path: Path):
    updater, _ = _updater(tmp_path, roots=3)
    updater.refresh()
    assert tuf_compat.cached_root_versions(str(tmp_path)) == [1, 2, 3]
    assert os.path.samefile(tuf_compat.cached_file(str(tmp_path), "root"), tuf_compat.cached_root(str(tmp_path), 3))


def test_requested_file_names_parse_both_ways(tmp_path: Path):
    updater, served = _updater(tmp_path)
    updater.refresh()
    tuf_compat.load_delegated_targets(updater, DELEGATED, "targets")
    expected = [("root", 2), ("timestamp", None), ("snapshot", 1), ("targets", 1), (DELEGATED, 1)]
    assert [tuf_compat.requested_metadata(f"https://example.invalid/{name}") for name in served.asked] == expected
    assert served.asked == [tuf_compat.requested_file_name(role, version) for role, version in expected]
    with pytest.raises(ValueError):
        tuf_compat.requested_metadata("https://example.invalid/index.html")


def test_the_trusted_set_is_read_as_tufoci_expects(tmp_path: Path):
    updater, _ = _updater(tmp_path)
    updater.refresh()
    assert tuf_compat.trusted_root(updater).version == 1
    assert tuf_compat.trusted_version(updater, "timestamp") == 1
    assert tuf_compat.trusted(updater, "snapshot") is not None
    assert tuf_compat.earliest_expiry(updater) == LATER
    assert tuf_compat.load_delegated_targets(updater, DELEGATED, "targets").version == 1


def test_an_expired_role_is_named_and_expiry_can_be_waived(tmp_path: Path):
    updater, _ = _updater(tmp_path / "strict", timestamp_expires=NOW - datetime.timedelta(days=1))
    with pytest.raises(exceptions.ExpiredMetadataError) as raised:
        updater.refresh()
    assert tuf_compat.expired_role(raised.value) == "timestamp"
    expired = tuf_compat.trusted(updater, "timestamp")  # kept loaded after the rejection
    assert expired is not None and expired.expires < NOW

    updater, _ = _updater(tmp_path / "waived", timestamp_expires=NOW - datetime.timedelta(days=1))
    tuf_compat.waive_expiry(updater)
    updater.refresh()


def test_a_delegated_role_named_like_a_top_level_file_is_not_taken_for_it(tmp_path: Path):
    """Delegators choose role names: an expired role named ``timestamp.json`` is that role, not the timestamp
    (whose real expiry, and a fix for the online key holder, the message would otherwise give)."""
    from tufoci.client.refresh import _expired_message

    updater, _ = _updater(tmp_path, delegated_name="timestamp.json", delegated_expires=NOW - datetime.timedelta(days=1))
    updater.refresh()
    with pytest.raises(exceptions.ExpiredMetadataError) as raised:
        tuf_compat.load_delegated_targets(updater, "timestamp.json", "targets")
    assert tuf_compat.expired_role(raised.value) == "timestamp.json"
    message = _expired_message(raised.value, updater)
    assert message.startswith("metadata rejected: timestamp.json expired") and "online key" not in message, message
    for text, role in (("timestamp.json is expired", "timestamp"), ("snapshot.json is expired", "snapshot"),
                       ("Final root.json is expired", "root"), ("New targets is expired", "targets")):
        assert tuf_compat.expired_role(exceptions.ExpiredMetadataError(text)) == role


def test_a_delegated_role_missing_from_the_snapshot_is_named(tmp_path: Path):
    updater, _ = _updater(tmp_path)
    updater.refresh()
    with pytest.raises(exceptions.RepositoryError) as raised:
        tuf_compat.load_delegated_targets(updater, UNPUBLISHED, "targets")
    assert tuf_compat.unpublished_role(raised.value) == UNPUBLISHED
    assert tuf_compat.unpublished_role(exceptions.RepositoryError("something else")) is None


def test_added_checks_see_every_new_root_and_delegated_role(tmp_path: Path):
    seen = []
    updater, _ = _updater(tmp_path, roots=2)
    tuf_compat.add_checks(updater, lambda root: seen.append(("root", root.version)),
                          lambda targets, role: seen.append((role, targets.version)))
    updater.refresh()
    tuf_compat.load_delegated_targets(updater, DELEGATED, "targets")
    assert seen == [("root", 2), ("targets", 1), (DELEGATED, 1)]

    def refuse(targets: Targets, role: str) -> None:
        if role == DELEGATED:
            raise exceptions.RepositoryError(f"{role} refused")

    updater, _ = _updater(tmp_path / "refusing")
    tuf_compat.add_checks(updater, lambda root: None, refuse)
    updater.refresh()
    with pytest.raises(exceptions.RepositoryError, match="refused"):
        tuf_compat.load_delegated_targets(updater, DELEGATED, "targets")
    assert not os.path.exists(tuf_compat.cached_file(str(tmp_path / "refusing"), DELEGATED))  # never persisted


def test_python_tuf_internals_are_used_in_tuf_compat_only():
    """One file to review on a python-tuf upgrade: no other module of tufoci reaches into python-tuf."""
    private = ("_trusted_set", "_load_targets", "tuf.ngclient._internal", "reference_time")
    for directory in ("tufoci", "repo_tool", "client"):
        for path in (REPO_ROOT / directory).rglob("*.py"):
            if path.name != "tuf_compat.py":
                text = path.read_text()
                assert not [p for p in private if p in text], path
