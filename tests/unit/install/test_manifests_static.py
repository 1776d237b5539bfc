"""The kustomize base agrees with the code: generated parts are in sync, flags parse, pods are locked down."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from driftguard.cli import build_parser
from driftguard.install import base_manifests, manifests_dir, render_webhook_configurations
from reconciler.delegation import AUDIENCE
from ui.settings import RECONCILER_TOKEN_PATH
from webhook import registration

BASE = base_manifests()


def objects(kind: str) -> list[dict[str, Any]]:
    return [m.obj for m in BASE if m.obj["kind"] == kind]


def test_webhook_configurations_are_generated_from_registration() -> None:
    committed = (manifests_dir() / "webhook-configurations.yaml").read_text()
    assert committed == render_webhook_configurations(), "run `make manifests`"


def test_webhook_cluster_role_is_exactly_what_the_webhook_calls() -> None:
    [role] = [r for r in objects("ClusterRole") if r["metadata"]["name"] == "driftguard-webhook"]
    expected, _ = registration.rbac("driftguard-webhook")
    assert role["rules"] == expected["rules"]


@pytest.mark.parametrize("name", ["driftguard-webhook", "driftguard-reconciler", "driftguard-ui"])
def test_container_args_are_accepted_by_the_cli(name: str) -> None:
    [deployment] = [d for d in objects("Deployment") if d["metadata"]["name"] == name]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert callable(args.func), shlex.join(container["args"])


@pytest.mark.parametrize("deployment", objects("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_pods_run_locked_down(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["replicas"] >= 2
    assert pod["affinity"]["podAntiAffinity"]
    assert pod["containers"]
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]
        assert container["readinessProbe"] and container["livenessProbe"]


def test_webhook_has_a_disruption_budget_and_its_tls_secret_mounted() -> None:
    [pdb] = objects("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 1
    [deployment] = [d for d in objects("Deployment") if d["metadata"]["name"] == "driftguard-webhook"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "driftguard-webhook-tls"}} in volumes


def test_no_wildcard_rights_anywhere() -> None:
    roles = objects("ClusterRole") + objects("Role")
    assert roles and any(role.get("rules") for role in roles), "nothing to check"
    for role in roles:
        for rule in role.get("rules") or []:
            assert "*" not in rule.get("verbs", []), role["metadata"]["name"]
            assert "*" not in rule.get("resources", []), role["metadata"]["name"]


def test_webhook_registration_policy() -> None:
    configurations = objects("ValidatingWebhookConfiguration") + objects("MutatingWebhookConfiguration")
    assert len(configurations) == 2 and all(c["webhooks"] for c in configurations), "nothing to check"
    for configuration in configurations:
        for hook in configuration["webhooks"]:
            # every webhook that decides fails closed; the autoscalers one only ever adds warnings
            assert hook["failurePolicy"] == ("Ignore" if hook["name"].startswith("autoscalers.") else "Fail")
            assert hook["timeoutSeconds"] <= 3
            assert hook["sideEffects"] == "NoneOnDryRun"
            assert hook["matchPolicy"] == "Equivalent"
            if hook["rules"][0]["apiGroups"] == ["driftguard.io"] or "holders" in hook["name"]:
                assert hook["namespaceSelector"] == {}, "Applications and marked holders: in every namespace"
                continue
            excluded = hook["namespaceSelector"]["matchExpressions"][0]["values"]
            assert {"kube-system", "driftguard-system"} <= set(excluded)
            reads_parent = hook["rules"][0]["resources"] in (["*/scale"], ["pods/eviction"],
                                                             ["horizontalpodautoscalers"])
            assert ("objectSelector" in hook) is not reads_parent, hook["name"]


def nulls(value: Any, path: str) -> list[str]:
    if isinstance(value, dict):
        return [n for key, child in value.items() for n in nulls(child, f"{path}.{key}")]
    if isinstance(value, list):
        return [n for i, child in enumerate(value) for n in nulls(child, f"{path}[{i}]")]
    return [path] if value is None else []


@pytest.mark.parametrize("manifest", BASE, ids=lambda m: m.ref)
def test_no_value_is_null(manifest: Any) -> None:
    # `{description: The user, from the mark.}` is a flow mapping with a second key "from the mark." whose
    # value is null (kustomize renders it "", helm null): quote descriptions holding a comma
    assert nulls(manifest.obj, manifest.ref) == []


def test_the_project_crd_ships_and_the_reconciler_may_read_projects() -> None:
    crds = {c["metadata"]["name"]: c for c in objects("CustomResourceDefinition")}
    project = crds["projects.driftguard.io"]["spec"]
    assert project["scope"] == "Namespaced" and project["names"]["kind"] == "Project"
    [version] = project["versions"]
    fields = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {"sourceRepos", "destinations", "clusterResourceWhitelist", "clusterResourceBlacklist",
            "namespaceResourceWhitelist", "namespaceResourceBlacklist", "sourceNamespaces"} <= fields.keys()
    assert [c["name"] for c in version["additionalPrinterColumns"]][:2] == ["Repos", "Destinations"]
    columns = crds["applications.driftguard.io"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert {"name": "Project", "type": "string", "jsonPath": ".spec.project"} in columns
    [core] = [r for r in objects("ClusterRole") if r["metadata"]["name"] == "driftguard-reconciler-core"]
    projects = {"apiGroups": ["driftguard.io"], "resources": ["projects"], "verbs": ["get", "list", "watch"]}
    assert projects in core["rules"]
    assert not [p for p in objects("Project")], "no default Project shipped: the built-in default applies (README)"


def pod_labels(name: str) -> dict[str, str]:
    [deployment] = [d for d in objects("Deployment") if d["metadata"]["name"] == name]
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is read here: {selector}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def test_the_reconcilers_port_is_reachable_only_from_the_ui_and_other_reconcilers() -> None:
    [policy] = [p for p in objects("NetworkPolicy") if p["metadata"]["name"] == "driftguard-reconciler"]
    spec = policy["spec"]
    deployments = [d["metadata"]["name"] for d in objects("Deployment")]
    assert [d for d in deployments if selects(spec["podSelector"], pod_labels(d))] == ["driftguard-reconciler"]
    assert spec["policyTypes"] == ["Ingress"] and policy["metadata"]["namespace"] == "driftguard-system"
    [rule] = spec["ingress"]
    [deployment] = [d for d in objects("Deployment") if d["metadata"]["name"] == "driftguard-reconciler"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    assert container["args"][container["args"].index("--listen") + 1] == f"0.0.0.0:{port}"
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    # pod peers only (same namespace): no ipBlock, no namespaceSelector; each peer selects exactly one component
    assert all(set(peer) == {"podSelector"} for peer in rule["from"]), rule["from"]
    reached = sorted(d for d in deployments for peer in rule["from"] if selects(peer["podSelector"], pod_labels(d)))
    assert reached == ["driftguard-reconciler", "driftguard-ui"]


def test_the_ui_syncs_with_a_projected_token_for_the_reconcilers_audience_only() -> None:
    [deployment] = [d for d in objects("Deployment") if d["metadata"]["name"] == "driftguard-ui"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "--reconciler-token-file" not in container["args"]  # the default, RECONCILER_TOKEN_PATH
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(RECONCILER_TOKEN_PATH.parent)]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    [source] = volume["projected"]["sources"]
    assert source == {"serviceAccountToken": {"path": RECONCILER_TOKEN_PATH.name, "audience": AUDIENCE,
                                              "expirationSeconds": 3600}}
    assert pod.get("automountServiceAccountToken") is not False  # its reads still use its API-server token
