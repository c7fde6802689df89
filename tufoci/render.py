"""Text for people: every line the maintainer commands print, in one place.

The library returns data (the dicts of ``-o json``, result objects); this
module words it, so a change of wording is a change of this file alone and
the JSON shapes never move with it. Functions return ``Line``s (a text and
whether it goes to stderr) and print nothing; the CLI escapes and prints
them (``cli._echo``). No I/O, no click.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tufoci.repo_tool.copy import CopyReport
    from tufoci.repo_tool.freshness import Refreshed
    from tufoci.repo_tool.publish import PublishResult
    from tufoci.repo_tool.sessions import Review
    from tufoci.repo_tool.staging import BinsDelegation, DelegationAdd, KeyChange, Renewal, TargetAdd, Undelegation


@dataclass(frozen=True)
class Line:
    text: str
    err: bool = False  # stderr: messages for people, where stdout carries data


# -- what a proposal changes (repo_tool/review.py ``describe`` entries) -----------------------------
def _short(value: Any, limit: int = 120) -> str:
    """A value for one line of text; a long one keeps a hash of the whole so two values never look alike."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 40]}… [{len(text)} chars, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}]"


def _key_text(summary: dict | None) -> str:
    if summary is None:
        return "none"
    return f"{summary['keytype']}/{summary['scheme']} {_short(summary['public'])}"


def change_line(c: dict) -> str:
    """One line of text for one ``describe`` entry (what ``status`` and ``sign`` print)."""
    kind = c["kind"]
    if kind == "target":
        mark = {"added": "+", "removed": "-", "changed": "~"}[c["change"]]
        was = f" (was {c['from']})" if c.get("from") else ""
        return f"{mark} {c['target']} {c['digest']}{was}"
    if kind == "delegation":
        if c["change"] == "removed":
            return f"- delegation {c['role']}"
        detail = (f"paths {_short(c.get('paths'))}" if c.get("pathHashPrefixes") is None
                  else f"hash prefixes {_short(c.get('pathHashPrefixes'))}")
        detail += (f", threshold {c.get('threshold')}, keys {', '.join(map(str, c.get('keyids') or []))}"
                   f"{', terminating' if c.get('terminating') else ''}")
        was = "; was " + ", ".join(f"{k} {_short(v)}" for k, v in c["from"].items()) if c.get("from") else ""
        return f"{c['change']} delegation {c['role']}: {detail}{was}"
    if kind == "key":
        where = "root" if c["in"] == "root" else "delegations"
        if c["change"] == "changed":  # key ids in full: a look-alike id must not pass for the old one
            before, after = c["from"] or {}, c["to"] or {}
            fields = ", ".join(f"{f} {_short(before.get(f))} → {_short(after.get(f))}"
                               for f in ("keytype", "scheme", "public") if before.get(f) != after.get(f))
            return f"! key {c['keyid']} ({where}): DIFFERENT KEY under the same key id: {fields}"
        mark = "+" if c["change"] == "added" else "-"
        return f"{mark} key {c['keyid']} ({where}): {_key_text(c['to'] or c['from'])}"
    if kind == "root-role":
        threshold = (f"threshold {c['fromThreshold']} → {c['threshold']}" if c["fromThreshold"] != c["threshold"]
                     else f"threshold {c['threshold']}")
        added = "".join(f", +key {k}" for k in c["addedKeys"])
        removed = "".join(f", -key {k}" for k in c["removedKeys"])
        return f"root role {c['role']}: {threshold}{added}{removed}"
    if kind in ("expires", "version"):
        return f"{kind} {c['from']} → {c['to']}"
    if kind == "expiry-period":
        return f"expiry period of {c['role']} {c['from']} → {c['to']}"
    if kind == "delegation-order":
        return f"delegation search order {', '.join(c['from'])} → {', '.join(c['to'])}"
    old = _short(c["from"]) if "from" in c else "(absent)"
    new = _short(c["to"]) if "to" in c else "(absent)"
    return f"field {c['field']} {c['change']}: {old} → {new}"


