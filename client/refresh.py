"""The TUF client workflow for one trust pin, with a transactional cache.

python-tuf's ``Updater`` does every check of the client workflow (root chain,
timestamp, snapshot, targets, delegations; rollback, freeze, mix-and-match,
thresholds). This module only wires it to an OCI store and makes its cache
transactional: the refresh runs on a scratch copy of the pin's cache, and the
copy replaces the cache only when every requested lookup succeeded. After a
rejection the trusted cache is byte for byte what it was.

Any number of processes and threads may refresh one cache at once (parallel CI
jobs, the agent, in-process ``Verifier``s, maintainer commands). The copy and
the commit each hold the cache's lock (``flock`` on a hidden file beside it: brief,
never across network waits or a signer's prompt), and the commit re-reads the
cache under that lock and never replaces a file another refresh committed
meanwhile with an older version of it: a refresh that started earlier and
finished later cannot roll back what a later one committed. Trusted metadata
only ever moves forward.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tuf.api import exceptions
from tuf.api.metadata import Root, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig, Urllib3Fetcher

from tufoci import budget
from tufoci.atomic_file import atomic_write
from tufoci.client.fetcher import OCIMetadataFetcher
from tufoci.client.trust_pins import MAX_ROOT_BYTES, is_http_source
from tufoci.client.verified_record import cache_dir, file_sha256  # noqa: F401  (stdlib: shared with the fast path)
from tufoci.errors import (
    ContentMismatchError,
    MetadataRejectedError,
    NotSignedError,
    RegistryError,
    TooLargeError,
    TufociError,
    UsageError,
)
from tufoci.keyids import require_own_keyids
from tufoci.reference import parse_repository
from tufoci.registry_options import RegistryOptions
from tufoci.state import Pin
from tufoci.store import open_repository
from tufoci.store.base import RepositoryStore
from tufoci.tuf_compat import (
    add_checks,
    cached_file,
    cached_file_name,
    expired_role,
    trusted,
    trusted_root,
    unpublished_role,
    waive_expiry,
)

_log = logging.getLogger(__name__)


@dataclass
class TrustedSession:
    """An updater that has refreshed, and the directory holding its metadata."""

    updater: Updater
    metadata_dir: str
    fetcher: FetcherInterface  # OCIMetadataFetcher, or urllib3 for a static mirror

    def lookup(self, target: str) -> TargetFile | None:
        """Signed target info for ``target`` (delegations walked as TUF says)."""
        with translate_tuf_errors(self.updater):
            return self.updater.get_targetinfo(target)


def _check_root_keyids(root: Root) -> None:
    require_own_keyids(root.keys, f"root v{root.version}")


def _check_delegated_keyids(targets: Targets, role_name: str) -> None:
    if targets.delegations is not None and targets.delegations.keys:
        require_own_keyids(targets.delegations.keys, f"{role_name} v{targets.version}")


class _Updater(Updater):
    """ngclient's Updater, plus the one check python-tuf does not make: every key a root or a targets role
    lists is listed under its own key id (tufoci/keyids.py). Every root and targets role ngclient accepts is
    checked before it is persisted and before any role it delegates to is verified with its keys; the initial
    (pinned or cached) root too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        add_checks(self, _check_root_keyids, _check_delegated_keyids)
        root = trusted_root(self)
        require_own_keyids(root.keys, f"root v{root.version} (pinned or cached)")


@contextlib.contextmanager
def translate_tuf_errors(updater: Updater | None = None) -> Iterator[None]:
    """Map python-tuf's exceptions onto tufoci's families (exit codes)."""
    try:
        yield
    except exceptions.ExpiredMetadataError as e:
        raise MetadataRejectedError(_expired_message(e, updater)) from e
    except exceptions.RepositoryError as e:
        unpublished = unpublished_role(e)
        if unpublished:
            # a validly signed snapshot that lists no such role: nothing under it is signed yet
            raise NotSignedError(
                f"role {unpublished} is delegated but has published no metadata yet: it has signed nothing"
            ) from e
        _log.debug("python-tuf: %s: %s", type(e).__name__, e)
        raise MetadataRejectedError(f"metadata rejected: {e}{_REJECTED_HINTS.get(type(e), '')}") from e
    except exceptions.DownloadLengthMismatchError as e:
        raise MetadataRejectedError(f"metadata rejected: {e}") from e
    except exceptions.DownloadError as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, TufociError):
            cause = cause.__cause__
        if isinstance(cause, (ContentMismatchError, TooLargeError)):
            raise MetadataRejectedError(f"metadata rejected: {cause}") from e
        if isinstance(cause, TufociError):
            # a new instance: re-raising ``cause`` itself would make its __cause__ chain a cycle
            raise type(cause)(str(cause)) from e
        raise RegistryError(f"cannot download metadata: {e}") from e


