"""Exporting a trust repository's metadata as a plain TUF repository (a static HTTP mirror).

The files are named as python-tuf and every TUF client expect with consistent
snapshots (``N.root.json``, ``timestamp.json``, ``N.snapshot.json``,
``N.targets.json``, ``N.<role>.json``), so any web server can serve them and a
trust pin can name the URL (``tufoci trust add SCOPE --root … --metadata https://…/``)
while images stay in a registry. Everything written was verified first.
"""

from __future__ import annotations

import os
import shutil

from tufoci.atomic_file import atomic_write
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.tuf_compat import cached_file, cached_root, cached_root_versions, requested_file_name


def export_metadata(session: MaintainerSession, directory: str) -> list[str]:
    """Write the current verified metadata of a scope into ``directory``; returns the file names.

    The session decides whether expired metadata may be exported (the CLI's does not: a static
    mirror serves consumers).

    Raises:
        TufociError: the refresh failed (registry, metadata rejected).
        OSError: ``directory`` cannot be written.
    """
    os.makedirs(directory, exist_ok=True)
    written = []
    with session.live() as live:
        current, tree, metadata_dir = live.current, live.tree, live.verified.metadata_dir
        for root_version in cached_root_versions(metadata_dir):
            name = requested_file_name("root", root_version)
            shutil.copyfile(cached_root(metadata_dir, root_version), os.path.join(directory, name))
            written.append(name)
        versions: dict[str, int | None] = {"timestamp": None, "snapshot": current.snapshot.signed.version}
        versions |= {role: tree.metadata(role).signed.version for role in tree.walk()}
        for role, version in versions.items():
            # the bytes as published: re-serialising could change them and break the snapshot hashes
            name = requested_file_name(role, version)
            with open(cached_file(metadata_dir, role), "rb") as f:
                atomic_write(os.path.join(directory, name), f.read())
            written.append(name)
    return written


