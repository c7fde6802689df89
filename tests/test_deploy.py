"""deploy/: every manifest valid against the Kubernetes schema, the settings issue 13 requires, make-certs.

A manifest the apiserver would refuse, or a webhook configuration that quietly stops covering
``pods/ephemeralcontainers`` or fails open, is a hole in enforcement no unit test of the server
would see; so each required setting is asserted by name. ``deploy/make-certs`` is run for real: its
chain must verify with openssl, its certificate name the Service, its outputs validate, and a TLS
server using them must be callable the way the apiserver calls it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.support import admission_reviews as ar
from tests.support.apiserver import SERVICE_HOST, ApiserverClient, validate_object
from tests.support.echo_webhook import echo_webhook

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
MAKE_CERTS = DEPLOY / "make-certs"
CERT_MANAGER_API = "cert-manager.io/v1"
EXCLUDED_NAMESPACES = ["kube-system", "kube-node-lease", "tufoci-system"]
SERVICE_NAMES = {"tufoci-admission.tufoci-system.svc", "tufoci-admission.tufoci-system.svc.cluster.local",
                 "tufoci-admission.tufoci-system", "tufoci-admission"}


def _manifests() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if "generated" not in p.relative_to(DEPLOY).parts)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for path in _manifests() for doc in _docs(path)
            if doc["kind"] != "Kustomization"}


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_is_valid(path: Path) -> None:
    for doc in _docs(path):
        if doc["kind"] == "Kustomization":
            for resource in doc.get("resources", []):
                assert (path.parent / resource).exists(), f"{path}: {resource} missing"
        elif doc["apiVersion"] == CERT_MANAGER_API:  # a CRD: not in the Kubernetes schema
            assert doc["kind"] in ("Issuer", "Certificate") and doc["metadata"]["namespace"] == "tufoci-system"
        else:
            validate_object(doc)


def test_every_manifest_is_in_a_kustomization() -> None:
    listed = {(path.parent / resource).resolve() for path in _manifests() for doc in _docs(path)
              if doc["kind"] == "Kustomization" for resource in doc.get("resources", [])}
    unlisted = [p for p in _manifests() if p.name != "kustomization.yaml" and p.resolve() not in listed]
    assert not unlisted


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("directory", ["", "webhooks", "cert-manager", "cert-manager/webhooks"])
def test_kustomizations_build(directory: str) -> None:
    built = subprocess.run(["kubectl", "kustomize", str(DEPLOY / directory)], capture_output=True, text=True,
                           timeout=60, check=True).stdout
    docs = list(yaml.safe_load_all(built))
    assert docs
    for doc in docs:
        if doc["apiVersion"] != CERT_MANAGER_API:
            validate_object(doc)
    if directory == "cert-manager/webhooks":
        assert {doc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] for doc in docs} == {
            "tufoci-system/tufoci-admission"}


def _rules_cover(rules: list[dict[str, Any]], group: str, resource: str, operation: str) -> bool:
    return any(group in r["apiGroups"] and "v1" in r["apiVersions"] and resource in r["resources"]
               and operation in r["operations"] for r in rules)


@pytest.mark.parametrize("kind", ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"])
def test_webhook_configuration_settings(kind: str) -> None:
    (webhook,) = _objects()[(kind, "tufoci-admission")]["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None" and webhook["admissionReviewVersions"] == ["v1"]
    assert 1 <= webhook["timeoutSeconds"] <= 10
    assert webhook["namespaceSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": EXCLUDED_NAMESPACES}]}
    assert webhook["clientConfig"]["service"] == {
        "name": "tufoci-admission", "namespace": "tufoci-system", "port": 443,
        "path": "/mutate" if kind.startswith("Mutating") else "/validate"}
    rules = webhook["rules"]
    assert _rules_cover(rules, "", "pods/ephemeralcontainers", "UPDATE")
    for group, resource in [("", "pods"), ("", "replicationcontrollers"), ("apps", "deployments"),
                            ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"),
                            ("batch", "jobs"), ("batch", "cronjobs")]:
        for operation in ("CREATE", "UPDATE"):
            assert _rules_cover(rules, group, resource, operation), (group, resource, operation)
    if kind.startswith("Mutating"):
        assert webhook["reinvocationPolicy"] == "IfNeeded"


def test_deployment_settings() -> None:
    objects = _objects()
    deployment = objects[("Deployment", "tufoci-admission")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
    assert security["capabilities"]["drop"] == ["ALL"] and security["allowPrivilegeEscalation"] is False
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["affinity"]["podAntiAffinity"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/var/cache/tufoci"]]
    projected = {path for source in volumes[mounts["/etc/tufoci"]]["projected"]["sources"]
                 for item in next(iter(source.values()))["items"] for path in [item["path"]]}
    assert {"policy.yaml", "tls/tls.crt", "tls/tls.key"} <= projected  # the paths the ENTRYPOINT names
    service = objects[("Service", "tufoci-admission")]
    assert service["spec"]["ports"][0]["port"] == 443 and service["spec"]["ports"][0]["targetPort"] == "https"
    assert objects[("PodDisruptionBudget", "tufoci-admission")]["spec"]["minAvailable"] == 1
    secret_names = {source["secret"]["name"] for source in volumes["config"]["projected"]["sources"]
                    if "secret" in source}
    certificate = objects[("Certificate", "tufoci-admission")]
    assert secret_names == {certificate["spec"]["secretName"]}
    assert set(certificate["spec"]["dnsNames"]) == SERVICE_NAMES


def test_policy_configmap_is_a_documented_policy() -> None:
    policy = yaml.safe_load(_objects()[("ConfigMap", "tufoci-admission-policy")]["data"]["policy.yaml"])
    assert policy["apiVersion"] == "tufoci.dev/v1" and policy["kind"] == "AdmissionPolicy"
    assert policy["mode"] in ("warn", "enforce") and policy["freshness"]
    scopes = {entry["scope"] for entry in policy["trust"]}
    assert all(rule["scope"] in scopes and rule["images"] for rule in policy["rules"])
    assert policy["exempt"][0]["images"] == ["registry.k8s.io/**"]


def test_policy_configmap_loads_as_the_server_loads_it(tmp_path: Path) -> None:
    """The shipped policy passes ``load_policy`` (the server's start-up check), and its root files are the
    paths the Deployment projects from the ConfigMap ``tufoci-roots``."""
    from tufoci.enforce.policy import Mode, load_policy

    text = _objects()[("ConfigMap", "tufoci-admission-policy")]["data"]["policy.yaml"]
    (tmp_path / "policy.yaml").write_text(text)
    policy = load_policy(str(tmp_path / "policy.yaml"))
    assert policy.mode is Mode.WARN and policy.freshness == 60.0  # the documented rollout starts in warn
    assert [rule.scope for rule in policy.rules] == [entry.scope for entry in policy.trust]
    pod = _objects()[("Deployment", "tufoci-admission")]["spec"]["template"]["spec"]
    (config,) = (v for v in pod["volumes"] if v["name"] == "config")
    projected = {"/etc/tufoci/" + item["path"] for source in config["projected"]["sources"]
                 for item in next(iter(source.values()))["items"]}
    assert {entry.root_file for entry in policy.trust} <= projected


def _run_make_certs(out: Path) -> None:
    subprocess.run([str(MAKE_CERTS), str(out)], check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_make_certs(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    _run_make_certs(out)
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.crt"), str(out / "tls.crt")],
                              capture_output=True, text=True, check=True)
    assert verified.stdout.strip().endswith(": OK")
    leaf = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == SERVICE_NAMES
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (out / "tls.key").stat().st_mode & 0o077 == 0 and (out / "ca.key").stat().st_mode & 0o077 == 0

    (secret,) = _docs(out / "tls-secret.yaml")
    validate_object(secret)
    assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["name"] == "tufoci-admission-tls"
    assert base64.b64decode(secret["data"]["tls.key"]) == (out / "tls.key").read_bytes()
    webhooks = _docs(out / "webhooks.yaml")
    assert [doc["kind"] for doc in webhooks] == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
    for doc in webhooks:
        validate_object(doc)
        assert base64.b64decode(doc["webhooks"][0]["clientConfig"]["caBundle"]) == (out / "ca.crt").read_bytes()

    # a server with these files is callable exactly as the apiserver calls the Service
    with echo_webhook(out / "tls.crt", out / "tls.key") as webhook, \
            ApiserverClient(webhook.port, out / "ca.crt") as client:
        assert client.mutate(ar.pod_create(["registry.example.com/acme/web:1.0"])).allowed
    assert webhook.seen[0]["host"] == SERVICE_HOST and webhook.server_names == [SERVICE_HOST]

    # a second run renews the serving certificate under the same CA: caBundle does not change
    ca_before, leaf_before = (out / "ca.crt").read_bytes(), (out / "tls.crt").read_bytes()
    _run_make_certs(out)
    assert (out / "ca.crt").read_bytes() == ca_before and (out / "tls.crt").read_bytes() != leaf_before


def test_containerfile_matches_the_deployment() -> None:
    """The image cannot be built here (no container build tool); check what the Deployment relies on."""
    text = (DEPLOY / "Containerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*?\])$", text, re.S | re.M).group(1).replace("\\\n", ""))
    assert entrypoint[:3] == ["tufoci", "admission", "serve"]
    from tufoci.cli import admission_serve

    admission_serve.make_context("serve", entrypoint[3:])  # every option exists and the required ones are there
    options = dict(zip(entrypoint[3::2], entrypoint[4::2], strict=True))
    pod = _objects()[("Deployment", "tufoci-admission")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for option in ("--policy", "--tls-cert", "--tls-key"):
        assert options[option].startswith("/etc/tufoci/")
    assert options["--cache-dir"] in mounts and options["--listen"] == "0.0.0.0:8443"
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M) and "pip install --no-cache-dir ." in text
    assert re.search(r"^USER 65532:65532$", text, re.M) and pod["securityContext"]["runAsUser"] == 65532
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (DEPLOY.parent / source).exists(), source
