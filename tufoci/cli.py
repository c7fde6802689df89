"""The ``tufoci`` command line: a thin click layer over the library.

Every command parses its options, calls one library function and renders the
result: text for people, ``-o json`` (a stable, documented shape) for
pipelines. Data goes to stdout, messages to stderr. One place (``main``) turns
a ``TufociError`` into a one-line message and its exit code; ``-v`` adds the
traceback.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from tufoci import __version__
from tufoci.budget import VERIFY_TIMEOUT, parse_seconds
from tufoci.errors import SigningKeyError, TufociError, UsageError
from tufoci.json_keys import camel_keys
from tufoci.safe_text import printable

_VERBOSE = False


# -- shared options -------------------------------------------------------------
def output_option(f: Callable) -> Callable:
    return click.option(
        "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
        help="Output format (json is stable, see docs/cli.md).",
    )(f)


MAINTAINER_TIMEOUT = "10m"  # init, target add, publish, copy …: many requests, signing prompts excluded below


def registry_options(f: Callable | None = None, *, timeout: str = MAINTAINER_TIMEOUT,
                     per_request: bool = False) -> Callable:
    """The options of every command that talks to a registry, ``--timeout`` among them.

    ``--timeout DUR`` (or ``TUFOCI_TIMEOUT``) is the command's overall budget: every
    connect, read, retry and wait for the cache lock comes out of it (``tufoci.budget``),
    and running out is exit 13 naming what was waited for. Long-running commands
    (``per_request``: the agent, ``timestamp --every``) get the seconds as ``timeout``
    and apply them to each request or round instead.
    """
    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def run(*args: Any, timeout: str, **kwargs: Any) -> Any:
            seconds = parse_seconds(timeout)  # shared with the verify fast path (tufoci/entry.py)
            if per_request:
                return f(*args, timeout=seconds, **kwargs)
            from tufoci.budget import budget

            with budget(seconds):
                return f(*args, **kwargs)

        run = click.option("--timeout", default=timeout, show_default=True, envvar="TUFOCI_TIMEOUT", metavar="DUR",
                           help="Give up (exit 13) after DUR in all (e.g. 30s, 5m; $TUFOCI_TIMEOUT)"
                                + (" per request." if per_request else "."))(run)
        run = click.option("--plain-http", is_flag=True, default=None,
                           help="Use HTTP, not HTTPS (default only for localhost/127.0.0.1).")(run)
        run = click.option("--insecure", is_flag=True, help="Do not verify the registry's TLS certificate.")(run)
        return click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                            help="CA bundle for a registry with a private CA.")(run)

    return decorate if f is None else decorate(f)


def _registry_kwargs(plain_http: bool | None, insecure: bool, ca_file: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if plain_http:
        options["plain_http"] = True
    if insecure:
        options["insecure"] = True
    if ca_file:
        options["ca_file"] = ca_file
    return options


def password_stdin_option(f: Callable) -> Callable:
    return click.option("--password-stdin", is_flag=True,
                        help="Read the key passphrase from standard input.")(f)


def _secrets_handler(password_stdin: bool) -> Callable[[str], str]:
    """Passphrases: TUFOCI_PASSPHRASE[_<KEY>], then stdin if asked, then a prompt on a terminal."""
    from tufoci.keys import env_secrets_handler

    cached: dict[str, str] = {}

    def fallback(prompt: str) -> str:
        if password_stdin:
            if "stdin" not in cached:
                cached["stdin"] = sys.stdin.readline().rstrip("\r\n")
            return cached["stdin"]
        if not sys.stdin.isatty():
            raise SigningKeyError(f"no passphrase: set TUFOCI_PASSPHRASE or use --password-stdin ({prompt})")
        return click.prompt(prompt.capitalize(), hide_input=True, err=True)

    return env_secrets_handler(fallback)


def _state():
    from tufoci.state import State

    return State.open()


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))  # json.dumps escapes every control character


def _echo(text: str = "", *, err: bool = False) -> None:
    """Print one line for people. Names in it may come from a registry: control characters are
    escaped (tufoci.safe_text), so no answer can move the cursor or add a line."""
    click.echo(printable(text), err=err)


# -- the group ------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks.")
@click.option("--home", envvar="TUFOCI_HOME", type=click.Path(file_okay=False),
              help="State directory (default ~/.tufoci, or $TUFOCI_HOME).")
@click.version_option(__version__, package_name="tufoci")  # given: looking it up costs importlib.metadata
def cli(verbose: bool, home: str | None) -> None:
    """Sign and verify container images with TUF metadata stored in the registry."""
    global _VERBOSE
    _VERBOSE = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if home:
        os.environ["TUFOCI_HOME"] = os.path.abspath(home)


# -- keys -------------------------------------------------------------------------
@cli.group()
def key() -> None:
    """Generate, import, list and export signing keys."""


@key.command("generate")
@click.argument("name")
@click.option("--type", "keytype", type=click.Choice(["ed25519", "ecdsa-p256"]), default="ed25519", show_default=True)
@click.option("--unencrypted", is_flag=True, help="Store the private key unencrypted (online keys for unattended use).")
@password_stdin_option
@output_option
def key_generate(name: str, keytype: str, unencrypted: bool, password_stdin: bool, output: str) -> None:
    """Generate a key pair; the private key is stored encrypted, mode 0600."""
    from tufoci.keys import PASSPHRASE_ENV, generate_key

    passphrase = None
    if not unencrypted:
        if PASSPHRASE_ENV in os.environ:
            passphrase = os.environ[PASSPHRASE_ENV]
        elif password_stdin:
            passphrase = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            passphrase = click.prompt(f"Passphrase for {name}", hide_input=True, confirmation_prompt=True, err=True)
        else:
            raise UsageError(f"no passphrase: set {PASSPHRASE_ENV}, use --password-stdin, or --unencrypted")
        if not passphrase:
            raise UsageError("empty passphrase: use --unencrypted for a key without one")
    created = generate_key(_state(), name, keytype=keytype, passphrase=passphrase)
    if output == "json":
        _emit_json(_key_json(created))
    else:
        _echo(f"{created.name} {created.keyid} {created.uri}")


def _key_json(k) -> dict:
    return {"name": k.name, "keyid": k.keyid, "keytype": k.public.keytype, "scheme": k.public.scheme,
            "uri": k.uri, "private": k.uri is not None}


@key.command("import")
@click.argument("name")
@click.argument("public_key")
@click.option("--uri", help="Private key URI for this public key (hsm:, awskms:, gcpkms:, azurekms:, hv:, file2:, encfile:).")
def key_import(name: str, public_key: str, uri: str | None) -> None:
    """Add a public key (a file or the JSON 'key export' prints), optionally with its signer URI."""
    from tufoci.keys import import_key

    imported = import_key(_state(), name, public_key, uri=uri)
    _echo(f"{imported.name} {imported.keyid}")


@key.command("import-hsm")
@click.argument("name")
@click.option("--hsm-keyid", type=int, help="Key id on the token (default 2, PIV slot 9c).")
@click.option("--token-label", help="Label of the PKCS#11 token, when several are present.")
def key_import_hsm(name: str, hsm_keyid: int | None, token_label: str | None) -> None:
    """Use an ECDSA key held in a PKCS#11 token (PYKCS11LIB names the module; PIN from TUFOCI_HSM_PIN or a prompt)."""
    from tufoci.keys import import_hsm_key

    imported = import_hsm_key(_state(), name, hsm_keyid=hsm_keyid, token_label=token_label,
                              secrets=_secrets_handler(False))
    _echo(f"{imported.name} {imported.keyid} {imported.uri}")


