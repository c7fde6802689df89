"""Real registries with TLS and authentication: htpasswd (basic auth) over HTTPS, and the bearer-token flow.

Each registry is Debian's docker-registry 2.8 on 127.0.0.1; TLS uses a throwaway CA
(tests/support/tls.py), token auth a small token service (tests/support/token_service.py)
whose JWTs the registry verifies against its rootcertbundle. Images are pushed by skopeo
with its own TLS and credential flags, so the certificates and tokens are checked by a
second, independent client too.

Every tufoci command runs in-process, but as a fresh process would: the shared
registry clients (connections, credentials, tokens) are dropped before each one.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CliResult, needs_registry, run_tufoci, use_home
from tests.support.images import build_image, push_image, run_tool
from tests.support.registry import write_htpasswd
from tests.support.tls import TLSRegistryServer, make_server_pki
from tests.support.token_service import TokenService

pytestmark = needs_registry

USER = "alice"
PASSWORD = "s3cret-Pa55-9f1c0de"  # searched for in every output, log and file tufoci writes
CI_USER, CI_PASSWORD = "ci-bot", "t0ken-Secret-77aa21"


@dataclass
class Cli:
    """Runs tufoci as one machine (TUFOCI_HOME, DOCKER_CONFIG) and keeps every result."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    transcript: list[CliResult] = field(default_factory=list)

    def __call__(self, machine: str, *args: str, stdin: str | None = None,
                 docker_config: Path | None = None) -> CliResult:
        use_home(self.monkeypatch, self.tmp_path / machine)
        self.monkeypatch.setenv("DOCKER_CONFIG", str(docker_config or self.tmp_path / "docker-config"))
        result = run_tufoci(*args, stdin=stdin)
        self.transcript.append(result)
        return result

    def ok(self, machine: str, *args: str, **kwargs) -> CliResult:
        result = self(machine, *args, **kwargs)
        assert result.exit_code == 0, f"tufoci {' '.join(args)}: exit {result.exit_code}: {result.stderr}"
        return result

    def fails(self, code: int, machine: str, *args: str, **kwargs) -> str:
        """Run, expect exit ``code`` and exactly one line on stderr; return that line."""
        result = self(machine, *args, **kwargs)
        assert result.exit_code == code, f"expected exit {code}, got {result.exit_code}: {result.stderr}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tufoci: error: "), result.stderr
        return lines[0]


