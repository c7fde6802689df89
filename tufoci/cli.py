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
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from tufoci import __version__
from tufoci.budget import VERIFY_TIMEOUT, parse_seconds
from tufoci.errors import SigningKeyError, TufociError, UsageError
from tufoci.json_keys import camel_keys
from tufoci.safe_text import printable
from tufoci.state import DatabaseError as StateDatabaseError

if TYPE_CHECKING:
    from tufoci.registry_options import RegistryOptions

_VERBOSE = False
_HOME: str | None = None  # the --home of this invocation (or $TUFOCI_HOME); None: ~/.tufoci


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
        def run(*args: Any, timeout: str, certs_dir: str | None, **kwargs: Any) -> Any:
            click.get_current_context().meta[_CERTS_DIR] = certs_dir  # read by _registry
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
        run = click.option("--certs-dir", type=click.Path(exists=True, file_okay=False), envvar="TUFOCI_CERTS_DIR",
                           help="certs.d directory: HOST[:PORT]/ca.crt, client *.cert + *.key "
                                "(instead of ~/.config/containers, /etc/containers and /etc/docker certs.d; "
                                "$TUFOCI_CERTS_DIR).")(run)
        return click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                            help="CA bundle for a registry with a private CA.")(run)

    return decorate if f is None else decorate(f)


def _side_options(prefix: str, side: str) -> Callable[[Callable], Callable]:
    """``copy``'s per-side TLS options, as skopeo names them (``--src-…``, ``--dest-…``)."""
    def decorate(f: Callable) -> Callable:
        f = click.option(f"--{prefix}-plain-http", is_flag=True, help=f"{side} over plain HTTP.")(f)
        f = click.option(f"--{prefix}-insecure", is_flag=True, help=f"Do not verify {side}'s TLS certificate.")(f)
        f = click.option(f"--{prefix}-ca-file", type=click.Path(exists=True, dir_okay=False),
                         help=f"CA bundle for {side}'s registry.")(f)
        return click.option(f"--{prefix}-certs-dir", type=click.Path(exists=True, file_okay=False),
                            help=f"{side}'s own directory: *.crt CAs, client *.cert + *.key.")(f)

    return decorate


_CERTS_DIR = "tufoci.certs_dir"
_CLIENTS = "tufoci.registry_clients"


def _registry(plain_http: bool | None, insecure: bool, ca_file: str | None) -> RegistryOptions:
    """The command's registry options: its flags, certs.d, registries.conf, proxies, credentials and timeouts
    from the environment (``options_from_environment``, the one place that reads it for them, shared with
    the verify fast path; docs/registries.md), and one connection pool for the whole command, closed when
    it ends."""

    from tufoci.registry_config import TLSFlags
    from tufoci.registry_options import options_from_environment

    context = click.get_current_context(silent=True)
    options = options_from_environment(TLSFlags(plain_http or None, insecure, ca_file), os.environ,
                                       context.meta.get(_CERTS_DIR) if context else None)
    if context is None:
        return options.pooled()
    if _CLIENTS in context.meta:
        return options.replace(clients=context.meta[_CLIENTS])
    options = options.pooled()
    context.meta[_CLIENTS] = options.clients
    context.call_on_close(context.meta[_CLIENTS].close)
    return options


def _maintainer(state, scope: str, options: RegistryOptions, *, allow_expired: bool = True):
    """SCOPE's maintainer session (repo_tool/maintainer.py). Expiry is waived for maintainers, who must be able
    to replace expired metadata; ``copy`` and ``export-metadata`` pass ``allow_expired=False``: they carry
    metadata to consumers."""
    from tufoci.repo_tool.maintainer import MaintainerSession

    return MaintainerSession.open(state, scope, registry=options, allow_expired=allow_expired)


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


def _home() -> str:
    """This command's state directory: ``--home`` (or ``$TUFOCI_HOME``, which click reads for it), else the
    default; created. Passed down, never written into the environment."""
    from tufoci.state import home_dir

    return home_dir(_HOME)


def _state():
    from tufoci.state import State

    return State.open(_home())


def _echo_lines(lines) -> None:
    """Print the lines tufoci/render.py words (each to stdout or stderr, escaped by ``_echo``)."""
    for line in lines:
        _echo(line.text, err=line.err)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))  # json.dumps escapes every control character


def _echo(text: str = "", *, err: bool = False) -> None:
    """Print one line for people. Names in it may come from a registry: control characters are
    escaped (tufoci.safe_text), so no answer can move the cursor or add a line."""
    click.echo(printable(text), err=err)


