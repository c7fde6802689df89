"""Call an admission webhook the way kube-apiserver does, and judge its answer the way kube-apiserver would.

No kube-apiserver runs on these machines, so the tests stand in for it. :class:`ApiserverClient` sends
the request exactly as the apiserver's webhook client does: an HTTPS ``POST`` of an ``admission.k8s.io/v1``
``AdmissionReview`` to ``https://127.0.0.1:PORT/mutate?timeout=10s``, with the Service name
``tufoci-admission.tufoci-system.svc`` as TLS server name (SNI) and ``Host``, verified against the
webhook's CA (the ``caBundle``), ``Content-Type: application/json``, and the call abandoned when the
timeout passes.

:func:`judge_response` then applies, to every response, the rules the apiserver applies (source read:
``k8s.io/apiserver/pkg/admission/plugin/webhook/request/admissionreview.go`` ``VerifyAdmissionResponse``,
``.../webhook/mutating/dispatcher.go``, ``.../webhook/errors/statuserror.go`` ``ToStatusErr``,
``k8s.io/apiserver/pkg/endpoints/filters/warning.go`` and ``k8s.io/apimachinery/pkg/util/net``
``NewWarningHeader``), each refusal raising :class:`WebhookCallError` with a ``rule`` name. A few
checks are *stricter* than the apiserver: they are the contract tufoci's server promises (its deny
carries ``status.code`` and a message, its warnings arrive unaltered, it answers exactly 200 with
JSON, ``allowed`` is always written); those rules have ``source == "contract"``, the apiserver's own
have ``source == "apiserver"``.

Finally an accepted patch is applied with a JSON Patch library (``jsonpatch``, RFC 6902, what the
apiserver's ``evanphx/json-patch`` implements) and the patched object is validated against the
Kubernetes OpenAPI schema (``kubernetes-validate``, offline, strict: unknown fields are errors) —
a webhook that produces an object the apiserver would then reject has failed as surely as one that
answers garbage.
"""

from __future__ import annotations

import base64
import binascii
import copy
import http.client
import json
import socket
import ssl
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate

__all__ = [
    "ADMISSION_API_VERSION",
    "K8S_VERSION",
    "MAX_RESPONSE_BYTES",
    "SERVICE_HOST",
    "AdmissionResult",
    "ApiserverClient",
    "WebhookCallError",
    "deliver_warnings",
    "judge_response",
    "validate_object",
]

#: The Service DNS name the webhook configurations point to (``<service>.<namespace>.svc``).
SERVICE_HOST = "tufoci-admission.tufoci-system.svc"
ADMISSION_API_VERSION = "admission.k8s.io/v1"
#: Kubernetes version whose OpenAPI schema the objects are validated against (kubernetes-validate ships it).
K8S_VERSION = "1.30.0"
#: Contract: a response body the helper reads at most. The apiserver has no documented cap on webhook
#: responses; 3 MiB is its own default request-body limit (``--max-request-bytes``), so a bigger answer
#: could never describe an object the apiserver would store.
MAX_RESPONSE_BYTES = 3 * 1024 * 1024

# k8s.io/apiserver/pkg/endpoints/filters/warning.go: truncateAtTotalRunes, truncateItemRunes
_WARNINGS_TOTAL_RUNES = 4 * 1024
_WARNING_ITEM_RUNES = 256

_DELETE = "DELETE"


class WebhookCallError(Exception):
    """The apiserver (``source="apiserver"``) or tufoci's contract (``source="contract"``) refuses a response.

    ``rule`` names the rule broken, so tests assert which one; the apiserver would treat the call as
    failed (``failurePolicy`` decides) or as an internal error, never as a verdict.
    """

    def __init__(self, rule: str, message: str, *, source: str = "apiserver") -> None:
        super().__init__(f"[{source}:{rule}] {message}")
        self.rule = rule
        self.source = source


