"""Signing metadata with the keys this machine holds, and counting toward thresholds."""

from __future__ import annotations

from securesystemslib.signer import Key, SecretsHandler, Signature, Signer
from tuf.api.metadata import Metadata, Root, Targets

from tufoci.errors import SigningKeyError, ThresholdError
from tufoci.keys import held_key, signer_for
from tufoci.state import State


class WouldSign(Signer):
    """A key this machine holds, in a dry run: never loaded (no passphrase, no HSM PIN), it adds an
    empty signature that counts toward thresholds like the real one would, and that nothing pushes."""

    def __init__(self, public_key: Key):
        self._public_key = public_key

    @property
    def public_key(self) -> Key:
        return self._public_key

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None) -> Signer:
        raise NotImplementedError("a dry-run stand-in has no private key")

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public_key.keyid, "")


def available_signers(
    state: State, keyids: list[str], secrets: SecretsHandler | None, *, dry_run: bool = False
) -> dict[str, Signer]:
    """Signers for those of ``keyids`` whose private half this machine's catalogue has
    (``WouldSign`` stand-ins in a dry run).

    Raises:
        SigningKeyError: a key cannot be loaded (not in a dry run, which loads none).
    """
    signers: dict[str, Signer] = {}
    for keyid in keyids:
        if dry_run:
            key = held_key(state, keyid)
            signer: Signer | None = WouldSign(key.public) if key is not None else None
        else:
            signer = signer_for(state, keyid, secrets)
        if signer is not None:
            signers[keyid] = signer
    return signers


def would_sign(metadata: Metadata) -> list[str]:
    """The keyids of the dry-run stand-in signatures on ``metadata``."""
    return sorted(k for k, s in metadata.signatures.items() if s.signature == "")


def sign_with(metadata: Metadata, signers: dict[str, Signer]) -> None:
    """Add one signature per signer (replacing an older signature by the same key)."""
    for signer in signers.values():
        try:
            metadata.sign(signer, append=True)
        except SigningKeyError:
            raise  # names the key already (keys.VerifyingSigner)
        except Exception as e:  # signer backends raise their own errors (HSM, KMS, files)
            raise SigningKeyError(f"signing {metadata.signed.type} failed: {e}") from e


def threshold_status(delegator: Root | Targets, role: str, metadata: Metadata) -> tuple[int, int]:
    """(valid signatures from keys of ``role``, threshold) for ``metadata``."""
    result = delegator.get_verification_result(role, metadata.signed_bytes, metadata.signatures)
    return len(result.signed), result.threshold


def require_threshold(delegator: Root | Targets, role: str, metadata: Metadata) -> None:
    have, need = threshold_status(delegator, role, metadata)
    if have < need:
        raise ThresholdError(
            f"{role} version {metadata.signed.version} has {have} of the {need} signatures it needs; "
            "this machine holds no more of its keys"
        )
