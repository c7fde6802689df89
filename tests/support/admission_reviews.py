"""AdmissionReview (``admission.k8s.io/v1``) fixtures, built from the image references a test gives.

Every builder returns a fresh ``dict`` shaped exactly as kube-apiserver sends it: the v1 field names
(``uid``, ``kind``, ``resource``, ``subResource``, ``requestKind``, ``requestResource``, ``name``,
``namespace``, ``operation``, ``userInfo``, ``object``, ``oldObject``, ``dryRun``, ``options``), a
fresh ``uid`` per review, and ``options`` of the operation's kind (``CreateOptions``,
``UpdateOptions``, ``DeleteOptions``, with ``dryRun: ["All"]`` when the request is a dry run).
The embedded objects are valid against the Kubernetes schema (``tests/test_apiserver_helper.py`` checks
every fixture), so a webhook's patch can be judged on a valid base.

What each covers and why:

- :func:`pod_create`: containers, initContainers (a plain one and a ``restartPolicy: Always``
  sidecar) and, when asked, ephemeralContainers — the apiserver's validation refuses ephemeral
  containers on CREATE, but admission runs first, so a webhook must still pin them.
- :func:`pod_generate_name`: ``metadata.generateName`` and no ``name`` (the review's ``name`` is "").
- :func:`ephemeral_debug`: the ``pods/ephemeralcontainers`` UPDATE ``kubectl debug`` sends, with
  the old Pod and the new one carrying the added ephemeral container.
- :func:`workload_review`: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob and
  ReplicationController, CREATE or UPDATE (the images are in the pod template; a CronJob's one level
  deeper, in ``spec.jobTemplate.spec.template``).
- ``dry_run=True`` on every builder; :func:`pod_being_deleted` (UPDATE of an object with
  ``deletionTimestamp``, e.g. a finalizer removed) and :func:`pod_delete` (DELETE: ``object`` null).
- :func:`tag_and_digest` / :func:`digest_only` make the two pinned forms of a reference; a Pod with
  images from two trust scopes is just :func:`pod_create` with references from both.

:func:`image_locations` lists where the images of an object are (JSON pointers), so a test can check
a patch touches exactly those.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = [
    "WORKLOADS",
    "admission_review",
    "digest_only",
    "ephemeral_debug",
    "image_locations",
    "pod",
    "pod_being_deleted",
    "pod_create",
    "pod_delete",
    "pod_generate_name",
    "pod_spec",
    "tag_and_digest",
    "workload",
    "workload_review",
]

NAMESPACE = "shop"
USER_INFO = {"username": "alice@example.com", "uid": "7d4bcc7e-4a5c-4d5c-9f6b-0c6b1e0b2a11",
             "groups": ["developers", "system:authenticated"]}
_POD_GVK = ("", "v1", "Pod", "pods")

#: kind → (group, version, resource); the pod template lives at ``spec.template`` except for CronJob.
WORKLOADS: dict[str, tuple[str, str, str]] = {
    "Deployment": ("apps", "v1", "deployments"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "ReplicationController": ("", "v1", "replicationcontrollers"),
}

_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


def tag_and_digest(reference: str, digest: str) -> str:
    """``registry/repo:tag`` + ``sha256:…`` → ``registry/repo:tag@sha256:…`` (the tag is then only a hint)."""
    return f"{reference}@{digest}"


def digest_only(reference: str, digest: str) -> str:
    """``registry/repo[:tag]`` + ``sha256:…`` → ``registry/repo@sha256:…``."""
    last = reference.rsplit("/", 1)
    if ":" in last[-1]:
        reference = reference[: reference.rfind(":")]
    return f"{reference}@{digest}"


def _containers(prefix: str, images: Sequence[str], **extra: Any) -> list[dict[str, Any]]:
    return [{"name": f"{prefix}{i}", "image": image, **extra} for i, image in enumerate(images)]


def pod_spec(images: Sequence[str], *, init_images: Sequence[str] = (), sidecar_images: Sequence[str] = (),
             ephemeral_images: Sequence[str] = ()) -> dict[str, Any]:
    """A PodSpec: one container per image; init containers, then sidecars (init, ``restartPolicy: Always``)."""
    if not images:
        raise ValueError("a Pod needs at least one container image")
    spec: dict[str, Any] = {"containers": _containers("app", images, imagePullPolicy="IfNotPresent")}
    init = _containers("init", init_images) + _containers("sidecar", sidecar_images, restartPolicy="Always")
    if init:
        spec["initContainers"] = init
    if ephemeral_images:
        spec["ephemeralContainers"] = _containers("debugger", ephemeral_images, targetContainerName="app0",
                                                  stdin=True, tty=True)
    return spec


def _metadata(name: str | None, generate_name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": NAMESPACE, "labels": {"app": "shop"}}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    return meta


def pod(images: Sequence[str], *, name: str | None = "web", generate_name: str | None = None,
        **spec_images: Sequence[str]) -> dict[str, Any]:
    """A v1 Pod; ``spec_images`` are :func:`pod_spec`'s keyword arguments."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(name, generate_name),
            "spec": pod_spec(images, **spec_images)}


def workload(kind: str, images: Sequence[str], *, name: str = "web", **spec_images: Sequence[str]) -> dict[str, Any]:
    """A workload of ``kind`` (a key of :data:`WORKLOADS`) whose pod template runs ``images``."""
    group, version, _ = WORKLOADS[kind]
    labels = {"app": name}
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec(images, **spec_images)}
    selector = {"matchLabels": labels}
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
    spec: dict[str, Any]
    if kind == "CronJob":
        spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "Job":
        spec = {"template": template, "backoffLimit": 1}
    elif kind == "ReplicationController":
        spec = {"replicas": 2, "selector": labels, "template": template}
    elif kind == "DaemonSet":
        spec = {"selector": selector, "template": template}
    elif kind == "StatefulSet":
        spec = {"replicas": 2, "serviceName": name, "selector": selector, "template": template}
    else:
        spec = {"replicas": 2, "selector": selector, "template": template}
    return {"apiVersion": f"{group}/{version}" if group else version, "kind": kind,
            "metadata": _metadata(name), "spec": spec}


