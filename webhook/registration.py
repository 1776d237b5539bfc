"""The webhook configurations, rendered by one pure function for tests, local mode and ``manifests/``.

Seven webhooks in two objects (``validate`` also sees ``pods/ephemeralcontainers`` and ``pods/resize``,
whose requests carry the whole Pod):

* ``validate.driftguard.io`` — CREATE/UPDATE/DELETE of every resource whose object (old or new)
  carries ``driftguard.io/managed=true`` (``objectSelector``: unmanaged objects never reach us);
* ``scale.driftguard.io`` — UPDATE of ``*/scale``, *without* an objectSelector: a Scale object has no
  labels, so only the parent tells whether it is managed; the webhook reads the parent for these
  requests (``kubeio.ClusterAccess.read_parent``, 1 s timeout, fail closed) and needs RBAC ``get``
  on scalable kinds;
* ``mutate.driftguard.io`` — UPDATE of managed objects, only ever adding the drift mark or the
  break-glass grant (``reinvocationPolicy: IfNeeded`` so a later mutating webhook cannot make the
  mark stale);
* ``evict.driftguard.io`` — CREATE of ``pods/eviction`` (an eviction deletes the Pod), without an
  objectSelector: the request carries an Eviction, not the Pod, so the webhook reads the Pod as it reads
  a scale's parent;
* ``holders.driftguard.io`` — CREATE/UPDATE/DELETE of Namespaces and CRDs that carry the reconciler's
  ``driftguard.io/holds-managed`` mark: deleting one would delete managed objects around their own
  DELETE (the namespace controller, the CRD's cleanup), so it is denied, as is anyone else touching the mark;
* ``autoscalers.driftguard.io`` — CREATE/UPDATE of HorizontalPodAutoscalers, without an objectSelector (an
  HPA is not a managed object) and with ``failurePolicy: Ignore``: it only ever adds warnings, when the
  HPA's target declares ``spec.replicas`` in git (``webhook.autoscalers``: every scale would be denied);
  the webhook reads the target as it reads a scale's parent;
* ``applications.driftguard.io`` — CREATE/UPDATE/DELETE of ``driftguard.io`` Applications and their
  status, in *every* namespace, driftguard's own included (its rule covers nothing else there, so a
  broken webhook still cannot lock out its own repair): they change through git, the reconciler or
  ``--admin-groups`` only (``webhook.applications``).

All others: ``namespaceSelector`` excluding kube-system and driftguard's own namespace (a broken webhook
must not lock out its own repair); all: ``failurePolicy: Fail``, ``timeoutSeconds: 3``,
``sideEffects: NoneOnDryRun`` (dry-run records make no Event), ``matchPolicy: Equivalent``.

``matchConditions`` (CEL, evaluated inside the API server) spare round trips whose answer is known:
requests by the reconciler — its ServiceAccount name (``reconciler_users``, which must match the
webhook's ``--reconciler-users``) *with a token bound to a Pod named* ``reconciler_pod_prefix``*
(``userInfo.extra`` ``authentication.kubernetes.io/pod-name``/``pod-uid``, which impersonation
cannot supply without ``userextras`` rights; see ``webhook.identity``) — call no webhook at all; the
same rule as the webhook's own (``identity.is_reconciler``). Allow-listed controllers do call it: it
admits only the deletes they legitimately make. The mutating webhook is called only when the old object's stamp
says ``warn``, the new object carries a break-glass reason, or it leaves the stamp out (``kubectl replace``)
— the only cases in which it patches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Final, NotRequired, TypedDict
from urllib.parse import urlsplit

from driftguard.core import contract
from driftguard.core.names import NAMESPACE
from webhook import identity
from webhook.settings import RECONCILER_POD_PREFIX, Settings

NAME: Final = "driftguard"
VALIDATE_PATH: Final = "/validate"
MUTATE_PATH: Final = "/mutate"
TIMEOUT_SECONDS: Final = 3
MANAGED_SELECTOR: Final = {"matchLabels": {contract.LABEL_MANAGED: "true"}}
HOLDS_SELECTOR: Final = {"matchLabels": {contract.LABEL_HOLDS_MANAGED: "true"}}
# Subresources whose admission request carries the whole Pod, labels included (checked on v1.36.3), so
# the managed objectSelector sees them; pods/eviction carries an Eviction and needs its own entry.
POD_SUBRESOURCES: Final = ("pods/ephemeralcontainers", "pods/resize")
RECONCILER_USERS: Final = Settings().reconciler_users
WARN_OR_BREAK_GLASS: Final = (
    f"oldObject != null && has(oldObject.metadata.annotations) && ("
    f"('{contract.ANN_ENFORCEMENT}' in oldObject.metadata.annotations"
    f" && oldObject.metadata.annotations['{contract.ANN_ENFORCEMENT}'] == 'warn')"
    f" || (has(object.metadata.annotations) && '{contract.ANN_BREAK_GLASS}' in object.metadata.annotations)"
    # a write that leaves the stamp out (kubectl replace -f of git's manifest): the keys may be restored
    f" || !has(object.metadata.annotations) || !('{contract.ANN_DECLARED}' in object.metadata.annotations)"
    f" || !has(object.metadata.labels) || !('{contract.LABEL_MANAGED}' in object.metadata.labels))"
)


class ServiceReference(TypedDict):
    namespace: str
    name: str
    port: int
    path: NotRequired[str]


class ClientConfig(TypedDict):
    caBundle: str
    url: NotRequired[str]
    service: NotRequired[ServiceReference]


def url_client(base_url: str, ca_bundle: bytes) -> ClientConfig:
    """Reach the webhook at ``https://host:port`` (local mode, tests); paths are added per webhook."""
    parts = urlsplit(base_url)
    if parts.scheme != "https" or parts.query or parts.fragment or parts.username:
        raise ValueError(f"webhook URL {base_url!r}: must be https with no query, fragment or user info")
    return {"url": base_url.rstrip("/"), "caBundle": _bundle(ca_bundle)}


