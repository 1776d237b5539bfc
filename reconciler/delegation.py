"""Who a ``POST /sync`` is for: the caller itself, or — only from the web UI's ServiceAccount — the user it
names (pure).

The UI often holds no bearer token of its user (local mode's login token, an authenticating proxy's
headers), so it asks for the sync with *its own* ServiceAccount token and names the user it signed in
(``X-Driftguard-User``, ``X-Driftguard-Groups``: comma-separated). The reconciler believes those
headers only when the TokenReview says the caller is the ServiceAccount it was configured to trust
(``--ui-service-account NAMESPACE/NAME``; unset: nobody), and then asks RBAC about the *named user*,
never about the UI. From anyone else the headers are refused outright (not ignored: a caller that
sends them believes it is delegating, and must learn it is not). The sync is recorded as
``alice via driftguard-ui``.

The UI's token for this is not its API-server token: it is a ServiceAccount token for the audience
``driftguard-reconciler`` (a projected volume in its Pod; local mode mints one with TokenRequest), and a
delegated request's TokenReview asks for that audience only (``review_audiences``, ``audience_refusal``).
Taken from the plain-HTTP hop between UI and reconciler, such a token is refused by the API server
itself; and the API-server token a thief might hold instead cannot delegate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

SYNC_VERB: Final = "sync"  # the RBAC verb on applications.driftguard.io that allows an on-demand sync
USER_HEADER: Final = "X-Driftguard-User"
GROUPS_HEADER: Final = "X-Driftguard-Groups"
MAX_NAME: Final = 512
MAX_GROUPS: Final = 100
AUDIENCE: Final = "driftguard-reconciler"  # the audience of the UI's delegation token, and only of it


class Refused(Exception):
    """A delegation the reconciler does not accept; ``status`` is the HTTP answer (400, 401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity RBAC is asked about, and who the sync is recorded as."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    via: str = ""  # the delegating ServiceAccount's name, when delegated

    @property
    def initiator(self) -> str:
        return f"{self.user} via {self.via}" if self.via else self.user

    def review_spec(self) -> dict[str, Any]:
        """The user part of a SubjectAccessReview's spec."""
        spec: dict[str, Any] = {"user": self.user, "groups": list(self.groups)}
        if self.uid:
            spec["uid"] = self.uid
        if self.extra:
            spec["extra"] = dict(self.extra)
        return spec


def parse_account(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of a ServiceAccount (ValueError naming the form otherwise)."""
    namespace, slash, name = text.strip().partition("/")
    if not slash or not namespace or not name or "/" in name or ":" in text:
        raise ValueError(f"{text!r} is not NAMESPACE/NAME of a ServiceAccount (e.g. driftguard-system/driftguard-ui)")
    return namespace, name


def account_user(account: str) -> str:
    """The user name Kubernetes authenticates a ServiceAccount's token as."""
    namespace, name = parse_account(account)
    return f"system:serviceaccount:{namespace}:{name}"


def delegation_headers(user: str, groups: Sequence[str]) -> dict[str, str]:
    """The headers the UI sends naming its user (ValueError when a name cannot be carried faithfully)."""
    _check_name(user, "user")
    for group in groups:
        _check_name(group, "group")
        if "," in group:
            raise ValueError(f"group {group!r} contains a comma: it cannot be named to the reconciler")
    for value in (user, *groups):
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{value!r} cannot be sent in an HTTP header (only Latin-1 characters can)") from None
    return {USER_HEADER: user, GROUPS_HEADER: ",".join(groups)}


def delegating(headers: Mapping[str, Sequence[str]]) -> bool:
    """Whether ``headers`` (lower-cased name → every value sent) name someone a sync is for."""
    return bool(headers.get(USER_HEADER.lower())) or bool(headers.get(GROUPS_HEADER.lower()))


def review_audiences(headers: Mapping[str, Sequence[str]]) -> list[str]:
    """The TokenReview's ``spec.audiences``: ``[AUDIENCE]`` for a delegated request, none (the API server's
    own) for a caller's own token."""
    return [AUDIENCE] if delegating(headers) else []


def audience_refusal(status: Mapping[str, Any], headers: Mapping[str, Sequence[str]]) -> Refused | None:
    """Why a delegated request's token is not accepted (None when it is, or when nothing is delegated):
    the TokenReview (``status``, asked for ``review_audiences``) must authenticate it *and* list ``AUDIENCE``
    among ``status.audiences`` — the API server's own tokens are for its audience, not this one."""
    if not delegating(headers):
        return None
    audiences = [str(a) for a in status.get("audiences") or ()]
    if status.get("authenticated") and AUDIENCE in audiences:
        return None
    said = f" (the API server: {status['error']})" if status.get("error") else ""
    if status.get("authenticated"):
        said = f" (its audiences: {', '.join(audiences) or 'none'})"
    return Refused(401, f"a sync on someone's behalf ({USER_HEADER}) needs a ServiceAccount token for audience "
                        f"{AUDIENCE}, and this token is not one{said}: the web UI sends the token in its "
                        f"--reconciler-token-file (a projected serviceAccountToken volume with audience: {AUDIENCE}, "
                        "manifests/ui.yaml), not its API-server token")


def caller_of(authenticated: Mapping[str, Any], headers: Mapping[str, Sequence[str]], ui_account: str) -> Caller:
    """Whom to authorise: the TokenReview's ``status.user`` (``authenticated``) itself when ``headers``
    (lower-cased name → every value sent) name nobody; the named user when they do and the caller is
    ``ui_account`` (``NAMESPACE/NAME``, "" for none trusted); ``Refused`` otherwise."""
    me = str(authenticated.get("username") or "")
    users = list(headers.get(USER_HEADER.lower()) or ())
    groups_sent = list(headers.get(GROUPS_HEADER.lower()) or ())
    if not delegating(headers):
        return Caller(me, tuple(str(g) for g in authenticated.get("groups") or ()),
                      str(authenticated.get("uid") or ""), dict(authenticated.get("extra") or {}))
    if not ui_account:
        raise Refused(403, f"{me} sent {USER_HEADER}, but this reconciler accepts a sync on someone's behalf from "
                           "no one (--ui-service-account is unset); sync with your own token")
    trusted = account_user(ui_account)
    if me != trusted:
        raise Refused(403, f"{me} sent {USER_HEADER}, which only the web UI's ServiceAccount {ui_account} may send; "
                           "refused (sync with your own token, without that header)")
    if len(users) != 1 or len(groups_sent) > 1:
        raise Refused(400, f"a delegated sync names exactly one {USER_HEADER} and at most one {GROUPS_HEADER}")
    user = users[0].strip()
    groups = tuple(g.strip() for g in (groups_sent[0] if groups_sent else "").split(",") if g.strip())
    try:
        _check_name(user, "user")
        for group in groups:
            _check_name(group, "group")
    except ValueError as e:
        raise Refused(400, f"{USER_HEADER}/{GROUPS_HEADER}: {e}") from None
    if len(groups) > MAX_GROUPS:
        raise Refused(400, f"{GROUPS_HEADER}: more than {MAX_GROUPS} groups")
    return Caller(user, groups, via=parse_account(ui_account)[1])


def _check_name(value: str, what: str) -> None:
    if not value or not value.strip():
        raise ValueError(f"the {what} name is empty")
    if len(value) > MAX_NAME:
        raise ValueError(f"the {what} name is longer than {MAX_NAME} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or not value.isprintable():
        raise ValueError(f"the {what} name {value!r} contains a control character")
