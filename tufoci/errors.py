"""The tufoci exception tree.

Every error a user can cause or meet derives from ``TufociError``. The families
map one-to-one to the documented exit codes, so the CLI needs exactly one place
that turns an exception into a message and a code, and tests can assert the
class instead of parsing text.
"""

from __future__ import annotations


class TufociError(Exception):
    """Root of all tufoci errors: exit code 1 unless a family says otherwise."""

    exit_code = 1


class UsageError(TufociError):
    """The command line or an input value is malformed (exit 2)."""

    exit_code = 2


class InvalidReferenceError(UsageError):
    """An OCI reference, scope or target name does not parse."""


class SigningKeyError(TufociError):
    """A key cannot be generated, found, loaded or used for signing."""


class StateError(TufociError):
    """Local state (state.db, keys, caches) is missing or inconsistent."""


class NotTrustedError(TufociError):
    """No trust pin covers the reference, so nothing can be verified."""


class PublishError(TufociError):
    """A publish could not complete; the registry still serves the previous state."""


class ConcurrentPublishError(PublishError):
    """Someone else moved the timestamp since this publish started."""


class NothingStagedError(PublishError):
    """A publish was asked for with no staged change."""


class ThresholdError(PublishError):
    """Not enough signatures are available to meet a role's threshold."""


class InterruptedPublishError(PublishError):
    """Ctrl-C during a publish: the message says whether the new state went live (exit 130, as for SIGINT)."""

    exit_code = 130


class NotSignedError(TufociError):
    """The trusted metadata has no entry for this target (exit 10)."""

    exit_code = 10


class DigestMismatchError(TufociError):
    """The registry serves something other than the signed digest (exit 11)."""

    exit_code = 11


class MetadataRejectedError(TufociError):
    """TUF metadata failed verification: signature, threshold, rollback,
    expiry, mix-and-match or a length/hash mismatch (exit 12)."""

    exit_code = 12


class RegistryError(TufociError):
    """The registry or layout store could not be reached or misbehaved (exit 13)."""

    exit_code = 13


class NotFoundError(RegistryError):
    """The store answered, but has no such manifest, tag or blob."""


class ContentMismatchError(RegistryError):
    """The store served bytes that do not hash to the digest they were asked for by."""


class TooLargeError(RegistryError):
    """A response exceeded the size tufoci is willing to read."""


class ReviewMismatchError(TufociError):
    """A signer was asked to sign a proposal other than the one they reviewed (its fingerprint differs)."""


class TimedOutError(RegistryError):
    """The command's overall time budget (``--timeout``) ran out while it waited (exit 13)."""