# -- status, sign: proposals, staged changes, next steps -------------------------------------------
def proposal_lines(p: dict, *, names: dict[str, str] | None = None, err: bool = False) -> list[Line]:
    """A proposal as ``status`` shows it (a ``sessions.Review.to_dict``): its fingerprint, every change, its
    signatures and thresholds.

    Key ids in changes stay in full (a look-alike id must not pass for another); the catalogue's name
    for a key follows its id, so a reviewer reads "+key 3f9c… (carol)".
    """
    from tufoci.repo_tool.proposals import ProposalState

    def named(line: str) -> str:
        for keyid, name in (names or {}).items():
            line = line.replace(keyid, f"{keyid} ({name})")
        return line

    if p.get("held"):
        state = f"signed, but {p['held']}"
    elif ProposalState.of(p["complete"], p.get("held")) is ProposalState.COMPLETE:
        state = "complete: the online service makes it live"
    else:
        state = "needs signatures"
    lines = [f"proposal {p['role']} v{p['version']} by {p['proposer']} ({state})", f"    fingerprint {p['fingerprint']}"]
    lines += [f"    {named(change_line(c))}" for c in p["changes"]]
    if not p["changes"]:
        lines.append("    (identical to the live version)")
    lines += [f"    {'✓' if sig['counted'] else '✗'} {sig['key'] or sig['keyid'][:16]}: {sig['reason']}"
              for sig in p["signatures"]]
    for t in p["thresholds"]:
        missing = ", ".join(m["key"] or m["keyid"][:16] for m in t["missing"])
        more = max(0, t["need"] - t["have"])
        line = (f"    {t['label']}: {t['have']} of {t['need']} signatures" if t["have"] <= t["need"]
                else f"    {t['label']}: {t['have']} signatures, {t['need']} needed")
        if more:
            line += f", {more} more needed from: {missing}"
        lines.append(line)
    return [Line(text, err) for text in lines]


def staged_line(c: dict) -> str:
    """One staged change as ``status`` lists it (a ``status -o json`` ``staged`` entry)."""
    if c["action"] in ("delegate", "undelegate"):
        return f"{'+' if c['action'] == 'delegate' else '-'} delegation {c['target']}"
    if c["action"] == "rotate":
        return f"~ keys of {c['target']}"
    if c["action"] == "renew":
        return f"~ renew {c['target']} (same content, fresh expiry)"
    return f"{'+' if c['action'] == 'add' else '-'} {c['target']}  {c['digest'] or ''}"


def step_line(role: str, step: dict) -> str:
    """One line of ``status`` text: ``next for targets: sign — bob, carol: tufoci sign …``."""
    who = ", ".join(step["who"]) or "nobody yet"
    line = f"next for {role}: {step['action']} — {who}"
    if step.get("why"):
        line += f" ({step['why']})"
    return line + (f": {step['command']}" if step.get("command") else "")


def expiry_warning(role: str, version: int, warning: str, expires: str | datetime.datetime, advice: str) -> str:
    """A role that expired or expires soon, and what to do (``status``, ``timestamp``, the online service)."""
    if isinstance(expires, datetime.datetime):
        expires = f"{expires:%Y-%m-%dT%H:%M:%SZ}"
    return f"{role} v{version} {warning} ({expires}): {advice}"


def expiry_warnings(report: dict) -> list[Line]:
    """``tufoci: warning:`` lines of ``status`` for roles that expired or expire soon."""
    return [Line(f"tufoci: warning: {expiry_warning(r['role'], r['version'], r['warning'], r['expires'], r['advice'])}",
                 True) for r in report.get("roles", []) if r["warning"]]


def refreshed_lines(result: Refreshed) -> list[Line]:
    """What ``tufoci timestamp`` (once) did, and the roles that need renewing."""
    lines = [Line(f"timestamp v{result.timestamp_version} expires {result.timestamp_expires:%Y-%m-%dT%H:%M:%SZ}"
                  + (f"; snapshot v{result.snapshot_version}" if result.snapshot_resigned else ""))]
    return lines + [Line(f"tufoci: warning: {expiry_warning(w.role, w.version, w.warning, w.expires, w.advice)}", True)
                    for w in result.warnings]