@key.command("list")
@output_option
def key_list(output: str) -> None:
    """List the key catalogue: id, type, URI, and which roles of which scopes use each key."""
    from tufoci.keys import list_keys
    from tufoci.repo_tool.inspect import key_usage

    state = _state()
    keys, usage = list_keys(state), key_usage(state)
    rows = []
    for k in keys:
        uses = usage.get(k.keyid, [])
        rows.append({**_key_json(k), "uses": uses,
                     "online": any(u["role"] in ("snapshot", "timestamp") for u in uses)})
    if output == "json":
        _emit_json(rows)
        return
    for row in rows:
        roles = ", ".join(f"{u['scope']} {u['role']}" for u in row["uses"]) or "unused"
        kind = "online" if row["online"] else "offline"
        _echo(f"{row['name']:<20} {row['keyid'][:16]}  {row['keytype']:<8} {kind:<7} "
               f"{row['uri'] or '(public only)'}  [{roles}]")


@key.command("export")
@click.argument("name")
def key_export(name: str) -> None:
    """Print a public key as JSON, for other maintainers to import or name in roles."""
    from tufoci.keys import export_public, resolve_key

    _echo(export_public(resolve_key(_state(), name)))


# -- init -------------------------------------------------------------------------
@cli.command()
@click.argument("scope")
@click.option("--root-key", "root_keys", multiple=True, required=True, help="Root key (name, URI or public key); repeatable.")
@click.option("--root-threshold", type=int, default=1, show_default=True)
@click.option("--targets-key", "targets_keys", multiple=True, help="Targets key; repeatable (default: the root keys).")
@click.option("--targets-threshold", type=int, default=1, show_default=True)
@click.option("--online-key", required=True, help="Key that signs snapshot and timestamp (kept online).")
@click.option("--expires", multiple=True, metavar="ROLE=DUR", help="Expiry period, e.g. targets=90d; repeatable.")
@click.option("--metadata", help="Metadata repository (default SCOPE/tuf).")
@click.option("--root-out", type=click.Path(dir_okay=False), help="Also write the root that consumers pin here.")
@password_stdin_option
@registry_options
@output_option
def init(scope, root_keys, root_threshold, targets_keys, targets_threshold, online_key, expires, metadata,
         root_out, password_stdin, plain_http, insecure, ca_file, output) -> None:
    """Create a trust repository for SCOPE and publish it to SCOPE/tuf."""
    from tufoci.repo_tool.init import init_scope

    result = init_scope(
        _state(), scope, root_keys=list(root_keys), root_threshold=root_threshold,
        targets_keys=list(targets_keys or root_keys), targets_threshold=targets_threshold,
        online_key=online_key, expires=list(expires), root_out=root_out, metadata=metadata,
        secrets=_secrets_handler(password_stdin), **_registry_kwargs(plain_http, insecure, ca_file),
    )
    if output == "json":
        _emit_json(camel_keys(result.__dict__))
        return
    _echo(f"initialised {result.scope} in {result.metadata_repository}", err=True)
    _echo(f"root for consumers to pin: {result.root_out or result.root_file} (sha256 {result.root_sha256})", err=True)
    _echo(result.root_out or result.root_file)


