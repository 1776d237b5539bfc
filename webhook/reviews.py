"""AdmissionReview wire types, parsing, and the four response constructors.

Types follow ``admission.k8s.io/v1`` exactly (TypedDict + Literal, as kopf's ``reviews.py`` does).
``parse_review`` is the only gate from untrusted bytes to a typed request: anything it cannot vouch
for raises ``BadReview``, which the HTTP edge maps to 400 (the API server then applies the
failurePolicy). Responses are built only by ``allowed``/``denied``/``patched``/``errored`` and
always echo the request's ``uid``, ``apiVersion`` and ``kind``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict, cast, get_args

from driftguard.core import jsontext

API_VERSIONS: Final = ("admission.k8s.io/v1",)
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: Final[tuple[str, ...]] = get_args(Operation)
KubeObject = dict[str, Any]


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class Request(TypedDict):
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    operation: Operation
    userInfo: UserInfo
    subResource: NotRequired[str]
    requestKind: NotRequired[GroupVersionKind]
    requestResource: NotRequired[GroupVersionResource]
    requestSubResource: NotRequired[str]
    name: NotRequired[str]
    namespace: NotRequired[str]
    object: NotRequired[KubeObject | None]
    oldObject: NotRequired[KubeObject | None]
    dryRun: NotRequired[bool]
    options: NotRequired[KubeObject | None]


class Review(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    request: Request


class Status(TypedDict, total=False):
    code: int
    message: str
    reason: str


class PatchOp(TypedDict):
    op: Literal["add", "replace", "remove"]
    path: str
    value: NotRequired[object]


class Response(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    patch: NotRequired[str]
    patchType: NotRequired[Literal["JSONPatch"]]


class ReviewResponse(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: Response


class BadReview(ValueError):
    """The body is not an AdmissionReview request this webhook can answer (HTTP 400)."""


# ---------------------------------------------------------------- parsing

def parse_review(body: bytes) -> Review:
    """Decode and check an AdmissionReview request; BadReview says what is wrong."""
    try:
        document = jsontext.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadReview(f"body is not JSON: {e}") from e
    except RecursionError:
        raise BadReview("body is not an AdmissionReview: nested too deeply") from None
    if not isinstance(document, dict):
        raise BadReview("body is not a JSON object")
    if document.get("kind") != "AdmissionReview":
        raise BadReview(f"kind {document.get('kind')!r} is not AdmissionReview")
    if document.get("apiVersion") not in API_VERSIONS:
        raise BadReview(f"apiVersion {document.get('apiVersion')!r} is not one of {', '.join(API_VERSIONS)}")
    request = document.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request")
    _check_request(request)
    return cast(Review, document)


def _check_request(request: Mapping[str, Any]) -> None:
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request has no uid")
    if request.get("operation") not in OPERATIONS:
        raise BadReview(f"request {uid}: operation {request.get('operation')!r} is unknown")
    _require_strings(request, "kind", ("group", "version", "kind"), uid)
    _require_strings(request, "resource", ("group", "version", "resource"), uid)
    user = request.get("userInfo")
    if not isinstance(user, dict) or not isinstance(user.get("username", ""), str):
        raise BadReview(f"request {uid}: userInfo is malformed")
    groups = user.get("groups", [])
    if not isinstance(groups, list) or not set(map(type, groups)) <= _STRINGS:
        raise BadReview(f"request {uid}: userInfo.groups is malformed")
    for key in ("object", "oldObject", "options"):
        if not isinstance(request.get(key), (dict, type(None))):
            raise BadReview(f"request {uid}: {key} is not an object")
    for key in _REQUIRED_OBJECTS.get(request["operation"], ()):
        if request.get(key) is None:
            raise BadReview(f"request {uid}: {request['operation']} without {key}")
    for key in ("object", "oldObject"):
        problem = object_problem(request.get(key))
        if problem:
            raise BadReview(f"request {uid}: {key} {problem}")
    for key in ("name", "namespace", "subResource"):
        if not isinstance(request.get(key, ""), str):
            raise BadReview(f"request {uid}: {key} is not a string")
    if not isinstance(request.get("dryRun", False), bool):
        raise BadReview(f"request {uid}: dryRun is not a boolean")


_STRINGS: Final = frozenset({str})  # decoded JSON strings are exactly str
_REQUIRED_OBJECTS: Final = {"CREATE": ("object",), "UPDATE": ("object", "oldObject"), "DELETE": ("oldObject",)}


def object_problem(obj: object) -> str:
    """What makes ``obj`` not a Kubernetes object's shape ("" when fine, or when absent).

    Only what the policy relies on: ``metadata`` a map, ``labels``/``annotations`` maps of strings.
    """
    if obj is None:
        return ""
    if not isinstance(obj, dict):
        return "is not an object"
    metadata = obj.get("metadata")
    if metadata is None:
        return ""
    if not isinstance(metadata, dict):
        return "has metadata that is not an object"
    for key in ("labels", "annotations"):
        bag = metadata.get(key)
        if bag is not None and (not isinstance(bag, dict) or not set(map(type, bag.values())) <= _STRINGS):
            return f"has metadata.{key} that is not a map of strings"
    return ""


def _require_strings(request: Mapping[str, Any], key: str, names: tuple[str, ...], uid: str) -> None:
    value = request.get(key)
    if not isinstance(value, dict) or not all(isinstance(value.get(n), str) for n in names):
        raise BadReview(f"request {uid}: {key} must have string {', '.join(names)}")


# ---------------------------------------------------------------- responses

def allowed(review: Review, warnings: Iterable[str] = ()) -> ReviewResponse:
    return _respond(review, {"uid": review["request"]["uid"], "allowed": True}, warnings)


def denied(review: Review, message: str, *, code: int = 403, warnings: Iterable[str] = ()) -> ReviewResponse:
    status: Status = {"code": code, "message": message, "reason": _REASONS.get(code, "Forbidden")}
    return _respond(review, {"uid": review["request"]["uid"], "allowed": False, "status": status}, warnings)


def patched(review: Review, patch: Iterable[PatchOp], warnings: Iterable[str] = ()) -> ReviewResponse:
    ops = list(patch)
    if not ops:
        return allowed(review, warnings)
    encoded = base64.b64encode(json.dumps(ops, separators=(",", ":")).encode()).decode()
    response: Response = {
        "uid": review["request"]["uid"], "allowed": True, "patch": encoded, "patchType": "JSONPatch",
    }
    return _respond(review, response, warnings)


def errored(review: Review, code: int, message: str) -> ReviewResponse:
    """A failure to decide: never allowed (fail closed)."""
    return denied(review, message, code=code)


_REASONS: Final = {400: "BadRequest", 403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}


def _respond(review: Review, response: Response, warnings: Iterable[str]) -> ReviewResponse:
    texts = list(warnings)
    if texts:
        response["warnings"] = texts
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}