def status_lines(report: dict, *, names: dict[str, str]) -> list[Line]:
    """``tufoci status`` as text, from the report ``-o json`` prints (``inspect.scope_status``)."""
    lines = [f"scope {report['scope']} (metadata {report['metadata']})"]
    if report.get("error"):
        lines.append(f"  could not refresh: {report['error']}")
    if report.get("awaitingFirstSignatures"):
        lines.append("  awaiting its first signatures: nothing is live until version 1 of every role is complete")
    width = max([len(r["role"]) for r in report.get("roles", [])] + [10])
    lines += [f"  {role['role']:<{width}} v{role['version']:<4} expires {role['expires']} "
              f"({role['expiresIn']})  threshold {role['threshold']} of {role['keys']}"
              for role in report.get("roles", [])]
    staged = report["staged"]
    if not staged:
        lines.append("nothing staged")
    else:
        lines.append(f"staged ({len(staged)}):")
        lines += [f"  {staged_line(c)}  [{c['role']}]" for c in staged]
    out = [Line(text) for text in lines]
    for p in report.get("proposals", []):
        out += proposal_lines(p, names=names)
    out += [Line(f"ignored {i['tag']}: {i['reason']}") for i in report.get("ignoredProposals", [])]
    out += [Line(step_line(step["role"], step)) for step in report.get("next", [])]
    if "next" in report and not report["next"]:
        out.append(Line("next: nothing to do (no proposal open, nothing staged, no role close to expiry)"))
    return out


def sign_question(review: Review) -> str:
    """What ``tufoci sign`` asks on a terminal before it signs a proposal it showed."""
    from tufoci.repo_tool.review import fingerprint

    p = review.proposal
    return f"Sign {p.role} v{p.version} (fingerprint {fingerprint(p.signed_digest)})?"


def signed_lines(done: list, scope: str, names: dict[str, str]) -> list[Line]:
    """What ``tufoci sign`` did: (``sessions.Review``, key ids) pairs."""
    lines = [] if done else [Line("none of this machine's keys can sign an open proposal", True)]
    for item, keyids in done:
        who = ", ".join(names.get(k, k[:12]) for k in keyids)
        lines.append(Line(f"signed {item.proposal.role} v{item.proposal.version} with {who}"))
    lines.append(Line(f"see 'tufoci status {scope}'; the online service (or 'tufoci publish {scope}' where the "
                      f"online key is) makes complete proposals live", True))
    return lines


# -- publish ------------------------------------------------------------------------------------------
def publish_lines(result: PublishResult, *, dry_run: bool, poll: int = 30,
                  names: dict[str, str] | None = None) -> list[Line]:
    """What a publish did (or, ``dry_run``, would do); ``poll``: how soon the online service promotes.
    With ``names``, first the dry run's "would sign" lines."""
    from tufoci.repo_tool.proposals import ProposalState

    lines = [Line(f"would sign {role} v{info['version']} with "
                  f"{', '.join((names or {}).get(k, k[:12]) for k in info['keyids'])}")
             for role, info in result.would_sign.items()] if names is not None else []
    verb = "would publish" if dry_run else "published"
    if result.published:
        versions = ", ".join(f"{role} v{v}" for role, v in result.published.items())
        lines.append(Line(f"{verb} to {result.scope}: {versions}"))
    for role, proposed in result.proposed.items():
        if proposed.state is ProposalState.AWAITING_ONLINE_KEY:
            lines.append(Line(f"{role} v{proposed.version} complete; goes live within {poll} s (online service)"))
            continue
        counts = "; ".join(f"{t.have} of {t.need} signatures ({t.label})" if t.have <= t.need
                           else f"{t.have} signatures, {t.need} needed ({t.label})" for t in proposed.thresholds)
        held = f" — complete, {proposed.held}" if proposed.held else ""
        folded = (f" (replaces the open v{result.folded[role]}: its signers must sign again)"
                  if role in result.folded else "")
        lines.append(Line(f"{'would propose' if dry_run else 'proposed'} {role} v{proposed.version}: "
                          f"{counts}{held}{folded}"))
        if not dry_run and any(t.have < t.need for t in proposed.thresholds):
            lines.append(Line(f"  other maintainers: tufoci sign {result.scope} {role}", True))
    if result.awaiting_first_version:
        lines.append(Line(f"delegated to {', '.join(result.awaiting_first_version)}: each team's first "
                          f"'tufoci publish' creates its metadata", True))
    lines += [Line(f"tufoci: warning: ignored {i.tag}: {i.reason}", True) for i in result.ignored]
    lines += [Line(f"queued: your changes to {role} stay staged until the open proposal {role} v{version} goes "
                   f"live; then this machine's next 'tufoci publish {result.scope}' proposes them ('tufoci status' says "
                   "when); 'tufoci publish --fold' puts them into it now", True) for role, version in result.queued.items()]
    if result.waiting_for_online_key:
        lines.append(Line("this machine does not hold the online key: the online service ('tufoci online-service') "
                          "publishes it", True))
    return lines


