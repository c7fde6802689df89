"""A root v1 pinned while its key holders were still signing it (issue 15.1, initial signing session).

``init`` with a root threshold its machine cannot meet hands out root v1 with
too few signatures: its key holders must pin it to review and sign it, and
every signature changes the file's bytes, so no file (nor its sha256) can be
the final root before the last signature. What they pin, and sign, is the
*signed part*: the keys, roles and thresholds, whose canonical bytes every
signature covers and which no signature changes.

Once the first complete set is live, a machine holding such a pin bootstraps
from the registry's ``root.1`` instead of the pinned file, but only when it is
exactly the pinned signed part; python-tuf then checks that it meets its own
threshold (client workflow 5.3.4), so the trust anchor is still the content the
user pinned, now with the signatures its own keys require. A different root v1
(an attacker's, written before the maintainers signed) is refused. A pinned
root that meets its threshold, or any other version, is used as it is:
nothing changes for ordinary pins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError

from tufoci.errors import MetadataRejectedError, RegistryError


def signed_digest(root: Metadata) -> str:
    """``sha256:<hex>`` of the canonical signed part: what every signature covers (a proposal's ``signed_digest``)."""
    return "sha256:" + hashlib.sha256(root.signed_bytes).hexdigest()


def awaits_signatures(root: Metadata[Root]) -> bool:
    """Whether ``root`` is a version 1 that does not yet meet its own threshold."""
    if root.signed.version != 1:
        return False
    try:
        root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    except UnsignedMetadataError:
        return True
    return False


def pending_note(data: bytes) -> str | None:
    """What ``trust add`` tells whoever pins a root v1 that awaits signatures: compare its fingerprint."""
    try:
        root = Metadata[Root].from_bytes(data)
    except (DeserializationError, ValueError, TypeError, KeyError):
        return None
    if not awaits_signatures(root):
        return None
    return (f"root v1 awaits its first signatures; its fingerprint (sha256 of its signed part) is "
            f"{signed_digest(root).removeprefix('sha256:')}: compare it with the one its proposer gave you "
            "before you sign it or trust anything signed under it")


def bootstrap_root(pinned: bytes, scope: str, fetch_root_1: Callable[[], bytes | None]) -> bytes:
    """The root to bootstrap a refresh from: the pinned bytes, or for a pinned root v1 still awaiting
    signatures the registry's root v1 when its signed part is the pinned one (``fetch_root_1`` returns
    None when the registry has none yet).

    Raises:
        RegistryError: the pinned root v1 awaits signatures and nothing is live yet (trust data missing).
        MetadataRejectedError: the registry's root v1 is another root than the one pinned.
    """
    try:
        root = Metadata[Root].from_bytes(pinned)
    except (DeserializationError, ValueError, TypeError, KeyError):
        return pinned  # python-tuf reports it, as for any pin
    if not awaits_signatures(root):
        return pinned
    live = fetch_root_1()
    if live is None:
        raise RegistryError(f"trust data missing: {scope} is awaiting its first signatures (the pinned root v1 "
                            "does not have all of them yet; nothing is live until its key holders sign it)")
    try:
        live_digest = signed_digest(Metadata[Root].from_bytes(live))
    except (DeserializationError, ValueError, TypeError, KeyError) as e:
        raise MetadataRejectedError(f"{scope}: the registry's root v1 is not root metadata ({e})") from e
    if live_digest != signed_digest(root):
        raise MetadataRejectedError(
            f"{scope}: the registry's root v1 is not the root pinned here (signed part {live_digest}, pinned "
            f"{signed_digest(root)}): refusing it"
        )
    return live
