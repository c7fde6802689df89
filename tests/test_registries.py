"""Issue 17: registries configured as docker and podman users configure them (docs/registries.md).

Real parts: a plain registry, a TLS registry with its own CA and one requiring a client certificate
(another CA), all on loopback, configured through certs.d directories or copy's per-side flags; a
forward proxy on loopback (tests/support/forward_proxy.py) through which every request must pass.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Machine, needs_registry, ok, publish_web, run_tufoci, use_home
from tests.support.forward_proxy import ForwardProxy
from tests.support.registry import write_htpasswd
from tests.support.tls import MutualTLSRegistryServer, TLSRegistryServer, make_server_pki
from tufoci.enforce.policy import parse_policy
from tufoci.enforce.view import loaders_for_policy
from tufoci.errors import RegistryError
from tufoci.registry_config import (
    Proxies,
    RegistryConfig,
    RegistryConfigError,
    RegistryEntry,
    TLSFlags,
    is_loopback,
    load_config,
    read_registries_conf,
    split_address,
)
from tufoci.registry_options import CredentialSource, RegistryOptions

# -- resolution, table-driven (no network) --------------------------------------------------------------

def _certs(root: Path, host: str, *names: str) -> Path:
    directory = root / host
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("x")
    return directory


@pytest.mark.parametrize("case", [
    # (flags, certs.d files for the host, registries.conf entry, expected (plain_http, verify, CAs, system CAs, mTLS))
    dict(flags=TLSFlags(), files=(), entry=None, expect=(True, True, 0, True, False)),  # loopback: plain
    dict(flags=TLSFlags(), files=("ca.crt",), entry=None, expect=(False, True, 1, True, False)),  # a CA: TLS
    dict(flags=TLSFlags(), files=("c.cert", "c.key"), entry=None, expect=(False, True, 0, True, True)),
    dict(flags=TLSFlags(ca_file="/flag.pem"), files=("ca.crt",), entry=None, expect=(False, True, 1, False, False)),
    dict(flags=TLSFlags(plain_http=True), files=("ca.crt",), entry=None, expect=(True, True, 1, True, False)),
    dict(flags=TLSFlags(), files=(), entry=RegistryEntry("127.0.0.1:5000", None, insecure=True),
         expect=(True, False, 0, True, False)),  # insecure local registry: still plain, never verified
    dict(flags=TLSFlags(insecure=True), files=(), entry=None, expect=(False, False, 0, True, False)),
    dict(flags=TLSFlags(client_cert="/me.pem"), files=("c.cert", "c.key"), entry=None,
         expect=(False, True, 0, True, True)),  # a flag's client certificate wins over certs.d
])
def test_settings_resolution(case, tmp_path: Path):
    _certs(tmp_path, "127.0.0.1:5000", *case["files"])
    config = RegistryConfig(case["flags"], certs_roots=(str(tmp_path / "none"), str(tmp_path)),
                            registries=(case["entry"],) if case["entry"] else ())
    s = config.settings_for("127.0.0.1:5000")
    assert (s.plain_http, s.verify, len(s.ca_files), s.system_cas, s.client_cert is not None) == case["expect"]
    if case["flags"].client_cert:
        assert s.client_cert == ("/me.pem", "/me.pem")


def test_per_registry_flags_win_and_location_and_blocked(tmp_path: Path):
    config = RegistryConfig(TLSFlags(ca_file="/all.pem"), registries=(
        RegistryEntry("registry.example", "127.0.0.1:5000"), RegistryEntry("evil.example", None, blocked=True)))
    config = config.with_flags_for("127.0.0.1:6000", TLSFlags(plain_http=True))
    assert config.settings_for("127.0.0.1:6000").plain_http and config.settings_for("127.0.0.1:6000").ca_files == ("/all.pem",)
    assert config.settings_for("registry.example").address == "127.0.0.1:5000"
    with pytest.raises(RegistryError, match="blocked in registries.conf"):
        config.settings_for("evil.example")
    with pytest.raises(RegistryConfigError, match="both source and destination"):
        config.with_flags_for("127.0.0.1:6000", TLSFlags(insecure=True))


def test_credentials_follow_the_location_not_the_name(tmp_path: Path, monkeypatch):
    from tufoci.store.registry import RegistryClient

    auth = base64.b64encode(b"alice:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.example": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    for var in ("TUFOCI_REGISTRY_USERNAME", "TUFOCI_REGISTRY_PASSWORD", "TUFOCI_REGISTRY_HOST"):
        monkeypatch.delenv(var, raising=False)
    moved = RegistryConfig(registries=(RegistryEntry("registry.example", "elsewhere.example"),))
    source = CredentialSource.from_environment(os.environ)
    assert RegistryClient("registry.example", RegistryOptions(moved, source))._get_credentials() is None  # not sent elsewhere
    assert RegistryClient("registry.example", RegistryOptions(credentials=source))._get_credentials().username == "alice"


@pytest.mark.parametrize("no_proxy, url, proxied", [
    ("", "https://registry.example/v2/", True),
    ("registry.example", "https://registry.example:443/v2/", False),
    (".example", "https://registry.example/v2/", False),
    ("example", "https://registry.example/v2/", False),
    ("other.example", "https://registry.example/v2/", True),
    ("127.0.0.1:5000", "http://127.0.0.1:5000/v2/", False),
    ("127.0.0.1:5000", "http://127.0.0.1:5001/v2/", True),
    ("10.0.0.0/8", "http://10.1.2.3/v2/", False),
    ("*", "https://anything/v2/", False),
])
def test_no_proxy(no_proxy: str, url: str, proxied: bool):
    proxies = Proxies.from_environment({"https_proxy": "proxy:3128", "HTTP_PROXY": "http://proxy:3128",
                                        "NO_PROXY": no_proxy})
    assert (proxies.for_url(url) is not None) == proxied
    assert proxies.https == "http://proxy:3128"  # no scheme: an HTTP proxy, as curl takes it


ADDRESSES = ["127.0.0.1:5000", "LOCALHOST", "localhost:0", "Reg.Example.com", "h:65535", "h:65536", "h:", "h:abc",
             "h:+5", "h:05", "h:\u0665", "h:5 ", "[::1]:5000", "[::1]", "[::ffff:127.0.0.1]", "[:::::]", "::1",
             "127.000.0.1", "127.0.0.01", "0177.0.0.1", "127.0.0.256", "127.1", "127.0.0.1.", "127.255.255.255:1",
             "0.0.0.0", "1.2.3.4", "\u0661\u0662\u0667.0.0.1", "127.0.0.1:99999", "127.0.0.1%25lo", "127.0.0.1\t",
             "h\t:5", "a b", " h", "\x00h", "u@h:5", "@h:5", "h#:5", "h/:5", "ünï.com"]


def _or_error(function, *args):
    try:
        return function(*args)
    except ValueError:
        return ValueError


def _urllib_split(address: str) -> tuple[str, int | None]:
    """What split_address replaced (issue 19)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(f"//{address}")
    return parts.hostname or "", parts.port


