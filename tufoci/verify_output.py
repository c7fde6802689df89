"""Verify results and how they print (standard library only): shared by the CLI, the agent and the warm
fast path (client/fast_verify.py), so that every path says exactly the same."""

from __future__ import annotations

from tufoci.errors import TufociError
from tufoci.frozen import Frozen
from tufoci.safe_text import printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the fast path
if TYPE_CHECKING:
    from typing import TextIO


class VerifiedImage(Frozen):
    """A reference resolved to the digest its signers published."""

    __slots__ = ("reference", "target", "scope", "repository", "digest", "length", "media_type", "tags")
    reference: str
    target: str
    scope: str
    repository: str
    digest: str
    length: int
    media_type: str | None
    tags: tuple[str, ...]  # for a digest-only reference: the signed tags of the repository that sign it

    def __init__(self, reference: str, target: str, scope: str, repository: str, digest: str, length: int,
                 media_type: str | None, tags: tuple[str, ...] = ()) -> None:
        self._init(reference, target, scope, repository, digest, length, media_type, tags)

    @property
    def pinned(self) -> str:
        """What to deploy: ``repository@sha256:…``."""
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict:
        """The documented ``-o json`` shape (docs/cli.md)."""
        return {
            "reference": self.reference,
            "target": self.target,
            "scope": self.scope,
            "repository": self.repository,
            "digest": self.digest,
            "length": self.length,
            "mediaType": self.media_type,
            "pinned": self.pinned,
            **({"tags": list(self.tags)} if self.tags else {}),
        }


class Outcome(Frozen):
    """The result for one reference: an image, or the error that stopped it."""

    __slots__ = ("reference", "image", "error")
    reference: str
    image: VerifiedImage | None
    error: TufociError | None

    def __init__(self, reference: str, image: VerifiedImage | None = None, error: TufociError | None = None) -> None:
        self._init(reference, image, error)

    def to_dict(self) -> dict:
        """The documented ``-o json`` shape of one result (docs/cli.md)."""
        if self.image is not None:
            return {"reference": self.reference, "verified": True, **self.image.to_dict()}
        assert self.error is not None
        return {"reference": self.reference, "verified": False,
                "error": {"code": self.error.exit_code, "type": type(self.error).__name__, "message": str(self.error)}}



def render_results(results: list[dict], output: str, out: TextIO, err: TextIO) -> int:
    """Print ``verify`` results as text (one ``repo@digest`` line each) or JSON; returns the exit code.

    The exit code is that of the first failing reference, 0 when all verified.
    """
    if output == "json":
        import json  # here: a warm verify printing text never loads it (docs/performance.md)

        out.write(json.dumps({"results": results}, indent=2, sort_keys=True) + "\n")
    else:
        for r in results:
            if r["verified"]:
                out.write(printable(r["pinned"]) + "\n")
                if r.get("tags"):  # a digest-only reference: which signed tags sign it
                    err.write(printable(f"tufoci: {r['pinned']} is signed as tag(s) {', '.join(r['tags'])}") + "\n")
    failures = [r for r in results if not r["verified"]]
    for r in failures:
        # issue 18: in a batch every line says which reference it is about
        message = r["error"]["message"]
        if len(results) > 1 and r["reference"] not in message:
            message = f"{r['reference']}: {message}"
        err.write(f"tufoci: error: {printable(message)}\n")
    return failures[0]["error"]["code"] if failures else 0