def admission_review(obj: dict[str, Any] | None, *, operation: str, old_object: dict[str, Any] | None = None,
                     sub_resource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Wrap ``obj`` (and ``old_object``) in an AdmissionReview request as kube-apiserver sends it."""
    subject = obj if obj is not None else old_object
    if subject is None:
        raise ValueError("an AdmissionReview needs an object or an old object")
    kind = subject["kind"]
    if kind == "Pod":
        group, version, _, resource = _POD_GVK
    else:
        group, version, resource = WORKLOADS[kind]
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    options: dict[str, Any] = {"apiVersion": "meta.k8s.io/v1", "kind": _OPTIONS_KIND[operation]}
    if dry_run:
        options["dryRun"] = ["All"]
    if operation != "DELETE":
        options["fieldManager"] = "kubectl-client-side-apply"
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": dict(gvk),
        "requestResource": dict(gvr),
        "name": subject["metadata"].get("name", ""),
        "namespace": subject["metadata"]["namespace"],
        "operation": operation,
        "userInfo": copy.deepcopy(USER_INFO),
        "object": obj,
        "oldObject": old_object,
        "dryRun": dry_run,
        "options": options,
    }
    if sub_resource:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    if not request["name"]:
        del request["name"]  # omitempty: the apiserver leaves it out for generateName
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _server_side(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as stored: uid, resourceVersion, creationTimestamp set (what UPDATE/DELETE carry)."""
    stored = copy.deepcopy(obj)
    stored["metadata"].update({"uid": "5f0c7a4e-2b1d-4c8e-9a53-1d2e3f4a5b6c", "resourceVersion": "4711",
                               "creationTimestamp": "2026-12-01T10:00:00Z"})
    return stored


def pod_create(images: Sequence[str], *, dry_run: bool = False, **spec_images: Sequence[str]) -> dict[str, Any]:
    """Pod CREATE; ``init_images``, ``sidecar_images``, ``ephemeral_images`` add the other container lists."""
    return admission_review(pod(images, **spec_images), operation="CREATE", dry_run=dry_run)


def pod_generate_name(images: Sequence[str], *, dry_run: bool = False) -> dict[str, Any]:
    """Pod CREATE with ``generateName: web-`` and no name (a controller's or ``kubectl create`` of one)."""
    return admission_review(pod(images, name=None, generate_name="web-"), operation="CREATE", dry_run=dry_run)


def ephemeral_debug(images: Sequence[str], debug_images: Sequence[str], *, dry_run: bool = False) -> dict[str, Any]:
    """``kubectl debug``: UPDATE of ``pods/ephemeralcontainers`` carrying the old Pod and the new one."""
    old = _server_side(pod(images))
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = _containers("debugger", debug_images, targetContainerName="app0",
                                                     stdin=True, tty=True)
    return admission_review(new, operation="UPDATE", old_object=old, sub_resource="ephemeralcontainers",
                            dry_run=dry_run)


def workload_review(kind: str, images: Sequence[str], *, operation: str = "CREATE",
                    old_images: Sequence[str] | None = None, dry_run: bool = False,
                    **spec_images: Sequence[str]) -> dict[str, Any]:
    """CREATE or UPDATE of a workload; an UPDATE's old object runs ``old_images`` (default: the same).

    ``spec_images`` are :func:`pod_spec`'s keyword arguments (init containers, sidecars) for both.
    """
    if operation == "CREATE":
        return admission_review(workload(kind, images, **spec_images), operation="CREATE", dry_run=dry_run)
    if operation != "UPDATE":
        raise ValueError(f"operation must be CREATE or UPDATE, not {operation!r}")
    old = _server_side(workload(kind, old_images if old_images is not None else images, **spec_images))
    new = copy.deepcopy(old)
    new["spec"] = workload(kind, images, **spec_images)["spec"]
    return admission_review(new, operation="UPDATE", old_object=old, dry_run=dry_run)


def pod_being_deleted(images: Sequence[str]) -> dict[str, Any]:
    """UPDATE of a Pod with ``deletionTimestamp`` set (a finalizer removed during graceful deletion)."""
    old = _server_side(pod(images))
    old["metadata"].update({"deletionTimestamp": "2026-12-01T11:00:00Z", "deletionGracePeriodSeconds": 30,
                            "finalizers": ["example.com/cleanup"]})
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    return admission_review(new, operation="UPDATE", old_object=old)


def pod_delete(images: Sequence[str]) -> dict[str, Any]:
    """DELETE of a Pod: ``object`` is null, ``oldObject`` the stored Pod, ``options`` DeleteOptions."""
    return admission_review(None, operation="DELETE", old_object=_server_side(pod(images)))


def _pod_spec_path(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if obj["kind"] == "Pod":
        return "/spec", obj["spec"]
    if obj["kind"] == "CronJob":
        return "/spec/jobTemplate/spec/template/spec", obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return "/spec/template/spec", obj["spec"]["template"]["spec"]


def image_locations(obj: dict[str, Any]) -> dict[str, str]:
    """JSON pointer → image of every container of ``obj`` (containers, initContainers, ephemeralContainers)."""
    base, spec = _pod_spec_path(obj)
    return {f"{base}/{field}/{i}/image": container["image"]
            for field in ("containers", "initContainers", "ephemeralContainers")
            for i, container in enumerate(spec.get(field, ())) if "image" in container}