# -- targets ------------------------------------------------------------------------
@cli.group()
def target() -> None:
    """Stage targets (tags) to sign, and list what is signed."""


@target.command("add")
@click.argument("references", nargs=-1)
@click.option("--role", default="targets", show_default=True, help="The role that signs them (a delegated role).")
@click.option("--from-file", "from_file", type=click.File("r"),
              help="Digests from the build: lines 'REF DIGEST SIZE [MEDIATYPE]' ('-' for stdin); no registry request.")
@click.option("--publish", "and_publish", is_flag=True,
              help="Then publish what is staged in those scopes (one process: 'tufoci publish' after).")
@password_stdin_option
@registry_options
@output_option
def target_add(references, role, from_file, and_publish, password_stdin, plain_http, insecure, ca_file,
               output) -> None:
    """Stage REGISTRY/SCOPE/REPO:TAG references; their digests come from the bytes downloaded
    (or, with --from-file, from the build that pushed them)."""
    from tufoci.repo_tool.staging import parse_build_record, stage_built_targets, stage_targets

    if bool(references) == bool(from_file):
        raise UsageError("give references or --from-file, not both (and not neither)")
    if password_stdin and from_file is not None and getattr(from_file, "name", "<stdin>") == "<stdin>":
        raise UsageError("--from-file - and --password-stdin both read standard input: give the records as a file")
    state, options = _state(), _registry_kwargs(plain_http, insecure, ca_file)
    if from_file:
        records = [parse_build_record(line) for line in from_file if line.strip() and not line.startswith("#")]
        changes = stage_built_targets(state, records, role=role)
    else:
        changes = stage_targets(state, list(references), role=role, **options)
    results = _publish_scopes(state, [c.scope for c in changes], password_stdin, options) if and_publish else None
    if output == "json":
        staged = [_change_json(c) for c in changes]
        _emit_json(staged if results is None else {"staged": staged, "published": [r.to_dict() for r in results]})
        return
    for c in changes:
        _echo(f"staged {c.name} {c.digest} ({c.length} bytes) in {c.scope}")
    for result in results or ():
        _echo_publish(result, dry_run=False)


def _publish_scopes(state, scopes: list[str], password_stdin: bool, options: dict) -> list:
    """``tufoci publish`` of each scope, in the order first staged; on an error, says which went live first."""
    from tufoci.repo_tool.publish import publish as do_publish

    secrets, results = _secrets_handler(password_stdin), []
    try:
        for scope in dict.fromkeys(scopes):
            results.append(do_publish(state, scope, secrets=secrets, **options))
    except TufociError:
        for result in results:
            _echo(f"published {result.scope} before the error: "
                   + ", ".join(f"{role} v{v}" for role, v in result.published.items()), err=True)
        raise
    return results


def _change_json(c) -> dict:
    return {"scope": c.scope, "role": c.role, "target": c.name, "action": c.action, "digest": c.digest,
            "length": c.length, "custom": c.custom}


@target.command("remove")
@click.argument("scope")
@click.argument("names", nargs=-1, required=True)
@click.option("--role", default="targets", show_default=True, help="The role that signed them.")
def target_remove(scope, names, role) -> None:
    """Stage the removal of target NAMES (e.g. web:1.0) from SCOPE."""
    from tufoci.repo_tool.staging import stage_removals

    for c in stage_removals(_state(), scope, list(names), role=role):
        _echo(f"staged removal of {c.name} from {c.scope}")


@target.command("list")
@click.argument("scope")
@registry_options
@output_option
def target_list(scope, plain_http, insecure, ca_file, output) -> None:
    """List the signed targets of SCOPE (verified from the registry)."""
    from tufoci.repo_tool.inspect import signed_targets

    rows = signed_targets(_state(), scope, **_registry_kwargs(plain_http, insecure, ca_file))
    if output == "json":
        _emit_json(rows)
        return
    for row in rows:
        _echo(f"{row['target']:<40} {row['digest']}")


# -- status / publish / log -------------------------------------------------------------
@cli.command()
@click.argument("scope")
@click.option("--warn", multiple=True, metavar="ROLE=DUR",
              help="Warn when ROLE expires within DUR (default: a quarter of its period); repeatable.")
