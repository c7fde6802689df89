"""Storage backends: open the store behind a ``Repository``."""

from __future__ import annotations

from tufoci.reference import Repository
from tufoci.registry_options import RegistryOptions
from tufoci.store.base import Manifest, RepositoryStore

__all__ = ["Manifest", "RepositoryStore", "open_repository"]


def open_repository(repository: Repository, *, registry: RegistryOptions = RegistryOptions()) -> RepositoryStore:
    """A store for ``repository``: a layout directory or a registry path.

    ``registry`` says how the registry backend connects (TLS, credentials, timeouts, the pool whose
    connections it reuses); the layout backend needs none.

    Raises:
        RegistryConfigError, RegistryError: the registry's TLS files cannot be used, or it is blocked.
    """
    if repository.registry is None:  # repository.is_layout
        from tufoci.store.layout import LayoutRepository

        return LayoutRepository(repository.path)
    from tufoci.store.registry import registry_client

    return registry_client(repository.registry, registry).repository(repository.path)
