"""Who the user is and what they may do, as Kubernetes decides: pure request bodies and answers.

The UI never decides access itself. Each read and action is a SubjectAccessReview for the user (their
name and groups, as a TokenReview, the login token's configured identity or an authenticating proxy
said), answered by the API server's authorizers, cached for a few seconds per question.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from reconciler.delegation import SYNC_VERB

__all__ = ["SYNC_VERB"]  # the verb `driftguard sync` and the reconciler's POST /sync check

APPLICATIONS_GROUP: Final = "driftguard.io"
REFRESH_VERB: Final = "refresh"  # an RBAC verb on applications.driftguard.io: "ask git now"; never edits objects


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    via: str = ""  # "token", "login token", "proxy"

    def to_session(self) -> dict[str, Any]:
        return {"user": self.user, "groups": list(self.groups), "via": self.via}

    @classmethod
    def from_session(cls, data: Mapping[str, Any] | None) -> Identity | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("user"), str) or not data["user"]:
            return None
        groups = data.get("groups") or []
        return cls(data["user"], tuple(str(g) for g in groups if isinstance(g, str)), str(data.get("via") or ""))


@dataclass(frozen=True, slots=True)
class Question:
    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""


def access_review(identity: Identity, question: Question) -> dict[str, Any]:
    """The SubjectAccessReview asking whether ``identity`` may do ``question``."""
    attributes: dict[str, str] = {"verb": question.verb, "group": question.group, "resource": question.resource}
    if question.namespace:
        attributes["namespace"] = question.namespace
    if question.name:
        attributes["name"] = question.name
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": identity.user, "groups": list(identity.groups), "resourceAttributes": attributes}}


def allowed(answer: Mapping[str, Any]) -> bool:
    status = answer.get("status") or {}
    return bool(status.get("allowed")) and not status.get("denied")


def token_review(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def reviewed_identity(answer: Mapping[str, Any]) -> Identity | None:
    """The user a TokenReview authenticated; None when it did not."""
    status = answer.get("status") or {}
    user = status.get("user") or {}
    if not status.get("authenticated") or not user.get("username"):
        return None
    return Identity(str(user["username"]), tuple(str(g) for g in user.get("groups") or ()), "token")


def proxy_identity(headers: Mapping[str, str], user_header: str, groups_header: str) -> Identity | None:
    """The identity an authenticating proxy asserts (only ever read when configured)."""
    user = (headers.get(user_header) or "").strip()
    if not user_header or not user:
        return None
    groups = [g.strip() for g in (headers.get(groups_header) or "").split(",") if g.strip()] if groups_header else []
    return Identity(user, tuple(groups), "proxy")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected secret never matches."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class AccessCache:
    """Answers to questions, per identity, for ``ttl`` seconds (a granted or revoked RoleBinding shows within it)."""

    def __init__(self, ask: Callable[[Identity, Question], bool], ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, size: int = 50_000) -> None:
        self._ask, self._ttl, self._clock, self._size = ask, ttl, clock, size
        self._answers: dict[tuple[Identity, Question], tuple[float, bool]] = {}

    def can(self, identity: Identity, question: Question) -> bool:
        now = self._clock()
        key = (identity, question)
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = self._ask(identity, question)
        if len(self._answers) >= self._size:
            self._answers.clear()
        self._answers[key] = (now + self._ttl, answer)
        return answer
