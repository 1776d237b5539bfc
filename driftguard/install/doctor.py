"""``driftguard doctor``: what in this cluster can act around driftguard, in a page a person reads in seconds.

Admission cannot stop some writes — impersonation, tokens minted for driftguard's own ServiceAccounts,
writes to the webhook configurations, the Applications and the reconciler's Lease (see the README's
threat model) or widen what tenants may deploy (Projects). The reconciler detects and restores what it can;
``doctor`` names *who* could do it,
from RBAC as it is stored, and checks that the registration is in place and points at a webhook that
answers with a certificate its caBundle verifies. Exit status 1 when there is any finding.

The RBAC analysis (``powers``) and the checks of the registration (``registration_findings``) are pure:
they take the objects as the API server returns them. RBAC is matched as the API server matches it
(``*`` for verbs, groups and resources, ``*/<subresource>``, ``resourceNames`` naming the object); a
RoleBinding grants only in its namespace and never on cluster-scoped resources. Subjects named
``system:…`` (the control plane's own identities and groups) are not reported; driftguard's own
ServiceAccounts are reported only for powers beyond those they are installed with.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ssl
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from certs.authority import not_after, verify_serving
from driftguard.core.names import NAMESPACE, RECONCILER_SERVICE_ACCOUNT
from driftguard.core.objects import ObjectRef
from driftguard.kube import Kube, KubeError
from reconciler import perimeter
from webhook import registration

WRITE: Final = ("create", "update", "patch", "delete")
WEBHOOK_SERVICE_ACCOUNT: Final = "driftguard-webhook"
LEASE: Final = RECONCILER_SERVICE_ACCOUNT
TLS_SECRET: Final = "driftguard-webhook-tls"  # noqa: S105 - a Secret's name
POD_EXTRAS: Final = ("authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/pod-uid")


@dataclass(frozen=True, slots=True)
class Power:
    """One capability that reaches around admission."""

    label: str
    verbs: tuple[str, ...]
    group: str
    resources: tuple[str, ...]  # "resource" or "resource/subresource"; any one of them is enough
    namespace: str | None  # None: a cluster-scoped resource; else the namespace where it matters
    names: tuple[str, ...] = ()  # the objects that matter (a rule's resourceNames must name one); () any


POWERS: Final = (
    Power("impersonate users", ("impersonate",), "", ("users",), None),
    Power("impersonate groups", ("impersonate",), "", ("groups",), None),
    Power("impersonate driftguard's ServiceAccounts", ("impersonate",), "", ("serviceaccounts",), NAMESPACE),
    Power("impersonate pod-bound credentials (userextras)", ("impersonate",), "authentication.k8s.io",
          tuple(f"userextras/{extra}" for extra in POD_EXTRAS), None),
    Power("set the reconciler's seal extra (userextras/driftguard.io/reconciler)", ("impersonate",),
          "authentication.k8s.io", ("userextras/driftguard.io/reconciler",), None),
    Power("create tokens for driftguard's ServiceAccounts", ("create",), "", ("serviceaccounts/token",), NAMESPACE),
    Power("write the webhook configurations", WRITE, "admissionregistration.k8s.io",
          ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"), None, (registration.NAME,)),
    Power("write Applications", WRITE, "driftguard.io", ("applications",), NAMESPACE),
    Power("write Projects", WRITE, "driftguard.io", ("projects",), NAMESPACE),
    Power("write the reconciler's Lease", WRITE, "coordination.k8s.io", ("leases",), NAMESPACE, (LEASE,)),
)
# What driftguard's own ServiceAccounts are installed with: not findings.
EXPECTED: Final = {
    f"ServiceAccount {NAMESPACE}/{RECONCILER_SERVICE_ACCOUNT}": frozenset({
        "write Applications", "write the reconciler's Lease", "write the webhook configurations",
        "set the reconciler's seal extra (userextras/driftguard.io/reconciler)"}),
    f"ServiceAccount {NAMESPACE}/{WEBHOOK_SERVICE_ACCOUNT}": frozenset[str](),
}


@dataclass(frozen=True, slots=True)
class Finding:
    section: str  # "access" | "webhook" | "objects"
    text: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    fine: list[str] = field(default_factory=list)  # checks that passed, one line each

    def render(self) -> str:
        lines = []
        for section, title in (("access", "can act around admission"), ("webhook", "webhook registration"),
                               ("objects", "managed objects admission cannot see")):
            found = [f.text for f in self.findings if f.section == section]
            if found:
                lines.append(f"✗ {title}:")
                lines += [f"    {text}" for text in found]
        lines += [f"✓ {text}" for text in self.fine]
        total = len(self.findings)
        lines.append(f"{total} finding{'s' if total != 1 else ''}" + (" — see README, 'Threat model'" if total else ""))
        return "\n".join(lines)


# ---------------------------------------------------------------- RBAC (pure)

def powers(cluster_roles: Sequence[Mapping[str, Any]], roles: Sequence[Mapping[str, Any]],
           cluster_bindings: Sequence[Mapping[str, Any]], bindings: Sequence[Mapping[str, Any]]
           ) -> dict[str, dict[str, list[str]]]:
    """{subject: {power label: [the bindings granting it]}} for every subject not named ``system:…``, less
    what driftguard's own ServiceAccounts are installed with."""
    by_name = {_name(r): r for r in cluster_roles}
    by_ns_name = {(_namespace(r), _name(r)): r for r in roles}
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))

    def grant(binding: Mapping[str, Any], namespace: str | None) -> None:
        ref = binding.get("roleRef") or {}
        role = (by_name.get(ref.get("name", "")) if ref.get("kind") == "ClusterRole"
                else by_ns_name.get((namespace or "", ref.get("name", ""))))
        if role is None:
            return
        where = "ClusterRoleBinding " if namespace is None else f"RoleBinding {namespace}/"
        via = f"{where}{_name(binding)} → {ref.get('kind')} {ref.get('name')}"
        for power in POWERS:
            if namespace is not None and (power.namespace is None or power.namespace != namespace):
                continue  # a RoleBinding grants only in its namespace, never on cluster-scoped resources
            if any(_rule_grants(rule, power) for rule in role.get("rules") or []):
                for subject in _subjects(binding):
                    if power.label not in EXPECTED.get(subject, frozenset()):
                        found[subject][power.label].append(via)

    for binding in cluster_bindings:
        grant(binding, None)
    for binding in bindings:
        grant(binding, _namespace(binding))
    return {subject: dict(p) for subject, p in sorted(found.items())}


