"""Storage backends: open the store behind a ``Repository``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    from tufoci.reference import Repository
    from tufoci.registry_options import RegistryOptions
    from tufoci.store.base import Manifest, RepositoryStore

__all__ = ["Manifest", "RepositoryStore", "open_repository"]


def __getattr__(name: str) -> object:
    """``Manifest`` and ``RepositoryStore`` from store/base.py when first asked for: the warm verify imports
    tufoci.store.manifest_batch, which runs this package's __init__, and needs neither (nor layout_spec)."""
    if name in ("Manifest", "RepositoryStore"):
        from tufoci.store import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_repository(repository: Repository, *, registry: RegistryOptions | None = None) -> RepositoryStore:
    """A store for ``repository``: a layout directory or a registry path.

    ``registry`` says how the registry backend connects (TLS, credentials, timeouts, the pool whose
    connections it reuses); the layout backend needs none.

    Raises:
        RegistryConfigError, RegistryError: the registry's TLS files cannot be used, or it is blocked.
    """
    if repository.registry is None:  # repository.is_layout
        from tufoci.store.layout import LayoutRepository

        return LayoutRepository(repository.path)
    from tufoci.registry_options import RegistryOptions
    from tufoci.store.registry import registry_client

    return registry_client(repository.registry, registry or RegistryOptions()).repository(repository.path)