def _ipaddress_loopback(address: str) -> bool:
    """What is_loopback replaced (issue 19)."""
    import ipaddress
    import urllib.parse

    host = urllib.parse.urlsplit(f"//{address}").hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.mark.parametrize("address", ADDRESSES)
def test_addresses_are_read_as_urllib_and_ipaddress_read_them(address: str):
    """issue 19: split_address and is_loopback read the usual shapes themselves (urllib.parse and ipaddress
    cost the warm verify ~2 ms to import), with exactly the answers of those modules, errors included."""
    assert _or_error(split_address, address) == _or_error(_urllib_split, address)
    assert _or_error(is_loopback, address) == _or_error(_ipaddress_loopback, address)


_ADDRESS_PARTS = st.sampled_from([*"0123456789.:[]@/?#%+-_ \t\n", "127", "0127", "255", "256", "localhost",
                                  "LOCALHOST", "::1", "::ffff:", "%25lo", "\u0661", "\uff11", "\u212a", "\u0130",
                                  "\u00df", "0x7f", "1e2", "1_0", "xn--", "65535", "65536", "00080"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_ADDRESS_PARTS, max_size=8).map("".join))
def test_no_address_is_read_otherwise_than_urllib_ipaddress_and_urlsplit_of_the_base_read_it(address: str):
    """Review of session 6 (§11.4): no address, however odd, where the replacements answer differently — above
    all none that is_loopback takes for loopback (plain HTTP by default) and ipaddress did not — and
    ``registry_http.endpoint``, which now splits ``scheme://address`` itself, connects to and names the host
    urlsplit read from the whole base URL."""
    import urllib.parse

    from tufoci.registry_http import endpoint

    context = object()  # a TLS context: endpoint keeps it for https alone
    assert _or_error(split_address, address) == _or_error(_urllib_split, address)
    assert _or_error(is_loopback, address) == _or_error(_ipaddress_loopback, address)
    for scheme, default in (("http", 80), ("https", 443)):
        try:
            url = urllib.parse.urlsplit(f"{scheme}://{address}")
            expected: object = (url.hostname or "", url.port or default)
        except ValueError:
            expected = ValueError
        try:
            base = endpoint(f"{scheme}://{address}", tls=context, read_timeout=1, deadline=1)
            got: object = (base.host, base.port)
            assert (base.tls is context) == (scheme == "https")
        except ValueError:
            got = ValueError
        assert got == expected