def _rule_grants(rule: Mapping[str, Any], power: Power) -> bool:
    verbs, groups = rule.get("verbs") or [], rule.get("apiGroups") or []
    if not ("*" in verbs or any(v in verbs for v in power.verbs)):
        return False
    if not ("*" in groups or power.group in groups):
        return False
    names = rule.get("resourceNames") or []
    if names and power.names and not any(n in names for n in power.names):
        return False
    return any(_resource_matches(rule.get("resources") or [], wanted) for wanted in power.resources)


def _resource_matches(resources: Iterable[str], wanted: str) -> bool:
    sub = wanted.split("/", 1)[1] if "/" in wanted else ""
    return any(r in ("*", wanted) or (sub and r == "*/" + sub) for r in resources)


def _subjects(binding: Mapping[str, Any]) -> list[str]:
    out = []
    for s in binding.get("subjects") or []:
        kind, name = s.get("kind", ""), s.get("name", "")
        if kind == "ServiceAccount":
            namespace = s.get("namespace") or _namespace(binding)
            if namespace == "kube-system" or name.startswith("system:"):
                continue
            out.append(f"ServiceAccount {namespace}/{name}")
        elif not name.startswith("system:"):
            out.append(f"{kind} {name}")
    return out


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


# ---------------------------------------------------------------- registration (pure)

def registration_findings(validating: Mapping[str, Any] | None, mutating: Mapping[str, Any] | None,
                          now: dt.datetime) -> tuple[list[Finding], list[str]]:
    """Both configurations present, each webhook with a readable, unexpired caBundle."""
    findings, fine = [], []
    for kind, obj in (("ValidatingWebhookConfiguration", validating), ("MutatingWebhookConfiguration", mutating)):
        if obj is None:
            findings.append(Finding("webhook", f"{kind} {registration.NAME} is missing: nothing is enforced until "
                                               "the reconciler restores it (`driftguard certs install` re-creates it)"))
            continue
        for hook in obj.get("webhooks") or []:
            problem = _bundle_problem(hook, now)
            if problem:
                findings.append(Finding("webhook", f"{kind} {registration.NAME}, webhook {hook.get('name')}: "
                                                   f"{problem}"))
        fine.append(f"{kind} {registration.NAME} present ({len(obj.get('webhooks') or [])} webhooks)")
    return findings, fine


def _bundle_problem(hook: Mapping[str, Any], now: dt.datetime) -> str:
    bundle = (hook.get("clientConfig") or {}).get("caBundle", "")
    try:
        expiry = not_after(base64.b64decode(bundle))
    except ValueError:
        return "caBundle is missing or unreadable: the API server cannot trust the webhook (run `driftguard " \
               "certs install`)"
    return f"caBundle expired at {expiry:%Y-%m-%d %H:%M}Z" if expiry <= now else ""


def client_of(configuration: Mapping[str, Any] | None) -> Mapping[str, Any]:
    for hook in (configuration or {}).get("webhooks") or []:
        if str(hook.get("name", "")).startswith("validate."):
            return dict(hook.get("clientConfig") or {})
    return {}


# ---------------------------------------------------------------- reading the cluster

