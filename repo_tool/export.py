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
from typing import Any

from tufoci.atomic_file import atomic_write
from tufoci.client.refresh import trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.repo_tool.plan import load_current
from tufoci.repo_tool.roles import RoleTree
from tufoci.state import State
from tufoci.tuf_compat import cached_file, cached_root, cached_root_versions, requested_file_name


def export_metadata(state: State, scope_text: str, directory: str, **registry_options: Any) -> list[str]:
    """Write the current verified metadata of a scope into ``directory``; returns the file names."""
    pin = pin_for_scope(state, scope_text)
    os.makedirs(directory, exist_ok=True)
    written = []
    with trusted_session(state.home, pin, **registry_options) as session:
        current = load_current(session)
        tree = RoleTree(session, current.root.signed)
        for root_version in cached_root_versions(session.metadata_dir):
            name = requested_file_name("root", root_version)
            shutil.copyfile(cached_root(session.metadata_dir, root_version), os.path.join(directory, name))
            written.append(name)
        versions: dict[str, int | None] = {"timestamp": None, "snapshot": current.snapshot.signed.version}
        versions |= {role: tree.metadata(role).signed.version for role in tree.walk()}
        for role, version in versions.items():
            # the bytes as published: re-serialising could change them and break the snapshot hashes
            name = requested_file_name(role, version)
            with open(cached_file(session.metadata_dir, role), "rb") as f:
                atomic_write(os.path.join(directory, name), f.read())
            written.append(name)
    return written


