"""The translation plan of a verified Notary collection: what tufoci would sign, and what it could not carry.

- GUN ``registry/ns/repo`` → scope ``registry/ns`` (or one given) and the repository path ``repo`` below it;
  each tag → target ``repo:tag`` with the digest (hex of Notary's base64 sha256) and the length.
- Which role answers for a tag depends on the client, and the two Notary clients disagree:
  ``dct`` — ``docker pull`` with content trust (docker/cli ``image/trust.go``): Notary's ``GetTargetByName(tag,
  "targets/releases", "targets")`` walks the ``targets/releases`` subtree, then ``targets`` without that subtree,
  and docker refuses any answer from a role other than those two; ``notary`` — ``notary lookup``: ``targets``
  first, then the delegations breadth-first, the first role whose paths cover the tag and that lists it.
  Every tag whose answer differs between the two is reported as a conflict, whatever semantics is chosen.
- Each tag lands in exactly one tufoci role, the one that answered: tufoci's own resolution (targets first,
  then delegations in order) then gives the same digest for every tag.
- Delegations keep their keys (x509 certificates → public keys), thresholds and paths; a Notary path is a
  *prefix* of the tag, which becomes the fnmatch pattern ``<repo>:<prefix, metacharacters escaped>*``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from cryptography.x509.oid import NameOID
from securesystemslib.signer import SSlibKey

from tufoci.errors import UsageError
from tufoci.json_keys import camel_fields
from tufoci.reference import TAG_RE, Repository, parse_repository
from tufoci.repo_tool.notary_format import NotaryKey
from tufoci.repo_tool.notary_verify import Collection

UNPUBLISHED = ("carry", "drop")  # what becomes of a delegation declared but never published
SEMANTICS = ("dct", "notary")
RELEASES = "targets/releases"
_FNMATCH_SPECIAL = re.compile(r"([*?\[])")


def escape_fnmatch(text: str) -> str:
    """``text`` as an fnmatch pattern matching only itself: ``*``, ``?`` and ``[`` become ``[*]``, ``[?]``, ``[[]``."""
    return _FNMATCH_SPECIAL.sub(r"[\1]", text)


def prefix_pattern(repository: str, prefix: str) -> str:
    """The tufoci path pattern matching exactly the targets ``repository:TAG`` whose TAG starts with ``prefix``.

    python-tuf matches patterns per ``/``-separated component; a tag has no ``/``, so a trailing ``*`` stays
    inside the tag, and a prefix containing ``/`` (which no tag can start with) gives a pattern with more
    components than any target name: it matches nothing, as the prefix does.
    """
    return f"{escape_fnmatch(repository)}:{escape_fnmatch(prefix)}*"


def tufoci_role_name(repository: str, notary_role: str) -> str:
    """``targets/releases`` of ``web`` → ``web/releases``: one role per repository and Notary role;
    ``targets`` stays ``targets``."""
    if notary_role == "targets":
        return notary_role
    return f"{repository}/{notary_role.removeprefix('targets/')}"


@dataclass(frozen=True)
class Answer:
    role: str
    sha256: str
    length: int


@dataclass
class TagPlan:
    tag: str
    target: str
    digest: str
    length: int
    notary_role: str
    role: str  # the tufoci role that will list it


@dataclass
class KeyPlan:
    notary_keyid: str
    notary_keytype: str
    keyid: str  # the TUF key id tufoci will use
    keytype: str
    scheme: str
    public_pem: str
    certificate_cn: str | None


@dataclass
class DelegationPlan:
    notary_role: str
    role: str
    parent: str
    threshold: int
    keys: list[KeyPlan]
    notary_paths: list[str]
    patterns: list[str]
    published: bool
    tags: int


@dataclass
class Conflict:
    tag: str
    dct: Answer | None
    notary: Answer | None
    listed_in: dict[str, str]  # role → digest, every role that lists the tag


@dataclass
class CollectionPlan:
    gun: str
    scope: str
    repository: str
    semantics: str
    root_version: int
    root_sha256: str
    tags: list[TagPlan] = field(default_factory=list)
    delegations: list[DelegationPlan] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self, dict_factory=camel_fields)  # -o json: camelCase (docs/cli.md)


# -- resolution ---------------------------------------------------------------------------------------------
def _walk(collection: Collection, start: str, tag: str, skip: frozenset[str] = frozenset()) -> Answer | None:
    """Notary's WalkTargets from ``start``: breadth-first, skipping ``skip`` subtrees and roles not covering tag."""
    queue = [start] if start in collection.roles else []
    while queue:
        role = collection.roles[queue.pop(0)]
        if role.name in skip or not role.covers(tag):
            continue
        if tag in role.targets:
            target = role.targets[tag]
            return Answer(role.name, target.sha256, target.length)
        queue.extend(role.children)
    return None


def resolve(collection: Collection, tag: str, semantics: str) -> Answer | None:
    """The answer a ``semantics`` client gets for ``tag``; None when it would refuse or find nothing."""
    if semantics == "notary":
        return _walk(collection, "targets", tag)
    for start, skip in ((RELEASES, frozenset()), ("targets", frozenset({RELEASES}))):
        answer = _walk(collection, start, tag, skip)
        if answer is not None:
            # docker/cli image/trust.go: an answer from any other delegation is "no trust data"
            return answer if answer.role in (RELEASES, "targets") else None
    return None


# -- keys ---------------------------------------------------------------------------------------------------
def key_plan(key: NotaryKey) -> KeyPlan:
    """The TUF public key of a Notary key (an x509 certificate becomes its public key).

    Raises:
        UsageError: a key TUF has no scheme for (an EC curve other than P-256/P-384).
    """
    try:
        # RSA keys get rsassa-pss-sha256, the scheme Notary's rsapss signatures use
        tuf_key = SSlibKey.from_crypto(key.public_key)
    except ValueError as exc:
        raise UsageError(f"Notary key {key.keyid} ({key.keytype}) has no TUF equivalent: {exc}") from exc
    cn = None
    if key.certificate is not None:
        names = key.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(names[0].value) if names else None
    return KeyPlan(key.keyid, key.keytype, tuf_key.keyid, tuf_key.keytype, tuf_key.scheme,
                   tuf_key.keyval["public"], cn)


# -- the plan -----------------------------------------------------------------------------------------------
def split_gun(gun: str, scope: str | None = None) -> tuple[Repository, str]:
    """GUN → (scope, repository path below it). Default scope: the GUN's parent path.

    Raises:
        UsageError: the GUN is not an image repository name, or lies outside ``scope``.
    """
    repository = parse_repository(gun)
    if scope is not None:
        scope_repo = parse_repository(scope)
    else:
        parent, sep, _ = repository.path.rpartition("/")
        if not sep:
            raise UsageError(f"GUN {gun!r} has no namespace to use as the scope: give --scope")
        scope_repo = Repository(repository.registry, parent)
    relative = repository.relative_to(scope_repo)
    if relative is None:
        raise UsageError(f"GUN {gun!r} is not inside the scope {scope_repo}")
    return scope_repo, relative


def make_plan(
    collection: Collection, semantics: str = "dct", scope: str | None = None, unpublished: str = "carry"
) -> CollectionPlan:
    """Translate a verified collection under ``semantics``; report every tag the two semantics disagree on.

    A delegation declared but never published is carried over empty (its delegates can publish into it later,
    as they could in Notary) or, with ``unpublished="drop"``, left out; a warning says which, either way.

    Raises:
        UsageError: unknown semantics or ``unpublished``, or a GUN that is not an image repository under the scope.
    """
    if semantics not in SEMANTICS:
        raise UsageError(f"unknown semantics {semantics!r}: dct or notary")
    if unpublished not in UNPUBLISHED:
        raise UsageError(f"unknown choice for unpublished delegations {unpublished!r}: carry or drop")
    scope_repo, relative = split_gun(collection.gun, scope)
    plan = CollectionPlan(
        collection.gun, str(scope_repo), relative, semantics, collection.root_version, collection.root_sha256,
        warnings=list(collection.warnings), expired=list(collection.expired),
    )
    names = sorted({name for role in collection.roles.values() for name in role.targets})
    per_role: dict[str, int] = {}
    for name in names:
        answers = {s: resolve(collection, name, s) for s in SEMANTICS}
        listed = {r.name: r.targets[name].sha256 for r in collection.roles.values() if name in r.targets}
        if answers["dct"] != answers["notary"]:
            plan.conflicts.append(Conflict(name, answers["dct"], answers["notary"], listed))
        chosen = answers[semantics]
        if not TAG_RE.fullmatch(name):
            plan.skipped.append(f"{name!r}: not a valid image tag")
            continue
        if chosen is None:
            plan.skipped.append(f"{name!r}: no answer under {semantics} semantics (listed in {', '.join(listed)})")
            continue
        role = tufoci_role_name(relative, chosen.role)
        per_role[chosen.role] = per_role.get(chosen.role, 0) + 1
        plan.tags.append(TagPlan(name, f"{relative}:{name}", f"sha256:{chosen.sha256}", chosen.length,
                                 chosen.role, role))
    for notary_role in collection.roles.values():
        if notary_role.parent is None:
            continue
        if not notary_role.published:
            verb = "carried over empty" if unpublished == "carry" else "dropped (--unpublished drop)"
            plan.warnings.append(f"{notary_role.name}: declared but never published; {verb}")
            if unpublished == "drop":
                continue
        plan.delegations.append(DelegationPlan(
            notary_role.name, tufoci_role_name(relative, notary_role.name),
            tufoci_role_name(relative, notary_role.parent), notary_role.threshold,
            [key_plan(k) for k in notary_role.keys.values()], list(notary_role.paths or []),
            [prefix_pattern(relative, p) for p in notary_role.paths or []], notary_role.published,
            per_role.get(notary_role.name, 0),
        ))
    return plan