@click.option("--check", is_flag=True, help="Exit 1 when a role has expired or expires soon (for monitoring).")
@registry_options
@output_option
def status(scope, warn, check, plain_http, insecure, ca_file, output) -> None:
    """Show staged changes, open proposals, role versions, thresholds and expiries."""
    from tufoci.repo_tool.inspect import scope_status

    report = scope_status(_state(), scope, warn=list(warn), **_registry_kwargs(plain_http, insecure, ca_file))
    warnings = [r for r in report.get("roles", []) if r["warning"]]
    for r in warnings:
        _echo(f"tufoci: warning: {r['role']} v{r['version']} {r['warning']} ({r['expires']}): "
               + ("re-sign it with 'tufoci timestamp'" if r["role"] in ("timestamp", "snapshot")
                  else "publish a new version"), err=True)
    if output == "json":
        _emit_json(report)
        if check and (warnings or report.get("error")):
            sys.exit(1)
        return
    _echo(f"scope {report['scope']} (metadata {report['metadata']})")
    if report.get("error"):
        _echo(f"  could not refresh: {report['error']}")
    width = max([len(r["role"]) for r in report.get("roles", [])] + [10])
    for role in report.get("roles", []):
        _echo(f"  {role['role']:<{width}} v{role['version']:<4} expires {role['expires']} "
               f"({role['expiresIn']})  threshold {role['threshold']} of {role['keys']}")
    staged = report["staged"]
    if not staged:
        _echo("nothing staged")
    else:
        _echo(f"staged ({len(staged)}):")
        for c in staged:
            _echo(f"  {_change_line(c)}  [{c['role']}]")
    for p in report.get("proposals", []):
        _echo_proposal(p)
    for i in report.get("ignoredProposals", []):
        _echo(f"ignored {i['tag']}: {i['reason']}")
    if check and (warnings or report.get("error")):
        sys.exit(1)


def _change_line(c: dict) -> str:
    if c["action"] in ("delegate", "undelegate"):
        return f"{'+' if c['action'] == 'delegate' else '-'} delegation {c['target']}"
    if c["action"] == "rotate":
        return f"~ keys of {c['target']}"
    return f"{'+' if c['action'] == 'add' else '-'} {c['target']}  {c['digest'] or ''}"


def _echo_proposal(p: dict, *, err: bool = False) -> None:
    """A proposal as ``status`` shows it: its fingerprint, every change, its signatures and thresholds."""
    from tufoci.repo_tool.review import change_line

    if p.get("held"):
        state = f"signed, but {p['held']}"
    elif p["complete"]:
        state = "complete: 'tufoci publish' makes it live"
    else:
        state = "needs signatures"
    _echo(f"proposal {p['role']} v{p['version']} by {p['proposer']} ({state})", err=err)
    _echo(f"    fingerprint {p['fingerprint']}", err=err)
    for c in p["changes"]:
        _echo(f"    {change_line(c)}", err=err)
    if not p["changes"]:
        _echo("    (identical to the live version)", err=err)
    for sig in p["signatures"]:
        mark = "✓" if sig["counted"] else "✗"
        _echo(f"    {mark} {sig['key'] or sig['keyid'][:16]}: {sig['reason']}", err=err)
    for t in p["thresholds"]:
        missing = ", ".join(m["key"] or m["keyid"][:16] for m in t["missing"])
        more = max(0, t["need"] - t["have"])
        line = (f"    {t['label']}: {t['have']} of {t['need']} signatures" if t["have"] <= t["need"]
                else f"    {t['label']}: {t['have']} signatures, {t['need']} needed")
        if more:
            line += f", {more} more needed from: {missing}"
        _echo(line, err=err)


@cli.command()
@click.argument("scope")
@click.option("--dry-run", is_flag=True, help="Load no key (no passphrase), sign nothing, push nothing: show which "
              "roles and versions this machine's keys would sign, and what would be published.")
@password_stdin_option
@registry_options
@output_option
def publish(scope, dry_run, password_stdin, plain_http, insecure, ca_file, output) -> None:
    """Sign staged changes and publish them: targets, snapshot, then timestamp."""
    from tufoci.repo_tool.publish import publish as do_publish
    from tufoci.repo_tool.sessions import key_names

    state = _state()
    result = do_publish(state, scope, secrets=_secrets_handler(password_stdin), dry_run=dry_run,
                        **_registry_kwargs(plain_http, insecure, ca_file))
    if output == "json":
        _emit_json(result.to_dict())
        return
    names = key_names(state)
    for role, info in result.would_sign.items():
        _echo(f"would sign {role} v{info['version']} with {', '.join(names.get(k, k[:12]) for k in info['keyids'])}")
    _echo_publish(result, dry_run=dry_run)