# issue 18: what a python-tuf failure means, in the user's words (its class name only under -v)
_REJECTED_HINTS = {
    exceptions.UnsignedMetadataError: " (not signed by enough of the keys trusted for it: tampered with, or the "
                                      "pinned root is another scope's; then re-pin it with 'tufoci trust add --replace')",
    exceptions.BadVersionNumberError: " (an older version than one already trusted: a rollback)",
    exceptions.EqualVersionNumberError: " (the same version with other content)",
}

def _expired_message(error: exceptions.ExpiredMetadataError, updater: Updater | None) -> str:
    """Which role expired and when, so an operator knows what to re-sign."""
    role = expired_role(error) or "metadata"
    when = ""
    expired = trusted(updater, role) if updater is not None else None
    if expired is not None:
        when = f" at {expired.expires:%Y-%m-%dT%H:%M:%SZ}"
    fix = {"timestamp": "the online key holder must run 'tufoci timestamp {scope}'",
           "snapshot": "the online key holder must run 'tufoci timestamp {scope} --snapshot'"}.get(
        role, "its signers must publish a new version")
    return f"metadata rejected: {role} expired{when}; {fix}"


@contextlib.contextmanager
def _naming_scope(pin: Pin) -> Iterator[None]:
    """issue 18: a refresh error says which scope it is about (a batch over two scopes printed two identical
    lines), with the real scope in place of the '{scope}' of a suggested command.

    Raises:
        TufociError: the error raised inside, of the same class, its message naming the scope.
    """
    try:
        yield
    except TufociError as e:
        message = str(e).replace("{scope}", pin.scope)
        if pin.scope not in message:
            message = f"{pin.scope}: {message}"
        raise type(e)(message) from e


def metadata_store(pin: Pin, *, registry: RegistryOptions = RegistryOptions()) -> RepositoryStore:
    """The OCI repository holding a pin's metadata (HTTP sources are read-only)."""
    if is_http_source(pin.metadata):
        raise UsageError(f"{pin.scope} reads its metadata from {pin.metadata}: an HTTP source cannot be written")
    return open_repository(parse_repository(pin.metadata), registry=registry)


@contextlib.contextmanager
def trusted_session(
    home: str,
    pin: Pin,
    *,
    allow_expired: bool = False,
    cache: str | None = None,
    keep_verified: bool = False,
    registry: RegistryOptions = RegistryOptions(),
) -> Iterator[TrustedSession]:
    """Refresh the pin's metadata; keep the result only if the block succeeds.

    ``allow_expired`` is for maintainers only: every signature, threshold,
    version and hash is still checked, but expiry is not, so that expired
    metadata can be replaced (a timestamp service that was down must be able to
    re-sign). Consumers never set it.

    ``cache`` overrides where the pin's cache lives. ``keep_verified`` keeps, even
    when the refresh or the block fails, what was verified before the failure
    (the TUF specification's incremental persistence, which the conformance
    suite expects); tufoci's own commands keep all or nothing.
    """
    cache = cache or cache_dir(home, pin)
    os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
    _remove_stale_scratch(os.path.dirname(cache))
    scratch = tempfile.mkdtemp(prefix=".refresh-", dir=os.path.dirname(cache))
    try:
        work = os.path.join(scratch, "metadata")
        bootstrap = None
        with cache_lock(cache):  # a copy torn between two commits would mix two states
            has_root = os.path.exists(cached_file(cache, "root"))
            if has_root:
                shutil.copytree(cache, work, symlinks=True)
        copied = _fingerprints(work) if has_root else {}  # what the cache held: a commit tells what moved since
        fetcher: FetcherInterface
        if is_http_source(pin.metadata):
            # a static mirror laid out as a plain TUF repository (tufoci export-metadata)
            fetcher, base_url = Urllib3Fetcher(app_user_agent="tufoci"), pin.metadata
        else:
            fetcher, base_url = OCIMetadataFetcher(metadata_store(pin, registry=registry)), f"oci://{pin.metadata}/"
        if not has_root:
            os.makedirs(work)
            bootstrap = _pinned_root(pin, fetcher, base_url)
        with translate_tuf_errors():
            try:
                try:
                    updater = _Updater(work, base_url, fetcher=fetcher, config=UpdaterConfig(), bootstrap=bootstrap)
                except (exceptions.RepositoryError, ValueError, TypeError, OSError) as e:
                    if bootstrap is not None:
                        raise
                    # The cached root (root.json's target) is damaged: never trust it, start again
                    # from the pinned root; the walk re-checks (or re-fetches) every newer root.
                    _log.warning("cached root of %s is unusable (%s): starting again from the pinned root",
                                 pin.scope, e)
                    bootstrap = _pinned_root(pin, fetcher, base_url)
                    updater = _Updater(work, base_url, fetcher=fetcher, config=UpdaterConfig(), bootstrap=bootstrap)
            except (ValueError, TypeError) as e:
                raise MetadataRejectedError(f"cached or pinned root is not valid metadata: {e}") from e
        if allow_expired:
            waive_expiry(updater)
        try:
            with _naming_scope(pin), translate_tuf_errors(updater):
                updater.refresh()
            yield TrustedSession(updater, work, fetcher)
        except BaseException:
            if keep_verified:  # ngclient only ever writes metadata it verified
                _commit(work, cache, copied)
            raise
        _commit(work, cache, copied)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _pinned_root(pin: Pin, fetcher: FetcherInterface, base_url: str) -> bytes:
    """The pinned root, or the registry's complete root v1 for a root v1 pinned before its key holders
    had all signed it (client/genesis_root.py).

    Raises:
        RegistryError: nothing is live yet for a pin still awaiting its first signatures.
        MetadataRejectedError: the registry's root v1 is not the pinned one.
    """
    from tufoci.client.genesis_root import bootstrap_root

    def fetch_root_1() -> bytes | None:
        with translate_tuf_errors():
            try:
                return fetcher.download_bytes(f"{base_url}1.root.json", MAX_ROOT_BYTES)
            except exceptions.DownloadHTTPError as e:
                if e.status_code == 404:
                    return None
                raise

    with open(pin.root_file, "rb") as f:
        return bootstrap_root(f.read(), pin.scope, fetch_root_1)


