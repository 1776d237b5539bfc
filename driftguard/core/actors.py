"""Applying as the tenant: which ServiceAccount an Application's writes go out as, and the seal that lets
the webhook know them for the reconciler's. Pure; no I/O.

**Which ServiceAccount** (``choose``), first that applies:

1. the Application's Project pins one: the first ``spec.destinationServiceAccounts`` entry whose
   ``namespace`` pattern matches the Application's destination namespace (Argo CD's sync impersonation);
   its ``defaultServiceAccount`` is ``name`` (in the destination namespace) or ``namespace:name``. An
   Application asking for another one is refused: the pin is the project admin's choice;
2. the Application's ``spec.serviceAccountName`` (Flux's rule): that ServiceAccount *in the Application's
   own namespace* — whoever may create Applications there may already name any ServiceAccount there;
3. the reconciler's ``--default-service-account`` (Flux's flag), in the Application's namespace: with it,
   no Application applies as the reconciler itself;
4. none: the reconciler's own identity (its ClusterRole is then the bound, as before).

Never a ServiceAccount of driftguard's own namespace (it holds the reconciler's and the webhook's: a write
"as" one of them would be driftguard trusting itself) nor of ``kube-system`` (the controllers'), so an
Application living in driftguard's namespace gets one only from its Project's pin.

**The seal** (``seal``/``verify``). An impersonated write reaches admission as the tenant's ServiceAccount:
the webhook must still recognise it as the reconciler's, and only it. The reconciler sends the user extra
``driftguard.io/reconciler`` with ``v1.<expiry>.<mac>``: an HMAC-SHA256, under the key only driftguard's
components hold (the mark key, ``marks.MarkKey``), of the impersonated user name and the expiry (a few
minutes ahead). Setting a user extra needs ``impersonate`` on ``userextras/driftguard.io/reconciler``, and
forging its value needs the key: two walls. A seal seen in flight (another webhook, an audit log) is good
for that one user name until it expires, and only to someone who may also impersonate that extra.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from driftguard.core.marks import MarkKey
from driftguard.core.names import NAMESPACE
from driftguard.core.projects import Project, ServiceAccountPin, Violation, permitted

EXTRA: Final = "driftguard.io/reconciler"
SERVICEACCOUNT_PREFIX: Final = "system:serviceaccount:"
SEAL_TTL: Final = dt.timedelta(minutes=5)
SKEW: Final = dt.timedelta(minutes=1)  # clocks of the reconciler's and the webhook's nodes may differ this much
_DOMAIN: Final = b"driftguard-actor-v1\0"
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_RESERVED: Final = ("kube-system",)


@dataclass(frozen=True, slots=True)
class Actor:
    """The ServiceAccount an Application's writes go out as, and why (``by``: the setting that chose it)."""

    namespace: str
    name: str
    by: str

    @property
    def username(self) -> str:
        return f"{SERVICEACCOUNT_PREFIX}{self.namespace}:{self.name}"

    def __str__(self) -> str:
        return f"ServiceAccount {self.namespace}/{self.name}"


def choose(
    project: Project, *, requested: str, app_namespace: str, destination_namespace: str, default: str = "",
    system_namespace: str = NAMESPACE,
) -> Actor | Violation | None:
    """The Application's ``Actor`` (None: the reconciler's own identity), or the rule its choice breaks."""
    pin = pinned(project, destination_namespace)
    rule = "destinationServiceAccounts"
    if pin is not None:
        actor = Actor(pin.sa_namespace or destination_namespace, pin.name,
                      f"Project {project.described} destinationServiceAccounts")
        if requested and (requested != actor.name or actor.namespace != app_namespace):
            return Violation(project.described, "destinationServiceAccounts", (
                f"spec.serviceAccountName {requested} is not the ServiceAccount the project pins for destination "
                f"namespace {destination_namespace or '(none)'} ({actor.namespace}/{actor.name}); remove "
                "spec.serviceAccountName, or ask an admin to change the Project"))
        if not actor.namespace:
            return Violation(project.described, "destinationServiceAccounts", (
                f"defaultServiceAccount {pin.name} names no namespace and the Application has no destination "
                "namespace; write it as namespace:name"))
    elif requested:
        actor, rule = Actor(app_namespace, requested, "spec.serviceAccountName"), "spec.serviceAccountName"
        if app_namespace == system_namespace:
            return Violation(project.described, "spec.serviceAccountName", (
                f"an Application in {system_namespace} cannot name a ServiceAccount: that namespace holds only "
                "driftguard's own; pin one for its destination in the Project's spec.destinationServiceAccounts, "
                "or create the Application in the team's namespace (the Project's sourceNamespaces)"))
    elif default:
        actor, rule = Actor(app_namespace, default, "--default-service-account"), "--default-service-account"
        if app_namespace == system_namespace:
            return Violation(project.described, "destinationServiceAccounts", (
                f"the reconciler requires a ServiceAccount for every Application (--default-service-account), and "
                f"one in {system_namespace} gets it only from its Project: add spec.destinationServiceAccounts "
                f"to Project {project.name} for destination namespace {destination_namespace or '(none)'}"))
    else:
        return None
    if not _NAME.match(actor.name) or not _NAME.match(actor.namespace):
        return Violation(project.described, rule, f"{actor} is not a valid ServiceAccount name")
    if actor.namespace in (system_namespace, *_RESERVED):
        return Violation(project.described, rule, (
            f"{actor}: driftguard never applies as a ServiceAccount of {actor.namespace} (driftguard's own or the "
            "cluster's controllers); use one in the team's namespace"))
    return actor


def pinned(project: Project, destination_namespace: str) -> ServiceAccountPin | None:
    """The project's ServiceAccount for ``destination_namespace`` (first matching entry), if any."""
    return next((p for p in project.service_accounts if permitted(destination_namespace, [p.namespace])), None)


# ---------------------------------------------------------------- the seal

def seal(key: MarkKey, username: str, now: dt.datetime) -> str:
    """The ``driftguard.io/reconciler`` extra for writes impersonating ``username``, valid until now + TTL."""
    expiry = int((now + SEAL_TTL).timestamp())
    return f"v1.{expiry}.{_mac(key, username, expiry)}"


def verify(key: MarkKey | None, username: str, values: Sequence[str], now: dt.datetime) -> str:
    """Why ``values`` (the request's ``driftguard.io/reconciler`` extra) is not the reconciler's seal for
    ``username`` at ``now`` ("" when it is)."""
    if key is None:
        return "no mark key is configured, so no impersonated write can be verified as the reconciler's"
    if len(values) != 1:
        return f"the {EXTRA} extra must hold one value, not {len(values)}"
    version, _, rest = values[0].partition(".")
    expiry_text, _, mac = rest.partition(".")
    if version != "v1" or not expiry_text.isdigit() or not mac:
        return f"the {EXTRA} extra is not a driftguard seal"
    expiry = int(expiry_text)
    if not hmac.compare_digest(mac, _mac(key, username, expiry)):
        return f"the {EXTRA} extra's MAC does not verify for {username} (forged, or sealed for another user)"
    stamp = now.timestamp()
    if expiry <= stamp - SKEW.total_seconds():
        return f"the {EXTRA} seal expired"
    if expiry > stamp + (SEAL_TTL + SKEW).total_seconds():
        return f"the {EXTRA} seal expires further ahead than driftguard ever seals"
    return ""


def _mac(key: MarkKey, username: str, expiry: int) -> str:
    return hmac.new(key.secret, _DOMAIN + f"{username}\0{expiry}".encode(), hashlib.sha256).hexdigest()