@dataclass(frozen=True)
class AdmissionResult:
    """An accepted webhook answer, as the apiserver would act on it.

    ``object`` is the object after the patch (a deep copy of the request's object when there was no
    patch; ``None`` for a DELETE). ``message`` is the text the user sees on a denial, formatted as
    ``ToStatusErr`` formats it; ``warnings`` are the warnings as delivered to the client.
    """

    allowed: bool
    object: dict[str, Any] | None
    patch: list[dict[str, Any]] | None = None
    warnings: tuple[str, ...] = ()
    message: str = ""
    code: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _fail(rule: str, message: str) -> WebhookCallError:
    return WebhookCallError(rule, message, source="apiserver")


def _contract(rule: str, message: str) -> WebhookCallError:
    return WebhookCallError(rule, message, source="contract")


def validate_object(obj: dict[str, Any], *, version: str = K8S_VERSION) -> None:
    """Validate one Kubernetes object against the OpenAPI schema of ``version`` (strict: no unknown fields).

    Raises:
        WebhookCallError: rule ``schema``, naming the first violation.
    """
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise _fail("schema", f"{obj.get('kind')} invalid at /{where}: {exc.message}") from None
    except kubernetes_validate.utils.SchemaNotFoundError as exc:
        raise _fail("schema", exc.message) from None


def deliver_warnings(warnings: list[str]) -> tuple[str, ...]:
    """The warnings the apiserver's warning recorder would send to the client (``Warning: 299`` headers).

    warning.go: empty texts are dropped, duplicates dropped, a text with control characters cannot
    become a header and is dropped (``NewWarningHeader``); once the total passes 4,096 runes, every
    warning is cut to 256 runes and those arriving after the limit are ignored.
    """
    recorded: list[str] = []
    seen: set[str] = set()
    written = 0
    truncating = False
    for text in warnings:
        if not text or (truncating and written >= _WARNINGS_TOTAL_RUNES) or text in seen:
            continue
        seen.add(text)
        if _has_control(text):
            continue
        if truncating:
            text = text[:_WARNING_ITEM_RUNES]
        if written + len(text) <= _WARNINGS_TOTAL_RUNES or truncating:
            written += len(text)
            recorded.append(text)
            continue
        truncating = True
        recorded = [w[:_WARNING_ITEM_RUNES] for w in [*recorded, text]]
        written = sum(len(w) for w in recorded)
    return tuple(recorded)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _check_warnings(warnings: Any) -> list[str]:
    if warnings is None:
        return []
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise _fail("decode", "response.warnings must be a list of strings")
    # contract: every warning reaches the user unaltered (deliver_warnings would change nothing)
    for text in warnings:
        if not text or _has_control(text):
            raise _contract("warnings", f"warning {text!r} is empty or has control characters: the apiserver drops it")
        if len(text) > _WARNING_ITEM_RUNES:
            raise _contract("warnings", f"warning of {len(text)} characters may be cut to {_WARNING_ITEM_RUNES}")
    if sum(len(w) for w in warnings) > _WARNINGS_TOTAL_RUNES:
        raise _contract("warnings", f"warnings exceed {_WARNINGS_TOTAL_RUNES} characters in all: the apiserver cuts them")
    return warnings