class _LogLineFormatter(logging.Formatter):
    """Log records as people see them: control characters escaped like every other line (a registry
    chooses parts of what libraries log, e.g. urllib3's warning about headers it cannot parse), and a
    traceback only with -v (that warning carries one, so a registry could print one on every command)."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return super().formatException(ei) if _VERBOSE else ""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(printable(line) for line in super().format(record).split("\n"))


# -- the group ------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks.")
@click.option("--home", envvar="TUFOCI_HOME", type=click.Path(file_okay=False),
              help="State directory (default ~/.tufoci, or $TUFOCI_HOME).")
@click.version_option(__version__, package_name="tufoci")  # given: looking it up costs importlib.metadata
def cli(verbose: bool, home: str | None) -> None:
    """Sign and verify container images with TUF metadata stored in the registry."""
    global _VERBOSE, _HOME
    _VERBOSE, _HOME = verbose, os.path.abspath(home) if home else None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


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
    from tufoci.keys import generate_key

    passphrase = _new_passphrase(name, unencrypted, password_stdin)
    created = generate_key(_state(), name, keytype=keytype, passphrase=passphrase)
    if output == "json":
        _emit_json(_key_json(created))
    else:
        _echo(f"{created.name} {created.keyid} {created.uri}")


def _new_passphrase(name: str, unencrypted: bool, password_stdin: bool) -> str | None:
    """The passphrase a private key kept on this machine is encrypted with (None: --unencrypted)."""
    from tufoci.keys import PASSPHRASE_ENV

    if unencrypted:
        return None
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
    return passphrase


def _key_json(k) -> dict:
    return {"name": k.name, "keyid": k.keyid, "keytype": k.public.keytype, "scheme": k.public.scheme,
            "uri": k.uri, "private": k.uri is not None}


@key.command("import")
@click.argument("name")
@click.argument("public_key", required=False)
@click.option("--uri", help="Private key URI for this public key (hsm:, awskms:, gcpkms:, azurekms:, hv:, file2:, encfile:).")
@click.option("--from-notary-key", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="A Notary client's encrypted private key file (~/.docker/trust/private/KEYID.key): sign with the "
                   "key Notary knew (its passphrase from NOTARY_*_PASSPHRASE or a prompt).")
@click.option("--unencrypted", is_flag=True, help="With --from-notary-key: keep the key unencrypted.")
@password_stdin_option
def key_import(name: str, public_key: str | None, uri: str | None, from_notary_key: str | None,
               unencrypted: bool, password_stdin: bool) -> None:
    """Add a public key (a file or the JSON 'key export' prints), optionally with its signer URI; or, with
    --from-notary-key, a private key a Notary client kept (re-encrypted with the tufoci passphrase)."""
    from tufoci.keys import import_key

    if bool(public_key) == bool(from_notary_key) or (from_notary_key and uri):
        raise UsageError("give PUBLIC_KEY (optionally with --uri), or --from-notary-key FILE alone")
    if from_notary_key:
        imported = _import_notary_key(name, from_notary_key, unencrypted, password_stdin)
        _echo(f"{imported.name} {imported.keyid} {imported.uri}")
        return
    assert public_key is not None  # one of the two, checked above
    unchecked: list[str] = []
    imported = import_key(_state(), name, public_key, uri=uri, unchecked=unchecked)
    _echo(f"{imported.name} {imported.keyid}")
    for note in unchecked:
        _echo(f"tufoci: note: not checked: {note}", err=True)


def _import_notary_key(name: str, path: str, unencrypted: bool, password_stdin: bool):
    from tufoci.keys import import_private_key
    from tufoci.repo_tool.notary_keyfile import load_notary_private_key, notary_key_headers, notary_passphrase_env

    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the Notary key file ({exc})") from exc
    variable = notary_passphrase_env(notary_key_headers(text))
    if variable in os.environ:
        notary_passphrase = os.environ[variable]
    elif sys.stdin.isatty():
        notary_passphrase = click.prompt(f"Notary passphrase of {path}", hide_input=True, err=True)
    else:
        raise UsageError(f"no Notary passphrase for {path}: set {variable}")
    private_key = load_notary_private_key(text, notary_passphrase.encode("utf-8"))
    return import_private_key(_state(), name, private_key,
                              passphrase=_new_passphrase(name, unencrypted, password_stdin))


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
    from tufoci.layout_spec import ONLINE_ROLES
    from tufoci.repo_tool.inspect import key_usage

    state = _state()
    keys, usage = list_keys(state), key_usage(state)
    rows = []
    for k in keys:
        uses = usage.get(k.keyid, [])
        rows.append({**_key_json(k), "uses": uses,
                     "online": any(u["role"] in ONLINE_ROLES for u in uses)})
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
        secrets=_secrets_handler(password_stdin), registry=_registry(plain_http, insecure, ca_file),
    )
    if output == "json":
        _emit_json(camel_keys(result.__dict__))
        return
    if result.awaiting:
        counts = ", ".join(f"{role} v{a['version']}: {a['have']} of {a['need']} signatures"
                           for role, a in result.awaiting.items())
        _echo(f"initial signing session for {result.scope} in {result.metadata_repository}: proposed {counts}; "
              f"nothing is live until the other key holders sign ('tufoci status', 'tufoci sign')", err=True)
        if "root" in result.awaiting:
            _echo(f"root v1 fingerprint {result.root_fingerprint}: the other root key holders compare it with "
                  "this one (out of band) after pinning the root file, before they sign", err=True)
    else:
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
@click.option("--digest-file", "digest_file", type=click.File("r"),
              help="Sign what the build pushed: skopeo copy --digestfile, docker buildx --metadata-file or "
                   "--iidfile, an OCI layout's index.json, or lines 'REF DIGEST SIZE [MEDIATYPE]' ('-' for stdin).")
@click.option("--digest-format", type=click.Choice(["auto", "list", "digest", "buildx-metadata", "oci-index"]),
              default="auto", show_default=True, help="Format of --digest-file (auto: detected from its contents).")
@click.option("--from-file", "from_file", type=click.File("r"),
              help="Same as --digest-file FILE --digest-format list (no registry request).")
@click.option("--allow-tag-mismatch", is_flag=True,
              help="Sign REPO:TAG@DIGEST although the registry serves another digest for TAG (warns).")
@click.option("--publish", "and_publish", is_flag=True,
              help="Then publish what is staged in those scopes (one process: 'tufoci publish' after).")
@password_stdin_option
@registry_options
@output_option
def target_add(references, role, digest_file, digest_format, from_file, allow_tag_mismatch, and_publish,
               password_stdin, plain_http, insecure, ca_file, output) -> None:
    """Stage REGISTRY/SCOPE/REPO:TAG references; their digests come from the bytes downloaded
    (or, with --digest-file, from the build that pushed them)."""
    from tufoci.repo_tool.staging import stage_digest_file, stage_targets

    if from_file:
        if digest_file:
            raise UsageError("give --digest-file or --from-file, not both")
        digest_file, digest_format = from_file, "list"
    if not references and not digest_file:
        raise UsageError("give references, --digest-file or --from-file")
    if password_stdin and digest_file is not None and getattr(digest_file, "name", "<stdin>") == "<stdin>":
        raise UsageError("--digest-file - and --password-stdin both read standard input: give the records as a file")
    state, options = _state(), _registry(plain_http, insecure, ca_file)

    def warn(line: str) -> None:
        _echo(f"tufoci: warning: {line}", err=True)

    if digest_file:
        changes = stage_digest_file(state, digest_file.read(), list(references), fmt=digest_format,
                                    source=f"digest file {getattr(digest_file, 'name', '-')}", role=role,
                                    allow_tag_mismatch=allow_tag_mismatch, warn=warn, registry=options)
    else:
        changes = stage_targets(state, list(references), role=role, allow_tag_mismatch=allow_tag_mismatch,
                                warn=warn, registry=options)
    results = _publish_scopes(state, [c.scope for c in changes], password_stdin, options) if and_publish else None
    if output == "json":
        staged = [_change_json(c) for c in changes]
        _emit_json(staged if results is None else {"staged": staged, "published": [r.to_dict() for r in results]})
        return
    from tufoci import render

    _echo_lines(render.staged_target_lines(changes))
    for result in results or ():
        _echo_lines(render.publish_lines(result, dry_run=False))


def _publish_scopes(state, scopes: list[str], password_stdin: bool, options: RegistryOptions) -> list:
    """``tufoci publish`` of each scope, in the order first staged; on an error, says which went live first."""
    from tufoci.repo_tool.publish import publish as do_publish

    secrets, results = _secrets_handler(password_stdin), []
    try:
        for scope in dict.fromkeys(scopes):
            results.append(do_publish(_maintainer(state, scope, options), secrets=secrets, progress=_late_progress()))
    except TufociError:
        from tufoci import render

        _echo_lines(render.published_before_error(results))
        raise
    return results


def _late_progress(after: float = 1.0) -> Callable[[str], None]:
    """Progress lines on stderr, once the operation has taken ``after`` seconds (issue 18): a quick
    publish stays quiet, a slow one says what it is doing."""
    import time

    start = time.monotonic()

    def report(line: str) -> None:
        if time.monotonic() - start >= after:
            _echo(f"tufoci: {line}…", err=True)

    return report


def _change_json(c) -> dict:
    return {"scope": c.scope, "role": c.role, "target": c.name, "action": c.action, "digest": c.digest,
            "length": c.length, "custom": c.custom}


@target.command("remove")
@click.argument("scope")
@click.argument("names", nargs=-1, required=True)
@click.option("--role", default="targets", show_default=True, help="The role that signed them.")
@registry_options
def target_remove(scope, names, role, plain_http, insecure, ca_file) -> None:
    """Stage the removal of target NAMES (e.g. web:1.0) from SCOPE; each must be signed by ROLE."""
    from tufoci.repo_tool.staging import stage_removals

    for c in stage_removals(_state(), scope, list(names), role=role,
                            registry=_registry(plain_http, insecure, ca_file)):
        _echo(f"staged removal of {c.name} from {c.scope}")


@target.command("list")
@click.argument("scope")
@registry_options
@output_option
def target_list(scope, plain_http, insecure, ca_file, output) -> None:
    """List the signed targets of SCOPE (verified from the registry)."""
    from tufoci import render
    from tufoci.repo_tool.inspect import signed_targets

    rows = signed_targets(_maintainer(_state(), scope, _registry(plain_http, insecure, ca_file)))
    if output == "json":
        _emit_json(rows)
        return
    for row in rows:
        _echo(render.signed_target_line(row))


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
    from tufoci import render
    from tufoci.repo_tool.inspect import scope_status
    from tufoci.repo_tool.maintainer import key_names

    state = _state()
    names = key_names(state)
    report = scope_status(_maintainer(state, scope, _registry(plain_http, insecure, ca_file)), warn=list(warn))
    warnings = render.expiry_warnings(report)
    _echo_lines(warnings)
    if output == "json":
        _emit_json(report)
    else:
        _echo_lines(render.status_lines(report, names=names))
    if check and (warnings or report.get("error")):
        sys.exit(1)


@cli.command()
@click.argument("scope")
@click.option("--dry-run", is_flag=True, help="Load no key (no passphrase), sign nothing, push nothing: show which "
              "roles and versions this machine's keys would sign, and what would be published.")
@click.option("--fold", is_flag=True, help="Put changes staged for a role with an open proposal into a new proposal "
              "of that version (the signatures collected so far are asked for again).")
@click.option("--queue", is_flag=True, help="Leave changes staged for a role with an open proposal until it goes "
              "live (the default; this flag only says so).")
@password_stdin_option
@registry_options
@output_option
def publish(scope, dry_run, fold, queue, password_stdin, plain_http, insecure, ca_file, output) -> None:
    """Sign staged changes and publish them: targets, snapshot, then timestamp."""
    from tufoci import render
    from tufoci.repo_tool.maintainer import key_names
    from tufoci.repo_tool.publish import publish as do_publish

    if fold and queue:
        raise click.UsageError("--fold and --queue exclude each other")
    state = _state()
    result = do_publish(_maintainer(state, scope, _registry(plain_http, insecure, ca_file)),
                        secrets=_secrets_handler(password_stdin), dry_run=dry_run, fold=fold,
                        progress=_late_progress())
    if output == "json":
        _emit_json(result.to_dict())
        return
    _echo_lines(render.publish_lines(result, dry_run=dry_run, poll=_online_poll(state), names=key_names(state)))


def _online_poll(state) -> int:
    """How soon the online service promotes a complete proposal, as this machine was told (``config set``)."""
    from tufoci.repo_tool.expiry import parse_duration
    from tufoci.repo_tool.online_service import DEFAULT_POLL, POLL_SETTING

    return int(parse_duration(state.setting(POLL_SETTING) or f"{int(DEFAULT_POLL.total_seconds())}s").total_seconds())


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
    from tufoci import render
    from tufoci.repo_tool.delegations import pattern_warning, stage_bins, stage_delegation

    if bins is not None:
        if paths or terminating or parent != "targets":
            raise UsageError("--bins delegates every target from targets: no --path, --terminating or --parent")
        _echo(render.bins_line(stage_bins(_state(), scope, role, keys=list(keys), count=bins, threshold=threshold)))
        return
    change = stage_delegation(_state(), scope, role, keys=list(keys), paths=list(paths), threshold=threshold,
                              terminating=terminating, parent=parent)
    for warning in filter(None, map(pattern_warning, paths)):
        _echo(f"tufoci: warning: {warning}", err=True)
    _echo(render.delegation_line(change))


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--parent", default="targets", show_default=True, help="The delegating role.")
@registry_options
def undelegate(scope, role, parent, plain_http, insecure, ca_file) -> None:
    """Stage the removal of ROLE's delegation from its parent."""
    from tufoci import render
    from tufoci.repo_tool.delegations import stage_undelegation

    _echo(render.undelegation_line(stage_undelegation(_state(), scope, role, parent=parent,
                                                      registry=_registry(plain_http, insecure, ca_file))))


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
    from tufoci import render
    from tufoci.repo_tool.maintainer import key_names
    from tufoci.repo_tool.sessions import sign as do_sign

    state = _state()
    names = key_names(state)

    def show(review) -> None:  # the diff goes to stderr: stdout stays data (-o json)
        _echo_lines(render.proposal_lines(review.to_dict(names), names=names, err=True))

    def confirm(review) -> bool:
        # the role name is the delegator's to choose: escaped like every other line
        return click.confirm(printable(render.sign_question(review)), default=False, err=True)

    interactive = sys.stdin.isatty() and not password_stdin
    done = do_sign(_maintainer(state, scope, _registry(plain_http, insecure, ca_file)), role,
                   expect=list(expect), show=show, confirm=confirm if interactive else None,
                   secrets=_secrets_handler(password_stdin))
    if output == "json":
        _emit_json([{"role": r.proposal.role, "version": r.proposal.version, "keyids": k,
                     "signedDigest": r.proposal.signed_digest} for r, k in done])
        return
    _echo_lines(render.signed_lines(done, scope, names))


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--force", is_flag=True, help="Discard the open proposal even when another machine proposed it.")
@registry_options
def discard(scope, role, force, plain_http, insecure, ca_file) -> None:
    """Abandon this machine's open proposal for ROLE and its staged changes to it."""
    from tufoci import render
    from tufoci.repo_tool.sessions import discard as do_discard

    found = do_discard(_maintainer(_state(), scope, _registry(plain_http, insecure, ca_file)), role, force=force)
    _echo(render.discarded_line(role, found))


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--add-key", "add_keys", multiple=True, help="Key to add (name, URI or public key); repeatable.")
@click.option("--remove-key", "remove_keys", multiple=True, help="Key to remove (name or keyid); repeatable.")
@click.option("--threshold", type=int, help="New threshold.")
@registry_options
def rotate(scope, role, add_keys, remove_keys, threshold, plain_http, insecure, ca_file) -> None:
    """Stage a change of ROLE's keys or threshold (root, targets, snapshot, timestamp or delegated)."""
    from tufoci import render
    from tufoci.repo_tool.rotation import stage_rotation

    change = stage_rotation(_maintainer(_state(), scope, _registry(plain_http, insecure, ca_file)), role,
                            add_keys=list(add_keys), remove_keys=list(remove_keys), threshold=threshold)
    _echo(render.rotation_line(change, scope))


