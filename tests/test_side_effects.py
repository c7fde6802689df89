"""Issue 12 §5: importing or running tufoci changes nothing global in the process it runs in.

An admission controller or any other application embeds the library: tufoci must not register schemes in
securesystemslib's table, silence urllib3's warnings for everybody, or write TUFOCI_HOME into the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import urllib3

from tests.conftest import needs_registry, ok, run_tufoci
from tests.support.tls import TLSRegistryServer, make_server_pki
from tufoci.registry_config import RegistryConfig, TLSFlags
from tufoci.registry_options import RegistryOptions
from tufoci.store.registry import RegistryClient

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_importing_tufoci_leaves_securesystemslibs_scheme_table_alone():
    script = (
        "from securesystemslib.signer import SIGNER_FOR_URI_SCHEME as table\n"
        "before = dict(table)\n"
        "import tufoci.cli, tufoci.keys, tufoci.key_uri_checks, tufoci.repo_tool.signing\n"
        "assert table == before, sorted(set(table) - set(before))\n"
        "assert 'encfile' in tufoci.keys.signer_schemes()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_an_encrypted_key_signs_without_the_scheme_registered(home: Path):
    from securesystemslib.signer import SIGNER_FOR_URI_SCHEME

    from tufoci.keys import env_secrets_handler, list_keys, signer_for
    from tufoci.state import State

    ok(run_tufoci("key", "generate", "alice"))  # encrypted: encfile:
    state = State.open(str(home))
    (key,) = list_keys(state)
    assert key.uri and key.uri.startswith("encfile:") and "encfile" not in SIGNER_FOR_URI_SCHEME
    signer = signer_for(state, key.keyid, env_secrets_handler())
    assert signer is not None and signer.sign(b"payload").keyid == key.keyid


@needs_registry
def test_an_insecure_registry_client_silences_its_own_warning_only(tmp_path: Path):
    pki = make_server_pki(tmp_path / "pki")
    with TLSRegistryServer.start_tls(tmp_path, pki) as registry, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        client = RegistryClient(registry.host, RegistryOptions(RegistryConfig(TLSFlags(insecure=True))))
        assert client.repository("acme/web").list_tags() == []
        assert warnings.filters == filters  # nothing process-wide
        assert not [w for w in caught if issubclass(w.category, urllib3.exceptions.InsecureRequestWarning)]
        client.close()

        other = urllib3.PoolManager(cert_reqs="CERT_NONE")  # someone else's unverified request still warns
        other.request("GET", f"https://{registry.host}/v2/")
        assert [w for w in caught if issubclass(w.category, urllib3.exceptions.InsecureRequestWarning)]
        other.clear()


def test_home_option_is_passed_down_not_written_into_the_environment(tmp_path: Path, home: Path):
    chosen = tmp_path / "chosen"
    ok(run_tufoci("--home", str(chosen), "key", "generate", "bob", "--unencrypted"))
    assert os.environ["TUFOCI_HOME"] == str(home)  # the fixture's value, untouched
    assert (chosen / "state.db").exists() and not (home / "state.db").exists()
    assert "bob" in ok(run_tufoci("--home", str(chosen), "key", "list")).stdout
    assert "bob" not in ok(run_tufoci("key", "list")).stdout