def published_before_error(results: list[PublishResult]) -> list[Line]:
    """After a failed publish of several scopes: which ones went live first."""
    return [Line(f"published {result.scope} before the error: "
                 + ", ".join(f"{role} v{v}" for role, v in result.published.items()), True) for result in results]


# -- staging commands ------------------------------------------------------------------------------
def staged_target_lines(changes: list[TargetAdd]) -> list[Line]:
    return [Line(f"staged {c.name} {c.digest} ({c.length} bytes) in {c.scope}") for c in changes]


def bins_line(change: BinsDelegation) -> str:
    """What ``tufoci delegate --bins`` staged."""
    return f"staged: targets delegates every target to {2 ** change.bit_length} hashed bins {change.name}-*"


def delegation_line(change: DelegationAdd) -> str:
    """What ``tufoci delegate`` staged."""
    return (f"staged: {change.role} delegates {', '.join(change.paths)} to {change.name} "
            f"({change.threshold} of {len(change.keys)} keys{', terminating' if change.terminating else ''})")


def undelegation_line(change: Undelegation) -> str:
    return f"staged: {change.role} no longer delegates to {change.name}"


def rotation_line(change: KeyChange, scope_text: str) -> str:
    """What ``tufoci rotate`` staged (``scope_text`` as the user wrote it, for the command to run next)."""
    return (f"staged in {change.role}: {change.name} +{len(change.add)} key(s), -{len(change.remove)} key(s)"
            + (f", threshold {change.threshold}" if change.threshold else "") + f"; run 'tufoci publish {scope_text}'")


def renewal_line(change: Renewal) -> str:
    return (f"staged: renew {change.name} in {change.scope}" + (f" (expires in {change.expires})" if change.expires else "")
            + f"; run 'tufoci publish {change.scope}'")


def discarded_line(role: str, found: list[tuple[str, str]]) -> str:
    """What ``tufoci discard`` abandoned: (tag, whose it was) pairs, or only local staged changes."""
    return f"discarded {role}" + (f" ({', '.join(f'{tag}, proposed by {who}' for tag, who in found)})"
                                  if found else " (local staged changes)")


def signed_target_line(row: dict) -> str:
    """One signed target as ``tufoci target list`` shows it (an ``inspect.signed_targets`` row)."""
    return f"{row['target']:<40} {row['digest']}"


# -- copy, export ----------------------------------------------------------------------------------
def copy_line(report: CopyReport) -> str:
    return (f"copied {report.images} image(s) and {report.metadata_tags} metadata tag(s) to {report.destination}: "
            f"{report.manifests_copied} manifests ({report.manifests_skipped} already there), "
            f"{report.blobs_copied} blobs streamed ({report.bytes_copied} bytes), {report.blobs_mounted} mounted, "
            f"{report.blobs_skipped} already there")


def export_line(written: list[str], directory: str, scope_text: str) -> str:
    return (f"wrote {len(written)} files to {directory}; serve them and pin with "
            f"'tufoci trust add {scope_text} --root ROOT --metadata https://HOST/PATH/'")