@cli.command()
@click.argument("scope")
@click.argument("role")
@click.option("--expires", metavar="DUR", help="Expire DUR from now (e.g. 120d) instead of after the role's period.")
@registry_options
def renew(scope, role, expires, plain_http, insecure, ca_file) -> None:
    """Stage a new version of ROLE (root, targets or delegated) with the same content and a fresh expiry.

    'tufoci publish' then signs it: it goes live, or becomes a proposal that the
    other signers review (only version and expires change) and sign.
    """
    from tufoci import render
    from tufoci.repo_tool.renew import stage_renewal

    _echo(render.renewal_line(stage_renewal(_state(), scope, role, expires=expires,
                                            registry=_registry(plain_http, insecure, ca_file))))


def _service_options(f: Callable) -> Callable:
    for option in reversed([
        click.option("--every", metavar="DUR", help="Keep running: refresh the timestamp every DUR (e.g. 6h) and "
                     "promote complete proposals every --poll, until SIGTERM."),
        click.option("--poll", metavar="DUR", help="With --every: how often to look for complete proposals "
                     "(default 30s)."),
        click.option("--snapshot", "force_snapshot", is_flag=True, help="Re-sign snapshot even when it is not due."),
        click.option("--revive-expired", is_flag=True,
                     help="Extend an expired timestamp although this machine has no record of the scope's state "
                          "(its high-water marks): only after checking that it is the current state."),
    ]):
        f = option(f)
    return password_stdin_option(registry_options(per_request=True)(f))