def service_client(service: str, namespace: str, ca_bundle: bytes, *, port: int = 443) -> ClientConfig:
    """Reach the webhook through a Service (in-cluster deployment)."""
    return {"service": {"namespace": namespace, "name": service, "port": port}, "caBundle": _bundle(ca_bundle)}


def configurations(
    client: ClientConfig,
    *,
    name: str = NAME,
    namespace: str = NAMESPACE,
    excluded_namespaces: Sequence[str] = ("kube-system",),
    namespace_selector: dict[str, Any] | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
    reconciler_users: Sequence[str] = RECONCILER_USERS,
    reconciler_pod_prefix: str = RECONCILER_POD_PREFIX,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ValidatingWebhookConfiguration, MutatingWebhookConfiguration) for ``client``.

    ``namespace_selector`` replaces the default (everything but ``excluded_namespaces`` and
    ``namespace``); tests use it to confine the webhook to their own namespace.
    """
    conditions = _not_reconciler(reconciler_users, reconciler_pod_prefix)
    selector = namespace_selector or {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": sorted({*excluded_namespaces, namespace}),
    }]}

    def webhook(suffix: str, path: str, operations: list[str], resources: list[str],
                objects: dict[str, Any] | None, *, groups: tuple[str, ...] = ("*",),
                namespaces: dict[str, Any] | None = None,
                more: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        rules = [{"operations": operations, "apiGroups": list(groups), "apiVersions": ["*"],
                  "resources": resources, "scope": "*"}]
        rules += [{"operations": operations, "apiGroups": [group], "apiVersions": ["*"], "resources": [resource],
                   "scope": "*"} for group, resource in more]
        entry: dict[str, Any] = {
            "name": f"{suffix}.{name}.io" if name != NAME else f"{suffix}.driftguard.io",
            "clientConfig": _with_path(client, path),
            "rules": rules,
            "namespaceSelector": selector if namespaces is None else namespaces,
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "sideEffects": "NoneOnDryRun",
            "timeoutSeconds": timeout_seconds,
            "admissionReviewVersions": ["v1"],
        }
        if objects is not None:
            entry["objectSelector"] = objects
        if conditions:
            entry["matchConditions"] = list(conditions)
        return entry

    labels = {"app.kubernetes.io/name": "driftguard", "app.kubernetes.io/component": "webhook"}
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": labels},
        "webhooks": [
            webhook("validate", VALIDATE_PATH, ["CREATE", "UPDATE", "DELETE"], ["*", *POD_SUBRESOURCES],
                    MANAGED_SELECTOR),
            webhook("scale", VALIDATE_PATH, ["UPDATE"], ["*/scale"], None),
            webhook("evict", VALIDATE_PATH, ["CREATE"], ["pods/eviction"], None, groups=("",)),
            webhook("holders", VALIDATE_PATH, ["CREATE", "UPDATE", "DELETE"], ["namespaces"], HOLDS_SELECTOR,
                    groups=("",), namespaces={}, more=[("apiextensions.k8s.io", "customresourcedefinitions")]),
            webhook("applications", VALIDATE_PATH, ["CREATE", "UPDATE", "DELETE"],
                    ["applications", "applications/status"], None, groups=(contract.PREFIX.rstrip("/"),),
                    namespaces=namespace_selector or {}),
            {**webhook("autoscalers", VALIDATE_PATH, ["CREATE", "UPDATE"], ["horizontalpodautoscalers"], None,
                       groups=("autoscaling",)), "failurePolicy": "Ignore"},
        ],
    }
    mutate = webhook("mutate", MUTATE_PATH, ["UPDATE"], ["*"], MANAGED_SELECTOR)
    mutate["reinvocationPolicy"] = "IfNeeded"
    mutate["matchConditions"] = [*conditions, {"name": "warn-or-break-glass", "expression": WARN_OR_BREAK_GLASS}]
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": labels},
        "webhooks": [mutate],
    }
    return validating, mutating


PROTECTION: Final = "driftguard-protect-webhooks"


def protection(
    *,
    name: str = NAME,
    reconciler_users: Sequence[str] = RECONCILER_USERS,
    reconciler_pod_prefix: str = RECONCILER_POD_PREFIX,
    admin_groups: Sequence[str] = Settings().admin_groups,
    policy_name: str = PROTECTION,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ValidatingAdmissionPolicy, binding) denying UPDATE/DELETE of the two configurations named ``name``.

    The API server never calls admission *webhooks* for webhook configurations, but it does evaluate
    ValidatingAdmissionPolicies for them (checked on v1.36.3). Only ``admin_groups`` and the reconciler
    (pod-bound, as in the matchConditions) may change them. A VAP is not evaluated for VAP or binding
    objects themselves, so whoever may delete the binding can then change the configurations: this
    raises the bar, it does not close the path.
    """
    groups = ", ".join(json.dumps(group) for group in admin_groups)
    reconciler = _not_reconciler(reconciler_users, reconciler_pod_prefix)
    allowed = f"request.userInfo.groups.exists(g, g in [{groups}])"
    if reconciler:
        allowed += " || " + reconciler[0]["expression"].removeprefix("!")
    message = (f"the driftguard webhook configurations {name} change only by a member of "
               f"{' or '.join(admin_groups) or 'an admin group'} or driftguard's reconciler; to change them anyway, "
               f"delete the ValidatingAdmissionPolicyBinding {policy_name} first")
    labels = {"app.kubernetes.io/name": "driftguard", "app.kubernetes.io/component": "webhook"}
    resources = ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy_name, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["admissionregistration.k8s.io"], "apiVersions": ["*"],
                "operations": ["UPDATE", "DELETE"], "resources": resources, "resourceNames": [name]}]},
            "validations": [{"expression": allowed, "message": message}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name, "labels": labels},
        "spec": {"policyName": policy_name, "validationActions": ["Deny"]},
    }
    return policy, binding


