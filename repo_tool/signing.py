"""Signing metadata with the keys this machine holds, and counting toward thresholds."""

from __future__ import annotations

from securesystemslib.signer import SecretsHandler, Signer
from tuf.api.metadata import Metadata, Root, Targets

from tufoci.errors import SigningKeyError, ThresholdError
from tufoci.keys import signer_for
from tufoci.state import State


def available_signers(state: State, keyids: list[str], secrets: SecretsHandler | None) -> dict[str, Signer]:
    """Signers for those of ``keyids`` whose private half this machine's catalogue has."""
    signers = {}
    for keyid in keyids:
        signer = signer_for(state, keyid, secrets)
        if signer is not None:
            signers[keyid] = signer
    return signers


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