def _run_online(scope, every, poll, force_snapshot, revive_expired, password_stdin, options,
                timeout: float) -> None:
    from tufoci.repo_tool.expiry import parse_duration
    from tufoci.repo_tool.freshness import refresh_timestamp
    from tufoci.repo_tool.online_service import DEFAULT_POLL, STATUS_FILE, run_service
    from tufoci.repo_tool.publish import ONLINE_SETTLE
    from tufoci.repo_tool.publish import publish as do_publish

    state = _state()
    secrets = _secrets_handler(password_stdin)

    def refresh(settle: float = 0.0):
        from tufoci.budget import budget

        with budget(timeout):  # each round has the whole budget (with --every this runs for months)
            return refresh_timestamp(_maintainer(state, scope, options), secrets=secrets,
                                     force_snapshot=force_snapshot, revive_expired=revive_expired, settle=settle)

    if every is None:
        if poll is not None:
            raise click.UsageError("--poll needs --every (the service keeps running)")
        from tufoci import render

        _echo_lines(render.refreshed_lines(refresh()))
        return

    def log(record: dict) -> None:  # one JSON object per line on stderr
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _echo(json.dumps({"time": stamp, **record}), err=True)

    run_service(scope, promote=lambda: do_publish(_maintainer(state, scope, options), secrets=secrets,
                                                  promote_only=True),
                refresh=lambda: refresh(ONLINE_SETTLE), every=parse_duration(every),
                poll=parse_duration(poll) if poll else DEFAULT_POLL,
                status_path=state.path(STATUS_FILE), log=log)


