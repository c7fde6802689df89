"""Resolve tags to the digests their signers published, and check the registry agrees.

``verify`` is what a deployment runs: for each reference it finds the trust pin
of its scope, refreshes that trust repository once (root → timestamp →
snapshot → targets → delegations, all by python-tuf), looks the target name up,
and then compares the registry's current manifest for the tag with the signed
digest. The answer to deploy is always ``repository@signed-digest``.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from tuf.api.metadata import TargetFile

from tufoci import budget
from tufoci.client.refresh import cache_dir, file_sha256, metadata_store, trusted_session
from tufoci.client.signed_targets import SignedTargets, list_signed_targets
from tufoci.client.trust_pins import pin_for_reference
from tufoci.client.verified_record import target_names, write_record
from tufoci.errors import (
    DigestMismatchError,
    NotFoundError,
    NotSignedError,
    RegistryError,
    TooLargeError,
    TufociError,
)
from tufoci.layout_spec import MAX_METADATA_MANIFEST_BYTES, TIMESTAMP_TAG, target_media_type
from tufoci.reference import Reference, Repository, parse_reference, target_name
from tufoci.registry_options import RegistryOptions
from tufoci.state import Pin, State
from tufoci.store import Manifest, open_repository
from tufoci.tuf_compat import cached_file, earliest_expiry, trusted_version
from tufoci.verify_output import Outcome, VerifiedImage  # their home: the fast path shares them

# target names a long-lived Verifier keeps answering from one refresh (beyond those asked in a call)
MAX_REMEMBERED_NAMES = 1024


@dataclass
class _Resolutions:
    """What one refresh of a trust repository said about some target names, and how to tell it still holds."""

    targets: dict[str, TargetFile | None]
    fresh_until: float  # time.monotonic() deadline: the freshness window, cut short by the earliest expiry
    pin: tuple[str, str]  # (root sha256, metadata repository) of the pin it was made under
    expires: datetime.datetime  # the earliest expiry among the roles that refresh trusted
    timestamp_manifest: str | None  # digest of the timestamp manifest it verified (None: an HTTP source)
    trusted_timestamp: str | None  # sha256 of the timestamp file it left in the trusted cache: when another
    # process's refresh has moved the cache on, a rollback check the cache would now fail must not be skipped
    timestamp_version: int  # which of two refreshes that overlapped is the newer (the one to remember)


class Verifier:
    """Verification for long-running callers (admission controllers, ``tufoci agent``).

    With ``freshness=0`` (the default, and what ``tufoci verify`` uses) every
    call asks the registry for the timestamp. When the timestamp manifest is
    byte for byte the one the last refresh verified (same digest), every file it
    leads to is the same too, so the answers of that refresh stand (until the
    earliest expiry among its roles) and nothing more is read or re-verified;
    any other timestamp means a full refresh. With ``freshness=W`` even that
    request is skipped for up to W seconds (never past an expiry): verification
    becomes a dictionary lookup, at the price that a publish, a revocation or an
    attack on the registry is noticed up to W seconds later.
    docs/performance.md discusses the trade-off.

    Trust comes from ``state`` (the CLI: pins in state.db, the cache under
    TUFOCI_HOME) or, for embedders that must not touch a maintainer's state, from
    ``pins`` (``trust_pins.make_pin``) and a ``cache`` directory of their own.
    Registries are reached as ``registry`` says (``RegistryOptions``: TLS,
    credentials, timeouts), through its connection pool or, when it has none, one
    of the verifier's own that ``close()`` (or leaving a ``with`` block) closes.
    docs/library.md shows the three ways to embed it.
    """

    def __init__(
        self,
        state: State | None = None,
        *,
        pins: list[Pin] | None = None,
        cache: str | None = None,
        freshness: float = 0.0,
        check_registry: bool = True,
        registry: RegistryOptions = RegistryOptions(),
    ) -> None:
        """Raises:
            TypeError: ``pins`` without ``cache``.
            StateError: without ``pins``, the state in TUFOCI_HOME cannot be opened (``State.open``).
        """
        self._pins: list[Pin] | None
        if pins is not None:
            if cache is None:
                raise TypeError("Verifier(pins=...) needs cache=DIRECTORY")
            self.state, self._pins, self._home = None, list(pins), cache
        else:
            self.state = state or State.open()
            self._pins, self._home = None, self.state.home
        self.freshness = freshness
        self.check_registry = check_registry
        self.registry = registry.pooled()  # this verifier's connections and tokens, reused by every call
        self._own_clients = registry.clients is None
        self._resolutions: dict[str, _Resolutions] = {}
        self._resolutions_lock = threading.Lock()
        self._owner, self._local = threading.get_ident(), threading.local()

    def close(self) -> None:
        """Close the connections of the pool the verifier made (a pool passed in is its owner's to close)."""
        if self._own_clients and self.registry.clients is not None:
            self.registry.clients.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def verify(self, references: list[str], *, check_registry: bool | None = None) -> list[Outcome]:
        """Verify every reference; one refresh per trust repository, registry checks in parallel.

        Never raises for a single reference's failure: each ``Outcome`` carries
        its own error, so a batch reports everything it found.
        """
        pins = self.pins()
        outcomes: dict[int, Outcome] = {}
        groups: dict[str, list[tuple[int, Reference, str]]] = defaultdict(list)
        by_digest: dict[str, list[tuple[int, Reference, str]]] = defaultdict(list)
        pin_by_scope = {}
        for index, text in enumerate(references):
            try:
                reference = parse_reference(text)
                pin, scope = pin_for_reference(pins, reference)
                if reference.tag is None:  # digest only: signed under some tag of the repository?
                    relative = reference.repository.relative_to(scope)
                    assert relative is not None  # the pin's scope holds the reference
                    by_digest[pin.scope].append((index, reference, relative))
                    pin_by_scope[pin.scope] = pin
                    continue
                name = target_name(reference, scope)
            except TufociError as e:
                outcomes[index] = Outcome(text, error=e)
                continue
            groups[pin.scope].append((index, reference, name))
            pin_by_scope[pin.scope] = pin

        for scope_name, items in by_digest.items():
            try:
                signed = self.signed_targets(pin_by_scope[scope_name])
            except TufociError as e:
                outcomes.update({index: Outcome(str(reference), error=e) for index, reference, _ in items})
                continue
            for index, reference, relative in items:
                outcomes[index] = digest_outcome(reference, relative, scope_name, signed)

        for scope_name, items in groups.items():
            try:
                resolved = self._resolve(pin_by_scope[scope_name], [name for _, _, name in items])
            except TufociError as e:  # the refresh itself failed: every ref of the scope fails
                outcomes.update({index: Outcome(str(reference), error=e) for index, reference, _ in items})
                continue
            for index, reference, name in items:
                outcomes[index] = _outcome(reference, name, scope_name, resolved.get(name))

        if self.check_registry if check_registry is None else check_registry:
            _check_registry(outcomes, self.registry)
        return [outcomes[i] for i in range(len(references))]

    def verify_one(self, reference: str) -> VerifiedImage:
        """Verify one reference and return what to deploy (``.pinned``: ``repository@sha256:…``).

        Raises:
            InvalidReferenceError: the reference does not parse (exit 2).
            NotTrustedError: no pin covers it (exit 1).
            NotSignedError: its signers did not sign it (exit 10).
            DigestMismatchError: the registry serves other bytes for the tag than were signed (exit 11).
            MetadataRejectedError: the trust data failed verification (exit 12).
            RegistryError: the registry could not be read (exit 13).
        """
        (outcome,) = self.verify([reference])
        if outcome.error is not None:
            raise outcome.error
        assert outcome.image is not None  # an outcome has an image or an error
        return outcome.image

    def pins(self) -> list[Pin]:
        """The trust pins this verifier answers for. From the state they are read on this thread's own
        connection (SQLite's cannot cross threads; the agent answers on many)."""
        if self._pins is not None:
            return self._pins
        assert self.state is not None  # a verifier has pins or a state
        if threading.get_ident() == self._owner:
            return self.state.pins()
        if getattr(self._local, "state", None) is None:
            self._local.state = State.open(self.state.home)
        return self._local.state.pins()

    def signed_targets(self, pin: Pin) -> SignedTargets:
        """Refresh ``pin``'s trust repository now and resolve every target it signs.

        Raises:
            MetadataRejectedError: the metadata failed verification (the cache is unchanged).
            RegistryError: the registry could not be read.
        """
        with trusted_session(self._home, pin, registry=self.registry) as session:
            return list_signed_targets(session, pin.scope)

    def _resolve(self, pin: Pin, names: list[str]) -> dict[str, TargetFile | None]:
        known = self._resolutions.get(pin.scope)
        if known is not None and known.pin == (pin.root_sha256, pin.metadata) \
                and all(n in known.targets for n in names):
            if time.monotonic() < known.fresh_until or self._unchanged(pin, known):
                return known.targets
        with trusted_session(self._home, pin, registry=self.registry) as session:
            targets = {name: session.lookup(name) for name in sorted(set(names))}
            # names asked before are answered again from the same refresh, so that asking for them next
            # time costs nothing; one that no longer resolves is forgotten, it never fails this call
            # a new process starts from the names the last one's refresh resolved (the record's names only:
            # every answer comes from this refresh)
            asked_before = known.targets if known else target_names(cache_dir(self._home, pin), pin)
            carried = [n for n in asked_before if n not in targets]
            for name in carried[: max(0, MAX_REMEMBERED_NAMES - len(targets))]:
                with contextlib.suppress(TufociError):
                    targets[name] = session.lookup(name)
            expires = earliest_expiry(session.updater)
            timestamp_manifest = getattr(session.fetcher, "timestamp_manifest_digest", None)
            trusted_timestamp = file_sha256(cached_file(session.metadata_dir, "timestamp"))
            timestamp_version = trusted_version(session.updater, "timestamp")
        if timestamp_manifest is not None and trusted_timestamp is not None:
            self._record(pin, targets, timestamp_manifest, trusted_timestamp, expires)
        expires_in = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
        resolved = _Resolutions(
            targets, time.monotonic() + min(self.freshness, max(expires_in, 0.0)),
            (pin.root_sha256, pin.metadata), expires, timestamp_manifest, trusted_timestamp, timestamp_version,
        )
        with self._resolutions_lock:
            # two calls on two threads may overlap: the one that started earlier and ended later must not
            # replace the newer answers the other remembered (its own caller still gets what it verified)
            current = self._resolutions.get(pin.scope)
            if current is None or current.pin != resolved.pin or current.timestamp_version <= timestamp_version:
                self._resolutions[pin.scope] = resolved
        return targets

    def _record(self, pin: Pin, targets: dict[str, TargetFile | None], timestamp_manifest: str,
                trusted_timestamp: str, expires: datetime.datetime) -> None:
        """Leave what this full refresh verified for the next ``tufoci verify`` process (client/fast_verify.py).

        A record that cannot be written only costs the next process a full refresh: never an error here.
        """
        resolved = {name: ("sha256:" + info.hashes["sha256"], info.length, target_media_type(info.custom))
                    for name, info in targets.items() if info is not None and "sha256" in info.hashes}
        with contextlib.suppress(OSError, TufociError):
            write_record(cache_dir(self._home, pin), pin, timestamp_manifest=timestamp_manifest,
                         trusted_timestamp=trusted_timestamp, expires=expires, targets=resolved)

    def _unchanged(self, pin: Pin, known: _Resolutions) -> bool:
        """Whether the registry still serves the timestamp manifest ``known`` was verified from (one request)."""
        if known.timestamp_manifest is None or datetime.datetime.now(datetime.UTC) >= known.expires:
            return False
        if file_sha256(cached_file(cache_dir(self._home, pin), "timestamp")) != known.trusted_timestamp:
            return False
        try:
            served = metadata_store(pin, registry=self.registry).get_manifest(
                TIMESTAMP_TAG, max_bytes=MAX_METADATA_MANIFEST_BYTES)
        except (NotFoundError, TooLargeError):
            return False  # the full refresh says what is wrong, as it always does
        return served.digest == known.timestamp_manifest


def verify(
    references: list[str],
    *,
    state: State | None = None,
    check_registry: bool = True,
    registry: RegistryOptions = RegistryOptions(),
) -> list[Outcome]:
    """Verify references now (a fresh refresh of each trust repository they need); one ``Outcome`` each.

    Raises:
        StateError: without ``state``, the state in TUFOCI_HOME cannot be opened.
    """
    with Verifier(state, check_registry=check_registry, registry=registry) as verifier:
        return verifier.verify(references)


def digest_outcome(reference: Reference, relative: str, scope: str, signed: SignedTargets) -> Outcome:
    """A digest-only reference verifies when some signed tag of its repository signs that digest."""
    assert reference.digest is not None
    tags = signed.tags_signing(relative, reference.digest)
    if not tags:
        return Outcome(str(reference), error=NotSignedError(
            f"{reference}: no signed tag of {reference.repository} signs {reference.digest}"))
    info = signed.targets[f"{relative}:{tags[0]}"]
    image = VerifiedImage(str(reference), f"{relative}@{reference.digest}", scope, str(reference.repository),
                          reference.digest, info.length, target_media_type(info.custom), tuple(tags))
    return Outcome(str(reference), image=image)


def _outcome(reference: Reference, name: str, scope: str, info: TargetFile | None) -> Outcome:
    if info is None:
        return Outcome(
            str(reference),
            error=NotSignedError(f"{reference}: no signed target {name!r} in the trust repository of {scope}"),
        )
    digest = "sha256:" + info.hashes.get("sha256", "")
    if reference.digest and reference.digest != digest:
        return Outcome(
            str(reference),
            error=DigestMismatchError(
                f"{reference}: the reference asks for {reference.digest} but {name} is signed as {digest}"
            ),
        )
    media_type = target_media_type(info.custom)
    image = VerifiedImage(str(reference), name, scope, str(reference.repository), digest, info.length, media_type)
    return Outcome(str(reference), image=image)


def _check_registry(outcomes: dict[int, Outcome], registry: RegistryOptions) -> None:
    """Compare what the registry serves for each tag with the signed digest.

    A repository's tags are read together (``get_manifests``: one batch, not a request each);
    when that fails, they are read one by one so each error is reported against its own reference.
    """
    todo = [
        (index, outcome)
        for index, outcome in outcomes.items()
        if outcome.image is not None and not parse_reference(outcome.reference).digest
    ]

    def compare(index: int, outcome: Outcome, served: Manifest) -> tuple[int, Outcome]:
        image = outcome.image
        assert image is not None  # only verified outcomes are compared
        if served.digest != image.digest:
            return index, Outcome(
                outcome.reference,
                error=DigestMismatchError(
                    f"{outcome.reference}: the registry serves {served.digest} but the signed digest is "
                    f"{image.digest}: deploy {image.pinned} or investigate"
                ),
            )
        return index, outcome

    def check(item: tuple[int, Outcome]) -> tuple[int, Outcome]:
        index, outcome = item
        reference = parse_reference(outcome.reference)
        try:
            served = open_repository(reference.repository, registry=registry).get_manifest(reference.tag or "")
        except RegistryError as e:
            return index, Outcome(outcome.reference, error=e)
        return compare(index, outcome, served)

    by_repository: dict[Repository, list[tuple[int, Outcome]]] = defaultdict(list)
    for item in todo:
        by_repository[parse_reference(item[1].reference).repository].append(item)
    results, one_by_one = [], []
    for repository, items in by_repository.items():
        if len(items) == 1:
            one_by_one.extend(items)
            continue
        tags = [parse_reference(outcome.reference).tag or "" for _, outcome in items]
        try:
            served = open_repository(repository, registry=registry).get_manifests(tags)
        except RegistryError:
            one_by_one.extend(items)
            continue
        results += [compare(index, outcome, manifest) for (index, outcome), manifest in zip(items, served, strict=True)]
    if len(one_by_one) == 1:
        results.append(check(one_by_one[0]))
    elif one_by_one:
        from concurrent.futures import ThreadPoolExecutor  # only batches pay for the import

        with ThreadPoolExecutor(max_workers=8) as pool:
            results += pool.map(budget.carry(check), one_by_one)
    outcomes.update(results)
