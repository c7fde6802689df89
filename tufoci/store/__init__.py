"""Storage backends: open the store behind a ``Repository``."""

from __future__ import annotations

from typing import Any

from tufoci.reference import Repository
from tufoci.store.base import Manifest, RepositoryStore

__all__ = ["Manifest", "RepositoryStore", "open_repository"]


def open_repository(repository: Repository, **registry_options: Any) -> RepositoryStore:
    """A store for ``repository``: a layout directory or a registry path.

    ``registry_options`` go to the registry backend (TLS, credentials,
    timeouts); the layout backend needs none.
    """
    if repository.registry is None:  # repository.is_layout
        from tufoci.store.layout import LayoutRepository

        return LayoutRepository(repository.path)
    from tufoci.store.registry import registry_client

    return registry_client(repository.registry, **registry_options).repository(repository.path)