# Kinds whose parent the webhook may read: scale requests' (CRDs with scale go in ``extra``) and evictions'.
SCALABLE: Final = (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets"),
                   ("", "replicationcontrollers"), ("", "pods"))


def rbac(
    service_account: str,
    namespace: str = NAMESPACE,
    *,
    name: str = NAME + "-webhook",
    extra_scalable: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ClusterRole, ClusterRoleBinding) for the webhook's ServiceAccount: nothing but what it calls.

    ``get`` on the parents of scale requests (a kind missing here makes its scale requests fail
    closed with 403 in the message), ``get`` on Projects (an Application's create is judged against its
    Project) and ``create``/``patch`` on ``events.k8s.io`` Events.
    """
    groups: dict[str, list[str]] = {}
    for group, resource in (*SCALABLE, *extra_scalable):
        groups.setdefault(group, []).append(resource)
    rules: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": ["get"]} for group, resources in groups.items()
    ]
    rules.append({"apiGroups": ["driftguard.io"], "resources": ["projects"], "verbs": ["get"]})
    rules.append({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]})
    labels = {"app.kubernetes.io/name": "driftguard", "app.kubernetes.io/component": "webhook"}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels}, "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    return role, binding


def _not_reconciler(users: Sequence[str], pod_prefix: str) -> list[dict[str, str]]:
    """CEL: not the reconciler's name with a token bound to one of its Pods (``identity.is_reconciler``)."""
    if not users:
        return []
    listed = ", ".join(json.dumps(user) for user in users)
    extra = "request.userInfo.extra"
    pod_name, pod_uid = json.dumps(identity.POD_NAME), json.dumps(identity.POD_UID)
    expression = (
        f"!(request.userInfo.username in [{listed}] && has({extra})"
        f" && {pod_name} in {extra} && {pod_uid} in {extra}"
        f" && {extra}[{pod_name}].size() == 1 && {extra}[{pod_uid}].size() == 1"
        f" && {extra}[{pod_name}][0].startsWith({json.dumps(pod_prefix)}))"
    )
    return [{"name": "not-reconciler", "expression": expression}]


def _with_path(client: ClientConfig, path: str) -> ClientConfig:
    out: ClientConfig = {"caBundle": client["caBundle"]}
    if "url" in client:
        out["url"] = client["url"] + path
    if "service" in client:
        out["service"] = {**client["service"], "path": path}
    return out


def _bundle(ca_bundle: bytes) -> str:
    if b"-----BEGIN CERTIFICATE-----" not in ca_bundle:
        raise ValueError("caBundle must be PEM certificate(s)")
    return base64.b64encode(ca_bundle).decode()
