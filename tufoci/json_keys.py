"""The one convention of ``-o json`` field names: lowerCamelCase (docs/cli.md).

``verify -o json`` (``mediaType``), the agent protocol (``checkRegistry``),
``status`` (``expiresIn``) and ``publish`` (``dryRun``) used it first, and
pipelines depend most on verify, so every other shape follows it. Keys that
are data rather than field names — role names in ``published``, a target's
``custom`` — are printed as the data says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELD_NAME = r"[a-z][a-zA-Z0-9]*"  # what the test of every command's JSON checks


def camel(name: str) -> str:
    """``root_sha256`` → ``rootSha256``; a name already in camelCase is unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The same fields under camelCase names (top level only: nested values are data or already named)."""
    return {camel(name): value for name, value in fields.items()}


def camel_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``dataclasses.asdict(obj, dict_factory=camel_fields)``: a dataclass's fields under camelCase names, all the
    way down; plain dicts inside (role → digest maps) are data and keep their keys."""
    return {camel(name): value for name, value in pairs}
