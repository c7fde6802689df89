"""The live top-level metadata a maintainer starts from, read from a verified refresh.

ngclient keeps what its refresh verified in the session's metadata directory;
this reads it into the ``CurrentState`` the plan takes as input (plan.py does no
I/O itself).
"""

from __future__ import annotations

from tuf.api.metadata import Metadata

from tufoci.client.refresh import TrustedSession
from tufoci.repo_tool.plan import CurrentState
from tufoci.tuf_compat import cached_file


def load_current(session: TrustedSession) -> CurrentState:
    """Read what the session's refresh verified (root, timestamp, snapshot, targets) and the
    manifest digest of the timestamp it read (the compare-and-swap point of a publish, layout §3)."""

    def read(role: str) -> Metadata:
        with open(cached_file(session.metadata_dir, role), "rb") as f:
            return Metadata.from_bytes(f.read())

    return CurrentState(
        read("root"), read("timestamp"), read("snapshot"), read("targets"),
        getattr(session.fetcher, "timestamp_manifest_digest", None),
    )
