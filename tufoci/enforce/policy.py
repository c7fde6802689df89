"""The enforcement policy: which images must be signed by which trust repository.

Shared by every enforcement point (the admission webhook today, the verifying
mirror later), so nothing here knows about Kubernetes. A policy file is YAML::

    apiVersion: tufoci.dev/v1
    kind: AdmissionPolicy
    mode: enforce            # or warn: admit what would be denied, with a warning
    freshness: 60s           # W: trust data older than this fails closed (s, m, h; default 60s)
    trust:
      - scope: registry.example.com/acme          # a trust pin
        root: /etc/tufoci/roots/acme.json         # or rootSha256: <hex> (fetched from the registry, checked)
        metadata: registry.example.com/acme/tuf   # optional, default <scope>/tuf
        plainHTTP: false                          # optional (loopback registries default to plain HTTP)
        caFile: /etc/tufoci/ca.pem                # optional
    rules:
      - images: ["registry.example.com/acme/**"]  # anchored; '*' within one path component, '**' across
        scope: registry.example.com/acme
        mutate: true                              # rewrite tags to signed digests (default true)
        requiredRoles: []                         # each listed delegated role must sign the same digest
    exempt:
      - images: ["registry.k8s.io/**"]

Patterns are matched against the repository name normalised as containerd does
(``nginx`` is ``docker.io/library/nginx``), never against tags or digests, and
match the whole name: ``acme/*`` never matches ``acme/web/debug`` nor
``evil.example/acme/web``. Exemptions win over rules; among rules the first
match wins; an image matching nothing is denied (``no-policy``).

The verifying mirror (``tufoci mirror serve``, docs/mirror.md) reads the same
file, with ``kind: MirrorPolicy`` and a ``mirror:`` section naming the upstream
registries it fronts and where it reaches each one::

    mirror:
      upstreams:
        - name: registry.example.com      # the registry clients pull from (containerd's ?ns=)
          endpoint: 10.0.0.5:5000          # where the mirror fetches it (default: name)
          plainHTTP: false                 # optional, as under trust
          caFile: /etc/tufoci/ca.pem       # optional
      default: registry.example.com        # upstream of requests that name none (docker, skopeo)
      timeout: 30s                         # upstream read timeout (default 30s)

Every error names the file and the field, on one line; the CLI exits 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tufoci.errors import InvalidReferenceError, UsageError
from tufoci.reference import Reference, parse_repository
from tufoci.registry_config import TLSFlags

API_VERSION = "tufoci.dev/v1"
KINDS = ("AdmissionPolicy", "MirrorPolicy")
DEFAULT_UPSTREAM_TIMEOUT = 30.0
DEFAULT_FRESHNESS = 60.0
_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9._\-/:\[\]*]+$")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class PolicyError(UsageError):
    """The policy file is missing, not YAML, or has an invalid field (exit 2)."""


class Mode(str, Enum):
    ENFORCE = "enforce"
    WARN = "warn"


@dataclass(frozen=True)
class TrustEntry:
    """A trust pin as the policy states it, plus how to reach its registry."""

    scope: str
    root_file: str | None
    root_sha256: str | None
    metadata: str | None
    plain_http: bool | None
    ca_file: str | None

    def tls_flags(self) -> TLSFlags:
        """The entry's own ``plainHttp`` and ``caFile``, over the command's (``RegistryOptions.with_flags``)."""
        return TLSFlags(plain_http=self.plain_http, ca_file=self.ca_file or None)


@dataclass(frozen=True)
class ImagePattern:
    """An anchored image pattern and its compiled form."""

    text: str
    regex: re.Pattern[str]

    def matches(self, repository: str) -> bool:
        return self.regex.fullmatch(repository) is not None


@dataclass(frozen=True)
class Rule:
    """Images matching ``patterns`` must be signed in the trust repository of ``scope``."""

    patterns: tuple[ImagePattern, ...]
    scope: str
    mutate: bool = True
    required_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exemption:
    patterns: tuple[ImagePattern, ...]


@dataclass(frozen=True)
class Upstream:
    """A registry the mirror fronts: the ``name`` clients use, the ``endpoint`` the mirror fetches from."""

    name: str
    endpoint: str
    plain_http: bool | None
    ca_file: str | None


@dataclass(frozen=True)
class MirrorSection:
    """The ``mirror:`` section: upstreams by name, the default one, the upstream read timeout."""

    upstreams: tuple[Upstream, ...]
    default: str | None
    timeout: float

    def upstream(self, name: str) -> Upstream | None:
        return next((u for u in self.upstreams if u.name == name), None)


@dataclass(frozen=True)
class Policy:
    source: str
    mode: Mode
    freshness: float
    trust: tuple[TrustEntry, ...]
    rules: tuple[Rule, ...]
    exempt: tuple[Exemption, ...]
    mirror: MirrorSection | None = None

    def match(self, reference: Reference) -> Rule | Exemption | None:
        """What governs ``reference``: an exemption first, else the first matching rule, else None."""
        repository = str(reference.repository)
        for exemption in self.exempt:
            if any(p.matches(repository) for p in exemption.patterns):
                return exemption
        for rule in self.rules:
            if any(p.matches(repository) for p in rule.patterns):
                return rule
        return None

    def trust_for(self, scope: str) -> TrustEntry:
        return next(t for t in self.trust if t.scope == scope)


def compile_pattern(text: str) -> re.Pattern[str]:
    """An anchored regex: ``*`` is any run inside one path component, ``**`` any run across components.

    A ``**`` inside the registry name (``**.k8s.io/**``, ``registry.k8s.io**``)
    is refused: it would run across the ``/`` after the host and match
    ``evil.example/x.k8s.io/y`` or ``registry.k8s.io.evil.example/x``, names of
    registries the author never meant. ``*.k8s.io`` (one host) or a whole ``**``
    (any registry, said plainly) say what they match.

    Raises:
        ValueError: the pattern has characters no repository name has, ``***``, or ``**`` inside the host.
    """
    if not _PATTERN_CHARS.fullmatch(text) or "***" in text:
        raise ValueError(f"invalid image pattern {text!r}: use a repository name with '*' or '**'")
    host = text.split("/", 1)[0]
    if "**" in host and host != "**":
        raise ValueError(f"invalid image pattern {text!r}: '**' in the registry name also matches other registries "
                         "and paths; use '*' for one host label run (e.g. '*.example.com/**')")
    parts = []
    for index, piece in enumerate(text.split("**")):
        if index:
            parts.append(".*")
        parts.append("[^/]*".join(re.escape(chunk) for chunk in piece.split("*")))
    return re.compile("".join(parts))


def parse_duration(text: object) -> float:
    """``60s``, ``5m``, ``1h``, ``500ms`` or a number of seconds; must be positive.

    Raises:
        ValueError: not a positive duration.
    """
    match = _DURATION.fullmatch(str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a positive duration (e.g. 60s, 5m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def load_policy(path: str) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyError: unreadable, not YAML, or any invalid field (the message names file and field).
    """
    import yaml  # only the enforcement front ends need YAML

    try:
        with open(path, "rb") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise PolicyError(f"{path}: cannot read the policy: {e.strerror}") from e
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise PolicyError(f"{path}: not valid YAML{line}: {getattr(e, 'problem', None) or e}") from e
    return parse_policy(data, path)


def parse_policy(data: Any, source: str) -> Policy:
    """Validate a policy document already parsed from YAML or JSON.

    Raises:
        PolicyError: any invalid or unknown field.
    """
    fields = _Fields(source)
    doc = fields.mapping(data, "", {"apiVersion", "kind", "mode", "freshness", "trust", "rules", "exempt", "mirror"})
    if doc.get("apiVersion") != API_VERSION:
        fields.fail("apiVersion", f"must be {API_VERSION}, not {doc.get('apiVersion')!r}")
    if doc.get("kind") not in KINDS:
        fields.fail("kind", f"must be AdmissionPolicy or MirrorPolicy, not {doc.get('kind')!r}")
    try:
        mode = Mode(doc.get("mode", "enforce"))
    except ValueError:
        fields.fail("mode", f"must be enforce or warn, not {doc.get('mode')!r}")
    try:
        freshness = parse_duration(doc.get("freshness", DEFAULT_FRESHNESS))
    except ValueError as e:
        fields.fail("freshness", str(e))

    trust: list[TrustEntry] = []
    for i, entry in enumerate(fields.sequence(doc.get("trust", []), "trust")):
        where = f"trust[{i}]"
        item = fields.mapping(entry, where, {"scope", "root", "rootSha256", "metadata", "plainHTTP", "caFile"})
        scope = fields.scope(item.get("scope"), f"{where}.scope")
        if scope in (t.scope for t in trust):
            fields.fail(f"{where}.scope", f"{scope} is pinned twice")
        root, sha = item.get("root"), item.get("rootSha256")
        if (root is None) == (sha is None):
            fields.fail(where, "needs exactly one of root (a file) or rootSha256")
        if sha is not None and not re.fullmatch(r"(sha256:)?[0-9a-f]{64}", str(sha)):
            fields.fail(f"{where}.rootSha256", "must be 64 lowercase hex digits")
        metadata = item.get("metadata")
        if metadata is not None:
            metadata = fields.scope(metadata, f"{where}.metadata")
        plain = item.get("plainHTTP")
        if plain is not None and not isinstance(plain, bool):
            fields.fail(f"{where}.plainHTTP", "must be true or false")
        trust.append(TrustEntry(scope, None if root is None else fields.string(root, f"{where}.root"),
                                None if sha is None else str(sha).removeprefix("sha256:"), metadata, plain,
                                None if item.get("caFile") is None else fields.string(item["caFile"], f"{where}.caFile")))

    scopes = {t.scope for t in trust}
    rules = []
    for i, entry in enumerate(fields.sequence(doc.get("rules", []), "rules")):
        where = f"rules[{i}]"
        item = fields.mapping(entry, where, {"images", "scope", "mutate", "requiredRoles"})
        scope = fields.scope(item.get("scope"), f"{where}.scope")
        if scope not in scopes:
            fields.fail(f"{where}.scope", f"{scope} has no entry under trust")
        patterns = fields.patterns(item.get("images"), f"{where}.images")
        for p in patterns:
            literal = re.split(r"\*", p.text, maxsplit=1)[0]
            if not literal.startswith(scope + "/"):
                fields.fail(f"{where}.images", f"{p.text!r} is not inside the scope {scope} (write {scope}/…)")
        mutate = item.get("mutate", True)
        if not isinstance(mutate, bool):
            fields.fail(f"{where}.mutate", "must be true or false")
        roles = fields.sequence(item.get("requiredRoles", []), f"{where}.requiredRoles")
        rules.append(Rule(patterns, scope, mutate,
                          tuple(fields.string(r, f"{where}.requiredRoles[{j}]") for j, r in enumerate(roles))))

    exempt = []
    for i, entry in enumerate(fields.sequence(doc.get("exempt", []), "exempt")):
        item = fields.mapping(entry, f"exempt[{i}]", {"images"})
        exempt.append(Exemption(fields.patterns(item.get("images"), f"exempt[{i}].images")))
    mirror = None if doc.get("mirror") is None else _mirror_section(fields, doc["mirror"])
    if doc.get("kind") == "MirrorPolicy" and mirror is None:
        fields.fail("mirror", "a MirrorPolicy needs a mirror section (its upstreams)")
    return Policy(source, mode, freshness, tuple(trust), tuple(rules), tuple(exempt), mirror)


def _mirror_section(fields: _Fields, value: Any) -> MirrorSection:
    """The ``mirror:`` section; upstream names are registry hosts as containerd's ``?ns=`` sends them."""
    section = fields.mapping(value, "mirror", {"upstreams", "default", "timeout"})
    upstreams: list[Upstream] = []
    for i, entry in enumerate(fields.sequence(section.get("upstreams", []), "mirror.upstreams")):
        where = f"mirror.upstreams[{i}]"
        item = fields.mapping(entry, where, {"name", "endpoint", "plainHTTP", "caFile"})
        name = fields.host(item.get("name"), f"{where}.name")
        if any(u.name == name for u in upstreams):
            fields.fail(f"{where}.name", f"{name} is listed twice")
        endpoint = fields.host(item.get("endpoint", name), f"{where}.endpoint")
        plain = item.get("plainHTTP")
        if plain is not None and not isinstance(plain, bool):
            fields.fail(f"{where}.plainHTTP", "must be true or false")
        ca_file = None if item.get("caFile") is None else fields.string(item["caFile"], f"{where}.caFile")
        upstreams.append(Upstream(name, endpoint, plain, ca_file))
    if not upstreams:
        fields.fail("mirror.upstreams", "must list at least one upstream registry")
    default = section.get("default")
    if default is not None and default not in (u.name for u in upstreams):
        fields.fail("mirror.default", f"{default!r} is not the name of an upstream")
    try:
        timeout = parse_duration(section.get("timeout", DEFAULT_UPSTREAM_TIMEOUT))
    except ValueError as e:
        fields.fail("mirror.timeout", str(e))
    return MirrorSection(tuple(upstreams), default, timeout)


class _Fields:
    """Checks of one field at a time, failing with ``FILE: field PATH: problem``."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, problem: str):
        raise PolicyError(f"{self.source}: field {field or '(document)'}: {problem}")

    def mapping(self, value: Any, field: str, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            self.fail(field, f"must be a mapping, not {type(value).__name__}")
        unknown = sorted(set(map(str, value)) - allowed)
        if unknown:
            self.fail(f"{field}.{unknown[0]}" if field else unknown[0], f"unknown field (known: {', '.join(sorted(allowed))})")
        return value

    def sequence(self, value: Any, field: str) -> list:
        if not isinstance(value, list):
            self.fail(field, f"must be a list, not {type(value).__name__}")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(field, "must be a non-empty string")
        return value

    def scope(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        try:
            normalised = str(parse_repository(text))
        except InvalidReferenceError as e:
            self.fail(field, str(e))
        if normalised != text:
            self.fail(field, f"write the normalised name {normalised!r}")
        return normalised

    def host(self, value: Any, field: str) -> str:
        """A registry host (``name[:port]``), as the first component of a normalised reference."""
        text = self.string(value, field)
        try:
            registry = parse_repository(f"{text}/x").registry
        except InvalidReferenceError as e:
            self.fail(field, str(e))
        if registry != text:
            self.fail(field, f"write the registry host as {registry!r}")
        return text

    def patterns(self, value: Any, field: str) -> tuple[ImagePattern, ...]:
        items = self.sequence(value, field)
        if not items:
            self.fail(field, "must list at least one pattern")
        compiled = []
        for j, text in enumerate(items):
            text = self.string(text, f"{field}[{j}]")
            try:
                compiled.append(ImagePattern(text, compile_pattern(text)))
            except ValueError as e:
                self.fail(f"{field}[{j}]", str(e))
        return tuple(compiled)