@cli.command("online-service")
@click.argument("scope")
@_service_options
def online_service(scope, every, poll, force_snapshot, revive_expired, password_stdin, plain_http, insecure,
                   ca_file, timeout) -> None:
    """The online key's service: with --every, keep the timestamp fresh and make complete proposals live.

    It signs snapshot and timestamp only, and promotes only proposals whose signatures already meet every
    threshold. Without --every it re-signs the timestamp once (like 'tufoci timestamp').
    """
    _run_online(scope, every, poll, force_snapshot, revive_expired, password_stdin,
                _registry(plain_http, insecure, ca_file), timeout)


@cli.command()
@click.argument("scope")
@_service_options
def timestamp(scope, every, poll, force_snapshot, revive_expired, password_stdin, plain_http, insecure,
              ca_file, timeout) -> None:
    """Re-sign the timestamp (and snapshot when due) with the online key; --every runs 'online-service'."""
    _run_online(scope, every, poll, force_snapshot, revive_expired, password_stdin,
                _registry(plain_http, insecure, ca_file), timeout)


CONFIG_SETTINGS = {
    "actor": "your name on proposals and signatures, e.g. alice@acme (default: your keys' names)",
    "online-poll": "how often the online service looks for complete proposals, e.g. 30s (publish says it)",
}