def _echo_publish(result, *, dry_run: bool) -> None:
    verb = "would publish" if dry_run else "published"
    if result.published:
        versions = ", ".join(f"{role} v{v}" for role, v in result.published.items())
        _echo(f"{verb} to {result.scope}: {versions}")
    for role, info in result.proposed.items():
        counts = "; ".join(f"{t['have']} of {t['need']} signatures ({t['label']})" if t["have"] <= t["need"]
                           else f"{t['have']} signatures, {t['need']} needed ({t['label']})"
                           for t in info["thresholds"])
        held = f" — complete, {info['held']}" if info.get("held") else ""
        _echo(f"{'would propose' if dry_run else 'proposed'} {role} v{info['version']}: {counts}{held}")
        if not dry_run and any(t["have"] < t["need"] for t in info["thresholds"]):
            _echo(f"  other maintainers: tufoci sign {result.scope} {role}", err=True)
    if result.awaiting_first_version:
        _echo(f"delegated to {', '.join(result.awaiting_first_version)}: each team's first "
               f"'tufoci publish' creates its metadata", err=True)
    for i in result.ignored:
        _echo(f"tufoci: warning: ignored {i.tag}: {i.reason}", err=True)
    if result.waiting_for_online_key:
        _echo(f"signed, but this machine cannot sign snapshot/timestamp: whoever holds the online key runs "
               f"'tufoci publish {result.scope}' to make it live", err=True)


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--key", "keys", multiple=True, required=True, help="A key of the team (name, URI or public key); repeatable.")
@click.option("--path", "paths", multiple=True,
              help="Target-name pattern, e.g. 'web/frontend:*' (one repository) or 'web/*'; repeatable.")
@click.option("--threshold", type=int, default=1, show_default=True, help="Signatures needed from the team's keys.")
@click.option("--terminating", is_flag=True, help="A match here ends the search (no backtracking to other roles).")
@click.option("--parent", default="targets", show_default=True, help="The delegating role.")
@click.option("--bins", type=int, help="Instead of paths: spread every target over this many hashed bins named "
              "ROLE-<hex> (a power of two; for very many tags).")
def delegate(scope, role, keys, paths, threshold, terminating, parent, bins) -> None:
    """Stage a delegation of PATH patterns to ROLE (a team) with its keys and threshold, or of
    every target to hashed bins (--bins).

    A target name is the repository path below SCOPE, a colon and the tag
    (web/frontend:1.4). A pattern matches it component by component ('/'
    separates components); '*' and '?' never cross a '/', but they do cross
    the ':', so a wildcard in the repository part also matches its siblings:

    \b
      web/frontend:*     every tag of web/frontend, nothing else
      web/frontend:1.*   the 1.x tags of web/frontend
      web/*              every repository directly under web/ (not web/a/b)
      web/*/*            every repository two levels under web/
      web/frontend*      web/frontend, and also web/frontend-admin, web/frontends…

    delegate warns (on stderr) when a pattern can match sibling repositories.
    """
    from tufoci.repo_tool.delegations import pattern_warning, stage_bins, stage_delegation

    if bins is not None:
        if paths or terminating or parent != "targets":
            raise UsageError("--bins delegates every target from targets: no --path, --terminating or --parent")
        stage_bins(_state(), scope, role, keys=list(keys), count=bins, threshold=threshold)
        _echo(f"staged: targets delegates every target to {bins} hashed bins {role}-*")
        return
    change = stage_delegation(_state(), scope, role, keys=list(keys), paths=list(paths), threshold=threshold,
                              terminating=terminating, parent=parent)
    for warning in filter(None, map(pattern_warning, paths)):
        _echo(f"tufoci: warning: {warning}", err=True)
    spec = change.custom or {}
    _echo(f"staged: {parent} delegates {', '.join(spec['paths'])} to {role} "
           f"({spec['threshold']} of {len(spec['keys'])} keys{', terminating' if terminating else ''})")


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--parent", default="targets", show_default=True, help="The delegating role.")
def undelegate(scope, role, parent) -> None:
    """Stage the removal of ROLE's delegation from its parent."""
    from tufoci.repo_tool.delegations import stage_undelegation

    stage_undelegation(_state(), scope, role, parent=parent)
    _echo(f"staged: {parent} no longer delegates to {role}")


@cli.command()
@click.argument("scope")
@click.argument("role", required=False)
@click.option("--expect", multiple=True, metavar="FINGERPRINT",
              help="Sign only if the proposal's fingerprint is this one (from 'tufoci status'); repeatable. "
                   "Without it, sign asks on the terminal.")
@password_stdin_option
@registry_options
@output_option
def sign(scope, role, expect, password_stdin, plain_http, insecure, ca_file, output) -> None:
    """Show the open proposal of ROLE (or every one this machine can sign) and sign it if it is the one
    you reviewed: its fingerprint matches --expect, or you confirm on the terminal."""
    from tufoci.repo_tool.sessions import key_names, sign as do_sign

    state = _state()
    names = key_names(state)

    def show(review) -> None:  # the diff goes to stderr: stdout stays data (-o json)
        _echo_proposal(review.to_dict(names), err=True)

    def confirm(review) -> bool:
        p = review.proposal
        return click.confirm(f"Sign {p.role} v{p.version} (fingerprint {review.to_dict(names)['fingerprint']})?",
                             default=False, err=True)

    interactive = sys.stdin.isatty() and not password_stdin
    done = do_sign(state, scope, role, expect=list(expect), show=show, confirm=confirm if interactive else None,
                   secrets=_secrets_handler(password_stdin), **_registry_kwargs(plain_http, insecure, ca_file))
    if output == "json":
        _emit_json([{"role": r.proposal.role, "version": r.proposal.version, "keyids": k,
                     "signedDigest": r.proposal.signed_digest} for r, k in done])
        return
    if not done:
        _echo("none of this machine's keys can sign an open proposal", err=True)
    for item, keyids in done:
        who = ", ".join(names.get(k, k[:12]) for k in keyids)
        _echo(f"signed {item.proposal.role} v{item.proposal.version} with {who}")
    _echo(f"see 'tufoci status {scope}'; 'tufoci publish {scope}' makes complete proposals live", err=True)