def test_registries_conf_v2(tmp_path: Path):
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["docker.io"]\n'
                    '[[registry]]\nlocation = "localhost:5000"\ninsecure = true\n'
                    '[[registry]]\nprefix = "registry.example"\nlocation = "mirror.example:5000"\n'
                    '[[registry]]\nprefix = "example.com/team"\nlocation = "mirror.example/team"\n')  # a path: not ours
    assert read_registries_conf(str(conf)) == (RegistryEntry("localhost:5000", "localhost:5000", True),
                                               RegistryEntry("registry.example", "mirror.example:5000"))


# -- real registries --------------------------------------------------------------------------------------

@pytest.fixture
def three(registry, home: Path, tmp_path: Path) -> Iterator[dict]:
    """A plain registry, a TLS one (CA a) and one that requires a client certificate (CA b)."""
    pki_a, pki_b = make_server_pki(tmp_path / "pki-a"), make_server_pki(tmp_path / "pki-b")
    client = pki_b.ca.issue("client")
    with TLSRegistryServer.start_tls(tmp_path / "a", pki_a) as a, \
            MutualTLSRegistryServer.start_mutual(tmp_path / "b", pki_b, client) as b:
        yield {"plain": registry, "a": a, "b": b, "ca_a": pki_a.ca_file, "ca_b": pki_b.ca_file, "client": client}


def _cert_dir(directory: Path, ca: Path, client=None) -> Path:
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    if client is not None:
        (directory / "client.cert").write_bytes(client.cert_file.read_bytes())
        (directory / "client.key").write_bytes(client.key_file.read_bytes())
    return directory


def _verify_three(machine: Machine, scopes: list[str], root: Path, *options: str) -> set[str]:
    for scope in scopes:
        machine.ok("trust", "add", scope, "--root", str(root))
    out = machine.ok("verify", *(f"{scope}/web:1.0" for scope in scopes), *options).stdout
    return {line.split("@")[1] for line in out.split()}


