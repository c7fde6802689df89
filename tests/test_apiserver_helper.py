"""The stand-in for kube-apiserver (tests/support/apiserver.py) and the AdmissionReview fixtures.

A helper that accepts anything would make every webhook test pass, so each acceptance rule has a
hand-written response that breaks it and must be refused with that rule's name; good responses
must be accepted and acted on as the apiserver would. The transport is exercised against a real
TLS server on loopback (SNI and Host of the Service name, ``?timeout=``, the deadline, one kept-alive
connection). Every fixture object is valid against the Kubernetes schema. No registry needed: fast.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import admission_reviews as ar
from tests.support.apiserver import (
    SERVICE_HOST,
    ApiserverClient,
    WebhookCallError,
    deliver_warnings,
    judge_response,
    validate_object,
)
from tests.support.echo_webhook import echo_webhook
from tests.support.tls import CertificateAuthority

IMAGE = "registry.example.com/acme/web:1.0"
DIGEST = "sha256:" + "ab" * 32
JSON = {"content-type": "application/json"}


def _b64(ops: list[dict[str, Any]]) -> str:
    return base64.b64encode(json.dumps(ops).encode()).decode()


PIN = [{"op": "replace", "path": "/spec/containers/0/image", "value": f"registry.example.com/acme/web@{DIGEST}"},
       {"op": "add", "path": "/metadata/annotations", "value": {"tufoci.dev/original-images": json.dumps([IMAGE])}}]


def _answer(request: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": request["request"]["uid"], "allowed": True, **fields}}


def _judge(request: dict[str, Any], review: Any, *, mutating: bool = True, status: int = 200,
           headers: dict[str, str] = JSON, body: bytes | None = None):
    data = body if body is not None else json.dumps(review).encode()
    return judge_response(request, status, headers, data, mutating=mutating)


# (name, mutating, change the good answer, rule expected). Each breaks exactly one rule.
Breaker = Callable[[dict[str, Any]], None]
BAD: list[tuple[str, bool, Breaker, str]] = [
    ("wrong apiVersion", True, lambda r: r.update(apiVersion="admission.k8s.io/v1beta1"), "gvk"),
    ("wrong kind", True, lambda r: r.update(kind="AdmissionResponse"), "gvk"),
    ("no response", True, lambda r: r.pop("response"), "response-absent"),
    ("uid not echoed", True, lambda r: r["response"].update(uid="another"), "uid"),
    ("uid under another case", True, lambda r: r["response"].update(UID=r["response"].pop("uid")), "uid"),
    ("allowed missing", True, lambda r: r["response"].pop("allowed"), "allowed"),
    ("allowed a string", True, lambda r: r["response"].update(allowed="true"), "decode"),
    ("patch without patchType", True, lambda r: r["response"].update(patch=_b64(PIN)), "patch-without-type"),
    ("patchType without patch", True, lambda r: r["response"].update(patchType="JSONPatch"), "type-without-patch"),
    ("empty patchType", True, lambda r: r["response"].update(patch=_b64(PIN), patchType=""), "patch-type"),
    ("merge patch type", True, lambda r: r["response"].update(patch=_b64(PIN), patchType="MergePatch"), "patch-type"),
    ("patch not base64", True, lambda r: r["response"].update(patch="[{not", patchType="JSONPatch"), "decode"),
    ("patch from a validating webhook", False, lambda r: r["response"].update(patch=_b64(PIN)), "validating-patch"),
    ("patchType from a validating webhook", False,
     lambda r: r["response"].update(patchType="JSONPatch"), "validating-patch"),
    ("patch that does not apply", True, lambda r: r["response"].update(
        patch=_b64([{"op": "replace", "path": "/spec/containers/5/image", "value": "x"}]), patchType="JSONPatch"),
     "patch-apply"),
    ("patch that breaks the schema", True, lambda r: r["response"].update(
        patch=_b64([{"op": "replace", "path": "/spec/containers/0/image", "value": 42}]), patchType="JSONPatch"),
     "schema"),
    ("patch adding an unknown field", True, lambda r: r["response"].update(
        patch=_b64([{"op": "add", "path": "/spec/containers/0/imageDigest", "value": DIGEST}]), patchType="JSONPatch"),
     "schema"),
    ("deny without status", True, lambda r: r["response"].update(allowed=False), "deny-status"),
    ("deny with a success code", True,
     lambda r: r["response"].update(allowed=False, status={"code": 200, "message": "no"}), "deny-status"),
    ("deny without message", True, lambda r: r["response"].update(allowed=False, status={"code": 403}), "deny-status"),
    ("status code not an integer", True,
     lambda r: r["response"].update(allowed=False, status={"code": "403", "message": "no"}), "decode"),
    ("warning with a newline", True, lambda r: r["response"].update(warnings=["line one\nline two"]), "warnings"),
    ("warning over 256 characters", True, lambda r: r["response"].update(warnings=["w" * 257]), "warnings"),
    ("warnings over 4096 characters", True,
     lambda r: r["response"].update(warnings=[f"{i:03d}" + "w" * 250 for i in range(17)]), "warnings"),
    ("warnings not a list", True, lambda r: r["response"].update(warnings="careful"), "decode"),
    ("audit annotation not a string", True, lambda r: r["response"].update(auditAnnotations={"a": 1}), "decode"),
]


@pytest.mark.parametrize(("name", "mutating", "breaker", "rule"), BAD, ids=[case[0] for case in BAD])
def test_each_rule_refuses_a_violating_response(name: str, mutating: bool, breaker: Breaker, rule: str) -> None:
    request = ar.pod_create([IMAGE])
    good = _answer(request)
    _judge(request, good, mutating=mutating)  # the unbroken answer passes: the breaker is what fails
    breaker(good)
    with pytest.raises(WebhookCallError) as caught:
        _judge(request, good, mutating=mutating)
    assert caught.value.rule == rule, caught.value


@pytest.mark.parametrize(("status", "headers", "body", "rule", "source"), [
    (500, JSON, None, "http-status", "apiserver"),
    (201, JSON, None, "http-status", "contract"),
    (200, {"content-type": "text/plain"}, None, "content-type", "contract"),
    (200, {}, None, "content-type", "contract"),
    (200, JSON, b"<html>", "decode", "apiserver"),
    (200, JSON, b"[]", "decode", "apiserver"),
    (200, JSON, b" " * (3 * 1024 * 1024 + 1), "size", "contract"),
])
def test_transport_level_rules(status: int, headers: dict[str, str], body: bytes | None, rule: str,
                               source: str) -> None:
    request = ar.pod_create([IMAGE])
    with pytest.raises(WebhookCallError) as caught:
        _judge(request, _answer(request), status=status, headers=headers, body=body)
    assert (caught.value.rule, caught.value.source) == (rule, source)


def test_patch_on_delete_is_refused() -> None:
    request = ar.pod_delete([IMAGE])
    answer = _answer(request, patch=_b64(PIN), patchType="JSONPatch")
    with pytest.raises(WebhookCallError) as caught:
        _judge(request, answer)
    assert caught.value.rule == "patch-apply"


def test_good_answers_are_acted_on_as_the_apiserver_would() -> None:
    request = ar.pod_create([IMAGE])
    plain = _judge(request, _answer(request))
    assert plain.allowed and plain.object == request["request"]["object"] and plain.patch is None

    pinned = _judge(request, _answer(request, patch=_b64(PIN), patchType="JSONPatch"))
    assert pinned.object["spec"]["containers"][0]["image"] == f"registry.example.com/acme/web@{DIGEST}"
    assert json.loads(pinned.object["metadata"]["annotations"]["tufoci.dev/original-images"]) == [IMAGE]
    assert request["request"]["object"]["spec"]["containers"][0]["image"] == IMAGE  # the request is untouched

    denied = _judge(request, _answer(request, allowed=False,
                                     status={"code": 403, "message": f"{IMAGE}: not signed"}), mutating=False)
    assert not denied.allowed and denied.code == 403
    assert denied.message == f'admission webhook "mutate.admission.tufoci.dev" denied the request: {IMAGE}: not signed'

    warned = _judge(request, _answer(request, warnings=[f"{IMAGE}: not signed (warn mode)"]), mutating=False)
    assert warned.allowed and warned.warnings == (f"{IMAGE}: not signed (warn mode)",)


def test_deliver_warnings_follows_the_apiserver_recorder() -> None:
    assert deliver_warnings(["a", "", "a", "b\x07", "c"]) == ("a", "c")
    many = [f"{i:02d}" + "x" * 298 for i in range(14)]  # 300 runes each: the 14th passes 4,096
    delivered = deliver_warnings(many)
    assert len(delivered) == 14 and all(len(w) == 256 for w in delivered)
    assert deliver_warnings([*many, "late"])[-1] == "late"  # still under the limit once truncated


# ---- transport: a real TLS server on loopback, called as the apiserver calls it ---------------------
def _service_certificate(tmp_path, hosts: tuple[str, ...] = (SERVICE_HOST,)) -> tuple[Path, Path, Path]:
    ca = CertificateAuthority(tmp_path / "ca")
    issued = ca.issue("webhook", hosts=hosts)
    return ca.cert_file, issued.cert_file, issued.key_file


def test_calls_like_the_apiserver_over_one_connection(tmp_path) -> None:
    ca_file, cert, key = _service_certificate(tmp_path)
    with echo_webhook(cert, key) as webhook, ApiserverClient(webhook.port, ca_file) as client:
        assert client.mutate(ar.pod_create([IMAGE])).allowed
        assert client.validate(ar.pod_create([IMAGE])).allowed
    seen = webhook.seen
    assert [s["path"] for s in seen] == ["/mutate?timeout=10s", "/validate?timeout=10s"]
    assert {s["host"] for s in seen} == {SERVICE_HOST} and {s["type"] for s in seen} == {"application/json"}
    assert webhook.server_names == [SERVICE_HOST]  # one TLS handshake: the connection was kept alive
    assert seen[0]["peer"] == seen[1]["peer"]


def test_certificate_not_for_the_service_name_is_refused(tmp_path) -> None:
    ca_file, cert, key = _service_certificate(tmp_path, hosts=("127.0.0.1", "localhost"))
    with echo_webhook(cert, key) as webhook, ApiserverClient(webhook.port, ca_file) as client:
        with pytest.raises(WebhookCallError) as caught:
            client.mutate(ar.pod_create([IMAGE]))
    assert caught.value.rule == "transport" and not webhook.seen


def test_timeout_is_honoured(tmp_path) -> None:
    ca_file, cert, key = _service_certificate(tmp_path)
    started = time.monotonic()
    with echo_webhook(cert, key, delay=3.0) as webhook, ApiserverClient(webhook.port, ca_file,
                                                                         timeout_seconds=1) as client:
        with pytest.raises(WebhookCallError) as caught:
            client.mutate(ar.pod_create([IMAGE]))
    assert caught.value.rule == "timeout"
    assert time.monotonic() - started < 2.5


# ---- fixtures -------------------------------------------------------------------------------------

ACME, BETA = "registry.example.com/acme", "registry.example.com/beta"
REQUEST_FIELDS = {"uid", "kind", "resource", "requestKind", "requestResource", "namespace", "operation",
                  "userInfo", "object", "oldObject", "dryRun", "options"}

FIXTURES: dict[str, Callable[[], dict[str, Any]]] = {
    "pod create, all container lists": lambda: ar.pod_create(
        [f"{ACME}/web:1.0", f"{ACME}/api:2.0"], init_images=[f"{ACME}/migrate:1.0"],
        sidecar_images=[f"{ACME}/proxy:1.0"], ephemeral_images=[f"{ACME}/debug:1.0"]),
    "pod generateName": lambda: ar.pod_generate_name([f"{ACME}/web:1.0"]),
    "pods/ephemeralcontainers": lambda: ar.ephemeral_debug([f"{ACME}/web:1.0"], [f"{ACME}/debug:1.0"]),
    "pod dry run": lambda: ar.pod_create([f"{ACME}/web:1.0"], dry_run=True),
    "pod being deleted": lambda: ar.pod_being_deleted([f"{ACME}/web:1.0"]),
    "pod delete": lambda: ar.pod_delete([f"{ACME}/web:1.0"]),
    "tag+digest and digest only": lambda: ar.pod_create(
        [ar.tag_and_digest(f"{ACME}/web:1.0", DIGEST), ar.digest_only(f"{ACME}/api:2.0", DIGEST)]),
    "two scopes": lambda: ar.pod_create([f"{ACME}/web:1.0", f"{BETA}/db:5.0"]),
    **{f"{kind} {op}": (lambda kind=kind, op=op: ar.workload_review(
        kind, [f"{ACME}/web:1.1"], operation=op, old_images=[f"{ACME}/web:1.0"], sidecar_images=[f"{ACME}/proxy:1.0"]))
       for kind in ar.WORKLOADS for op in ("CREATE", "UPDATE")},
}


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_is_a_v1_review_of_valid_objects(name: str) -> None:
    review = FIXTURES[name]()
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    request = review["request"]
    assert REQUEST_FIELDS <= set(request), REQUEST_FIELDS - set(request)
    assert request["options"]["kind"] == {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions",
                                          "DELETE": "DeleteOptions"}[request["operation"]]
    for obj in (request["object"], request["oldObject"]):
        if obj is not None:
            validate_object(obj)
            assert obj["kind"] == request["kind"]["kind"]
    assert FIXTURES[name]()["request"]["uid"] != request["uid"]


def test_validate_object_refuses_an_invalid_fixture() -> None:
    broken = ar.pod([IMAGE])
    broken["spec"]["containers"][0]["imagePullPolicy"] = ["Always"]
    with pytest.raises(WebhookCallError) as caught:
        validate_object(broken)
    assert caught.value.rule == "schema"


def test_fixture_shapes() -> None:
    full = FIXTURES["pod create, all container lists"]()["request"]["object"]
    assert sorted(ar.image_locations(full).values()) == sorted(
        [f"{ACME}/web:1.0", f"{ACME}/api:2.0", f"{ACME}/migrate:1.0", f"{ACME}/proxy:1.0", f"{ACME}/debug:1.0"])
    assert full["spec"]["initContainers"][1]["restartPolicy"] == "Always"

    named = FIXTURES["pod generateName"]()["request"]
    assert "name" not in named and "name" not in named["object"]["metadata"]
    assert named["object"]["metadata"]["generateName"] == "web-"

    debug = FIXTURES["pods/ephemeralcontainers"]()["request"]
    assert debug["subResource"] == "ephemeralcontainers" and debug["operation"] == "UPDATE"
    assert "ephemeralContainers" not in debug["oldObject"]["spec"]
    assert debug["object"]["spec"]["ephemeralContainers"][0]["image"] == f"{ACME}/debug:1.0"

    dry = FIXTURES["pod dry run"]()["request"]
    assert dry["dryRun"] is True and dry["options"]["dryRun"] == ["All"]
    assert FIXTURES["pod being deleted"]()["request"]["object"]["metadata"]["deletionTimestamp"]
    deleted = FIXTURES["pod delete"]()["request"]
    assert deleted["operation"] == "DELETE" and deleted["object"] is None and deleted["oldObject"]

    assert ar.digest_only(f"{ACME}/web:1.0", DIGEST) == f"{ACME}/web@{DIGEST}"
    assert ar.digest_only("127.0.0.1:5000/acme/web", DIGEST) == f"127.0.0.1:5000/acme/web@{DIGEST}"
    cron = ar.workload("CronJob", [IMAGE])
    assert ar.image_locations(cron) == {"/spec/jobTemplate/spec/template/spec/containers/0/image": IMAGE}
    update = FIXTURES["Deployment UPDATE"]()["request"]
    first = "/spec/template/spec/containers/0/image"
    assert ar.image_locations(update["oldObject"])[first] == f"{ACME}/web:1.0"
    assert ar.image_locations(update["object"])[first] == f"{ACME}/web:1.1"
