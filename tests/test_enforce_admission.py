"""AdmissionReview → images at JSON pointers → JSONPatch: pure, for every kind the webhook handles."""

from __future__ import annotations

import base64
import copy
import json

import jsonpatch
import pytest

from tufoci.enforce.admission import (
    ORIGINAL_IMAGES,
    MalformedReviewError,
    image_sites,
    parse_review,
    review,
)
from tufoci.enforce.decision import Reason, Verdict

A = "sha256:" + "a" * 64
SIGNED = "r.example/acme/web:1.0"
PINNED = f"r.example/acme/web@{A}"
UNSIGNED = "r.example/acme/evil:1.0"


def pod_spec(*, init: bool = True, ephemeral: bool = False) -> dict:
    spec = {"containers": [{"name": "app", "image": SIGNED}, {"name": "side", "image": "registry.k8s.io/pause:3.9"}]}
    if init:  # a native sidecar is an init container with restartPolicy: Always
        spec["initContainers"] = [{"name": "proxy", "image": SIGNED, "restartPolicy": "Always"}]
    if ephemeral:
        spec["ephemeralContainers"] = [{"name": "debug", "image": SIGNED}]
    return spec


def template() -> dict:
    return {"metadata": {"labels": {"app": "x"}}, "spec": pod_spec()}


OBJECTS = {
    ("", "v1", "Pod", "pods"): ({"spec": pod_spec(ephemeral=True)}, "/spec"),
    ("apps", "v1", "Deployment", "deployments"): ({"spec": {"template": template()}}, "/spec/template/spec"),
    ("apps", "v1", "ReplicaSet", "replicasets"): ({"spec": {"template": template()}}, "/spec/template/spec"),
    ("apps", "v1", "StatefulSet", "statefulsets"): ({"spec": {"template": template()}}, "/spec/template/spec"),
    ("apps", "v1", "DaemonSet", "daemonsets"): ({"spec": {"template": template()}}, "/spec/template/spec"),
    ("batch", "v1", "Job", "jobs"): ({"spec": {"template": template()}}, "/spec/template/spec"),
    ("", "v1", "ReplicationController", "replicationcontrollers"): ({"spec": {"template": template()}},
                                                                   "/spec/template/spec"),
    ("batch", "v1", "CronJob", "cronjobs"): ({"spec": {"jobTemplate": {"spec": {"template": template()}}}},
                                             "/spec/jobTemplate/spec/template/spec"),
}


def request(group, version, kind, resource, obj, *, operation="CREATE", subresource=None, annotations=None):
    obj = {"apiVersion": f"{group}/{version}".lstrip("/"), "kind": kind,
           "metadata": {"name": "x", "namespace": "default", **({"annotations": annotations} if annotations else {})},
           **copy.deepcopy(obj)}
    req = {"uid": "u-1", "kind": {"group": group, "version": version, "kind": kind},
           "resource": {"group": group, "version": version, "resource": resource}, "operation": operation,
           "object": obj, "dryRun": True}
    if subresource:
        req["subResource"] = subresource
    return req


def judge_table(image: str) -> Verdict:
    calls.append(image)
    if image == SIGNED:
        return Verdict(image, True, Reason.SIGNED, f"{image}: signed", PINNED, True)
    if image.startswith("registry.k8s.io/"):
        return Verdict(image, True, Reason.EXEMPT, f"{image}: exempt")
    return Verdict(image, False, Reason.NOT_SIGNED, f"{image}: not signed")


calls: list[str] = []


def decoded(response: dict) -> list[dict] | None:
    if "patch" not in response:
        assert "patchType" not in response
        return None
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


@pytest.mark.parametrize("key", list(OBJECTS), ids=[k[2] for k in OBJECTS])
def test_every_kind_gets_its_images_pinned_and_the_originals_annotated(key):
    obj, base = OBJECTS[key]
    req = request(*key, obj)
    calls.clear()
    answer, verdicts = review(req, judge_table, mutate=True, warn=False)
    assert sorted(calls) == sorted({SIGNED, "registry.k8s.io/pause:3.9"})  # each distinct image judged once
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1" and response["uid"] == "u-1" and response["allowed"]
    pointers = [f"{base}/initContainers/0/image", f"{base}/containers/0/image"]
    if key[2] == "Pod":
        pointers.append(f"{base}/ephemeralContainers/0/image")
    patch = decoded(response)
    assert [op["path"] for op in patch[:-1]] == pointers
    patched = jsonpatch.apply_patch(req["object"], patch)
    assert json.loads(patched["metadata"]["annotations"][ORIGINAL_IMAGES]) == {p: SIGNED for p in pointers}
    for pointer in pointers:
        assert jsonpatch.JsonPointer(pointer).resolve(patched) == PINNED
    assert jsonpatch.JsonPointer(f"{base}/containers/1/image").resolve(patched) == "registry.k8s.io/pause:3.9"

    validated, _ = review(req, judge_table, mutate=False, warn=False)
    assert "patch" not in validated["response"] and validated["response"]["allowed"]