@needs_registry
def test_copy_and_verify_across_three_registries_configured_by_certs_d(three, tmp_path: Path, monkeypatch):
    plain, a, b = three["plain"], three["a"], three["b"]
    certs = tmp_path / "certs.d"
    _cert_dir(certs / a.host, three["ca_a"])
    _cert_dir(certs / b.host, three["ca_b"], three["client"])
    scope, maintainer, root = publish_web(plain.host, tmp_path, monkeypatch)
    monkeypatch.setenv("TUFOCI_CERTS_DIR", str(certs))  # the only configuration there is

    maintainer.ok("copy", scope, f"{a.host}/acme")
    maintainer.ok("trust", "add", f"{a.host}/acme", "--root", str(root))
    maintainer.ok("copy", f"{a.host}/acme", f"{b.host}/acme")  # private CA to private CA with mTLS
    digests = _verify_three(Machine("cluster", tmp_path, monkeypatch),
                            [scope, f"{a.host}/acme", f"{b.host}/acme"], root)
    assert len(digests) == 1

    # the admission webhook's loaders get the same configuration (tufoci admission serve passes it)
    policy = parse_policy({"apiVersion": "tufoci.dev/v1", "kind": "AdmissionPolicy",
                           "trust": [{"scope": f"{b.host}/acme", "root": str(root)}]}, "policy.yaml")
    config = load_config(TLSFlags(), home=None, certs_dir=str(certs))
    loaded = loaders_for_policy(policy, str(tmp_path / "webhook-cache"), RegistryOptions(config))[f"{b.host}/acme"]()
    assert loaded is not None

    # the client certificate is what lets the cluster in: without it, exit 13
    bare = tmp_path / "bare.d"
    _cert_dir(bare / b.host, three["ca_b"])
    monkeypatch.setenv("TUFOCI_CERTS_DIR", str(bare))
    refused = Machine("cluster", tmp_path, monkeypatch)("verify", f"{b.host}/acme/web:1.0")
    assert refused.exit_code == 13, refused.stderr


@needs_registry
def test_copy_with_per_side_options(three, tmp_path: Path, monkeypatch):
    plain, a, b = three["plain"], three["a"], three["b"]
    b_dir = _cert_dir(tmp_path / "b-certs", three["ca_b"], three["client"])  # skopeo's --src-cert-dir shape
    scope, maintainer, root = publish_web(plain.host, tmp_path, monkeypatch)
    ca_a = str(three["ca_a"])
    maintainer.ok("copy", scope, f"{a.host}/acme", "--dest-ca-file", ca_a)
    maintainer.ok("trust", "add", f"{a.host}/acme", "--root", str(root))
    maintainer.ok("copy", f"{a.host}/acme", f"{b.host}/acme", "--src-ca-file", ca_a, "--dest-certs-dir", str(b_dir))
    maintainer.ok("trust", "add", f"{b.host}/acme", "--root", str(root))
    # from the TLS registry to a plain mirror: --ca-file alone would turn TLS on for both sides
    assert maintainer("copy", f"{a.host}/acme", f"{plain.host}/mirror", "--ca-file", ca_a).exit_code == 13
    maintainer.ok("copy", f"{b.host}/acme", f"{plain.host}/mirror", "--src-certs-dir", str(b_dir),
                  "--dest-plain-http")
    certs = tmp_path / "flag.d"
    _cert_dir(certs / a.host, three["ca_a"])
    _cert_dir(certs / b.host, three["ca_b"], three["client"])
    assert len(_verify_three(Machine("cluster", tmp_path, monkeypatch),
                             [f"{plain.host}/mirror", f"{a.host}/acme", f"{b.host}/acme"], root,
                             "--certs-dir", str(certs))) == 1


