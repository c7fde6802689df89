"""Everything tufoci knows about python-tuf beyond its public API, in one place.

Checked against python-tuf 7.0.1 (pyproject allows ``tuf>=6.0,<8``). An upgrade of
python-tuf is a review of this file, against ``tuf/ngclient/updater.py`` and
``tuf/ngclient/_internal/trusted_metadata_set.py``:

- **ngclient's metadata directory** (``Updater._persist_metadata``, ``_persist_root``,
  ``_update_root_symlink``): each role's current file as ``<quoted role>.json``,
  every root version as ``root_history/<N>.root.json``, ``root.json`` a symlink to
  the newest. tufoci's transactional cache, the fast path's record and the
  maintainer commands read it.
- **the URLs ngclient asks its fetcher for** (``Updater._download_metadata``):
  ``<base><N>.<quoted role>.json`` or ``<base>timestamp.json``.
- **private members**: the trusted metadata set (``Updater._trusted_set``: its
  ``reference_time``, its roles, its class), and ``Updater._load_targets``, the
  verified loader of one delegated role; python-tuf has no public call for either.
- **message texts** of python-tuf exceptions that decide an exit code or name a
  role (an expired role; a delegated role the snapshot does not list).

Importing this module costs nothing (standard library only): python-tuf is
imported by the functions that need it, whose callers have loaded it already,
and the verify fast path reads cache file names from here without loading it.
"""

from __future__ import annotations

import functools
import os
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import datetime
    from collections.abc import Callable

    from tuf.api.metadata import Root, Signed, Targets
    from tuf.ngclient import Updater

# -- ngclient's metadata directory ------------------------------------------------------------------------
_ROOT_HISTORY_DIR = "root_history"
# the characters urllib.parse.quote never escapes: a role name of only these is its own file name
_UNQUOTED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")  # <N>.root.json: every root version trusted
# patterns as text, compiled by re (and cached there) when first used: the verify fast path uses none of them
_REQUESTED = r"(?:([1-9][0-9]{0,11})\.)?(.+)\.json"  # <N>.<quoted role>.json, timestamp.json


def cached_file_name(role: str) -> str:
    """The name ngclient gives the current version of ``role`` in its metadata directory (``targets.json``)."""
    if all(c in _UNQUOTED for c in role):  # what quote() leaves as is: the warm verify's "timestamp"
        return f"{role}.json"
    from urllib import parse

    return f"{parse.quote(role, '')}.json"


def cached_file(metadata_dir: str, role: str) -> str:
    """The path of the current, verified version of ``role`` in ngclient's metadata directory."""
    return os.path.join(metadata_dir, cached_file_name(role))


def cached_root_versions(metadata_dir: str) -> list[int]:
    """The versions of every root ngclient trusted in this metadata directory, in order."""
    history = os.path.join(metadata_dir, _ROOT_HISTORY_DIR)
    matches = (re.fullmatch(_REQUESTED, name) for name in (os.listdir(history) if os.path.isdir(history) else []))
    return sorted(int(m.group(1)) for m in matches if m and m.group(1) and m.group(2) == "root")


def cached_root(metadata_dir: str, version: int) -> str:
    """The path of root version ``version`` in ngclient's metadata directory."""
    return os.path.join(metadata_dir, _ROOT_HISTORY_DIR, requested_file_name("root", version))


# -- the URLs ngclient fetches ------------------------------------------------------------------------------
def requested_file_name(role: str, version: int | None) -> str:
    """The file name ngclient asks for (and a static TUF mirror serves): ``3.targets.json``, ``timestamp.json``."""
    name = cached_file_name(role)
    return name if version is None else f"{version}.{name}"