@cli.command()
@click.argument("scope")
@click.argument("role")
@registry_options
def discard(scope, role, plain_http, insecure, ca_file) -> None:
    """Abandon the open proposal for ROLE and this machine's staged changes to it."""
    from tufoci.repo_tool.sessions import discard as do_discard

    tags = do_discard(_state(), scope, role, **_registry_kwargs(plain_http, insecure, ca_file))
    _echo(f"discarded {role}" + (f" ({', '.join(tags)})" if tags else " (local staged changes)"))


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--add-key", "add_keys", multiple=True, help="Key to add (name, URI or public key); repeatable.")
@click.option("--remove-key", "remove_keys", multiple=True, help="Key to remove (name or keyid); repeatable.")
@click.option("--threshold", type=int, help="New threshold.")
@registry_options
def rotate(scope, role, add_keys, remove_keys, threshold, plain_http, insecure, ca_file) -> None:
    """Stage a change of ROLE's keys or threshold (root, targets, snapshot, timestamp or delegated)."""
    from tufoci.repo_tool.rotation import stage_rotation

    change = stage_rotation(_state(), scope, role, add_keys=list(add_keys), remove_keys=list(remove_keys),
                            threshold=threshold, **_registry_kwargs(plain_http, insecure, ca_file))
    spec = change.custom or {}
    _echo(f"staged in {change.role}: {role} +{len(spec['add'])} key(s), -{len(spec['remove'])} key(s)"
           + (f", threshold {threshold}" if threshold else "") + f"; run 'tufoci publish {scope}'")


@cli.command()
@click.argument("scope")
@click.option("--every", metavar="DUR", help="Keep running: refresh every DUR (e.g. 6h) until SIGTERM.")
@click.option("--snapshot", "force_snapshot", is_flag=True, help="Re-sign snapshot even when it is not due.")
@click.option("--revive-expired", is_flag=True,
              help="Extend an expired timestamp although this machine has no record of the scope's state "
                   "(its high-water marks): only after checking that it is the current state.")
@password_stdin_option
@registry_options(per_request=True)
def timestamp(scope, every, force_snapshot, revive_expired, password_stdin, plain_http, insecure, ca_file,
              timeout) -> None:
    """Re-sign the timestamp (and snapshot when due) with the online key; --every runs it as a service."""
    from tufoci.repo_tool.expiry import parse_duration
    from tufoci.repo_tool.freshness import refresh_timestamp, run_every

    state = _state()
    secrets = _secrets_handler(password_stdin)
    options = _registry_kwargs(plain_http, insecure, ca_file)

    def refresh():
        from tufoci.budget import budget

        with budget(timeout):  # each round has the whole budget (with --every this runs for months)
            return refresh_timestamp(state, scope, secrets=secrets, force_snapshot=force_snapshot,
                                     revive_expired=revive_expired, **options)

    if every is None:
        result = refresh()
        _echo(f"timestamp v{result.timestamp_version} expires {result.timestamp_expires:%Y-%m-%dT%H:%M:%SZ}"
               + (f"; snapshot v{result.snapshot_version}" if result.snapshot_resigned else ""))
        return

    def report(line: str) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        _echo(f"{stamp} {line}", err=True)

    run_every(parse_duration(every), refresh, report)


@cli.command("export-metadata")
@click.argument("scope")
@click.argument("directory", type=click.Path(file_okay=False))
@registry_options
def export_metadata(scope, directory, plain_http, insecure, ca_file) -> None:
    """Write SCOPE's verified metadata to DIRECTORY as a plain TUF repository (a static HTTP mirror)."""
    from tufoci.repo_tool.export import export_metadata as do_export

    written = do_export(_state(), scope, directory, **_registry_kwargs(plain_http, insecure, ca_file))
    _echo(f"wrote {len(written)} files to {directory}; serve them and pin with "
           f"'tufoci trust add {scope} --root ROOT --metadata https://HOST/PATH/'", err=True)


@cli.command()
@click.argument("source")
@click.argument("destination")
@click.option("--tag-pattern", metavar="GLOB", help="Only targets whose name matches, e.g. 'web/*' or '*:1.*'.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--replace-newer", is_flag=True,
              help="Replace a destination whose trust state is newer than SOURCE's (moves it backwards).")
