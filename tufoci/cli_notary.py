"""``tufoci import-notary``: the click layer over ``repo_tool.notary_import`` (registered by ``tufoci.cli``)."""

from __future__ import annotations

import click


@click.command("import-notary")
@click.argument("guns", nargs=-1, required=True)
@click.option("--server", metavar="URL", help="notary-server URL (https://HOST:PORT).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA bundle of the notary-server.")
@click.option("--client-cert", type=click.Path(exists=True, dir_okay=False), help="TLS client certificate (PEM).")
@click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Its private key (PEM).")
@click.option("--trust-dir", type=click.Path(exists=True, file_okay=False),
              help="A docker/notary trust directory (~/.docker/trust) instead of a server.")
@click.option("--root-sha256", "root_sha256", multiple=True, metavar="HEX",
              help="sha256 of the trusted root.json, one per GUN in order.")
@click.option("--root-cert-fingerprint", multiple=True, metavar="HEX",
              help="sha256 fingerprint of a trusted root certificate, one per GUN in order.")
@click.option("--tofu", is_flag=True, help="Trust the root the source serves (trust on first use), explicitly.")
@click.option("--semantics", type=click.Choice(["dct", "notary"]), default="dct", show_default=True,
              help="Whose answer a tag gets: docker pull with content trust, or notary lookup.")
@click.option("--unpublished", type=click.Choice(["carry", "drop"]), default="carry", show_default=True,
              help="A delegation declared but never published: carried over empty, or dropped (warned either way).")
@click.option("--scope", help="tufoci scope (default: the GUN's parent, registry/namespace).")
@click.option("--allow-expired", is_flag=True, help="Import an expired collection (reported).")
@click.option("--dry-run", is_flag=True, help="Verify and print the plan; touch no registry.")
@click.option("--password-stdin", is_flag=True, help="Read the key passphrase from standard input.")
@click.option("--plain-http", is_flag=True, default=None, help="Reach the image registry over plain HTTP.")
@click.option("--insecure", is_flag=True, help="Do not verify the servers' TLS certificates.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def import_notary(guns, server, ca_file, client_cert, client_key, trust_dir, root_sha256, root_cert_fingerprint,
                  tofu, semantics, unpublished, scope, allow_expired, dry_run, password_stdin, plain_http, insecure,
                  output) -> None:
    """Verify Notary v1 / Docker Content Trust collections (GUNs), print the tufoci plan and, without --dry-run,
    check the images, stage what changed since the last import into the scope initialised with 'tufoci init'
    and publish: the top-level tags go live, each delegated role is proposed to its delegates ('tufoci sign')."""
    from tufoci.cli import _echo, _emit_json, _home, _registry, _secrets_handler, _state
    from tufoci.repo_tool.notary_import import (
        ImportResult,
        check_manifests,
        import_plans,
        pins_for,
        plan_import,
        render_text,
    )

    pins = pins_for(list(guns), list(root_sha256), list(root_cert_fingerprint), tofu)
    # the server's own TLS options; credentials and timeouts as for any registry (the TLS of these is replaced)
    server_options = {"ca_file": ca_file, "client_cert": client_cert, "client_key": client_key,
                      "insecure": insecure, "registry": _registry(None, False, None)} if server else {}
    home = _home()
    plans = plan_import(list(guns), pins, home=home, server=server, trust_dir=trust_dir, semantics=semantics,
                        allow_expired=allow_expired, scope=scope, server_options=server_options,
                        unpublished=unpublished)
    result = ImportResult(plans, home)
    try:
        if not dry_run:
            registry = _registry(plain_http, insecure, None)  # certs.d and proxies too
            result.checks = {plan.gun: check_manifests(plan, registry, result.diffs[plan.gun]) for plan in plans}
            import_plans(_state(), result, secrets=_secrets_handler(password_stdin), registry=registry)
    finally:  # the verified plan and the checks are shown even when publishing stops
        if output == "json":
            _emit_json(result.to_json())
        else:
            for line in render_text(result):  # role names, certificate CNs, registry answers: escaped
                _echo(line)
