"""Key ids are facts: a key's id is computed from its material, never taken as written.

TUF (and securesystemslib, whose helper this uses) defines a key id as the
sha256 of the canonical JSON of the public key's ``keytype``, ``scheme`` and
``keyval``. python-tuf looks keys up by the id a document lists them under and
never recomputes it, so a document that lists an attacker's key under the id of
another key (the online key, a maintainer's key) makes signatures by the
attacker's key count as that key's. Every place a key enters tufoci (``key
import``, KEY arguments, proposals and metadata read from a registry) checks it
here, and refuses a mismatch.

This module imports nothing python-tuf has not already imported, so the verify
path pays only the hashing (a few microseconds per key).
"""

from __future__ import annotations

from collections.abc import Mapping

from securesystemslib.signer import Key
from securesystemslib.signer._utils import compute_default_keyid  # re-exported: the one import of this helper

from tufoci.errors import MetadataRejectedError, TufociError


def computed_keyid(key: Key) -> str:
    """The TUF key id of ``key``'s material."""
    return compute_default_keyid(key.keytype, key.scheme, key.keyval)


def require_own_keyids(
    keys: Mapping[str, Key],
    where: str,
    error: type[TufociError] = MetadataRejectedError,
) -> None:
    """Refuse any key listed under an id that is not the id of its material.

    ``keys`` maps listed key ids to keys (python-tuf's ``Root.keys`` and
    ``Delegations.keys``); ``where`` names the document for the message.

    Raises:
        error: (``MetadataRejectedError`` unless told otherwise) naming the key id and ``where``.
    """
    for keyid, key in keys.items():
        actual = computed_keyid(key)
        if keyid != actual or key.keyid != actual:
            raise error(f"{where} lists a key under key id {keyid}, but that key's material has key id {actual}: "
                        "refused (a key id must be computed from its key)")