@pytest.fixture
def cli(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.delenv("TUFOCI_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("TUFOCI_REGISTRY_PASSWORD", raising=False)
    monkeypatch.delenv("TUFOCI_REGISTRY_HOST", raising=False)
    runner = Cli(tmp_path, monkeypatch)
    yield runner  # each command's clients (and credentials) end with it: its own pool, closed by the CLI


def fast(cli: Cli, machine: str, *args: str, docker_config: Path | None = None) -> tuple[int, str, str] | None:
    """The verify fast path (client/fast_verify.py) as ``machine`` runs it, with the same environment."""
    from tufoci.client.fast_verify import fast_verify

    use_home(cli.monkeypatch, cli.tmp_path / machine)
    cli.monkeypatch.setenv("DOCKER_CONFIG", str(docker_config or cli.tmp_path / "docker-config"))
    return fast_verify(list(args), str(cli.tmp_path / machine))


def make_keys(cli: Cli, machine: str) -> None:
    for name, options in (("root", ()), ("targets", ()), ("online", ("--unencrypted",))):
        cli.ok(machine, "key", "generate", name, *options)


def init_args(scope: str, root_out: Path) -> tuple[str, ...]:
    return ("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
            "--root-out", str(root_out))


def assert_secret_absent(secret: str, cli: Cli, caplog: pytest.LogCaptureFixture, *homes: Path) -> None:
    """Not in any stdout/stderr, any log record, or any file under the tufoci homes (state.db, audit log)."""
    for result in cli.transcript:
        assert secret not in result.stdout and secret not in result.stderr
    assert secret not in caplog.text
    for home in homes:
        for path in home.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# -- TLS + htpasswd -----------------------------------------------------------------------------


@pytest.fixture
def tls_basic(tmp_path: Path) -> Iterator[tuple[TLSRegistryServer, object]]:
    pki = make_server_pki(tmp_path / "pki")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    with TLSRegistryServer.start_tls(tmp_path, pki, htpasswd=htpasswd, credentials=(USER, PASSWORD)) as server:
        yield server, pki


def test_tls_and_basic_auth(tls_basic, cli: Cli, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    registry, pki = tls_basic
    host, scope = registry.host, f"{registry.host}/acme"
    ca = ("--ca-file", str(pki.ca_file))
    config = tmp_path / "docker-config" / "config.json"

    # skopeo checks the same certificate with the CA alone (no --dest-tls-verify=false)
    layout = build_image(tmp_path / "images", b"web 1.0 over TLS")
    run_tool(["skopeo", "copy", "--insecure-policy", "--preserve-digests", "--dest-cert-dir", str(pki.cert_dir),
              "--dest-creds", f"{USER}:{PASSWORD}", f"oci:{layout}:latest", f"docker://{scope}/web:1.0"])
    make_keys(cli, "maintainer")
    root = tmp_path / "root.json"

    # no TLS options: loopback means plain HTTP, which a TLS port refuses
    line = cli.fails(13, "maintainer", *init_args(scope, root))
    assert "speaks HTTPS" in line and "--ca-file" in line
    # a CA that did not sign the certificate
    other = make_server_pki(tmp_path / "other-pki")
    line = cli.fails(13, "maintainer", *init_args(scope, root), "--ca-file", str(other.ca_file))
    assert f"cannot reach registry {host}" in line and "TLS certificate is not trusted" in line
    # trusted, but no credentials
    line = cli.fails(13, "maintainer", *init_args(scope, root), *ca)
    assert "HTTP 401" in line and f"tufoci login {host}" in line

    # a wrong password is refused and nothing is written
    line = cli.fails(13, "maintainer", "login", host, "-u", USER, "--password-stdin", *ca, stdin="wrong-password\n")
    assert "HTTP 401" in line
    assert not config.exists()
    # the right password without the TLS options: refused before any credential is sent
    line = cli.fails(13, "maintainer", "login", host, "-u", USER, "--password-stdin", stdin=f"{PASSWORD}\n")
    assert "speaks HTTPS" in line
    assert not config.exists()

    login = cli.ok("maintainer", "login", host, "-u", USER, "--password-stdin", *ca, stdin=f"{PASSWORD}\n")
    assert f"login succeeded for {USER} at {host}" in login.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert list(json.loads(config.read_text())["auths"]) == [host]

    cli.ok("maintainer", *init_args(scope, root), *ca)
    cli.ok("maintainer", "target", "add", f"{scope}/web:1.0", *ca)
    cli.ok("maintainer", "publish", scope, *ca)
    cli.ok("cluster", "trust", "add", scope, "--root", str(root))
    pinned = cli.ok("cluster", "-v", "verify", f"{scope}/web:1.0", *ca).stdout.strip()
    assert pinned.startswith(f"{scope}/web@sha256:")
    assert registry.get_manifest("acme/web", pinned.split("@")[1])  # the registry serves that digest
    # the fast path: the same TLS settings and Basic credentials as the full client, or nothing
    assert fast(cli, "cluster", f"{scope}/web:1.0", *ca) == (0, pinned + "\n", "")
    assert fast(cli, "cluster", f"{scope}/web:1.0") is None  # plain HTTP to a TLS port: the full path's error
    assert fast(cli, "cluster", f"{scope}/web:1.0", "--ca-file", str(other.ca_file)) is None
    helper_config = tmp_path / "helper-docker-config"
    helper_config.mkdir()
    (helper_config / "config.json").write_text(json.dumps({"credHelpers": {host: "tufoci-test-none"}}))
    assert fast(cli, "cluster", f"{scope}/web:1.0", *ca, docker_config=helper_config) is None  # helpers: full path
    cli.ok("maintainer", "log", "-o", "json")
    assert_secret_absent(PASSWORD, cli, caplog, tmp_path / "maintainer", tmp_path / "cluster")

    # logout: the entry is gone and the registry refuses again
    cli.ok("maintainer", "logout", host)
    assert json.loads(config.read_text())["auths"] == {}
    assert cli("maintainer", "logout", host).exit_code == 2
    line = cli.fails(13, "cluster", "verify", f"{scope}/web:1.0", *ca)
    assert "HTTP 401" in line and "tufoci login" in line
    assert fast(cli, "cluster", f"{scope}/web:1.0", *ca) is None

    # CI: credentials from the environment, nothing on disk
    cli.monkeypatch.setenv("TUFOCI_REGISTRY_USERNAME", USER)
    cli.monkeypatch.setenv("TUFOCI_REGISTRY_PASSWORD", PASSWORD)
    cli.monkeypatch.setenv("TUFOCI_REGISTRY_HOST", host)
    assert cli.ok("cluster", "verify", f"{scope}/web:1.0", *ca).stdout.strip() == pinned
    assert fast(cli, "cluster", f"{scope}/web:1.0", *ca) == (0, pinned + "\n", "")
    cli.monkeypatch.setenv("TUFOCI_REGISTRY_PASSWORD", "not-the-password")
    line = cli.fails(13, "cluster", "verify", f"{scope}/web:1.0", *ca)
    assert "HTTP 401" in line
    assert fast(cli, "cluster", f"{scope}/web:1.0", *ca) is None
    assert_secret_absent(PASSWORD, cli, caplog, tmp_path / "maintainer", tmp_path / "cluster")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skips_certificate_checks(tmp_path: Path, cli: Cli):
    pki = make_server_pki(tmp_path / "pki")
    with TLSRegistryServer.start_tls(tmp_path, pki) as registry:
        scope = f"{registry.host}/acme"
        push_image(build_image(tmp_path / "images", b"insecure web"), "latest", f"{scope}/web:1.0")  # tls-verify=false
        make_keys(cli, "maintainer")
        root = tmp_path / "root.json"
        cli.ok("maintainer", *init_args(scope, root), "--insecure")
        cli.ok("maintainer", "target", "add", f"{scope}/web:1.0", "--insecure")
        cli.ok("maintainer", "publish", scope, "--insecure")
        cli.ok("cluster", "trust", "add", scope, "--root", str(root))
        pinned = cli.ok("cluster", "verify", f"{scope}/web:1.0", "--insecure").stdout.strip()
        assert pinned.startswith(f"{scope}/web@sha256:")
        # without it the same certificate is rejected, with a hint
        line = cli.fails(13, "cluster", "verify", f"{scope}/web:1.0", "--ca-file", str(make_server_pki(
            tmp_path / "other").ca_file))
        assert "TLS certificate is not trusted" in line and "--insecure" in line


# -- bearer tokens ---------------------------------------------------------------------------------


@pytest.fixture(params=[("ES256", "x5c"), ("RS256", "kid")], ids=["es256-x5c", "rs256-kid"])
def token_registry(request, tmp_path: Path):
    from tests.support.registry import RegistryServer

    algorithm, key_id = request.param
    with TokenService.start(tmp_path / "token-service", users={CI_USER: CI_PASSWORD}, anonymous_pull=True,
                            algorithm=algorithm, key_id=key_id) as service:
        with RegistryServer.start(tmp_path, extra_config=service.registry_config()) as registry:
            yield registry, service


def test_token_auth_anonymous_pull_authenticated_push(token_registry, cli: Cli, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    registry, tokens = token_registry
    host, scope = registry.host, f"{registry.host}/acme"
    push_image(build_image(tmp_path / "images", b"web behind tokens"), "latest", f"{scope}/web:1.0",
               dest_creds=(CI_USER, CI_PASSWORD))
    pushed_by_skopeo = tokens.issued()
    assert pushed_by_skopeo and all(r.account == CI_USER for r in pushed_by_skopeo)
    make_keys(cli, "maintainer")
    root = tmp_path / "root.json"
    anonymous = tmp_path / "anonymous-docker-config"

    # without credentials the token service grants pull only, so a push is refused
    line = cli.fails(13, "maintainer", *init_args(scope, root), docker_config=anonymous)
    assert "HTTP 401" in line and f"tufoci login {host}" in line
    assert all(set(a["actions"]) == {"pull"} for r in tokens.issued() if r.account is None for a in r.granted)
    line = cli.fails(13, "maintainer", "login", host, "-u", CI_USER, "--password-stdin", stdin="nope\n")
    assert "refused the credentials (HTTP 401)" in line
    cli.ok("maintainer", "login", host, "-u", CI_USER, "--password-stdin", stdin=f"{CI_PASSWORD}\n")

    since_tokens, since_requests = tokens.mark(), registry.mark()
    cli.ok("maintainer", *init_args(scope, root))
    cli.ok("maintainer", "target", "add", f"{scope}/web:1.0")
    cli.ok("maintainer", "publish", scope)
    issued, requests = tokens.issued(since_tokens), registry.request_count(since_requests)
    assert all(r.account == CI_USER for r in issued)
    # exactly the requested scope: pull,push on the metadata repository, pull on the image
    for r in issued:  # a user gets exactly the scope asked for
        assert [f"repository:{a['name']}:{','.join(a['actions'])}" for a in r.granted] == " ".join(r.scopes).split()
    granted = {(a["name"], tuple(a["actions"])) for r in issued for a in r.granted}
    assert granted == {("acme/tuf", ("pull", "push")), ("acme/tuf", ("pull",)), ("acme/web", ("pull",))}, granted
    # a token per scope and command, reused for every request in it
    print(f"init + target add + publish: {len(issued)} tokens, {requests} registry requests")
    assert len(issued) <= 8 and requests >= 5 * len(issued), (len(issued), requests)

    # a consumer with no credentials at all: anonymous pull tokens
    since_tokens, since_requests = tokens.mark(), registry.mark()
    cli.ok("cluster", "trust", "add", scope, "--root", str(root), docker_config=anonymous)
    out = cli.ok("cluster", "verify", f"{scope}/web:1.0", docker_config=anonymous).stdout
    assert out.startswith(f"{scope}/web@sha256:")
    issued = tokens.issued(since_tokens)
    assert issued and all(r.account is None for r in issued)
    assert {(a["name"], tuple(a["actions"])) for r in issued for a in r.granted} <= {
        ("acme/tuf", ("pull",)), ("acme/web", ("pull",))}
    assert registry.request_count(since_requests) > len(issued)
    assert_secret_absent(CI_PASSWORD, cli, caplog, tmp_path / "maintainer", tmp_path / "cluster")
    # the token flow is the full client's: the fast path falls through (and asks the token service nothing)
    since_tokens = tokens.mark()
    assert fast(cli, "cluster", f"{scope}/web:1.0", docker_config=anonymous) is None
    assert not tokens.issued(since_tokens)
    for request in tokens.requests:
        assert CI_PASSWORD not in request.path


# -- environment credentials name their registry -----------------------------------------------


def test_environment_credentials_go_only_to_the_registry_they_name(token_registry, cli: Cli, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture):
    """``copy SRC DST`` in CI with the destination's credentials in the environment: the source (anyone's
    registry) never sees them; without TUFOCI_REGISTRY_HOST they are refused instead of sent everywhere."""
    from tests.support.registry import RegistryServer, write_htpasswd

    caplog.set_level(logging.DEBUG)
    source, tokens = token_registry
    scope = f"{source.host}/acme"
    push_image(build_image(tmp_path / "images", b"web to mirror"), "latest", f"{scope}/web:1.0",
               dest_creds=(CI_USER, CI_PASSWORD))
    make_keys(cli, "maintainer")
    root = tmp_path / "root.json"
    cli.ok("maintainer", "login", source.host, "-u", CI_USER, "--password-stdin", stdin=f"{CI_PASSWORD}\n")
    cli.ok("maintainer", *init_args(scope, root))
    cli.ok("maintainer", "target", "add", "--publish", f"{scope}/web:1.0")

    anonymous = tmp_path / "anonymous-docker-config"
    htpasswd = write_htpasswd(tmp_path / "mirror-htpasswd", {USER: PASSWORD})
    with RegistryServer.start(tmp_path / "mirror", htpasswd=htpasswd, credentials=(USER, PASSWORD)) as mirror:
        cli.ok("ci", "trust", "add", scope, "--root", str(root), docker_config=anonymous)
        cli.monkeypatch.setenv("TUFOCI_REGISTRY_USERNAME", USER)
        cli.monkeypatch.setenv("TUFOCI_REGISTRY_PASSWORD", PASSWORD)
        line = cli.fails(2, "ci", "copy", scope, f"{mirror.host}/acme", docker_config=anonymous)
        assert "TUFOCI_REGISTRY_HOST" in line

        cli.monkeypatch.setenv("TUFOCI_REGISTRY_HOST", mirror.host)
        since = tokens.mark()
        cli.ok("ci", "copy", scope, f"{mirror.host}/acme", docker_config=anonymous)
        asked = tokens.requests[since:]
        assert asked and all(r.account is None and r.status == 200 for r in asked), asked  # anonymous pulls only
        cli.ok("cluster", "trust", "add", f"{mirror.host}/acme", "--root", str(root), docker_config=anonymous)
        cli.ok("cluster", "verify", f"{mirror.host}/acme/web:1.0", docker_config=anonymous)
    assert_secret_absent(PASSWORD, cli, caplog, tmp_path / "ci", tmp_path / "cluster")