@cli.group()
def config() -> None:
    """Per-machine settings, kept in state.db."""


@config.command("set")
@click.argument("name", type=click.Choice(sorted(CONFIG_SETTINGS)))
@click.argument("value")
def config_set(name: str, value: str) -> None:
    """Set NAME to VALUE on this machine (see 'tufoci config list')."""
    if name == "online-poll":
        from tufoci.repo_tool.expiry import parse_duration

        parse_duration(value)
    _state().set_setting(name, value)
    _echo(f"{name} = {value}")


@config.command("list")
@output_option
def config_list(output: str) -> None:
    """Every setting, its value on this machine, and what it is for."""
    state = _state()
    rows = [{"name": n, "value": state.setting(n), "help": h} for n, h in sorted(CONFIG_SETTINGS.items())]
    if output == "json":
        _emit_json(rows)
        return
    for row in rows:
        _echo(f"{row['name']:<12} {row['value'] or '(unset)':<20} {row['help']}")


@cli.command("export-metadata")
@click.argument("scope")
@click.argument("directory", type=click.Path(file_okay=False))
@registry_options
def export_metadata(scope, directory, plain_http, insecure, ca_file) -> None:
    """Write SCOPE's verified metadata to DIRECTORY as a plain TUF repository (a static HTTP mirror)."""
    from tufoci import render
    from tufoci.repo_tool.export import export_metadata as do_export

    written = do_export(_maintainer(_state(), scope, _registry(plain_http, insecure, ca_file),
                                    allow_expired=False), directory)
    _echo(render.export_line(written, directory, scope), err=True)


@cli.command()
@click.argument("source")
@click.argument("destination")
@click.option("--tag-pattern", metavar="GLOB", help="Only targets whose name matches, e.g. 'web/*' or '*:1.*'.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--replace-newer", is_flag=True,
              help="Replace a destination whose trust state is newer than SOURCE's (moves it backwards).")
@registry_options(timeout="1h")  # it moves whole images
@_side_options("src", "SOURCE")
@_side_options("dest", "DESTINATION")
@output_option
def copy(source, destination, tag_pattern, quiet, replace_newer, plain_http, insecure, ca_file, output,
         **sides) -> None:
    """Copy SOURCE scope's signed images and trust data to DESTINATION (a registry scope or oci:DIR).

    Digests are preserved, present blobs and manifests are skipped (re-run to resume), and the
    timestamp moves last. Copying to oci:DIR and from it again is the air-gapped transfer.
    --src-… and --dest-… options apply to one side and win over the unprefixed ones.
    """

    from tufoci import render
    from tufoci.registry_config import TLSFlags
    from tufoci.repo_tool.copy import copy_scope

    options = _registry(plain_http, insecure, ca_file)
    config = options.config
    for side, scope in (("src", source), ("dest", destination)):
        flags = TLSFlags(sides[f"{side}_plain_http"] or None, sides[f"{side}_insecure"], sides[f"{side}_ca_file"],
                         sides[f"{side}_certs_dir"])
        if flags != TLSFlags() and not scope.startswith("oci:"):
            config = config.with_flags_for(scope.split("/", 1)[0], flags)
    report = copy_scope(_maintainer(_state(), source, options.replace(config=config), allow_expired=False), destination,
                        tag_pattern=tag_pattern, replace_newer=replace_newer,
                        progress=(lambda line: None) if quiet else (lambda line: _echo(line, err=True)))
    if output == "json":
        _emit_json(report.to_dict())
        return
    _echo(render.copy_line(report))


