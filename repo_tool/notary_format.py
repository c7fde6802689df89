"""Notary v1's metadata format, read with ``cryptography`` and securesystemslib's canonical JSON.

Notary (and Docker Content Trust on top of it) speaks TUF, but not python-tuf's dialect, so python-tuf's
Metadata API cannot load its files. The differences this adapter handles, and nothing more:

- ``_type`` is capitalised (``Root``, ``Targets``, ``Snapshot``, ``Timestamp``); there is no ``spec_version``;
- dates are RFC 3339 with nanoseconds (``2036-12-01T23:48:58.110151902Z``);
- keys are ``{"keytype", "keyval": {"public": BASE64, "private": null}}`` where ``public`` is DER
  SubjectPublicKeyInfo (``ecdsa``, ``rsa``), raw 32 bytes (``ed25519``) or a PEM certificate (``ecdsa-x509``,
  ``rsa-x509``); a key id is the sha256 of the canonical JSON of that object with ``private`` null, so a root
  key id is computed over the *certificate*, not over the public key (notary ``tuf/data/keys.go``, ``ID()``);
- signatures carry a ``method``: ``ecdsa`` (sha256, raw r‖s, not DER), ``rsapss`` (sha256, salt = hash length),
  ``rsa`` (PKCS#1 v1.5, sha256), ``ed25519``; the signed bytes are the canonical JSON of ``signed``
  (notary ``tuf/signed/verify.go``);
- hashes are base64, not hex.

Every failure raises :class:`NotaryRejectedError` naming the file and the check: the import refuses (exit 12).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from securesystemslib.formats import encode_canonical

from tufoci.errors import MetadataRejectedError

X509_TYPES = ("ecdsa-x509", "rsa-x509")
_DATE_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


class NotaryRejectedError(MetadataRejectedError):
    """A Notary collection failed verification: the import translates nothing (exit 12)."""


def reject(where: str, check: str) -> NotaryRejectedError:
    """The one-line error of a failed check: ``notary GUN/FILE: CHECK``."""
    return NotaryRejectedError(f"notary {where}: {check}; nothing was imported")


def parse_date(text: object, where: str) -> datetime.datetime:
    """An aware datetime from Notary's RFC 3339 (Go's time.Time: up to nanoseconds, Z or an offset)."""
    match = _DATE_RE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise reject(where, f"unreadable date {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]  # nanoseconds → microseconds, truncated (never later)
    zone = "+00:00" if zone == "Z" else zone
    return datetime.datetime.fromisoformat(f"{base}.{micro}{zone}")


def decode_b64(text: object, where: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise reject(where, f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise reject(where, f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class NotaryKey:
    """One key of a Notary role: its Notary key id, type, the public key, and the certificate if any."""

    keyid: str
    keytype: str
    public_key: Any  # a cryptography public key object
    certificate: x509.Certificate | None

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def certificate_fingerprint(self) -> str | None:
        """sha256 of the certificate's DER (what ``openssl x509 -fingerprint -sha256`` prints, without colons)."""
        if self.certificate is None:
            return None
        return self.certificate.fingerprint(hashes.SHA256()).hex()


def _canonical(value: Any) -> bytes:
    """Canonical JSON, as Notary signs and hashes it (securesystemslib returns None only to an output function)."""
    text = encode_canonical(value)
    assert text is not None
    return text.encode()


def key_id(key: dict) -> str:
    """Notary's key id: sha256 over the canonical JSON of the key with ``private`` set to null."""
    public = {"keytype": key.get("keytype"), "keyval": {"private": None, "public": key["keyval"].get("public")}}
    return hashlib.sha256(_canonical(public)).hexdigest()


