"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview out: pure, no I/O.

Finds every container image of the object (containers, initContainers — which
include sidecars —, ephemeralContainers) at its JSON pointer, for Pods, the
``pods/ephemeralcontainers`` subresource (what ``kubectl debug`` sends: only
ephemeral containers matter), and the pod templates of Deployments,
ReplicaSets, StatefulSets, DaemonSets, Jobs, ReplicationControllers and
CronJobs. The verdicts come from a callable (the server's decision over its
verified views), one call per distinct image, so identical images in an object
are judged once and each image is patched only with its own verdict's digest.

``/mutate`` answers with a JSONPatch replacing each governed tag by
``registry/repository@sha256:<signed digest>`` and records the original
references in the ``tufoci.dev/original-images`` annotation (JSON: pointer →
image), a hint for people, never trusted. ``/validate`` never patches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tufoci.enforce.decision import Verdict
from tufoci.errors import UsageError

API_VERSION = "admission.k8s.io/v1"
ORIGINAL_IMAGES = "tufoci.dev/original-images"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# where the pod spec lives, by kind (apps/v1, batch/v1, core/v1)
POD_SPEC = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class MalformedReviewError(UsageError):
    """The body is not an AdmissionReview v1 request (HTTP 400: the apiserver applies its failurePolicy)."""


@dataclass(frozen=True)
class ImageSite:
    """One container's image and the JSON pointer of its ``image`` field."""

    pointer: str
    image: str


def parse_review(body: bytes) -> dict[str, Any]:
    """The ``request`` of an AdmissionReview.

    Raises:
        MalformedReviewError: not JSON, not an admission.k8s.io/v1 AdmissionReview, or no request uid.
    """
    try:
        review = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise MalformedReviewError(f"not JSON: {e}") from e
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise MalformedReviewError("not an AdmissionReview")
    if review.get("apiVersion") != API_VERSION:
        raise MalformedReviewError(f"apiVersion {review.get('apiVersion')!r} is not {API_VERSION}")
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        raise MalformedReviewError("no request with a uid")
    if not isinstance(request.get("object", {}), (dict, type(None))):
        raise MalformedReviewError("request.object is not an object")
    return request


def _escape(token: str) -> str:
    """RFC 6901: '~' → '~0', '/' → '~1'."""
    return token.replace("~", "~0").replace("/", "~1")


def image_sites(request: dict[str, Any]) -> list[ImageSite]:
    """Every container image of the request's object, with its JSON pointer (in object order).

    Raises:
        MalformedReviewError: an image or a container list has the wrong type.
    """
    obj = request.get("object") or {}
    kind = (request.get("kind") or {}).get("kind")
    resource = (request.get("resource") or {}).get("resource")
    subresource = request.get("subResource") or ""
    if subresource and not (resource == "pods" and subresource == "ephemeralcontainers"):
        return []  # pods/status, pods/binding…: no image a runtime would newly pull
    path = POD_SPEC.get(kind or "") if not subresource else ("spec",)
    if path is None:
        return []
    lists = ("ephemeralContainers",) if subresource == "ephemeralcontainers" else CONTAINER_LISTS
    spec: Any = obj
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return []
    base = "".join(f"/{_escape(key)}" for key in path)
    sites = []
    for name in lists:
        containers = spec.get(name) or []
        if not isinstance(containers, list):
            raise MalformedReviewError(f"{base}/{name} is not a list")
        for index, container in enumerate(containers):
            image = container.get("image") if isinstance(container, dict) else None
            if image is None:
                continue  # the apiserver's own validation rejects it; nothing for us to pull
            if not isinstance(image, str):
                raise MalformedReviewError(f"{base}/{name}/{index}/image is not a string")
            sites.append(ImageSite(f"{base}/{name}/{index}/image", image))
    return sites


def exempt_operation(request: dict[str, Any]) -> bool:
    """DELETE, CONNECT and objects being deleted are admitted untouched."""
    if request.get("operation") not in ("CREATE", "UPDATE"):
        return True
    metadata = (request.get("object") or {}).get("metadata") or {}
    return bool(metadata.get("deletionTimestamp"))


def review(
    request: dict[str, Any],
    judge: Callable[[str], Verdict],
    *,
    mutate: bool,
    warn: bool,
) -> tuple[dict[str, Any], list[Verdict]]:
    """The AdmissionReview answering ``request``, and the verdicts it rests on.

    ``judge(image)`` is called once per distinct image string. Denied images
    deny the object (``enforce``) or only warn (``warn``); ``mutate`` patches
    allowed images whose verdict asks for it.

    Raises:
        MalformedReviewError: see ``image_sites``.
    """
    uid = request["uid"]
    if exempt_operation(request):
        return response(uid, allowed=True), []
    sites = image_sites(request)
    verdicts: dict[str, Verdict] = {}
    for site in sites:
        if site.image not in verdicts:
            verdicts[site.image] = judge(site.image)
    denied = [v for v in verdicts.values() if not v.allowed]
    messages = [v.message for v in denied]
    if denied and not warn:
        return response(uid, allowed=False, message="; ".join(messages)), list(verdicts.values())
    patch = []
    if mutate:
        patch = patch_for(request.get("object") or {}, sites, verdicts)
    return response(uid, allowed=True, patch=patch, warnings=messages), list(verdicts.values())


def patch_for(obj: dict[str, Any], sites: Iterable[ImageSite], verdicts: dict[str, Verdict]) -> list[dict]:
    """JSONPatch operations: each rewritten image, then the annotation with the originals."""
    ops: list[dict[str, Any]] = []
    originals: dict[str, str] = {}
    for site in sites:
        verdict = verdicts[site.image]
        if verdict.allowed and verdict.mutate and verdict.pinned and verdict.pinned != site.image:
            ops.append({"op": "replace", "path": site.pointer, "value": verdict.pinned})
            originals[site.pointer] = site.image
    if not ops:
        return []
    value = json.dumps(originals, sort_keys=True, separators=(",", ":"))
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        ops.append({"op": "add", "path": "/metadata", "value": {"annotations": {ORIGINAL_IMAGES: value}}})
    elif not isinstance(metadata.get("annotations"), dict):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {ORIGINAL_IMAGES: value}})
    else:  # 'add' on an existing member replaces it (RFC 6902 §4.1)
        ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(ORIGINAL_IMAGES)}", "value": value})
    return ops


WARNING_CHARS = 256  # k8s.io/apiserver filters/warning.go: past 4,096 runes in all, each is cut to 256
WARNINGS_TOTAL_CHARS = 4096


def _deliverable(warnings: list[str]) -> list[str]:
    """The warnings cut so that the apiserver delivers them unaltered: each at most 256 characters (one line),
    at most 4,096 in all; what does not fit is counted in a last warning (the log has every image)."""
    kept: list[str] = []
    total = 0
    for index, text in enumerate(warnings):
        text = " ".join(text.split())  # control characters would make the apiserver drop it
        text = text if len(text) <= WARNING_CHARS else text[: WARNING_CHARS - 1] + "…"
        rest = len(warnings) - index
        tail = f"{rest} more images not verified; see the webhook's log"
        if total + len(text) + (len(tail) if rest > 1 else 0) > WARNINGS_TOTAL_CHARS:
            kept.append(tail)
            break
        kept.append(text)
        total += len(text)
    return kept


def response(
    uid: str,
    *,
    allowed: bool,
    message: str | None = None,
    patch: list[dict] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 response; ``patchType`` exactly when there is a patch."""
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": message or "denied"}
    if patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        answer["warnings"] = _deliverable(warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}