@cli.command()
@click.argument("scope")
@click.argument("references", nargs=-1)
@click.option("--since", metavar="DATE", help="Only what was still signed at or after DATE (YYYY-MM-DD or an ISO time, UTC).")
@registry_options
@output_option
def history(scope, references, since, plain_http, insecure, ca_file, output) -> None:
    """The signed history of SCOPE's tags (or of REFERENCES), rebuilt from the versions the registry keeps.

    Needs only the registry and the pinned root: every version is checked against
    the root (or delegating role) of its time; one that does not verify is shown
    as UNVERIFIED and never used, a missing one as a gap.
    """
    from tufoci.client.history import scope_history
    from tufoci.repo_tool.maintainer import key_names

    state = _state()
    result = scope_history(state, scope, list(references), since=_parse_since(since) if since else None,
                           registry=_registry(plain_http, insecure, ca_file))
    names = key_names(state)
    if output == "json":
        _emit_json(result.to_dict(names))
        return
    _echo_history(result.to_dict(names))


def _parse_since(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(f"invalid --since {text!r}: use YYYY-MM-DD or an ISO 8601 time") from e
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _signers_text(signers: list[dict]) -> str:
    return ", ".join(s["key"] or s["keyid"][:12] for s in signers) or "nobody"


def _echo_history(h: dict) -> None:
    """``history`` for people: every kept version and its check, the gaps, then each tag's story."""
    _echo(f"history of {h['scope']} (metadata {h['metadata']}), from the pinned root v{h['pinnedRootVersion']}")
    for v in h["versions"]:
        if v["verified"] and v["role"] == "snapshot":
            continue  # one per publish and per snapshot re-sign: in -o json; only a failed one is news
        if v["verified"]:
            when = f" ~{v['signedAbout']}" if v["signedAbout"] else ""
            _echo(f"  {v['role']} v{v['version']}{when}: signed by {_signers_text(v['signedBy'])}, "
                  f"checked against {v['checkedAgainst']}")
        else:
            _echo(f"  UNVERIFIED: {v['role']} v{v['version']} ({v['tag']}): {v['problem']}")
    for gap in h["gaps"]:
        _echo(f"  gap: {gap['role']} v{gap['version']} is not in the registry")
    for tag in h["tags"]:
        _echo(tag["target"])
        for e in tag["history"]:
            span = (f"{e['role']} v{e['fromVersion']}.." + ("(latest)" if e["inLatestVersion"]
                                                              else f"v{e['toVersion']}, changed or removed in v{e['endedByVersion']}"))
            when = f"~{e['from']} → " + (f"~{e['until']}" if e["until"] else "now")
            unknown = (f"; versions {', '.join(map(str, e['unknownVersions']))} unverified or missing"
                       if e["unknownVersions"] else "")
            under = "" if e["checkedAgainst"].startswith("root ") else f", root v{e['rootVersion']}"
            _echo(f"  {e['digest']}  {span}  {when}  signed by {_signers_text(e['signedBy'])} "
                  f"(checked against {e['checkedAgainst']}{under}){unknown}")


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
    from tufoci.registry_options import docker_config_path
    from tufoci.store.registry import check_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, err=True)
    else:
        raise UsageError("no password: use --password-stdin")
    credentials = Credentials(username, password)
    check_login(registry, credentials, _registry(plain_http, insecure, ca_file))
    path = store_credentials(docker_config_path(os.environ), registry, credentials)
    _echo(f"login succeeded for {username} at {registry} (stored in {path})", err=True)


@cli.command()
@click.argument("registry")
def logout(registry) -> None:
    """Remove REGISTRY's stored credentials from docker's config.json."""
    from tufoci.credentials import remove_credentials
    from tufoci.registry_options import docker_config_path

    if not remove_credentials(docker_config_path(os.environ), registry):
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
@click.option("--replace", is_flag=True, help="Replace the scope's existing pin (it is refused otherwise).")
@registry_options
def trust_add(scope, root_file, root_sha256, metadata, replace, plain_http, insecure, ca_file) -> None:
    """Trust SCOPE's metadata, anchored at a root obtained out of band (no TOFU)."""
    from tufoci.client.trust_pins import add_pin, check_root_in_registry, fetch_root_by_sha256, full_sha256

    if bool(root_file) == bool(root_sha256):
        raise UsageError("give exactly one of --root FILE or --root-sha256 HEX")
    options = _registry(plain_http, insecure, ca_file)
    if root_file:
        with open(root_file, "rb") as f:
            data = f.read()
        note = check_root_in_registry(scope, data, metadata, registry=options)
        if note:
            _echo(f"tufoci: warning: {note}", err=True)
        from tufoci.client.genesis_root import pending_note

        pending = pending_note(data)
        if pending:
            _echo(pending, err=True)
    else:
        data = fetch_root_by_sha256(scope, full_sha256(root_sha256), metadata, registry=options)
    pin = add_pin(_state(), scope, root_data=data, metadata=metadata, expected_sha256=root_sha256, replace=replace)
    _echo(f"trusting {pin.scope} (metadata {pin.metadata}, root sha256 {pin.root_sha256})")


