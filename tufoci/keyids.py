"""Key ids are facts: a key's id is computed from its material, never taken as written.

TUF (and securesystemslib, whose helper this uses) defines a key id as the
sha256 of the canonical JSON of the public key's ``keytype``, ``scheme`` and
``keyval``. python-tuf looks keys up by the id a document lists them under and
never recomputes it, so a document that lists an attacker's key under the id of
another key (the online key, a maintainer's key) makes signatures by the
attacker's key count as that key's. Every place a key enters tufoci (``key
import``, KEY arguments, proposals and metadata read from a registry) checks it
here, and refuses a mismatch.

A computed id is not yet a key's identity: the same public key has many
spellings (ed25519 hex in upper or lower case, a ``keyval`` with an extra
field, another PEM wrapping or ``keytype`` alias of one ECDSA key), each with
its own computed id, and python-tuf counts a threshold in key ids. So a
document that lists one public key twice lets its holder meet a threshold of 2
alone; ``require_own_keyids`` refuses that too (``public_identity``).

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


def public_identity(key: Key) -> tuple[str, bytes]:
    """What ``key`` verifies with, the same for every spelling of one public key.

    ed25519: the 32 raw bytes; any other type: the DER SubjectPublicKeyInfo of its
    PEM (how securesystemslib loads it). Material that does not parse is its own
    text (it verifies nothing, so it cannot double anyone's signature).
    """
    public = key.keyval.get("public")
    if not isinstance(public, str):
        return ("unparsed", repr(sorted(key.keyval.items())).encode())
    if key.keytype == "ed25519":
        try:
            return ("ed25519", bytes.fromhex(public))
        except ValueError:
            return ("unparsed", public.encode())
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    try:
        der = load_pem_public_key(public.encode()).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return ("unparsed", public.encode())
    return ("spki", der)


def require_own_keyids(
    keys: Mapping[str, Key],
    where: str,
    error: type[TufociError] = MetadataRejectedError,
) -> None:
    """Refuse any key listed under an id that is not the id of its material, and one public key listed twice.

    ``keys`` maps listed key ids to keys (python-tuf's ``Root.keys`` and
    ``Delegations.keys``); ``where`` names the document for the message.

    Raises:
        error: (``MetadataRejectedError`` unless told otherwise) naming the key id(s) and ``where``.
    """
    seen: dict[tuple[str, bytes], str] = {}
    for keyid, key in keys.items():
        actual = computed_keyid(key)
        if keyid != actual or key.keyid != actual:
            raise error(f"{where} lists a key under key id {keyid}, but that key's material has key id {actual}: "
                        "refused (a key id must be computed from its key)")
        first = seen.setdefault(public_identity(key), keyid)
        if first != keyid:
            raise error(f"{where} lists one public key under key ids {first} and {keyid} (two spellings of its "
                        "material): refused (it would count twice toward a threshold)")
