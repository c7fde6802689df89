"""tufoci: TUF trust repositories stored as OCI artifacts beside the images they protect.

The public API for programs that embed the verifier (an admission controller, a mirror, a deploy
script) is what ``__all__`` lists; docs/library.md shows it at work. Everything else is internal and
may change between releases. The names are imported on first use (module ``__getattr__``), so
``import tufoci`` stays as cheap as it is for the warm verify path, which imports this package first.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # verifying
    "Verifier": "tufoci.client.verify",
    "verify": "tufoci.client.verify",
    "Outcome": "tufoci.verify_output",
    "VerifiedImage": "tufoci.verify_output",
    # trust material
    "Pin": "tufoci.state",
    "make_pin": "tufoci.client.trust_pins",
    "fetch_root_by_sha256": "tufoci.client.trust_pins",
    # reaching registries
    "RegistryOptions": "tufoci.registry_options",
    "options_from_environment": "tufoci.registry_options",
    "RegistryConfig": "tufoci.registry_config",
    "TLSFlags": "tufoci.registry_config",
    "load_config": "tufoci.registry_config",
    "CredentialSource": "tufoci.registry_options",
    "Credentials": "tufoci.credentials",
    "RegistryClients": "tufoci.store.registry",
    # errors: one family per exit code (docs/cli.md)
    "TufociError": "tufoci.errors",
    "UsageError": "tufoci.errors",
    "InvalidReferenceError": "tufoci.errors",
    "StateError": "tufoci.errors",
    "NotTrustedError": "tufoci.errors",
    "NotSignedError": "tufoci.errors",
    "DigestMismatchError": "tufoci.errors",
    "MetadataRejectedError": "tufoci.errors",
    "RegistryError": "tufoci.errors",
    "NotFoundError": "tufoci.errors",
    "ContentMismatchError": "tufoci.errors",
    "TooLargeError": "tufoci.errors",
    "TimedOutError": "tufoci.errors",
    "RegistryConfigError": "tufoci.registry_config",
}

__all__ = [  # the same names as _EXPORTS (tests/test_library_api.py checks), spelled out for readers and linters
    "__version__",
    "Verifier", "verify", "Outcome", "VerifiedImage",
    "Pin", "make_pin", "fetch_root_by_sha256",
    "RegistryOptions", "options_from_environment", "RegistryConfig", "TLSFlags", "load_config",
    "CredentialSource", "Credentials", "RegistryClients",
    "TufociError", "UsageError", "InvalidReferenceError", "StateError", "NotTrustedError", "NotSignedError",
    "DigestMismatchError", "MetadataRejectedError", "RegistryError", "NotFoundError", "ContentMismatchError",
    "TooLargeError", "TimedOutError", "RegistryConfigError",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time each name is imported on first use
    from tufoci.client.trust_pins import fetch_root_by_sha256, make_pin
    from tufoci.client.verify import Verifier, verify
    from tufoci.credentials import Credentials
    from tufoci.errors import (
        ContentMismatchError,
        DigestMismatchError,
        InvalidReferenceError,
        MetadataRejectedError,
        NotFoundError,
        NotSignedError,
        NotTrustedError,
        RegistryError,
        StateError,
        TimedOutError,
        TooLargeError,
        TufociError,
        UsageError,
    )
    from tufoci.registry_config import RegistryConfig, RegistryConfigError, TLSFlags, load_config
    from tufoci.registry_options import CredentialSource, RegistryOptions, options_from_environment
    from tufoci.state import Pin
    from tufoci.store.registry import RegistryClients
    from tufoci.verify_output import Outcome, VerifiedImage


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tufoci' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "__doc__", "__file__", "__name__", "__path__"})