@trust.command("list")
@output_option
def trust_list(output) -> None:
    """List trust pins."""
    pins = _state().pins()
    if output == "json":
        _emit_json([camel_keys(p.as_dict()) for p in pins])
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
                         registry=_registry(plain_http, insecure, ca_file))
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
    serve(state, path, freshness=window, request_timeout=timeout, registry=_registry(plain_http, insecure, ca_file))


# -- migration ----------------------------------------------------------------------------------
from tufoci.cli_notary import import_notary  # noqa: E402  (click only; the work is imported when it runs)

cli.add_command(import_notary)


# -- enforcement ----------------------------------------------------------------------------
@cli.group()
def admission() -> None:
    """The Kubernetes admission webhook: admit only images signed in their trust repository."""


def _enforcer_options(f: Callable) -> Callable:
    """The options the admission webhook and the verifying mirror share (tufoci/enforce/server.py serves both)."""
    f = click.option("--max-connections", type=click.IntRange(min=1), default=256, show_default=True,
                     help="Connections served at once; more are closed at accept (counted in /metrics).")(f)
    f = click.option("--ready-file", type=click.Path(dir_okay=False), help="Write the URL here once listening.")(f)
    return click.option("--cache-dir", type=click.Path(file_okay=False),
                        help="Where verified metadata is cached (default: a new temporary directory).")(f)


def _listen_address(listen: str) -> tuple[str, int]:
    from tufoci.enforce.server import parse_listen

    try:
        return parse_listen(listen)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _enforcer_views(policy: Any, cache_dir: str | None, name: str) -> Any:
    """The verified views of a policy's scopes, cached in ``cache_dir`` (default: a new temporary directory).
    Trust data is read with certs.d, registries.conf and proxies as for every command; a policy entry's own
    options win."""
    import tempfile

    from tufoci.enforce.view import Views, loaders_for_policy

    cache = cache_dir or tempfile.mkdtemp(prefix=f"tufoci-{name}-")
    return Views(loaders_for_policy(policy, cache, _registry(None, False, None)), policy.freshness)


@admission.command("serve")
@click.option("--policy", "policy_file", required=True, type=click.Path(dir_okay=False),
              help="The policy file (YAML, docs/admission.md).")
@click.option("--tls-cert", required=True, type=click.Path(dir_okay=False), help="Serving certificate (PEM), "
              "re-read when the file changes.")
@click.option("--tls-key", required=True, type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option("--listen", default="0.0.0.0:8443", show_default=True, metavar="HOST:PORT")
@_enforcer_options
def admission_serve(policy_file, tls_cert, tls_key, listen, cache_dir, ready_file, max_connections) -> None:
    """Serve /mutate, /validate, /healthz, /readyz and /metrics over HTTPS until SIGTERM."""
    from tufoci.enforce.policy import load_policy
    from tufoci.enforce.server import serve

    address = _listen_address(listen)
    policy = load_policy(policy_file)
    views = _enforcer_views(policy, cache_dir, "admission")
    sys.exit(serve(policy, views, cert_file=tls_cert, key_file=tls_key, listen=address, ready_file=ready_file,
                   max_connections=max_connections))


@cli.group()
def mirror() -> None:
    """The verifying registry mirror: serve a registry's images only at their signed digests."""


@mirror.command("serve")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False),
              help="The policy file with a mirror section (YAML, docs/mirror.md).")
@click.option("--listen", default="127.0.0.1:5001", show_default=True, metavar="HOST:PORT")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Serve HTTPS with this certificate (PEM), "
              "re-read when the file changes; default plain HTTP.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Its private key (PEM).")
@_enforcer_options
def mirror_serve(config_file, listen, tls_cert, tls_key, cache_dir, ready_file, max_connections) -> None:
    """Serve the OCI read API (/v2/), /healthz, /readyz and /metrics until SIGTERM."""
    from tufoci.enforce.mirror import Mirror, Upstreams
    from tufoci.enforce.mirror_server import serve
    from tufoci.enforce.policy import Mode, PolicyError, load_policy

    address = _listen_address(listen)
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    policy = load_policy(config_file)
    if policy.mirror is None:
        raise PolicyError(f"{config_file}: field mirror: missing: name the upstream registries the mirror fronts")
    if policy.mode is Mode.WARN:
        raise PolicyError(f"{config_file}: field mode: the mirror has no warn mode (it would serve unverified "
                          "images): use enforce")
    views = _enforcer_views(policy, cache_dir, "mirror")
    served = Mirror(policy, views, Upstreams(policy.mirror, _registry(None, False, None).credentials))
    sys.exit(serve(policy, views, served, listen=address, cert_file=tls_cert, key_file=tls_key,
                   ready_file=ready_file, max_connections=max_connections))


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
    except StateDatabaseError as e:  # state.db damaged in a way only a query finds (State.open catches the rest)
        if _VERBOSE:
            traceback.print_exc()
        path = os.path.join(_HOME or "~/.tufoci", "state.db")
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