def test_existing_annotations_get_one_escaped_add():
    req = request("", "v1", "Pod", "pods", {"spec": pod_spec(init=False)}, annotations={"team": "a"})
    patch = decoded(review(req, judge_table, mutate=True, warn=False)[0]["response"])
    assert patch[-1]["op"] == "add" and patch[-1]["path"] == "/metadata/annotations/tufoci.dev~1original-images"
    patched = jsonpatch.apply_patch(req["object"], patch)
    assert patched["metadata"]["annotations"]["team"] == "a"


def test_ephemeral_container_update_patches_only_ephemeral_containers():
    obj = {"spec": pod_spec(ephemeral=True)}
    obj["spec"]["containers"][0]["image"] = UNSIGNED  # the running pod's containers are not this request's concern
    req = request("", "v1", "Pod", "pods", obj, operation="UPDATE", subresource="ephemeralcontainers")
    req["oldObject"] = copy.deepcopy(req["object"])
    sites = image_sites(req)
    assert [s.pointer for s in sites] == ["/spec/ephemeralContainers/0/image"]
    response = review(req, judge_table, mutate=True, warn=False)[0]["response"]
    assert response["allowed"] and decoded(response)[0] == {
        "op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": PINNED}
    status = request("", "v1", "Pod", "pods", obj, operation="UPDATE", subresource="status")
    assert image_sites(status) == []


def test_denials_and_warn_mode():
    req = request("", "v1", "Pod", "pods", {"spec": {"containers": [
        {"name": "a", "image": SIGNED}, {"name": "b", "image": UNSIGNED}]}})
    denied = review(req, judge_table, mutate=True, warn=False)[0]["response"]
    assert denied == {"uid": "u-1", "allowed": False,
                      "status": {"code": 403, "reason": "Forbidden", "message": f"{UNSIGNED}: not signed"}}
    warned = review(req, judge_table, mutate=True, warn=True)[0]["response"]
    assert warned["allowed"] and warned["warnings"] == [f"{UNSIGNED}: not signed"]
    assert [op["path"] for op in decoded(warned)] == ["/spec/containers/0/image", "/metadata/annotations"]


def test_deletes_and_objects_being_deleted_are_untouched():
    for operation in ("DELETE", "CONNECT"):
        req = request("", "v1", "Pod", "pods", {"spec": pod_spec()}, operation=operation)
        calls.clear()
        assert review(req, judge_table, mutate=True, warn=False)[0]["response"] == {"uid": "u-1", "allowed": True}
        assert calls == []
    req = request("apps", "v1", "Deployment", "deployments", {"spec": {"template": template()}}, operation="UPDATE")
    req["object"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert review(req, judge_table, mutate=True, warn=False)[0]["response"] == {"uid": "u-1", "allowed": True}


def test_already_pinned_images_and_unknown_kinds_need_no_patch():
    req = request("", "v1", "Pod", "pods", {"spec": {"containers": [{"name": "a", "image": "registry.k8s.io/x:1"}]}})
    assert "patch" not in review(req, judge_table, mutate=True, warn=False)[0]["response"]
    configmap = request("", "v1", "ConfigMap", "configmaps", {"data": {"image": UNSIGNED}})
    assert image_sites(configmap) == []


@pytest.mark.parametrize("body", [
    b"", b"[]", b"{", b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}',
    b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "x"}}',
    b'{"kind": "Pod", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "x"}}',
    b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}',
    b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "x", "object": []}}',
])
def test_malformed_reviews_are_refused(body):
    with pytest.raises(MalformedReviewError):
        parse_review(body)


def test_malformed_containers_are_refused():
    req = request("", "v1", "Pod", "pods", {"spec": {"containers": {"a": 1}}})
    with pytest.raises(MalformedReviewError, match="/spec/containers is not a list"):
        image_sites(req)
    req = request("", "v1", "Pod", "pods", {"spec": {"containers": [{"name": "a", "image": 7}]}})
    with pytest.raises(MalformedReviewError, match="/spec/containers/0/image is not a string"):
        image_sites(req)