def requested_metadata(url: str) -> tuple[str, int | None]:
    """The role and version ngclient asks for with ``url`` (version None: the current one, i.e. timestamp).

    Raises:
        ValueError: ``url`` is not a metadata URL ngclient builds.
    """
    match = re.fullmatch(_REQUESTED, url.rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(f"{url} is not a TUF metadata file name")
    version, role = match.groups()
    from urllib import parse

    return parse.unquote(role), None if version is None else int(version)


# -- the trusted metadata set ----------------------------------------------------------------------------
def trusted(updater: Updater, role: str) -> Signed | None:
    """The verified ``signed`` part of a top-level role the updater holds (an expired one too, after
    ``ExpiredMetadataError``: ngclient keeps the intermediate it rejected), or None."""
    trusted_set = updater._trusted_set  # noqa: SLF001
    return trusted_set[role] if role in trusted_set else None


def trusted_version(updater: Updater, role: str) -> int:
    """The version of a top-level role the updater trusts (after a refresh, every one is loaded).

    Raises:
        KeyError: the updater has not loaded ``role``.
    """
    return updater._trusted_set[role].version  # noqa: SLF001


def trusted_root(updater: Updater) -> Root:
    """The root the updater trusts now (ngclient's constructor loads one, or raises)."""
    return updater._trusted_set.root  # noqa: SLF001


def earliest_expiry(updater: Updater) -> datetime.datetime:
    """The earliest expiry of every role the updater has verified (top-level and delegated)."""
    return min(signed.expires for signed in updater._trusted_set)  # noqa: SLF001


def waive_expiry(updater: Updater) -> None:
    """Accept expired metadata in the refresh to come (every signature, threshold, version and hash is
    still checked): ngclient checks expiry against the set's reference time, and the epoch waives it."""
    import datetime

    updater._trusted_set.reference_time = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)  # noqa: SLF001


def load_delegated_targets(updater: Updater, role: str, parent: str) -> Targets:
    """Load, verify and cache the delegated targets role ``role`` of ``parent``, as ngclient's own delegation
    walk does (python-tuf has no public call to load one named role).

    Raises:
        tuf.api.exceptions.RepositoryError, DownloadError: as ``Updater.get_targetinfo``.
    """
    return updater._load_targets(role, parent)  # noqa: SLF001


def add_checks(updater: Updater, root: Callable[[Root], None],
               delegations: Callable[[Targets, str], None]) -> None:
    """Run ``root(new_root)`` on every root and ``delegations(targets, role_name)`` on every delegated targets
    role the updater accepts from now on, before it is persisted and before anything is verified with its keys.

    ngclient builds its trusted set in its constructor and takes no subclass: the set it built is given the
    checking class. A check raising ``tuf.api.exceptions.RepositoryError`` rejects the metadata as python-tuf
    does; any other error propagates as it is.
    """
    trusted_set = updater._trusted_set  # noqa: SLF001
    trusted_set.__class__ = _checking_set_class()
    trusted_set._tufoci_checks = (root, delegations)  # type: ignore[attr-defined]


@functools.cache
def _checking_set_class() -> type:
    from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet

    class CheckingTrustedMetadataSet(TrustedMetadataSet):
        _tufoci_checks: tuple[Callable[[Root], None], Callable[[Targets, str], None]]

        def update_root(self, data: bytes) -> Root:
            root = super().update_root(data)
            self._tufoci_checks[0](root)
            return root

        def update_delegated_targets(self, data: bytes, role_name: str, delegator_name: str) -> Targets:
            targets = super().update_delegated_targets(data, role_name, delegator_name)
            self._tufoci_checks[1](targets, role_name)
            return targets

    return CheckingTrustedMetadataSet


# -- exception messages ------------------------------------------------------------------------------------
# ngclient: RepositoryError(f"Role {role} was delegated but is not part of snapshot")
_UNPUBLISHED_ROLE = r"Role (.+) was delegated but is not part of snapshot"
# TrustedMetadataSet: ExpiredMetadataError("New <targets or delegated role name> is expired"), or for the other
# top-level roles "{Final ,}<role>.json is expired". A delegated role's name is taken verbatim: delegators choose
# names, and one named "timestamp.json" is not the timestamp.
_EXPIRED = r"New (.+) is expired|(?:Final )?(root|snapshot|timestamp)\.json is expired"


def unpublished_role(error: Exception) -> str | None:
    """The delegated role a ``RepositoryError`` says the snapshot does not list (it has published nothing)."""
    match = re.fullmatch(_UNPUBLISHED_ROLE, str(error))
    return match.group(1) if match else None


def expired_role(error: Exception) -> str | None:
    """The role an ``ExpiredMetadataError`` says expired, or None when its text is not python-tuf's."""
    match = re.fullmatch(_EXPIRED, str(error))
    return (match.group(1) or match.group(2)) if match else None
