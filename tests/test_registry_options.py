"""RegistryOptions (issue 12 §2): the library reads no environment for registries, the CLI's builder does,
and client reuse is a pool its owner holds, not a process-global cache."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tufoci.registry_config import TLSFlags
from tufoci.registry_options import CredentialSource, RegistryOptions, options_from_environment
from tufoci.store.registry import RegistryClient, RegistryClients, registry_client

HOST = "registry.example"


def _environment(tmp_path: Path) -> dict[str, str]:
    """What a CI job's environment says about registries: a docker login, injected credentials, timeouts."""
    auth = base64.b64encode(b"alice:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {HOST: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path), "TUFOCI_REGISTRY_USERNAME": "bob",
            "TUFOCI_REGISTRY_PASSWORD": "pw", "TUFOCI_REGISTRY_HOST": "other.example",
            "TUFOCI_REGISTRY_TIMEOUT": "7", "TUFOCI_REGISTRY_DEADLINE": "9"}


def test_the_library_reads_no_environment_for_registries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Before: a client made by the library picked up docker's config.json and the timeouts of os.environ."""
    for name, value in _environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    client = RegistryClient(HOST)
    assert client._get_credentials() is None  # anonymous, as an embedder that passed no credential source
    assert (client._read_timeout, client._deadline) == (30.0, 120.0)


def test_the_cli_builder_reads_the_environment_once(tmp_path: Path):
    options = options_from_environment(TLSFlags(), _environment(tmp_path))
    assert (options.read_timeout, options.deadline) == (7.0, 9.0)
    assert options.credentials.lookup(HOST).username == "alice"  # docker's config.json
    assert options.credentials.lookup("other.example").username == "bob"  # injected, for the host they name
    client = RegistryClient(HOST, options)
    assert client._get_credentials().username == "alice"
    assert (client._read_timeout, client._deadline) == (7.0, 9.0)
    assert "pw" not in repr(options) and "s3cret" not in repr(options)


def test_options_are_values_whatever_pool_they_carry():
    pooled = RegistryOptions().pooled()
    assert pooled == RegistryOptions() and hash(pooled) == hash(RegistryOptions())
    assert pooled.pooled() is pooled  # a pool given is kept
    assert RegistryOptions(read_timeout=1.0) != RegistryOptions()


def test_clients_are_reused_within_a_pool_only():
    """Before: registry_client() returned one process-wide client per registry and options."""
    options = RegistryOptions().pooled()
    assert registry_client(HOST, options) is registry_client(HOST, options.replace())  # equal options: reused
    assert registry_client(HOST, options) is not registry_client(HOST, options.replace(read_timeout=1.0))
    assert registry_client(HOST, options) is not registry_client(HOST, RegistryOptions().pooled())  # another owner
    assert registry_client(HOST) is not registry_client(HOST)  # no pool: nothing shared


def test_a_closed_pool_makes_new_clients():
    clients = RegistryClients()
    first = clients.client(HOST, RegistryOptions())
    clients.close()
    assert clients.client(HOST, RegistryOptions()) is not first


def test_a_verifier_closes_only_the_pool_it_made(tmp_path: Path):
    from tufoci.client.verify import Verifier

    given = RegistryOptions().pooled()
    shared = given.clients.client(HOST, given)
    with Verifier(pins=[], cache=str(tmp_path), registry=given) as verifier:
        assert verifier.registry.clients is given.clients
    assert given.clients.client(HOST, given) is shared  # the owner's pool is left open
    with Verifier(pins=[], cache=str(tmp_path)) as verifier:
        own = verifier.registry.clients
        made = own.client(HOST, verifier.registry)
    assert own.client(HOST, verifier.registry) is not made


def test_the_default_source_is_anonymous():
    assert CredentialSource().lookup(HOST) is None
