"""Resolve tags to the digests their signers published, and check the registry agrees.

``verify`` is what a deployment runs: for each reference it finds the trust pin
of its scope, refreshes that trust repository once (root → timestamp →
snapshot → targets → delegations, all by python-tuf), looks the target name up,
and then compares the registry's current manifest for the tag with the signed
digest. The answer to deploy is always ``repository@signed-digest``.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tufoci.errors import DigestMismatchError, NotSignedError, RegistryError, TufociError
from tufoci.reference import Reference, parse_reference, target_name
from tufoci.state import State
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


def verify(
    references: list[str],
    *,
    state: State | None = None,
    check_registry: bool = True,
    **registry_options: object,
) -> list[Outcome]:
    """Verify every reference; one refresh per trust repository, registry checks in parallel.

    Never raises for a single reference's failure: each ``Outcome`` carries its
    own error, so a batch reports everything it found.
    """
    state = state or State.open()
    pins = state.pins()
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
        pin = pin_by_scope[scope]
        try:
            resolved = _resolve_group(state.home, pin, items, registry_options)
        except TufociError as e:  # the refresh itself failed: every ref of the scope fails
            resolved = {index: Outcome(str(reference), error=e) for index, reference, _ in items}
        outcomes.update(resolved)

    if check_registry:
        _check_registry(outcomes, registry_options)
    return [outcomes[i] for i in range(len(references))]


def _resolve_group(home: str, pin, items, registry_options) -> dict[int, Outcome]:
    results: dict[int, Outcome] = {}
    with trusted_session(home, pin, **registry_options) as session:
        for index, reference, name in items:
            info = session.lookup(name)
            if info is None:
                results[index] = Outcome(
                    str(reference),
                    error=NotSignedError(f"{reference}: no signed target {name!r} in the trust repository of {pin.scope}"),
                )
                continue
            digest = "sha256:" + info.hashes.get("sha256", "")
            media_type = info.custom.get("mediaType") if isinstance(info.custom, dict) else None
            image = VerifiedImage(
                str(reference), name, pin.scope, str(reference.repository), digest, info.length, media_type
            )
            if reference.digest and reference.digest != digest:
                results[index] = Outcome(
                    str(reference),
                    error=DigestMismatchError(
                        f"{reference}: the reference asks for {reference.digest} but {name} is signed as {digest}"
                    ),
                )
                continue
            results[index] = Outcome(str(reference), image=image)
    return results


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
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(check, todo))
    outcomes.update(results)