def _remove_stale_scratch(directory: str, older_than: float = 3600.0) -> None:
    """Scratch copies left by a killed process are never read; drop those over an hour old."""
    now = time.time()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(".refresh-") and now - os.path.getmtime(path) > older_than:
            shutil.rmtree(path, ignore_errors=True)


LOCK_WAIT = 60.0  # seconds a refresh waits for the cache lock when no --timeout budget is open
_LOCK_POLL = 0.02


@contextlib.contextmanager
def cache_lock(cache: str) -> Iterator[None]:
    """Hold the exclusive lock of ``cache`` (also against threads: each holder opens the file anew).

    The wait is bounded by the command's budget, so a stuck process cannot hang the others.

    Raises:
        TimedOutError: the lock was not free before the budget (or ``LOCK_WAIT``) ran out.
    """
    path = os.path.join(os.path.dirname(cache), f".{os.path.basename(cache)}.lock")  # hidden, like scratch copies
    give_up = time.monotonic() + budget.remaining(LOCK_WAIT)
    with open(path, "a+b") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    raise budget.exceeded(
                        f"the lock of the trusted cache {path} (another tufoci process holds it)") from None
                time.sleep(_LOCK_POLL)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _version(path: str) -> int | None:
    """``signed.version`` of a metadata file, or None when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            version = json.load(f)["signed"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, int) else None


def _fingerprints(directory: str) -> dict[str, str | None]:
    """sha256 of every file under ``directory`` (links followed), by relative path."""
    return {
        os.path.relpath(os.path.join(path, name), directory): file_sha256(os.path.join(path, name))
        for path, _, files in os.walk(directory) for name in files
    }


def _commit(work: str, cache: str, copied: dict[str, str | None]) -> None:
    """Move what is newer in the scratch copy into the cache, file by file, atomically, under the lock.

    The files that changed since this refresh copied the cache (``copied``) were
    committed by another refresh, which verified them: when that one left a newer
    root, the cache is left alone, and with the same root none of them is replaced
    by a lower version of itself. Only a newer root (a rotation may restart the
    other roles' versions) replaces all. Every other file is what this refresh
    started from, verified or repaired now: its version, maybe damaged, is not
    looked at.
    """
    with cache_lock(cache):
        moved = {name for name, sha in _fingerprints(cache).items() if copied.get(name) != sha}
        cache_root, work_root = _version(cached_file(cache, "root")), _version(cached_file(work, "root"))
        if cached_file_name("root") in moved and cache_root is not None \
                and (work_root is None or cache_root > work_root):
            _log.info("trusted cache %s moved on to root v%s meanwhile: keeping it", cache, cache_root)
            return
        _commit_files(work, cache, moved if cache_root == work_root else set())


def _commit_files(work: str, cache: str, moved: set[str]) -> None:
    for directory, _, files in os.walk(work, topdown=False):  # root history before the root.json link
        relative = os.path.relpath(directory, work)
        target_dir = os.path.normpath(os.path.join(cache, relative))
        os.makedirs(target_dir, mode=0o700, exist_ok=True)
        for name in files:
            source = os.path.join(directory, name)
            target = os.path.join(target_dir, name)
            if os.path.islink(source):
                link = os.readlink(source)
                if not os.path.islink(target) or os.readlink(target) != link:
                    temp = target + ".tmp-link"
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp)
                    os.symlink(link, temp)
                    os.replace(temp, target)
                continue
            if os.path.exists(target) and not os.path.islink(target) and filecmp.cmp(source, target, shallow=False):
                continue
            if os.path.normpath(os.path.join(relative, name)) in moved \
                    and (_version(target) or 0) > (_version(source) or 0):
                continue  # a later refresh committed a newer version: never roll it back
            with open(source, "rb") as f:
                atomic_write(target, f.read(), mode=0o600)
