"""One public key, many spellings: each spelling has its own computed key id, none may count twice."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from securesystemslib.signer import CryptoSigner, SSlibKey

from tufoci.errors import MetadataRejectedError, UsageError
from tufoci.keyids import computed_keyid, require_own_keyids
from tufoci.keys import require_distinct


def _respelled(key: SSlibKey, keytype: str | None = None, **keyval: str) -> SSlibKey:
    value = {**key.keyval, **keyval}
    draft = SSlibKey("0" * 64, keytype or key.keytype, key.scheme, value)
    return SSlibKey(computed_keyid(draft), draft.keytype, draft.scheme, value)


def _ecdsa_spellings():
    key = CryptoSigner.generate_ecdsa().public_key
    pem = key.keyval["public"]
    der = load_pem_public_key(pem.encode()).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    body = base64.b64encode(der).decode()  # one line instead of 64-column lines: the same key
    one_line = f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
    return key, [_respelled(key, "ecdsa-sha2-nistp256"), _respelled(key, public=one_line)]


def _ed25519_spellings():
    key = CryptoSigner.generate_ed25519().public_key
    return key, [_respelled(key, public=key.keyval["public"].upper()), _respelled(key, note="x")]


@pytest.mark.parametrize("spellings", [_ed25519_spellings, _ecdsa_spellings])
def test_one_public_key_under_two_computed_ids_is_refused(spellings):
    key, others = spellings()
    for other in others:
        assert other.keyid != key.keyid
        listed = {key.keyid: key, other.keyid: other}
        require_own_keyids({other.keyid: other}, "alone")  # one spelling on its own is a key like any other
        with pytest.raises(MetadataRejectedError, match="count twice"):
            require_own_keyids(listed, "targets v2")
        with pytest.raises(UsageError, match="same key under two keyids"):
            require_distinct([key, other])


def test_distinct_keys_pass():
    keys = [CryptoSigner.generate_ed25519().public_key, CryptoSigner.generate_ecdsa().public_key]
    require_own_keyids({k.keyid: k for k in keys}, "root v1")
    require_distinct(keys)