def _decode_patch(response: dict[str, Any]) -> bytes:
    patch = response.get("patch")
    if patch is None:
        return b""
    if not isinstance(patch, str):
        raise _fail("decode", "response.patch must be a base64 string ([]byte)")
    try:
        return base64.b64decode(patch, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("decode", "response.patch is not valid base64") from None


def _status(response: dict[str, Any]) -> tuple[int | None, str]:
    status = response.get("status")
    if status is None:
        return None, ""
    if not isinstance(status, dict):
        raise _fail("decode", "response.status must be a metav1.Status object")
    code, message = status.get("code"), status.get("message", "")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise _fail("decode", "response.status.code must be an integer")
    if not isinstance(message, str):
        raise _fail("decode", "response.status.message must be a string")
    return code, message


def judge_response(request: dict[str, Any], status: int, headers: dict[str, str], body: bytes, *,
                   mutating: bool, webhook_name: str = "mutate.admission.tufoci.dev") -> AdmissionResult:
    """Apply the apiserver's acceptance rules to one HTTP answer to ``request`` (an AdmissionReview).

    Returns the verdict as the apiserver would act on it; the patched object has been validated
    against the Kubernetes schema.

    Raises:
        WebhookCallError: the answer breaks a rule; ``rule`` says which.
    """
    # client-go rest: any status outside 2xx is an error; tufoci's server answers exactly 200
    if not 200 <= status <= 206:
        raise _fail("http-status", f"HTTP {status}: the apiserver treats the call as failed")
    if status != 200:
        raise _contract("http-status", f"HTTP {status}, expected 200")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _contract("content-type", f"Content-Type {content_type!r}, expected application/json")
    if len(body) > MAX_RESPONSE_BYTES:
        raise _contract("size", f"response of {len(body)} bytes exceeds {MAX_RESPONSE_BYTES}")
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail("decode", f"response is not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise _fail("decode", "response is not a JSON object")
    # VerifyAdmissionResponse (v1): GVK, response present, uid echoed
    if review.get("apiVersion") != ADMISSION_API_VERSION or review.get("kind") != "AdmissionReview":
        raise _fail("gvk", f"expected {ADMISSION_API_VERSION} AdmissionReview, got "
                           f"{review.get('apiVersion')!r} {review.get('kind')!r}")
    response = review.get("response")
    if response is None:
        raise _fail("response-absent", "webhook response was absent")
    if not isinstance(response, dict):
        raise _fail("decode", "response must be an AdmissionResponse object")
    uid = request["request"]["uid"]
    if response.get("uid") != uid:  # field names are case-sensitive (sigs.k8s.io/json)
        raise _fail("uid", f"expected response.uid={uid!r}, got {response.get('uid')!r}")
    if "allowed" not in response:
        # the apiserver reads a missing bool as false (a denial without reason); tufoci always writes it
        raise _contract("allowed", "response.allowed is missing")
    allowed = response["allowed"]
    if not isinstance(allowed, bool):
        raise _fail("decode", "response.allowed must be a boolean")
    patch_type = response.get("patchType")
    if patch_type is not None and not isinstance(patch_type, str):
        raise _fail("decode", "response.patchType must be a string")
    patch_bytes = _decode_patch(response)
    if mutating:
        if patch_bytes and patch_type is None:
            raise _fail("patch-without-type", "webhook returned response.patch but not response.patchType")
        if not patch_bytes and patch_type is not None:
            raise _fail("type-without-patch", "webhook returned response.patchType but not response.patch")
        if patch_type == "":
            raise _fail("patch-type", 'webhook returned invalid response.patchType of ""')
    else:
        if patch_bytes:
            raise _fail("validating-patch", "validating webhook may not return response.patch")
        if patch_type is not None:
            raise _fail("validating-patch", "validating webhook may not return response.patchType")
    code, message = _status(response)
    warnings = deliver_warnings(_check_warnings(response.get("warnings")))
    annotations = response.get("auditAnnotations")
    if annotations is not None and not (
            isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())):
        raise _fail("decode", "response.auditAnnotations must map strings to strings")

    obj = request["request"].get("object")
    if not allowed:
        # statuserror.go ToStatusErr: code < 400 becomes 400; the message is prefixed
        if code is None or code < 400 or not message:
            raise _contract("deny-status", f"a denial must carry status.code >= 400 and a message, got {code!r} {message!r}")
        return AdmissionResult(False, None, None, warnings,
                               f'admission webhook "{webhook_name}" denied the request: {message}', code, review)
    if not patch_bytes:
        return AdmissionResult(True, copy.deepcopy(obj), None, warnings, message, code, review)
    # mutating/dispatcher.go: only JSONPatch is applied, never to a DELETE (no object)
    if patch_type != "JSONPatch":
        raise _fail("patch-type", f"unsupported patch type {patch_type!r}")
    if obj is None or request["request"].get("operation") == _DELETE:
        raise _fail("patch-apply", f'admission webhook "{webhook_name}" attempted to modify the object, '
                                   "which is not supported for this operation")
    try:
        ops = json.loads(patch_bytes)
        patched = jsonpatch.JsonPatch(ops).apply(obj, in_place=False)
    except (ValueError, TypeError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise _fail("patch-apply", f"the patch does not apply: {exc}") from None
    if not isinstance(patched, dict):
        raise _fail("patch-apply", "the patch replaced the object with a non-object")
    validate_object(patched)
    return AdmissionResult(True, patched, ops, warnings, message, code, review)


class _ServiceHTTPSConnection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1:PORT but speaks TLS to, and verifies, the Service name (SNI)."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self._ssl_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._ssl_context.wrap_socket(sock, server_hostname=SERVICE_HOST)


class ApiserverClient:
    """kube-apiserver's webhook client, reduced to what a test needs; one persistent connection.

    Not thread-safe: use one client per thread.
    """

    def __init__(self, port: int, ca_file: Path | str, *, timeout_seconds: int = 10) -> None:
        self.port = port
        self.timeout_seconds = timeout_seconds
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._conn: _ServiceHTTPSConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ApiserverClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, path: str, review: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """POST ``review`` to ``path`` as the apiserver does; return status, headers (lower-case), body.

        The whole call (connect, TLS, send, answer) must finish within the timeout, as the apiserver's
        request context demands.

        Raises:
            WebhookCallError: rule ``timeout`` when the deadline passes, ``transport`` on any other
                connection or TLS failure (certificate not valid for the Service name, refused…).
        """
        body = json.dumps(review, separators=(",", ":")).encode()
        return self._request("POST", f"{path}?timeout={self.timeout_seconds}s", body,
                             {"Content-Type": "application/json", "Accept": "application/json, */*"})

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` (``/healthz``, ``/readyz``, ``/metrics``) over the same connection, as a probe would.

        Raises:
            WebhookCallError: as :meth:`post`.
        """
        return self._request("GET", path, None, {})

    def _request(self, method: str, url: str, body: bytes | None,
                 headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        deadline = time.monotonic() + self.timeout_seconds
        headers = {"Host": SERVICE_HOST, "User-Agent": "kube-apiserver-admission", **headers}
        for attempt in (0, 1):  # a kept-alive connection the server closed is retried once, as Go does
            if self._conn is None:
                self._conn = _ServiceHTTPSConnection(self.port, self._context, self.timeout_seconds)
            try:
                self._conn.timeout = max(deadline - time.monotonic(), 0.001)
                if self._conn.sock is not None:
                    self._conn.sock.settimeout(self._conn.timeout)
                self._conn.request(method, url, body=body, headers=headers)
                answer = self._conn.getresponse()
                data = answer.read(MAX_RESPONSE_BYTES + 1)
                if time.monotonic() > deadline:
                    raise TimeoutError
                return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data
            except TimeoutError:
                self.close()
                raise _fail("timeout", f"no answer within {self.timeout_seconds}s "
                                       "(context deadline exceeded)") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt:
                    raise _fail("transport", f"{type(exc).__name__}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise _fail("transport", f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    def call(self, path: str, review: dict[str, Any], *, mutating: bool) -> AdmissionResult:
        """POST and judge: the verdict as the apiserver would act on it.

        Raises:
            WebhookCallError: the call failed or the answer breaks a rule.
        """
        status, headers, body = self.post(path, review)
        return judge_response(review, status, headers, body, mutating=mutating,
                              webhook_name=("mutate" if mutating else "validate") + ".admission.tufoci.dev")

    def mutate(self, review: dict[str, Any]) -> AdmissionResult:
        """``/mutate`` as the MutatingWebhookConfiguration calls it. Raises: WebhookCallError."""
        return self.call("/mutate", review, mutating=True)

    def validate(self, review: dict[str, Any]) -> AdmissionResult:
        """``/validate`` as the ValidatingWebhookConfiguration calls it. Raises: WebhookCallError."""
        return self.call("/validate", review, mutating=False)
