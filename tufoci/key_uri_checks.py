"""What ``key import NAME PUB --uri URI`` can check about a private key URI without signing (issue 18).

A URI whose private key is missing, unreadable, of an unknown scheme, or another key, once
imported, failed only at the first signature, under pressure. Everything that needs no
secret and no remote service is checked at import; what could not be checked is said.
"""

from __future__ import annotations

import importlib.util
import os
from urllib import parse

from securesystemslib.signer import Key

from tufoci.errors import SigningKeyError
from tufoci.keys import signer_schemes

# the Python module each remote scheme's signer needs (securesystemslib's optional dependencies)
_KMS_MODULES = {"awskms": "boto3", "gcpkms": "google.cloud.kms", "azurekms": "azure.keyvault.keys", "hv": "hvac"}


def check_private_uri(uri: str, public: Key, name: str) -> list[str]:
    """Check ``uri`` against ``public`` as far as possible without a secret; returns what could not be checked.

    Raises:
        SigningKeyError: an unknown scheme, a missing or unreadable file, a file holding another key,
            a missing PKCS#11 module or KMS client library.
    """
    scheme, known_schemes = uri.partition(":")[0], signer_schemes()
    if ":" not in uri or scheme not in known_schemes:
        known = ", ".join(sorted(f"{s}:" for s in known_schemes))
        raise SigningKeyError(f"{uri}: unknown key URI scheme {scheme!r} for {name} (tufoci signs with {known})")
    if scheme in ("file2", "encfile"):
        return _check_file(uri, scheme, public, name)
    if scheme == "hsm":
        library = os.environ.get("PYKCS11LIB")
        if not library or not os.path.isfile(library):
            raise SigningKeyError(f"{uri}: no PKCS#11 module for {name}: set PYKCS11LIB to the token's library "
                                  f"({library or 'unset'})")
        _require_module("pkcs11", uri, "tufoci[hsm]")
        return [f"the key on the token was not compared with {name}'s public key (it needs the PIN; "
                "'tufoci key import-hsm' reads the public key from the token)"]
    if scheme in _KMS_MODULES:
        _require_module(_KMS_MODULES[scheme], uri, f"securesystemslib's {scheme} extra")
    return [f"{scheme}: keys are remote: the key was not compared with {name}'s public key (the first signature "
            "is verified before anything is pushed)"]


def _check_file(uri: str, scheme: str, public: Key, name: str) -> list[str]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import SSlibKey

    path = parse.urlparse(uri).path
    if not os.path.isfile(path):
        raise SigningKeyError(f"{uri}: no private key file {path} for {name}")
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise SigningKeyError(f"{uri}: cannot read {path} for {name}: {e.strerror}") from e
    if scheme == "encfile":
        if b"ENCRYPTED PRIVATE KEY" not in pem:
            raise SigningKeyError(f"{uri}: {path} is not an encrypted PKCS#8 private key (for an unencrypted "
                                  f"one use file2:{path})")
        return [f"{path} is encrypted: its key was not compared with {name}'s public key without the passphrase "
                "(the first signature is verified before anything is pushed)"]
    try:
        held = SSlibKey.from_crypto(load_pem_private_key(pem, None).public_key())
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{uri}: {path} is not an unencrypted PEM private key for {name}") from e
    if held.keyid != public.keyid:
        # issue 20.8: a file that loads without a secret is checked now
        raise SigningKeyError(f"{uri} holds key {held.keyid}, not the public key given for {name} "
                              f"({public.keyid}): refused")
    return []


def _require_module(module: str, uri: str, extra: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SigningKeyError(f"{uri}: Python module {module} is missing: install {extra}")