def _closed_port() -> socket.socket:
    """A port where nothing listens (bound, never listening), held for the test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@needs_registry
def test_every_request_goes_through_the_proxy_except_no_proxy(registry, registry2, home: Path, tmp_path: Path, monkeypatch):
    pki = make_server_pki(tmp_path / "pki")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    holds = [_closed_port(), _closed_port()]
    plain_alias, tls_alias = (f"127.0.0.1:{sock.getsockname()[1]}" for sock in holds)
    with TLSRegistryServer.start_tls(tmp_path / "tls", pki, htpasswd=htpasswd,
                                     credentials=("alice", "s3cret")) as tls, \
            ForwardProxy({plain_alias: registry.host, tls_alias: tls.host}) as proxy:
        scope, maintainer, root = publish_web(registry2.host, tmp_path, monkeypatch)  # before any proxy
        certs = tmp_path / "certs.d"
        _cert_dir(certs / tls_alias, pki.ca_file)
        monkeypatch.setenv("TUFOCI_CERTS_DIR", str(certs))
        proxy_url = proxy.url.replace("http://", "http://puser:ppass@")
        for name in ("HTTPS_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.setenv("NO_PROXY", f"localhost,{registry2.host}")
        # the aliases answer only through the proxy: nothing listens there
        use_home(monkeypatch, maintainer.home)
        ok(run_tufoci("login", tls_alias, "-u", "alice", "--password-stdin", stdin="s3cret\n"))
        before = registry.mark()

        maintainer.ok("copy", scope, f"{plain_alias}/acme")
        maintainer.ok("copy", scope, f"{tls_alias}/acme")
        scopes = [scope, f"{plain_alias}/acme", f"{tls_alias}/acme"]
        assert len(_verify_three(Machine("cluster", tmp_path, monkeypatch), scopes, root)) == 1

    seen = proxy.requests
    assert not [r for r in seen if registry2.host in r.target]  # NO_PROXY: never through the proxy
    tunnels = [r for r in seen if r.method == "CONNECT"]
    forwarded = [r for r in seen if r.method != "CONNECT"]
    assert tunnels and {r.target for r in tunnels} == {tls_alias}
    assert forwarded and all(r.target.startswith(f"http://{plain_alias}/") for r in forwarded)
    assert len(forwarded) == registry.request_count(before)  # every request to the plain registry passed
    proxy_auth = "Basic " + base64.b64encode(b"puser:ppass").decode()
    assert all(r.header("Proxy-Authorization") == proxy_auth for r in seen)  # the proxy's own, to it alone
    assert not [r for r in tunnels if r.header("Authorization")]  # the registry's never reach the proxy
    assert tls.request_count() > 0 and any(line.status == 401 for line in tls.access_log_lines())


def test_pipelined_reads_step_aside_for_a_proxy():
    from tufoci.store.registry import RegistryClient

    proxies = Proxies.from_environment({"HTTP_PROXY": "http://127.0.0.1:9"})
    assert RegistryClient("127.0.0.1:5000", RegistryOptions(RegistryConfig(proxies=proxies))).endpoint() is None
    exempt = Proxies.from_environment({"HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"})
    assert RegistryClient("127.0.0.1:5000", RegistryOptions(RegistryConfig(proxies=exempt))).endpoint() is not None


@needs_registry
@pytest.mark.parametrize("breakage", ["garbage CA", "dangling CA", "key without certificate", "bad registries.conf"])
def test_bad_configuration_is_one_clear_line(breakage: str, registry, home: Path, tmp_path: Path, monkeypatch):
    scope, maintainer, _ = publish_web(registry.host, tmp_path, monkeypatch)
    host_dir = tmp_path / "certs.d" / registry.host
    host_dir.mkdir(parents=True)
    monkeypatch.setenv("TUFOCI_CERTS_DIR", str(tmp_path / "certs.d"))
    named = {"garbage CA": host_dir / "ca.crt", "dangling CA": host_dir / "ca.crt",
             "key without certificate": host_dir / "client.key", "bad registries.conf": tmp_path / "registries.conf"}
    if breakage == "garbage CA":
        named[breakage].write_text("not a certificate\n")
    elif breakage == "dangling CA":
        named[breakage].symlink_to(tmp_path / "gone.pem")
    elif breakage == "key without certificate":
        named[breakage].write_text("a key\n")
    else:
        named[breakage].write_text("[[registry]\nlocation = \n")
        monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(named[breakage]))
    result = maintainer("verify", f"{scope}/web:1.0")
    assert result.exit_code == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(named[breakage]) in result.stderr, result.stderr
