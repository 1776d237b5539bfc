"""``driftguard doctor``'s pure parts: RBAC matched as the API server matches it, and the registration checks."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from certs.authority import CertificateAuthority, verify_serving
from driftguard.install.doctor import Finding, Report, powers, registration_findings

NS = "driftguard-system"


def role(name: str, *rules: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"metadata": metadata, "rules": list(rules)}


def rule(verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None) -> dict[str, Any]:
    return {"verbs": verbs, "apiGroups": groups, "resources": resources, **({"resourceNames": names} if names else {})}


def binding(name: str, role_kind: str, role_name: str, *subjects: dict[str, str],
            namespace: str = "") -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"metadata": metadata, "roleRef": {"kind": role_kind, "name": role_name}, "subjects": list(subjects)}


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name}


CASES = [
    pytest.param(rule(["*"], ["*"], ["*"]), None, {
        "impersonate users", "impersonate groups", "impersonate driftguard's ServiceAccounts",
        "impersonate pod-bound credentials (userextras)", "create tokens for driftguard's ServiceAccounts",
        "write the webhook configurations", "write Applications", "write Projects", "write the reconciler's Lease",
        "set the reconciler's seal extra (userextras/driftguard.io/reconciler)"},
        id="cluster-admin: everything"),
    pytest.param(rule(["impersonate"], ["authentication.k8s.io"], ["userextras/driftguard.io/reconciler"]), None,
                 {"set the reconciler's seal extra (userextras/driftguard.io/reconciler)"},
                 id="the reconciler's seal extra"),
    pytest.param(rule(["impersonate"], [""], ["users", "groups"]), None, {"impersonate users", "impersonate groups"},
                 id="impersonate users and groups"),
    pytest.param(rule(["impersonate"], ["authentication.k8s.io"], ["userextras/authentication.kubernetes.io/pod-name"]),
                 None, {"impersonate pod-bound credentials (userextras)"}, id="the pod-name extra"),
    pytest.param(rule(["impersonate"], ["authentication.k8s.io"], ["userextras/scopes"]), None, set(),
                 id="another extra"),
    pytest.param(rule(["create"], [""], ["*/token"]), None, {"create tokens for driftguard's ServiceAccounts"},
                 id="*/subresource"),
    pytest.param(rule(["get", "list", "watch"], ["*"], ["*"]), None, set(), id="read-only: nothing"),
    pytest.param(rule(["patch"], ["admissionregistration.k8s.io"], ["validatingwebhookconfigurations"], ["other"]),
                 None, set(), id="resourceNames naming another configuration"),
    pytest.param(rule(["patch"], ["admissionregistration.k8s.io"], ["validatingwebhookconfigurations"],
                      ["driftguard"]), None, {"write the webhook configurations"}, id="resourceNames naming ours"),
    pytest.param(rule(["*"], ["*"], ["*"]), "team-a", set(), id="RoleBinding elsewhere: nothing that matters"),
    pytest.param(rule(["*"], ["*"], ["*"]), NS, {
        "impersonate driftguard's ServiceAccounts", "create tokens for driftguard's ServiceAccounts",
        "write Applications", "write Projects", "write the reconciler's Lease"},
        id="RoleBinding in driftguard-system: its namespaced powers, no cluster-scoped ones"),
    pytest.param(rule(["update"], ["coordination.k8s.io"], ["leases"], ["someone-elses-lease"]), NS, set(),
                 id="another Lease"),
]


@pytest.mark.parametrize(("granted", "namespace", "expected"), CASES)
def test_powers_are_matched_as_rbac_matches(granted: dict[str, Any], namespace: str | None,
                                            expected: set[str]) -> None:
    if namespace is None:
        found = powers([role("r", granted)], [], [binding("b", "ClusterRole", "r", user("alice"))], [])
    else:
        found = powers([role("r", granted)], [], [], [binding("b", "ClusterRole", "r", user("alice"),
                                                              namespace=namespace)])
    assert set(found.get("User alice", {})) == expected


def test_system_subjects_and_driftguards_expected_powers_are_not_findings() -> None:
    admin = role("admin-all", rule(["*"], ["*"], ["*"]))
    reconciler = role("rec", rule(["patch"], ["driftguard.io"], ["applications"]),
                      rule(["update"], ["coordination.k8s.io"], ["leases"]),
                      rule(["create"], [""], ["serviceaccounts/token"]))
    found = powers([admin, reconciler], [], [
        binding("masters", "ClusterRole", "admin-all", {"kind": "Group", "name": "system:masters"}),
        binding("gc", "ClusterRole", "admin-all",
                {"kind": "ServiceAccount", "name": "generic-garbage-collector", "namespace": "kube-system"}),
        binding("rec", "ClusterRole", "rec",
                {"kind": "ServiceAccount", "name": "driftguard-reconciler", "namespace": NS}),
    ], [])
    assert found == {"ServiceAccount driftguard-system/driftguard-reconciler": {
        "create tokens for driftguard's ServiceAccounts": ["ClusterRoleBinding rec → ClusterRole rec"]}}


def test_a_rolebinding_to_a_namespaced_role_and_the_bindings_named() -> None:
    tokens = role("tokens", rule(["create"], [""], ["serviceaccounts/token"]), namespace=NS)
    found = powers([], [tokens], [], [binding("mint", "Role", "tokens", user("mallory"), namespace=NS),
                                      binding("dangling", "Role", "missing", user("eve"), namespace=NS)])
    assert found == {"User mallory": {
        "create tokens for driftguard's ServiceAccounts": [f"RoleBinding {NS}/mint → Role tokens"]}}


NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def configuration(bundle: str) -> dict[str, Any]:
    return {"webhooks": [{"name": "validate.driftguard.io", "clientConfig": {"caBundle": bundle}}]}


def test_registration_findings_name_what_is_missing_or_expired() -> None:
    ca = CertificateAuthority.generate("doctor-test-ca")
    good = base64.b64encode(ca.cert_pem).decode()
    findings, fine = registration_findings(configuration(good), None, NOW)
    assert [f.text.split(" is missing")[0] for f in findings] == ["MutatingWebhookConfiguration driftguard"]
    assert fine == ["ValidatingWebhookConfiguration driftguard present (1 webhooks)"]
    findings, _ = registration_findings(configuration("bm90IGEgY2VydA=="), configuration(good), NOW)
    assert "caBundle is missing or unreadable" in findings[0].text
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 20)
    findings, _ = registration_findings(configuration(good), configuration(good), later)
    assert len(findings) == 2 and all("caBundle expired at" in f.text for f in findings)


def test_verify_serving_checks_chain_name_and_time() -> None:
    ca, other = CertificateAuthority.generate("a"), CertificateAuthority.generate("b")
    serving = ca.issue_serving("svc.ns.svc", ["svc.ns.svc"], [])
    assert verify_serving(serving.cert_pem, ca.cert_pem, "svc.ns.svc") == ""
    assert "not valid for svc.ns.svc" in verify_serving(serving.cert_pem, other.cert_pem, "svc.ns.svc")
    assert "not valid for elsewhere.svc" in verify_serving(serving.cert_pem, ca.cert_pem, "elsewhere.svc")
    expired = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 20)
    assert verify_serving(serving.cert_pem, ca.cert_pem, "svc.ns.svc", expired) != ""
    assert verify_serving(b"junk", ca.cert_pem, "svc.ns.svc").startswith("unreadable")


def test_the_report_reads_in_seconds() -> None:
    report = Report([Finding("access", "User laptop: impersonate users (via ClusterRoleBinding x → ClusterRole y)")],
                    ["ValidatingWebhookConfiguration driftguard present (5 webhooks)"])
    assert report.render() == (
        "✗ can act around admission:\n"
        "    User laptop: impersonate users (via ClusterRoleBinding x → ClusterRole y)\n"
        "✓ ValidatingWebhookConfiguration driftguard present (5 webhooks)\n"
        "1 finding — see README, 'Threat model'")
    assert Report().render() == "0 findings"