@registry_options(timeout="1h")  # it moves whole images
@output_option
def copy(source, destination, tag_pattern, quiet, replace_newer, plain_http, insecure, ca_file, output) -> None:
    """Copy SOURCE scope's signed images and trust data to DESTINATION (a registry scope or oci:DIR).

    Digests are preserved, present blobs and manifests are skipped (re-run to resume), and the
    timestamp moves last. Copying to oci:DIR and from it again is the air-gapped transfer.
    """
    from tufoci.repo_tool.copy import copy_scope

    report = copy_scope(_state(), source, destination, tag_pattern=tag_pattern, replace_newer=replace_newer,
                        progress=(lambda line: None) if quiet else (lambda line: _echo(line, err=True)),
                        **_registry_kwargs(plain_http, insecure, ca_file))
    if output == "json":
        _emit_json(report.to_dict())
        return
    _echo(f"copied {report.images} image(s) and {report.metadata_tags} metadata tag(s) to {report.destination}: "
           f"{report.manifests_copied} manifests ({report.manifests_skipped} already there), "
           f"{report.blobs_copied} blobs streamed ({report.bytes_copied} bytes), {report.blobs_mounted} mounted, "
           f"{report.blobs_skipped} already there")


@cli.command("log")
@click.argument("scope", required=False)
@output_option
def log_(scope, output) -> None:
    """Show the local audit log (everything this machine signed, staged or published)."""
    from tufoci.repo_tool.inspect import audit_log

    rows = audit_log(_state(), scope)
    if output == "json":
        _emit_json(rows)
        return
    for r in rows:
        role = f" {r['role']}" if r["role"] else ""
        version = f" v{r['version']}" if r["version"] is not None else ""
        _echo(f"{r['at']}  {r['actor']:<24} {r['action']:<14} {r['scope'] or ''}{role}{version}"
               f"{_log_detail(r['details'])}")


def _log_detail(details: dict) -> str:
    """The one or two facts of an audit record a person scans for."""
    parts = []
    for key in ("key", "target", "digest", "keyids", "versions"):
        value = details.get(key)
        if value:
            if key == "versions":
                value = ", ".join(f"{role} v{v}" for role, v in value.items())
            elif key == "keyids":
                value = ", ".join(k[:12] for k in value)
            parts.append(str(value))
    return f"  ({'; '.join(parts)})" if parts else ""


# -- registry credentials -------------------------------------------------------------
@cli.command()
@click.argument("registry")
@click.option("-u", "--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (recommended).")
@registry_options
def login(registry, username, password_stdin, plain_http, insecure, ca_file) -> None:
    """Check credentials against REGISTRY and store them in docker's config.json (like docker login)."""
    from tufoci.credentials import Credentials, store_credentials
    from tufoci.store.registry import check_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, err=True)
    else:
        raise UsageError("no password: use --password-stdin")
    credentials = Credentials(username, password)
    check_login(registry, credentials, **_registry_kwargs(plain_http, insecure, ca_file))
    path = store_credentials(registry, credentials)
    _echo(f"login succeeded for {username} at {registry} (stored in {path})", err=True)


@cli.command()
@click.argument("registry")
def logout(registry) -> None:
    """Remove REGISTRY's stored credentials from docker's config.json."""
    from tufoci.credentials import remove_credentials

    if not remove_credentials(registry):
        raise UsageError(f"not logged in to {registry}")
    _echo(f"removed credentials for {registry}", err=True)


# -- trust / verify ---------------------------------------------------------------------
@cli.group()
def trust() -> None:
    """Pin the roots this machine trusts, per scope."""


@trust.command("add")
@click.argument("scope")
@click.option("--root", "root_file", type=click.Path(exists=True, dir_okay=False), help="Root metadata file to pin.")
@click.option("--root-sha256", help="Pin the root in the registry whose sha256 is this.")
@click.option("--metadata", help="Metadata repository (default SCOPE/tuf), or an http(s):// URL of a static mirror.")
@registry_options
def trust_add(scope, root_file, root_sha256, metadata, plain_http, insecure, ca_file) -> None:
    """Trust SCOPE's metadata, anchored at a root obtained out of band (no TOFU)."""
    from tufoci.client.trust_pins import add_pin, fetch_root_by_sha256

    if bool(root_file) == bool(root_sha256):
        raise UsageError("give exactly one of --root FILE or --root-sha256 HEX")
    if root_file:
        with open(root_file, "rb") as f:
            data = f.read()
    else:
        data = fetch_root_by_sha256(scope, root_sha256, metadata, **_registry_kwargs(plain_http, insecure, ca_file))
    pin = add_pin(_state(), scope, root_data=data, metadata=metadata, expected_sha256=root_sha256)
    _echo(f"trusting {pin.scope} (metadata {pin.metadata}, root sha256 {pin.root_sha256})")


@trust.command("list")
@output_option
def trust_list(output) -> None:
    """List trust pins."""
    pins = _state().pins()
    if output == "json":
        _emit_json([camel_keys(p.__dict__) for p in pins])
        return
    for p in pins:
        _echo(f"{p.scope:<40} {p.metadata:<44} {p.root_sha256[:16]}")


@trust.command("remove")
@click.argument("scope")
def trust_remove(scope) -> None:
    """Forget the trust pin of SCOPE."""
    from tufoci.client.trust_pins import remove_pin

    remove_pin(_state(), scope)


