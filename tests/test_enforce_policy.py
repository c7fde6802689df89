"""The enforcement policy file: what loads, and the one-line error (file and field) for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tufoci.enforce.policy import Exemption, Mode, PolicyError, Rule, load_policy
from tufoci.reference import parse_reference
from tufoci.registry_config import TLSFlags

GOOD = """\
apiVersion: tufoci.dev/v1
kind: AdmissionPolicy
mode: warn
freshness: 2m
trust:
  - scope: registry.example.com/acme
    root: /etc/tufoci/roots/acme.json
    plainHTTP: false
    caFile: /etc/ca.pem
  - scope: 127.0.0.1:5000/team
    rootSha256: "%s"
    metadata: 127.0.0.1:5000/team/meta
rules:
  - images: ["registry.example.com/acme/**"]
    scope: registry.example.com/acme
    requiredRoles: [qa]
  - images: ["127.0.0.1:5000/team/*"]
    scope: 127.0.0.1:5000/team
    mutate: false
exempt:
  - images: ["registry.k8s.io/**", "docker.io/library/busybox"]
""" % ("ab" * 32)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_a_complete_policy_loads_with_its_defaults_and_matching(tmp_path):
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.mode is Mode.WARN and policy.freshness == 120.0
    acme, team = policy.trust
    assert acme.tls_flags() == TLSFlags(plain_http=False, ca_file="/etc/ca.pem")
    assert team.root_sha256 == "ab" * 32 and team.metadata == "127.0.0.1:5000/team/meta"
    assert policy.rules[0].mutate is True and policy.rules[0].required_roles == ("qa",)
    assert policy.rules[1].mutate is False

    def match(image):
        return policy.match(parse_reference(image))

    assert isinstance(match("registry.k8s.io/pause:3.9"), Exemption)
    assert isinstance(match("busybox"), Exemption)  # normalised as containerd does: docker.io/library/busybox
    assert match("registry.example.com/acme/web/debug:1").scope == "registry.example.com/acme"
    assert isinstance(match("127.0.0.1:5000/team/web@sha256:" + "0" * 64), Rule)
    # anchored: '*' stays in one component, a prefix elsewhere never matches
    assert match("127.0.0.1:5000/team/web/debug:1") is None
    assert match("evil.example/registry.example.com/acme/web:1") is None
    assert match("registry.example.com/acme:1") is None
    assert match("busybox2") is None


def test_minimal_policy_defaults_to_enforce_and_60s(tmp_path):
    policy = load_policy(write(tmp_path, "apiVersion: tufoci.dev/v1\nkind: AdmissionPolicy\n"))
    assert policy.mode is Mode.ENFORCE and policy.freshness == 60.0 and policy.rules == ()


BASE = "apiVersion: tufoci.dev/v1\nkind: AdmissionPolicy\n"
TRUST = "trust:\n  - scope: r.example/acme\n    root: /r.json\n"


@pytest.mark.parametrize("text, field, problem", [
    ("{}", "apiVersion", "must be tufoci.dev/v1"),
    ("[1, 2]", "(document)", "must be a mapping"),
    ("apiVersion: tufoci.dev/v1\nkind: Pod\n", "kind", "must be AdmissionPolicy"),
    (BASE + "mode: audit\n", "mode", "must be enforce or warn"),
    (BASE + "freshness: soon\n", "freshness", "not a positive duration"),
    (BASE + "freshness: 0s\n", "freshness", "not a positive duration"),
    (BASE + "modes: warn\n", "modes", "unknown field"),
    (BASE + "trust: {}\n", "trust", "must be a list"),
    (BASE + "trust:\n  - scope: r.example/acme\n", "trust[0]", "exactly one of root"),
    (BASE + "trust:\n  - scope: r.example/acme\n    root: /a\n    rootSha256: " + "a" * 64 + "\n",
     "trust[0]", "exactly one of root"),
    (BASE + "trust:\n  - scope: r.example/acme\n    rootSha256: xyz\n", "trust[0].rootSha256", "64 lowercase hex"),
    (BASE + "trust:\n  - scope: r.example/ACME\n    root: /a\n", "trust[0].scope", "invalid repository path"),
    (BASE + "trust:\n  - scope: nginx\n    root: /a\n", "trust[0].scope", "normalised name"),
    (BASE + TRUST + "  - scope: r.example/acme\n    root: /b\n", "trust[1].scope", "pinned twice"),
    (BASE + "trust:\n  - scope: r.example/acme\n    root: /a\n    plainHTTP: yes please\n",
     "trust[0].plainHTTP", "true or false"),
    (BASE + "trust:\n  - scope: r.example/acme\n    root: /a\n    rot: /b\n", "trust[0].rot", "unknown field"),
    (BASE + TRUST + "rules:\n  - images: [\"r.example/acme/**\"]\n    scope: r.example/other\n",
     "rules[0].scope", "no entry under trust"),
    (BASE + TRUST + "rules:\n  - images: []\n    scope: r.example/acme\n", "rules[0].images", "at least one"),
    (BASE + TRUST + "rules:\n  - images: [\"*acme*\"]\n    scope: r.example/acme\n",
     "rules[0].images", "not inside the scope"),
    (BASE + TRUST + "rules:\n  - images: [\"r.example/acme/***\"]\n    scope: r.example/acme\n",
     "rules[0].images[0]", "invalid image pattern"),
    (BASE + TRUST + "rules:\n  - images: [\"r.example/acme/web?\"]\n    scope: r.example/acme\n",
     "rules[0].images[0]", "invalid image pattern"),
    (BASE + TRUST + "rules:\n  - images: [\"r.example/acme/**\"]\n    scope: r.example/acme\n    mutate: 1\n",
     "rules[0].mutate", "true or false"),
    (BASE + TRUST + "rules:\n  - images: [\"r.example/acme/**\"]\n    scope: r.example/acme\n"
     "    requiredRoles: [\"\"]\n", "rules[0].requiredRoles[0]", "non-empty string"),
    (BASE + "exempt:\n  - images: nginx\n", "exempt[0].images", "must be a list"),
])
def test_policy_errors_name_the_file_and_the_field(tmp_path, text, field, problem):
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: field {field}: "), message
    assert problem in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read the policy"):
        load_policy(str(tmp_path / "missing.yaml"))
    with pytest.raises(PolicyError, match=r"policy\.yaml: not valid YAML \(line 3\)"):
        load_policy(write(tmp_path, "a: [\nb: c\n"))


@pytest.mark.parametrize("pattern", ["**.k8s.io/**", "registry.k8s.io**", "**k8s.io/pause"])
def test_an_exemption_with_globstar_in_the_host_is_refused(tmp_path, pattern):
    """'**' in a host runs across the '/' after it: '**.k8s.io/**' would exempt evil.example/x.k8s.io/y, and
    'registry.k8s.io**' registry.k8s.io.evil.example/x (independent review, 2026-12)."""
    path = write(tmp_path, BASE + f"exempt:\n  - images: [\"{pattern}\"]\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: field exempt[0].images[0]: ") and "registry name" in str(caught.value)


def test_an_exemption_of_any_registry_or_one_host_label_still_loads(tmp_path):
    policy = load_policy(write(tmp_path, BASE + "exempt:\n  - images: [\"**/pause\", \"*.k8s.io/**\"]\n"))
    assert isinstance(policy.match(parse_reference("evil.example/pause")), Exemption)
    assert isinstance(policy.match(parse_reference("dl.k8s.io/x")), Exemption)
    assert policy.match(parse_reference("evil.example/x.k8s.io/y")) is None
