"""Keys as securesystemslib signers, referred to by URI.

securesystemslib's ``file2:`` signer reads only unencrypted PKCS#8, and tufoci
keeps private keys encrypted at rest. This module fills that one gap with the
``encfile:`` scheme (an encrypted PKCS#8 PEM file; the passphrase comes from the
caller's secrets handler). ``load_signer`` serves it and hands every other scheme
(``file2:``, ``hsm:``, ``awskms:``, ``gcpkms:``, ``azurekms:``, ``hv:``) to
``Signer.from_priv_key_uri``; securesystemslib's scheme table is read, never
written, so importing tufoci changes nothing for other users of securesystemslib
in the same process.

The key catalogue in ``state.db`` stores names, URIs and public keys, never a
secret. The library never prompts: callers pass a secrets handler.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib import parse

from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import (
    SIGNER_FOR_URI_SCHEME,
    CryptoSigner,
    Key,
    SecretsHandler,
    Signature,
    Signer,
    SSlibKey,
)

from tufoci.atomic_file import atomic_write
from tufoci.errors import SigningKeyError, UsageError
from tufoci.keyids import compute_default_keyid, public_identity, require_own_keyids
from tufoci.state import State, StoredKey

KEY_TYPES = ("ed25519", "ecdsa-p256")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PASSPHRASE_ENV = "TUFOCI_PASSPHRASE"
HSM_PIN_ENV = "TUFOCI_HSM_PIN"


class EncryptedFileSigner(CryptoSigner):
    """``encfile:<PATH>``: an encrypted PKCS#8 PEM private key on disk."""

    SCHEME = "encfile"

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> EncryptedFileSigner:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        if not isinstance(public_key, SSlibKey):
            raise ValueError(f"expected an SSlibKey for {priv_key_uri}")
        path = parse.urlparse(priv_key_uri).path
        with open(path, "rb") as f:
            pem = f.read()
        if secrets_handler is None:
            raise ValueError(f"{path} is encrypted and no passphrase source was given")
        passphrase = secrets_handler("passphrase")
        private_key = load_pem_private_key(pem, passphrase.encode("utf-8"))
        return cls(private_key, public_key)


def signer_schemes() -> set[str]:
    """The key URI schemes tufoci can sign with: securesystemslib's (as registered now) and ``encfile``."""
    return {*SIGNER_FOR_URI_SCHEME, EncryptedFileSigner.SCHEME}


def load_signer(uri: str, public_key: Key, secrets_handler: SecretsHandler | None) -> Signer:
    """The signer of a private key URI: ``Signer.from_priv_key_uri``, plus tufoci's ``encfile:`` scheme.

    Raises:
        ValueError: an unknown scheme or unusable arguments; other signer-specific errors (files, HSM, KMS).
    """
    if uri.partition(":")[0] == EncryptedFileSigner.SCHEME:
        return EncryptedFileSigner.from_priv_key_uri(uri, public_key, secrets_handler)
    return Signer.from_priv_key_uri(uri, public_key, secrets_handler)


