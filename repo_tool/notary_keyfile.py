"""Read a private key file the ``notary`` client wrote (``trust_dir/private/<keyid>.key``).

A delegate moving to tufoci may keep the key they signed with in Notary. Notary writes it as PEM
``ENCRYPTED PRIVATE KEY`` with headers (``role: targets/releases``, ``gun: …``) around a PKCS#8
EncryptedPrivateKeyInfo (PBES2: PBKDF2 + AES-CBC), and ``cryptography`` refuses the result ("Invalid key"):
the decrypted PrivateKeyInfo of an EC key carries version 1 (``02 01 01``; PKCS#8 says 0, and version 1 is
RFC 5958's OneAsymmetricKey, which would need a public key field it does not have). So the envelope is opened
here, with a small DER reader for the few structures involved, and an EC key is rebuilt from its private
scalar and curve; other keys go to ``cryptography`` once decrypted.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tufoci.errors import SigningKeyError

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_PRFS = {"1.2.840.113549.2.7": hashes.SHA1, "1.2.840.113549.2.9": hashes.SHA256, "1.2.840.113549.2.11": hashes.SHA512}
_CIPHERS = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "1.2.840.10045.3.1.7": ec.SECP256R1, "1.3.132.0.34": ec.SECP384R1, "1.3.132.0.35": ec.SECP521R1,
}
_MAX_ITERATIONS = 10_000_000


class _Der:
    """Just enough DER: tag, length, value; definite lengths only."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self) -> tuple[int, bytes]:
        if self.pos + 2 > len(self.data):
            raise ValueError("truncated DER")
        tag, length = self.data[self.pos], self.data[self.pos + 1]
        self.pos += 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4:
                raise ValueError("unsupported DER length")
            length = int.from_bytes(self.data[self.pos:self.pos + count], "big")
            self.pos += count
        value = self.data[self.pos:self.pos + length]
        if len(value) != length:
            raise ValueError("truncated DER")
        self.pos += length
        return tag, value

    def expect(self, tag: int) -> bytes:
        got, value = self.read()
        if got != tag:
            raise ValueError(f"DER tag {got:#x}, expected {tag:#x}")
        return value

    def more(self) -> bool:
        return self.pos < len(self.data)


def _oid(value: bytes) -> str:
    if not value:
        raise ValueError("an empty OBJECT IDENTIFIER")
    first, acc = value[0], 0
    parts = [str(first // 40), str(first % 40)]
    for byte in value[1:]:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(str(acc))
            acc = 0
    return ".".join(parts)


def _pem_body(text: str) -> bytes:
    """The DER inside a PEM block that may carry ``Name: value`` headers (Notary's ``role:``, ``gun:``)."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("-----BEGIN ENCRYPTED PRIVATE KEY"):
        raise ValueError("not a PEM 'ENCRYPTED PRIVATE KEY'")
    body = [line for line in lines[1:] if line and not line.startswith("-----") and ":" not in line]
    return base64.b64decode("".join(body), validate=True)


def _decrypt(der: bytes, password: bytes) -> bytes:
    outer = _Der(_Der(der).expect(0x30))
    algorithm = _Der(outer.expect(0x30))
    encrypted = outer.expect(0x04)
    if _oid(algorithm.expect(0x06)) != _PBES2:
        raise ValueError("not PBES2-encrypted")
    params = _Der(algorithm.expect(0x30))
    kdf = _Der(params.expect(0x30))
    if _oid(kdf.expect(0x06)) != _PBKDF2:
        raise ValueError("key derivation is not PBKDF2")
    kdf_params = _Der(kdf.expect(0x30))
    salt = kdf_params.expect(0x04)
    iterations = int.from_bytes(kdf_params.expect(0x02), "big")
    prf = hashes.SHA1
    while kdf_params.more():
        tag, value = kdf_params.read()
        if tag == 0x30:
            prf = _PRFS.get(_oid(_Der(value).expect(0x06)))  # type: ignore[assignment]
            if prf is None:
                raise ValueError("unsupported PBKDF2 PRF")
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"PBKDF2 iteration count {iterations} out of range")
    scheme = _Der(params.expect(0x30))
    size = _CIPHERS.get(_oid(scheme.expect(0x06)))
    if size is None:
        raise ValueError("cipher is not AES-CBC")
    iv = scheme.expect(0x04)
    key = PBKDF2HMAC(prf(), size, salt, iterations).derive(password)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(encrypted) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _ec_from_pkcs8(info: bytes) -> ec.EllipticCurvePrivateKey:
    """Rebuild an EC key from PrivateKeyInfo {version, {ecPublicKey, curve}, ECPrivateKey{1, d, …}}."""
    body = _Der(_Der(info).expect(0x30))
    body.expect(0x02)  # version: Notary writes 1 where PKCS#8 says 0; the key does not depend on it
    algorithm = _Der(body.expect(0x30))
    if _oid(algorithm.expect(0x06)) != _EC_PUBLIC_KEY:
        raise ValueError("not an EC key")
    curve = _CURVES.get(_oid(algorithm.expect(0x06)))
    if curve is None:
        raise ValueError("unsupported curve")
    ec_key = _Der(_Der(body.expect(0x04)).expect(0x30))
    ec_key.expect(0x02)
    scalar = int.from_bytes(ec_key.expect(0x04), "big")
    return ec.derive_private_key(scalar, curve())


def load_notary_private_key(text: str, password: bytes) -> Any:
    """The private key in a Notary key file, decrypted with ``password``.

    Raises:
        SigningKeyError: not a Notary key file, a wrong passphrase, or an unsupported key.
    """
    try:
        info = _decrypt(_pem_body(text), password)
    except ValueError as exc:
        raise SigningKeyError(f"cannot open the Notary key file (wrong passphrase or not a Notary key: {exc})") from exc
    try:
        return serialization.load_der_private_key(info, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # a hostile file: encrypted twice, an unknown key type
        pass
    try:
        return _ec_from_pkcs8(info)
    except ValueError as exc:
        # AES-CBC carries no MAC: about one wrong passphrase in 256 decrypts to valid padding, and only the
        # key's parse fails
        raise SigningKeyError(f"cannot open the Notary key file (wrong passphrase, or a key tufoci cannot read: "
                              f"{exc})") from exc


def notary_key_headers(text: str) -> dict[str, str]:
    """The PEM headers Notary writes (``role``, ``gun``): which role and collection the key signs for."""
    headers = {}
    for line in text.strip().splitlines()[1:]:
        if line.startswith("-----"):
            break
        name, sep, value = line.partition(":")
        if sep and " " not in name:
            headers[name.strip()] = value.strip()
    return headers


def notary_passphrase_env(headers: dict[str, str]) -> str:
    """The variable the Notary client reads this key's passphrase from: ``NOTARY_ROOT_PASSPHRASE``,
    ``…_TARGETS_…``, ``…_SNAPSHOT_…``, or ``NOTARY_DELEGATION_PASSPHRASE`` for a delegated role (or no role)."""
    role = headers.get("role", "")
    if role in ("root", "targets", "snapshot"):
        return f"NOTARY_{role.upper()}_PASSPHRASE"
    return "NOTARY_DELEGATION_PASSPHRASE"
