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
from urllib import parse

from tufoci.atomic_file import atomic_write
from tufoci.repo_tool.maintainer import MaintainerSession


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
        current, tree, refresh = live.current, live.tree, live.verified
        history = os.path.join(refresh.metadata_dir, "root_history")
        for name in sorted(os.listdir(history), key=lambda n: int(n.split(".", 1)[0])):
            shutil.copyfile(os.path.join(history, name), os.path.join(directory, name))
            written.append(name)
        names = ["timestamp.json", f"{current.snapshot.signed.version}.snapshot.json"]
        names += [f"{tree.metadata(role).signed.version}.{parse.quote(role, '')}.json" for role in tree.walk()]
        for name in names:
            # the bytes as published: re-serialising could change them and break the snapshot hashes
            with open(os.path.join(refresh.metadata_dir, _cache_name(name)), "rb") as f:
                atomic_write(os.path.join(directory, name), f.read())
            written.append(name)
    return written


def _cache_name(name: str) -> str:
    """ngclient caches ``N.role.json`` as ``role.json``."""
    return name if name == "timestamp.json" else name.split(".", 1)[1]