@dataclass(frozen=True)
class KeyRef:
    """A public key, and the URI of its private half when this machine has it."""

    public: Key
    uri: str | None
    name: str | None = None

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def label(self) -> str:
        return self.name or self.keyid[:12]


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise SigningKeyError(f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")


def generate_key(
    state: State,
    name: str,
    *,
    keytype: str = "ed25519",
    passphrase: str | None,
) -> KeyRef:
    """Create a key pair, store the private key (encrypted unless no passphrase) mode 0600.

    With ``passphrase=None`` the key is written unencrypted (``file2:``), which
    is meant for online keys used by unattended timestamping.
    """

    _check_name(name)
    if keytype not in KEY_TYPES:
        raise SigningKeyError(f"unsupported key type {keytype!r}: choose one of {', '.join(KEY_TYPES)}")
    if state.key_named(name):
        raise SigningKeyError(f"a key named {name!r} already exists")
    signer = CryptoSigner.generate_ed25519() if keytype == "ed25519" else CryptoSigner.generate_ecdsa()
    return _keep_private(state, name, signer._private_key, passphrase=passphrase, action="key-generate",
                         public=signer.public_key)


def import_private_key(state: State, name: str, private_key: Any, *, passphrase: str | None) -> KeyRef:
    """Keep a private key this machine already holds elsewhere (a Notary delegate's key, read by
    ``repo_tool.notary_keyfile``) under ``name``, so the delegate signs with the key its collaborators know.

    Stored like a generated key (encrypted with ``passphrase``, mode 0600); the public key and its scheme are
    what ``SSlibKey.from_crypto`` gives, the same as the import plan's, so the key ids agree.

    Raises:
        SigningKeyError: a bad or taken name, or a key TUF has no scheme for.
    """
    _check_name(name)
    if state.key_named(name):
        raise SigningKeyError(f"a key named {name!r} already exists")
    return _keep_private(state, name, private_key, passphrase=passphrase, action="key-import-private")


def _keep_private(state: State, name: str, private_key: Any, *, passphrase: str | None, action: str,
                  public: Key | None = None) -> KeyRef:
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    try:
        public = public or SSlibKey.from_crypto(private_key.public_key())
    except ValueError as exc:
        raise SigningKeyError(f"key {name!r}: TUF has no scheme for it ({exc})") from exc
    encryption = BestAvailableEncryption(passphrase.encode("utf-8")) if passphrase else NoEncryption()
    pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    key_dir = state.path("keys")
    os.makedirs(key_dir, mode=0o700, exist_ok=True)
    path = os.path.join(key_dir, f"{name}.pem")
    if os.path.exists(path):
        raise SigningKeyError(f"key file {path} already exists")
    atomic_write(path, pem, mode=0o600)
    uri = f"{EncryptedFileSigner.SCHEME if passphrase else CryptoSigner.SCHEME}:{path}"
    key = KeyRef(public, uri, name)
    _store(state, key, action=action)
    return key


def import_key(state: State, name: str, spec: str, *, uri: str | None = None,
               unchecked: list[str] | None = None) -> KeyRef:
    """Add a key to the catalogue: another maintainer's public key, or a key
    this machine can sign with (``uri``: an ``hsm:``/KMS URI for that public key).

    ``uri`` is checked as far as it can be without a secret (tufoci.key_uri_checks); what could
    not be checked is appended to ``unchecked``, for the caller to say.

    Raises:
        SigningKeyError: a bad name, a name taken, or a URI that cannot sign for this public key.
    """
    from tufoci.key_uri_checks import check_private_uri

    _check_name(name)
    if state.key_named(name):
        raise SigningKeyError(f"a key named {name!r} already exists")
    key = _parse_key_spec(spec)
    if uri:
        notes = check_private_uri(uri, key.public, name)
        if unchecked is not None:
            unchecked.extend(notes)
    key = KeyRef(key.public, uri or key.uri, name)
    _store(state, key, action="key-import")
    return key


def _store(state: State, key: KeyRef, *, action: str) -> None:
    public = key.public
    assert key.name is not None  # every caller checked the name (_check_name)
    with state.transaction():
        state.add_key(StoredKey(key.name, public.keyid, public.keytype, public.scheme, key.uri, public.to_dict()))
        state.record_audit(action, key=key.name, keyid=public.keyid, uri=key.uri)


def import_hsm_key(
    state: State,
    name: str,
    *,
    hsm_keyid: int | None = None,
    token_label: str | None = None,
    secrets: SecretsHandler | None = None,
) -> KeyRef:
    """Add a key that lives in a PKCS#11 token (``PYKCS11LIB`` names the module).

    Only the public key and the ``hsm:`` URI are stored; the private key never
    leaves the token, and the PIN is asked for at signing time.
    """
    _check_name(name)
    if state.key_named(name):
        raise SigningKeyError(f"a key named {name!r} already exists")
    try:
        from securesystemslib.signer import HSMSigner

        uri, public = HSMSigner.import_(hsm_keyid, token_label, _named(secrets, name))
    except Exception as e:  # python-pkcs11 and the token raise their own errors
        hint = " (install tufoci[hsm] and set PYKCS11LIB)" if "pkcs11" in str(e).lower() else ""
        raise SigningKeyError(f"cannot import HSM key: {e}{hint}") from e
    key = KeyRef(public, uri, name)
    _store(state, key, action="key-import-hsm")
    return key


def list_keys(state: State) -> list[KeyRef]:
    return [_catalogue_key(stored) for stored in state.keys()]


def _catalogue_key(stored: StoredKey) -> KeyRef:
    public = SSlibKey.from_dict(stored.keyid, dict(stored.public_key))
    # a catalogue filled before key ids were checked may hold a key under a foreign id
    require_own_keyids({stored.keyid: public}, f"key {stored.name} of this machine's catalogue", SigningKeyError)
    return KeyRef(public, stored.uri, stored.name)


def export_public(key: KeyRef) -> str:
    """The JSON another maintainer passes to ``key import`` or ``--*-key``."""
    return json.dumps({"keyid": key.keyid, **key.public.to_dict()}, sort_keys=True)


def _public_from_pem(data: bytes) -> Key:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return SSlibKey.from_crypto(load_pem_public_key(data))


def _parse_key_spec(spec: str) -> KeyRef:
    """A KEY argument that is not a catalogue name: URI, public-key JSON or file."""
    text = spec.strip()
    if text.startswith("{"):
        return KeyRef(_public_from_json(text, "JSON given on the command line"), None)
    scheme = text.partition(":")[0]
    if scheme == CryptoSigner.SCHEME:
        # an unencrypted file: its public half can be derived without a secret
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        path = parse.urlparse(text).path
        try:
            with open(path, "rb") as f:
                private = load_pem_private_key(f.read(), None)
        except (OSError, ValueError, TypeError) as e:
            raise SigningKeyError(f"cannot load key file {path}: {_key_error_text(e)}") from e
        return KeyRef(SSlibKey.from_crypto(private.public_key()), text)
    if scheme in signer_schemes():
        raise SigningKeyError(
            f"{spec}: tufoci needs its public key too: run 'tufoci key import NAME PUBLIC_KEY --uri {spec}' "
            "and use NAME"
        )
    try:
        with open(text, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SigningKeyError(f"{spec!r} is neither a known key name, a key URI nor a readable file") from e
    if data.lstrip().startswith(b"{"):
        return KeyRef(_public_from_json(data.decode("utf-8", "replace"), f"file {text}"), None)
    if b"PUBLIC KEY" in data:
        return KeyRef(_public_from_pem(data), None)
    raise SigningKeyError(f"{spec}: not a public key (JSON from 'tufoci key export', or a PEM public key)")


def _public_from_json(text: str, where: str) -> Key:
    """A public key as ``key export`` prints it (TUF key dict plus ``keyid``, which must be the
    key's own id); ``where`` names its source for errors."""
    try:
        data = json.loads(text)
        claimed = data.pop("keyid", None)
        keyid = compute_default_keyid(data["keytype"], data["scheme"], data["keyval"])
        keytype, scheme = data["keytype"], data["scheme"]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise SigningKeyError(f"malformed public key JSON: {type(e).__name__}: {e}") from e
    if claimed is not None and claimed != keyid:
        # issue 20.3: a key id is a fact about the key, never what a document says it is
        raise UsageError(f"public key {where} claims key id {claimed}, but its key material has key id {keyid}: "
                         "refused")
    try:
        # Key.from_dict (unlike SSlibKey.from_dict) checks the type/scheme pair; loading the
        # key material checks that it is a key of that type
        key = Key.from_dict(keyid, data)
        if not isinstance(key, SSlibKey):
            raise TypeError(f"{type(key).__name__} keys cannot be loaded")
        key._crypto_key()  # noqa: SLF001
    except Exception as e:  # noqa: BLE001 - securesystemslib and cryptography raise various errors here
        raise UsageError(f"public key of type {keytype!r} does not go with scheme {scheme!r} "
                         f"or its key material: {e}") from e
    return key


def require_distinct(keys: list[KeyRef] | list[Key]) -> None:
    """Refuse one key listed under two keyids: python-tuf counts signatures per keyid, so
    such a key would count twice toward a threshold."""
    seen: dict[tuple[str, bytes], str] = {}
    for item in keys:
        key = item.public if isinstance(item, KeyRef) else item
        material = public_identity(key)  # every spelling of one public key (tufoci/keyids.py)
        if material in seen and seen[material] != key.keyid:
            raise UsageError(f"keys {seen[material][:12]}… and {key.keyid[:12]}… are the same key under two keyids: "
                             "it would count twice toward a threshold")
        seen[material] = key.keyid


MIN_KEYID_PREFIX = 8


def resolve_key(state: State, spec: str) -> KeyRef:
    """Turn a KEY argument into a key, named the way the user last saw it (issue 18): a catalogue
    name, a key id or a unique prefix of one (at least 8 hex digits), the URI ``key generate``
    printed, a private key URI, or a public key (JSON or file). A key the catalogue holds is
    returned as the catalogue has it, so its private URI comes along.

    Raises:
        SigningKeyError: nothing matches, or a key id prefix matches several keys.
    """
    stored = state.keys_matching(spec)
    if stored:
        return _catalogue_key(stored[0])
    if len(spec) >= MIN_KEYID_PREFIX and re.fullmatch(r"[0-9a-f]+", spec):
        stored = state.keys_by_keyid(spec, prefix=True)
        if len(stored) > 1:
            raise SigningKeyError(f"key id prefix {spec} matches {len(stored)} keys "
                                  f"({', '.join(k.name for k in stored)}): give more digits or the name")
        if stored:
            return _catalogue_key(stored[0])
    key = _parse_key_spec(spec)
    stored = state.keys_by_keyid(key.keyid)
    return _catalogue_key(stored[0]) if stored and key.uri is None else key


def held_key(state: State, keyid: str) -> KeyRef | None:
    """The catalogue entry of ``keyid`` if this machine has its private URI (nothing is loaded)."""
    held = [stored for stored in state.keys_by_keyid(keyid) if stored.uri is not None]
    return _catalogue_key(held[0]) if held else None


class VerifyingSigner(Signer):
    """A catalogue key's signer whose every signature is verified with the key's public half.

    The catalogue pairs a public key (what roles list) with a URI (what signs); nothing
    but this check ties them together for an HSM/KMS key or an encrypted file, and a
    signature that does not verify, once pushed, makes the metadata nobody accepts
    (issue 20.8). Every signature tufoci makes comes through here, before anything is pushed.
    """

    def __init__(self, signer: Signer, key: KeyRef):
        self._signer, self._key = signer, key

    @property
    def public_key(self) -> Key:
        return self._key.public

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key,
                          secrets_handler: SecretsHandler | None = None) -> Signer:
        raise NotImplementedError("built by keys.signer_for")

    def sign(self, payload: bytes) -> Signature:
        """Raises:
            SigningKeyError: the signature does not verify with the catalogue's public key (names the key and URI).
        """
        signature = self._signer.sign(payload)
        try:
            if signature.keyid != self._key.keyid:
                raise VerificationError(f"signature names key id {signature.keyid}")
            self._key.public.verify_signature(signature, payload)
        except (UnverifiedSignatureError, VerificationError) as e:
            raise SigningKeyError(
                f"key {self._key.label} ({self._key.uri}) made a signature that does not verify with its public key "
                f"{self._key.keyid[:16]}…: its URI signs with another key; nothing was pushed"
            ) from e
        return signature


def signer_for(state: State, keyid: str, secrets: SecretsHandler | None) -> Signer | None:
    """A signer for ``keyid`` if this machine's catalogue has its private URI (its signatures are
    verified before use: ``VerifyingSigner``)."""
    key = held_key(state, keyid)
    if key is not None and key.uri is not None:  # held_key's rows have one
        try:
            return VerifyingSigner(load_signer(key.uri, key.public, _named(secrets, key.label)), key)
        except (OSError, ValueError, TypeError) as e:
            raise SigningKeyError(f"cannot load key {key.label} ({key.uri}): {_key_error_text(e)}") from e
        except Exception as e:  # securesystemslib raises library-specific errors (HSM, KMS)
            raise SigningKeyError(f"cannot load key {key.label} ({key.uri}): {e}") from e
    return None


def _key_error_text(error: BaseException) -> str:
    text = str(error)
    lowered = text.lower()
    # a wrong passphrase usually fails the padding check ("bad decrypt"), but now and then
    # decrypts to garbage that then fails to parse
    if "bad decrypt" in lowered or "incorrect password" in lowered or "asn.1" in lowered \
            or "could not deserialize" in lowered:
        return "wrong passphrase (or a damaged key file)"
    return text.splitlines()[0] if text else type(error).__name__


def _named(secrets: SecretsHandler | None, label: str) -> SecretsHandler | None:
    if secrets is None:
        return None
    return lambda secret: secrets(f"{secret} for key {label}")


def env_secrets_handler(fallback: Callable[[str], str] | None = None) -> SecretsHandler:
    """Secrets from the environment, then ``fallback``: HSM PINs from ``TUFOCI_HSM_PIN``,
    passphrases from ``TUFOCI_PASSPHRASE_<KEYNAME>`` or ``TUFOCI_PASSPHRASE``."""

    def handler(prompt: str) -> str:
        if prompt.startswith("pin") and HSM_PIN_ENV in os.environ:
            return os.environ[HSM_PIN_ENV]
        label = prompt.rsplit("for key ", 1)[-1] if "for key " in prompt else ""
        specific = re.sub(r"[^A-Za-z0-9]", "_", label).upper()
        for var in (f"{PASSPHRASE_ENV}_{specific}" if specific else None, PASSPHRASE_ENV):
            if var and var in os.environ:
                return os.environ[var]
        if fallback is None:
            raise SigningKeyError(f"no passphrase: set {PASSPHRASE_ENV} or use --password-stdin ({prompt})")
        return fallback(prompt)

    return handler