def parse_key(keyid: str, key: object, where: str) -> NotaryKey:
    """Load one key object and check that ``keyid`` is its Notary key id."""
    if not isinstance(key, dict) or not isinstance(key.get("keyval"), dict):
        raise reject(where, f"key {keyid} is malformed")
    if key_id(key) != keyid:
        raise reject(where, f"key id {keyid} does not match its key (ids are sha256 of the canonical key)")
    keytype = key.get("keytype")
    raw = decode_b64(key["keyval"].get("public"), where, f"key {keyid}")
    certificate = None
    public: PublicKeyTypes
    try:
        if keytype in X509_TYPES:
            certificate = x509.load_pem_x509_certificate(raw)
            public = certificate.public_key()
        elif keytype in ("ecdsa", "rsa"):
            public = serialization.load_der_public_key(raw)
        elif keytype == "ed25519":
            public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        else:
            raise reject(where, f"key {keyid} has unsupported type {keytype!r}")
    except ValueError as exc:
        raise reject(where, f"key {keyid} ({keytype}) does not load: {exc}") from exc
    wanted = rsa.RSAPublicKey if keytype in ("rsa", "rsa-x509") else (
        ec.EllipticCurvePublicKey if keytype in ("ecdsa", "ecdsa-x509") else ed25519.Ed25519PublicKey
    )
    if not isinstance(public, wanted):
        raise reject(where, f"key {keyid} is declared {keytype} but holds another kind of key")
    return NotaryKey(keyid, keytype, public, certificate)


def _verify_one(key: NotaryKey, method: str, signature: bytes, data: bytes) -> bool:
    public = key.public_key
    try:
        if method == "ecdsa" and isinstance(public, ec.EllipticCurvePublicKey):
            # notary tuf/signed/verifiers.go: raw r‖s, each half the curve size, over sha256
            size = (public.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        elif method == "rsapss" and isinstance(public, rsa.RSAPublicKey):
            public.verify(
                signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
            )
        elif method == "rsa" and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif method == "ed25519" and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify_signatures(
    envelope: dict, keys: dict[str, NotaryKey], keyids: list[str], threshold: int, where: str
) -> None:
    """Check that ``threshold`` distinct keys of the role signed the canonical JSON of ``signed``.

    Raises:
        NotaryRejectedError: threshold not met (a signature by a key outside the role does not count).
    """
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise reject(where, f"threshold {threshold!r} is not a positive integer")
    data = _canonical(envelope["signed"])
    good: set[str] = set()
    for sig in envelope.get("signatures") or []:
        keyid = sig.get("keyid") if isinstance(sig, dict) else None
        if keyid not in keyids or keyid not in keys or keyid in good:
            continue
        raw = decode_b64(sig.get("sig"), where, f"signature by {keyid}")
        if _verify_one(keys[keyid], str(sig.get("method")), raw, data):
            good.add(keyid)
    if len(good) < threshold:
        raise reject(where, f"signature threshold not met: {len(good)} valid of {threshold} needed")


def load_envelope(data: bytes, where: str, role_type: str) -> dict:
    """Parse a signed file and check its ``_type`` and version; returns the envelope."""
    try:
        envelope = json.loads(data)
    except ValueError as exc:
        raise reject(where, f"not JSON ({exc})") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signed"), dict):
        raise reject(where, "not a signed Notary document")
    if not isinstance(envelope.get("signatures"), list):
        raise reject(where, "no signature list")
    signed = envelope["signed"]
    if signed.get("_type") != role_type:
        raise reject(where, f"_type is {signed.get('_type')!r}, expected {role_type!r}")
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise reject(where, f"version {version!r} is not a non-negative integer")
    return envelope


def check_file_meta(meta: object, data: bytes, where: str) -> None:
    """Length and every known hash (base64) of ``data`` against a snapshot/timestamp entry.

    Raises:
        NotaryRejectedError: no sha256, or a length or hash differs.
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("hashes"), dict):
        raise reject(where, "its snapshot/timestamp entry has no hashes")
    if meta.get("length") != len(data):
        raise reject(where, f"length {len(data)} differs from the signed length {meta.get('length')}")
    hashes_ = meta["hashes"]
    if "sha256" not in hashes_:
        raise reject(where, "its signed entry has no sha256")
    for name, value in hashes_.items():
        if name not in ("sha256", "sha512"):
            continue
        if decode_b64(value, where, f"{name} hash") != hashlib.new(name, data).digest():
            raise reject(where, f"{name} hash differs from the signed hash")


def sha256_hex_of_b64(value: object, where: str) -> str:
    """A target's ``hashes.sha256`` (base64) as 64 hex digits, the form an OCI digest uses."""
    raw = decode_b64(value, where, "target sha256")
    if len(raw) != 32:
        raise reject(where, "target sha256 is not 32 bytes")
    return raw.hex()