def examine(kube: Kube, *, now: dt.datetime | None = None) -> Report:
    """Every check, read from the cluster ``kube`` talks to (an admin's credentials)."""
    now = now or dt.datetime.now(dt.UTC)
    report = Report()
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    granted = powers(_items(kube, f"{rbac}/clusterroles"), _items(kube, f"{rbac}/roles"),
                     _items(kube, f"{rbac}/clusterrolebindings"), _items(kube, f"{rbac}/rolebindings"))
    for subject, labels in granted.items():
        vias = sorted({via for v in labels.values() for via in v})
        report.findings.append(Finding("access", f"{subject}: {', '.join(labels)} (via {'; '.join(vias)})"))
    if not granted:
        report.fine.append("no subject outside the control plane can impersonate, mint driftguard's tokens, or write "
                           "the webhook configurations, Applications or the Lease")
    admission = "/apis/admissionregistration.k8s.io/v1"
    validating = _get(kube, f"{admission}/validatingwebhookconfigurations/{registration.NAME}")
    mutating = _get(kube, f"{admission}/mutatingwebhookconfigurations/{registration.NAME}")
    findings, fine = registration_findings(validating, mutating, now)
    report.findings += findings
    report.fine += fine
    client = client_of(validating)
    if client:
        problem, ok = _serving(kube, client, now)
        if problem:
            report.findings.append(Finding("webhook", problem))
        else:
            report.fine.append(ok)
    _uncovered(kube, validating, report)
    return report


def _serving(kube: Kube, client: Mapping[str, Any], now: dt.datetime) -> tuple[str, str]:
    """(problem, "") or ("", what is fine) for the webhook the registration points at."""
    bundle = base64.b64decode(client.get("caBundle", "") or b"")
    if "url" in client:
        url = urllib.parse.urlsplit(str(client["url"]))
        try:
            context = ssl.create_default_context(cadata=bundle.decode())
            connection = http.client.HTTPSConnection(url.hostname or "", url.port or 443, context=context, timeout=5)
            connection.request("GET", "/readyz")
            status = connection.getresponse().status
            connection.close()
        except (OSError, ssl.SSLError, ValueError) as e:
            return f"the webhook at {client['url']} does not answer with a certificate its caBundle verifies: {e}", ""
        if status != 200:
            return f"the webhook at {client['url']} is not ready (/readyz answered {status})", ""
        return "", f"the webhook at {url.scheme}://{url.netloc} answers /readyz over TLS its caBundle verifies"
    service = client.get("service") or {}
    namespace, name = service.get("namespace", ""), service.get("name", "")
    slices = _items(kube, f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                    {"labelSelector": f"kubernetes.io/service-name={name}"})
    ready = sum(1 for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))
    if ready == 0:
        return f"Service {namespace}/{name} has no ready endpoint: every managed write fails (failurePolicy Fail)", ""
    secret = _get(kube, f"/api/v1/namespaces/{namespace}/secrets/{TLS_SECRET}")
    cert = base64.b64decode(((secret or {}).get("data") or {}).get("tls.crt", "") or b"")
    problem = verify_serving(cert, bundle, f"{name}.{namespace}.svc", now) if cert else f"Secret {TLS_SECRET} missing"
    if problem:
        return f"the serving certificate in Secret {namespace}/{TLS_SECRET}: {problem}", ""
    return "", (f"Service {namespace}/{name}: {ready} ready endpoint{'s' if ready != 1 else ''}, serving certificate "
                f"verified by the caBundle until {not_after(cert):%Y-%m-%d}")


def _uncovered(kube: Kube, validating: Mapping[str, Any] | None, report: Report) -> None:
    selector = perimeter.validate_selector(validating or {})
    if selector is None:
        return
    labels: dict[str, Mapping[str, str]] = {
        _name(ns): (ns.get("metadata") or {}).get("labels") or {} for ns in _items(kube, "/api/v1/namespaces")}
    outside: dict[str, list[str]] = defaultdict(list)
    for app in _items(kube, "/apis/driftguard.io/v1alpha1/applications"):
        for entry in (app.get("status") or {}).get("inventory") or []:
            try:
                namespace = ObjectRef.from_key(str(entry.get("id", ""))).namespace
            except ValueError:
                continue
            if namespace and not perimeter.selects(selector, labels.get(namespace, {})):
                outside[f"{_namespace(app)}/{_name(app)}"].append(namespace)
    for key, namespaces in sorted(outside.items()):
        report.findings.append(Finding("objects", f"Application {key} has managed objects in "
                                                  f"{', '.join(sorted(set(namespaces)))}, which the webhook excludes"))
    if not outside:
        report.fine.append("no managed object lives in a namespace the webhook excludes")


def _items(kube: Kube, path: str, query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    try:
        return list(kube.request("GET", path, query=query).get("items") or [])
    except KubeError as e:
        if e.status == 404:
            return []
        raise


def _get(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        return kube.request("GET", path)
    except KubeError as e:
        if e.status == 404:
            return None
        raise