@cli.command()
@click.argument("references", nargs=-1, required=True)
@click.option("--skip-registry-check", is_flag=True,
              help="Do not compare the registry's current tag with the signed digest (offline resolution).")
@registry_options(timeout=VERIFY_TIMEOUT)
@output_option
def verify(references, skip_registry_check, plain_http, insecure, ca_file, output) -> None:
    """Verify REFERENCES and print the digest each must be deployed by.

    Exit codes: 0 ok, 10 not signed, 11 digest mismatch, 12 metadata rejected,
    13 registry failure (the first failing reference decides).
    """
    from tufoci.client.verify import verify as do_verify

    outcomes = do_verify(list(references), state=_state(), check_registry=not skip_registry_check,
                         **_registry_kwargs(plain_http, insecure, ca_file))
    sys.exit(render_verify([o.to_dict() for o in outcomes], output))


def render_verify(results: list[dict], output: str) -> int:
    """Print verify results; returns the exit code."""
    from tufoci.verify_output import render_results

    return render_results(results, output, sys.stdout, sys.stderr)


@cli.command()
@click.option("--freshness", default="10s", show_default=True, metavar="DUR",
              help="Answer from the last refresh for up to DUR without asking the registry (0s: re-read the "
                   "timestamp on every request, and refresh fully when it changed).")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False),
              help="Unix socket to listen on (default $TUFOCI_HOME/agent.sock).")
@registry_options(timeout="30s", per_request=True)
def agent(freshness, socket_path, plain_http, insecure, ca_file, timeout) -> None:
    """Run a resident verifier: `tufoci verify` on this machine uses it when it is running."""
    from tufoci.client.agent import default_socket_path, serve
    from tufoci.repo_tool.expiry import parse_duration

    state = _state()
    path = socket_path or default_socket_path(state.home)
    window = 0.0 if freshness in ("0", "0s") else parse_duration(freshness).total_seconds()
    _echo(f"tufoci agent listening on {path} (freshness {freshness})", err=True)
    serve(state, path, freshness=window, request_timeout=timeout, **_registry_kwargs(plain_http, insecure, ca_file))


# -- migration ----------------------------------------------------------------------------------
from tufoci.cli_notary import import_notary  # noqa: E402  (click only; the work is imported when it runs)

cli.add_command(import_notary)


# -- enforcement ----------------------------------------------------------------------------
@cli.group()
def admission() -> None:
    """The Kubernetes admission webhook: admit only images signed in their trust repository."""


@admission.command("serve")
@click.option("--policy", "policy_file", required=True, type=click.Path(dir_okay=False),
              help="The policy file (YAML, docs/admission.md).")
@click.option("--tls-cert", required=True, type=click.Path(dir_okay=False), help="Serving certificate (PEM), "
              "re-read when the file changes.")
@click.option("--tls-key", required=True, type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option("--listen", default="0.0.0.0:8443", show_default=True, metavar="HOST:PORT")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Where verified metadata is cached (default: a new temporary directory).")
@click.option("--ready-file", type=click.Path(dir_okay=False), help="Write the URL here once listening.")
def admission_serve(policy_file, tls_cert, tls_key, listen, cache_dir, ready_file) -> None:
    """Serve /mutate, /validate, /healthz, /readyz and /metrics over HTTPS until SIGTERM."""
    import tempfile

    from tufoci.enforce.policy import load_policy
    from tufoci.enforce.server import parse_listen, serve
    from tufoci.enforce.view import Views, loaders_for_policy

    try:
        address = parse_listen(listen)
    except ValueError as e:
        raise UsageError(str(e)) from e
    policy = load_policy(policy_file)
    cache = cache_dir or tempfile.mkdtemp(prefix="tufoci-admission-")
    views = Views(loaders_for_policy(policy, cache), policy.freshness)
    sys.exit(serve(policy, views, cert_file=tls_cert, key_file=tls_key, listen=address, ready_file=ready_file))


# -- entry point ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure is one line on stderr and a documented exit code."""
    try:
        cli.main(args=argv, prog_name="tufoci", standalone_mode=False)
    except click.exceptions.Abort:
        _echo("tufoci: aborted", err=True)
        sys.exit(130)
    except click.exceptions.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        _echo(f"tufoci: error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.exceptions.ClickException as e:
        _echo(f"tufoci: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code or 1)
    except TufociError as e:
        if _VERBOSE:
            traceback.print_exc()
        _echo(f"tufoci: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _echo("tufoci: interrupted", err=True)
        sys.exit(130)
    except sqlite3.DatabaseError as e:  # state.db damaged in a way only a query finds (State.open catches the rest)
        if _VERBOSE:
            traceback.print_exc()
        path = os.path.join(os.environ.get("TUFOCI_HOME") or "~/.tufoci", "state.db")
        _echo(f"tufoci: error: local state {path} is unreadable: {e} (restore it from a backup or move it away)",
               err=True)
        sys.exit(1)
    except Exception as e:  # a bug: still one line unless -v
        if _VERBOSE:
            traceback.print_exc()
        _echo(f"tufoci: internal error: {type(e).__name__}: {e} (run with -v for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
