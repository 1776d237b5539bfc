"""Who is trusted: credentials bound to the reconciler's own Pods, not user names. No I/O.

A user name is not a credential. ``kubectl --as=system:serviceaccount:driftguard-system:driftguard-reconciler``
(impersonation) or ``kubectl create token driftguard-reconciler`` (an unbound TokenRequest) both reach
admission with the reconciler's name. What they cannot carry is what the API server itself adds to a
ServiceAccount token bound to a Pod (checked on kube-apiserver v1.36.3, ``SelfSubjectReview``):

* pod-bound token (kubelet-projected, or TokenRequest with ``boundObjectRef`` kind Pod):
  ``authentication.kubernetes.io/pod-name``, ``…/pod-uid``, ``…/credential-id`` (``JTI=…``), and
  ``…/node-name``, ``…/node-uid`` once the Pod is bound to a Node;
* unbound TokenRequest (``kubectl create token``): ``…/credential-id`` only;
* impersonation (``--as``): no extra at all, unless the caller also sends ``Impersonate-Extra-…``
  headers, which needs ``impersonate`` on ``userextras`` in ``authentication.k8s.io`` — without it the
  API server refuses the request itself (403 "cannot impersonate resource userextras/…").

So the reconciler is trusted only when the name matches *and* the token is bound to a Pod whose name
starts with ``--reconciler-pod-prefix`` (its Deployment's Pods: ``driftguard-reconciler-<hash>-<id>``).
What stays outside admission's reach — a subject that may create Pods or tokens in driftguard's
namespace, or impersonate user extras — is what ``driftguard doctor`` reports.

The reconciler applying *as a tenant's ServiceAccount* (``spec.serviceAccountName``, a Project's
``destinationServiceAccounts``) reaches admission under that ServiceAccount's name; it is the reconciler's
write only when it carries the ``driftguard.io/reconciler`` user extra sealed under the mark key for that
very user name and not expired (``driftguard.core.actors``): setting the extra needs ``impersonate`` on
``userextras/driftguard.io/reconciler``, forging its value needs the key.

Allow-listed controllers (garbage collector, namespace controller) are trusted only for the DELETEs
they legitimately make, and only with a real credential (a ``credential-id``: impersonation has none):
the garbage collector only deletes objects that have owners; anything else they send is judged like
anyone's request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from driftguard.core import actors
from driftguard.core.marks import MarkKey
from webhook.reviews import Request, UserInfo
from webhook.settings import GARBAGE_COLLECTOR, Settings

EXTRA_PREFIX: Final = "authentication.kubernetes.io/"
POD_NAME: Final = EXTRA_PREFIX + "pod-name"
POD_UID: Final = EXTRA_PREFIX + "pod-uid"
CREDENTIAL_ID: Final = EXTRA_PREFIX + "credential-id"
SERVICEACCOUNT_PREFIX: Final = "system:serviceaccount:"


def username(user: UserInfo) -> str:
    return user.get("username", "")


def extra(user: UserInfo, key: str) -> Sequence[str]:
    """The values of ``userInfo.extra[key]`` (empty when absent or malformed)."""
    bag = user.get("extra")
    if not bag:  # most users: no extra (and no ABC check for None)
        return []
    values = bag.get(key) if isinstance(bag, (dict, Mapping)) else None
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def bound_pod(user: UserInfo) -> str:
    """The name of the Pod this credential is bound to ("" when it is not pod-bound)."""
    names, uids = extra(user, POD_NAME), extra(user, POD_UID)
    return names[0] if len(names) == 1 and len(uids) == 1 and names[0] and uids[0] else ""


def is_reconciler(user: UserInfo, settings: Settings) -> bool:
    """The reconciler's ServiceAccount with a token bound to one of the reconciler's Pods."""
    if username(user) not in settings.reconciler_users:
        return False
    pod = bound_pod(user)
    return bool(pod) and pod.startswith(settings.reconciler_pod_prefix)


def has_credential(user: UserInfo) -> bool:
    """A ServiceAccount name backed by a real token (impersonation carries no credential-id)."""
    return not username(user).startswith(SERVICEACCOUNT_PREFIX) or bool(extra(user, CREDENTIAL_ID))


def acting_reconciler(user: UserInfo, key: MarkKey | None, now: dt.datetime | None) -> bool:
    """The reconciler impersonating a tenant's ServiceAccount: the seal verifies for this user name."""
    values = extra(user, actors.EXTRA)
    return bool(values) and now is not None and username(user).startswith(SERVICEACCOUNT_PREFIX) and not (
        actors.verify(key, username(user), values, now))


def trusted(request: Request, settings: Settings, key: MarkKey | None = None, now: dt.datetime | None = None) -> bool:
    """Whether the request passes without a decision (``key``/``now``: to know the reconciler acting as a
    tenant's ServiceAccount; without them it is judged like anyone's)."""
    user = request["userInfo"]
    if is_reconciler(user, settings) or acting_reconciler(user, key, now):
        return True
    name = username(user)
    if name not in settings.allowed_users or request["operation"] != "DELETE" or not has_credential(user):
        return False
    if name == GARBAGE_COLLECTOR:
        return bool(_owners(request.get("oldObject")))
    return True


def posing(request: Request, settings: Settings, key: MarkKey | None = None, now: dt.datetime | None = None) -> str:
    """Why a request that names a trusted identity is not trusted ("" when it names none)."""
    user = request["userInfo"]
    name = username(user)
    values = extra(user, actors.EXTRA)
    if values:
        why = actors.verify(key, name, values, now) if now is not None else "no clock to check the seal against"
        if not name.startswith(SERVICEACCOUNT_PREFIX):
            why = f"{name} is not a ServiceAccount, and the reconciler impersonates only ServiceAccounts"
        return f"this request claims to be the reconciler acting as {name}, but {why}"
    if name in settings.reconciler_users:
        pod = bound_pod(user)
        if not pod:
            return (f"{name} is trusted only with a token bound to a reconciler Pod; this request's credential is "
                    "not pod-bound (impersonation or `kubectl create token`)")
        return (f"{name} is trusted only from Pods named {settings.reconciler_pod_prefix}*; this token is bound to "
                f"Pod {pod}")
    if name in settings.allowed_users:
        if not has_credential(user):
            return f"{name} is trusted only with its own token; this request carries none (impersonation)"
        return f"{name} is trusted only for the deletes it makes; this request is judged like anyone's"
    return ""


def _owners(obj: Mapping[str, Any] | None) -> list[Any]:
    owners = ((obj or {}).get("metadata") or {}).get("ownerReferences")
    return owners if isinstance(owners, list) else []
