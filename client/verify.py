"""Resolve tags to the digests their signers published, and check the registry agrees.

``verify`` is what a deployment runs: for each reference it finds the trust pin
of its scope, refreshes that trust repository once (root → timestamp →
snapshot → targets → delegations, all by python-tuf), looks the target name up,
and then compares the registry's current manifest for the tag with the signed
digest. The answer to deploy is always ``repository@signed-digest``.
"""

from __future__ import annotations

import datetime
import time
from collections import defaultdict
from dataclasses import dataclass

from tuf.api.metadata import TargetFile

from tufoci.errors import DigestMismatchError, NotSignedError, RegistryError, TufociError
from tufoci.layout_spec import target_media_type
from tufoci.reference import Reference, parse_reference, target_name
from tufoci.state import Pin, State
from tufoci.store import open_repository
from tufoci.client.refresh import trusted_session
from tufoci.client.trust_pins import pin_for_reference


@dataclass(frozen=True)
class VerifiedImage:
    """A reference resolved to the digest its signers published."""

    reference: str
    target: str
    scope: str
    repository: str
    digest: str
    length: int
    media_type: str | None

    @property
    def pinned(self) -> str:
        """What to deploy: ``repository@sha256:…``."""
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict:
        """The documented ``-o json`` shape (docs/cli.md)."""
        return {
            "reference": self.reference,
            "target": self.target,
            "scope": self.scope,
            "repository": self.repository,
            "digest": self.digest,
            "length": self.length,
            "mediaType": self.media_type,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class Outcome:
    """The result for one reference: an image, or the error that stopped it."""

    reference: str
    image: VerifiedImage | None = None
    error: TufociError | None = None

    def to_dict(self) -> dict:
        """The documented ``-o json`` shape of one result (docs/cli.md)."""
        if self.image is not None:
            return {"reference": self.reference, "verified": True, **self.image.to_dict()}
        assert self.error is not None
        return {"reference": self.reference, "verified": False,
                "error": {"code": self.error.exit_code, "type": type(self.error).__name__, "message": str(self.error)}}


@dataclass
class _Resolutions:
    """What one refresh of a trust repository said about some target names."""

    targets: dict[str, TargetFile | None]
    fresh_until: float  # time.monotonic() deadline: the freshness window, cut short by the timestamp's expiry


class Verifier:
    """Verification for long-running callers (admission controllers, ``tufoci agent``).

    With ``freshness=0`` (the default, and what ``tufoci verify`` uses) every
    call refreshes the trust repositories it needs. With ``freshness=W`` the
    answers of one refresh are reused for up to W seconds (never past the
    trusted timestamp's expiry): verification becomes a dictionary lookup, at
    the price that a publish, a revocation or an attack on the registry is
    noticed up to W seconds later. docs/performance.md discusses the trade-off.
    """

    def __init__(
        self,
        state: State | None = None,
        *,
        freshness: float = 0.0,
        check_registry: bool = True,
        **registry_options: object,
    ):
        self.state = state or State.open()
        self.freshness = freshness
        self.check_registry = check_registry
        self.registry_options = registry_options
        self._resolutions: dict[str, _Resolutions] = {}

    def verify(self, references: list[str], *, check_registry: bool | None = None) -> list[Outcome]:
        """Verify every reference; one refresh per trust repository, registry checks in parallel.

        Never raises for a single reference's failure: each ``Outcome`` carries
        its own error, so a batch reports everything it found.
        """
        pins = self.state.pins()
        outcomes: dict[int, Outcome] = {}
        groups: dict[str, list[tuple[int, Reference, str]]] = defaultdict(list)
        pin_by_scope = {}
        for index, text in enumerate(references):
            try:
                reference = parse_reference(text)
                pin, scope = pin_for_reference(pins, reference)
                name = target_name(reference, scope)
            except TufociError as e:
                outcomes[index] = Outcome(text, error=e)
                continue
            groups[pin.scope].append((index, reference, name))
            pin_by_scope[pin.scope] = pin

        for scope, items in groups.items():
            try:
                resolved = self._resolve(pin_by_scope[scope], [name for _, _, name in items])
            except TufociError as e:  # the refresh itself failed: every ref of the scope fails
                outcomes.update({index: Outcome(str(reference), error=e) for index, reference, _ in items})
                continue
            for index, reference, name in items:
                outcomes[index] = _outcome(reference, name, scope, resolved.get(name))

        if self.check_registry if check_registry is None else check_registry:
            _check_registry(outcomes, self.registry_options)
        return [outcomes[i] for i in range(len(references))]

    def _resolve(self, pin: Pin, names: list[str]) -> dict[str, TargetFile | None]:
        known = self._resolutions.get(pin.scope)
        if known is not None and time.monotonic() < known.fresh_until and all(n in known.targets for n in names):
            return known.targets
        wanted = set(names) | (set(known.targets) if known else set())
        with trusted_session(self.state.home, pin, **self.registry_options) as session:
            targets = {name: session.lookup(name) for name in sorted(wanted)}
            expires_in = (session.updater._trusted_set.timestamp.expires - datetime.datetime.now(  # noqa: SLF001
                datetime.timezone.utc)).total_seconds()
        if self.freshness > 0:
            self._resolutions[pin.scope] = _Resolutions(
                targets, time.monotonic() + min(self.freshness, max(expires_in, 0.0))
            )
        return targets


def verify(
    references: list[str],
    *,
    state: State | None = None,
    check_registry: bool = True,
    **registry_options: object,
) -> list[Outcome]:
    """Verify references now (a fresh refresh of each trust repository they need)."""
    return Verifier(state, check_registry=check_registry, **registry_options).verify(references)


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


def _check_registry(outcomes: dict[int, Outcome], registry_options) -> None:
    """Compare what the registry serves for each tag with the signed digest."""
    todo = [
        (index, outcome)
        for index, outcome in outcomes.items()
        if outcome.image is not None and not parse_reference(outcome.reference).digest
    ]

    def check(item: tuple[int, Outcome]) -> tuple[int, Outcome]:
        index, outcome = item
        reference = parse_reference(outcome.reference)
        image = outcome.image
        try:
            served = open_repository(reference.repository, **registry_options).get_manifest(reference.tag or "")
        except RegistryError as e:
            return index, Outcome(outcome.reference, error=e)
        if served.digest != image.digest:
            return index, Outcome(
                outcome.reference,
                error=DigestMismatchError(
                    f"{outcome.reference}: the registry serves {served.digest} but the signed digest is "
                    f"{image.digest}: deploy {image.pinned} or investigate"
                ),
            )
        return index, outcome

    if len(todo) == 1:
        results = [check(todo[0])]
    else:
        from concurrent.futures import ThreadPoolExecutor  # only batches pay for the import

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(check, todo))
    outcomes.update(results)
