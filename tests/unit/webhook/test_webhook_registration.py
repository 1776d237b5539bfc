"""The rendered webhook configurations: selectors, policies, rules, client configs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from webhook import registration
from webhook.cli import main

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _all(client: registration.ClientConfig, **options: Any) -> list[dict[str, Any]]:
    """validate, scale, mutate, evict, holders, applications (autoscalers: ``_autoscalers``, it only warns)."""
    validating, mutating = registration.configurations(client, **options)
    validate, scale, evict, holders, applications, _ = validating["webhooks"]
    return [validate, scale, *mutating["webhooks"], evict, holders, applications]


def test_the_autoscalers_webhook_sees_every_hpa_write_and_never_blocks_one() -> None:
    validating, _ = registration.configurations(registration.url_client("https://127.0.0.1:8443", CA))
    autoscalers = validating["webhooks"][-1]
    assert autoscalers["name"] == "autoscalers.driftguard.io"
    assert autoscalers["rules"] == [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["autoscaling"],
                                     "apiVersions": ["*"], "resources": ["horizontalpodautoscalers"], "scope": "*"}]
    assert "objectSelector" not in autoscalers  # an HPA is not a managed object
    assert autoscalers["failurePolicy"] == "Ignore"  # it only adds warnings: an outage must not block HPAs
    assert autoscalers["sideEffects"] == "NoneOnDryRun" and autoscalers["timeoutSeconds"] == 3


def test_seven_webhooks_in_two_objects() -> None:
    validating, mutating = registration.configurations(registration.url_client("https://127.0.0.1:8443", CA))
    assert (validating["kind"], mutating["kind"]) == ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    assert validating["metadata"]["name"] == mutating["metadata"]["name"] == "driftguard"
    assert [w["name"] for w in validating["webhooks"]] == [
        "validate.driftguard.io", "scale.driftguard.io", "evict.driftguard.io", "holders.driftguard.io",
        "applications.driftguard.io", "autoscalers.driftguard.io"]
    assert [w["name"] for w in mutating["webhooks"]] == ["mutate.driftguard.io"]


@pytest.mark.parametrize(("key", "value"), [
    ("failurePolicy", "Fail"),
    ("timeoutSeconds", 3),
    ("sideEffects", "NoneOnDryRun"),
    ("matchPolicy", "Equivalent"),
    ("admissionReviewVersions", ["v1"]),
    ("namespaceSelector", {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                 "values": ["driftguard-system", "kube-system"]}]}),
])
def test_every_webhook_shares_the_safety_settings(key: str, value: Any) -> None:
    webhooks = _all(registration.url_client("https://127.0.0.1:8443", CA))
    if key == "namespaceSelector":
        webhooks = webhooks[:4]  # holders and Applications: every namespace, driftguard's own included
    assert webhooks
    for webhook in webhooks:
        assert webhook[key] == value, webhook["name"]


def test_rules_and_object_selectors() -> None:
    validate, scale, mutate, *_ = _all(registration.url_client("https://127.0.0.1:8443", CA))
    assert validate["rules"] == [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": ["*"],
                                  "apiVersions": ["*"], "resources": ["*", "pods/ephemeralcontainers", "pods/resize"],
                                  "scope": "*"}]
    assert validate["objectSelector"] == {"matchLabels": {"driftguard.io/managed": "true"}}
    assert scale["rules"][0]["resources"] == ["*/scale"] and scale["rules"][0]["operations"] == ["UPDATE"]
    assert "objectSelector" not in scale  # a Scale has no labels; the webhook reads the parent
    assert mutate["rules"][0]["operations"] == ["UPDATE"] and mutate["reinvocationPolicy"] == "IfNeeded"
    assert mutate["objectSelector"] == validate["objectSelector"]


def test_evictions_and_marked_holders_have_rules_of_their_own() -> None:
    *_, evict, holders, _ = _all(registration.url_client("https://127.0.0.1:8443", CA))
    assert evict["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["*"],
                               "resources": ["pods/eviction"], "scope": "*"}]
    assert "objectSelector" not in evict  # an Eviction carries no labels; the webhook reads the Pod
    assert [r["resources"] for r in holders["rules"]] == [["namespaces"], ["customresourcedefinitions"]]
    assert holders["objectSelector"] == {"matchLabels": {"driftguard.io/holds-managed": "true"}}
    assert holders["namespaceSelector"] == {}


def test_applications_have_their_own_rule_in_every_namespace() -> None:
    *_, applications = _all(registration.url_client("https://127.0.0.1:8443", CA))
    assert applications["rules"] == [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": ["driftguard.io"],
                                      "apiVersions": ["*"], "resources": ["applications", "applications/status"],
                                      "scope": "*"}]
    assert applications["namespaceSelector"] == {}
    assert "objectSelector" not in applications
    assert applications["failurePolicy"] == "Fail"
    assert applications["matchConditions"][0]["name"] == "not-reconciler"


def test_url_clients_get_a_path_per_webhook_and_the_ca_bundle() -> None:
    validate, scale, mutate, *_ = _all(registration.url_client("https://127.0.0.1:8443/", CA))
    assert [w["clientConfig"]["url"] for w in (validate, scale, mutate)] == [
        "https://127.0.0.1:8443/validate", "https://127.0.0.1:8443/validate", "https://127.0.0.1:8443/mutate"]
    assert base64.b64decode(validate["clientConfig"]["caBundle"]) == CA


def test_service_clients() -> None:
    validate, _, mutate, *_ = _all(registration.service_client("driftguard-webhook", "driftguard-system", CA))
    assert validate["clientConfig"]["service"] == {"namespace": "driftguard-system", "name": "driftguard-webhook",
                                                   "port": 443, "path": "/validate"}
    assert mutate["clientConfig"]["service"]["path"] == "/mutate"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "https://127.0.0.1:8443/?x=1", "https://u@h:1"])
def test_urls_the_api_server_would_refuse_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must be https"):
        registration.url_client(url, CA)


def test_the_ca_bundle_must_be_pem() -> None:
    with pytest.raises(ValueError, match="PEM"):
        registration.url_client("https://127.0.0.1:8443", b"not a cert")


def test_tests_can_confine_the_webhooks_and_name_them() -> None:
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "test-ns"}}
    validating, _ = registration.configurations(registration.url_client("https://127.0.0.1:1", CA),
                                                name="dg-test-1", namespace_selector=selector)
    assert validating["metadata"]["name"] == "dg-test-1"
    assert [w["name"] for w in validating["webhooks"]] == [
        "validate.dg-test-1.io", "scale.dg-test-1.io", "evict.dg-test-1.io", "holders.dg-test-1.io",
        "applications.dg-test-1.io", "autoscalers.dg-test-1.io"]
    holders = validating["webhooks"][3]
    assert all(w["namespaceSelector"] == selector for w in validating["webhooks"] if w is not holders)


def test_the_own_namespace_is_always_excluded() -> None:
    (validate, *_) = _all(registration.url_client("https://127.0.0.1:1", CA), namespace="platform")
    assert validate["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "platform"]


def test_webhook_config_command_prints_the_same_objects(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(CA)
    assert main(["webhook-config", "--service", "driftguard-webhook", "--ca-file", str(ca)]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    expected = registration.configurations(registration.service_client("driftguard-webhook", "driftguard-system", CA))
    assert items == list(expected)


def test_the_webhook_role_reads_scalable_parents_and_projects_and_writes_events_only() -> None:
    role, binding = registration.rbac("driftguard-webhook", extra_scalable=[("example.com", "widgets")])
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods", "replicationcontrollers"], "verbs": ["get"]},
        {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]},
        {"apiGroups": ["driftguard.io"], "resources": ["projects"], "verbs": ["get"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "driftguard-webhook",
                                    "namespace": "driftguard-system"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "driftguard-webhook"


def test_only_the_pod_bound_reconciler_calls_no_webhook_and_the_mutating_one_only_when_it_would_patch() -> None:
    validate, scale, mutate, *_ = _all(registration.url_client("https://127.0.0.1:1", CA),
                                   reconciler_users=["system:serviceaccount:ns:reconciler", 'odd"name'],
                                   reconciler_pod_prefix="rec-")
    extra = "request.userInfo.extra"
    name, uid = '"authentication.kubernetes.io/pod-name"', '"authentication.kubernetes.io/pod-uid"'
    expected = {"name": "not-reconciler", "expression": (
        '!(request.userInfo.username in ["system:serviceaccount:ns:reconciler", "odd\\"name"]'
        f" && has({extra}) && {name} in {extra} && {uid} in {extra}"
        f" && {extra}[{name}].size() == 1 && {extra}[{uid}].size() == 1"
        f' && {extra}[{name}][0].startsWith("rec-"))')}
    assert validate["matchConditions"] == scale["matchConditions"] == [expected]
    assert mutate["matchConditions"][0] == expected
    assert mutate["matchConditions"][1]["name"] == "warn-or-break-glass"
    assert "'driftguard.io/enforcement'] == 'warn'" in mutate["matchConditions"][1]["expression"]
    assert "'driftguard.io/break-glass' in object.metadata.annotations" in mutate["matchConditions"][1]["expression"]


def test_the_default_reconciler_is_the_webhooks_default_and_controllers_always_call_it() -> None:
    (validate, *_) = _all(registration.url_client("https://127.0.0.1:1", CA))
    expression = validate["matchConditions"][0]["expression"]
    assert '"system:serviceaccount:driftguard-system:driftguard-reconciler"' in expression
    assert 'startsWith("driftguard-reconciler-")' in expression
    assert "generic-garbage-collector" not in expression  # the webhook admits only the deletes it makes
    (validate, *_) = _all(registration.url_client("https://127.0.0.1:1", CA), reconciler_users=())
    assert "matchConditions" not in validate


def test_a_validating_admission_policy_guards_both_configurations() -> None:
    policy, binding = registration.protection(name="dg", admin_groups=["ops"], reconciler_users=["r"],
                                              reconciler_pod_prefix="rec-")
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]
    assert (rule["operations"], rule["resourceNames"]) == (["UPDATE", "DELETE"], ["dg"])
    [validation] = policy["spec"]["validations"]
    assert validation["expression"].startswith('request.userInfo.groups.exists(g, g in ["ops"]) || '
                                               '(request.userInfo.username in ["r"] && has(request.userInfo.extra)')
    assert 'startsWith("rec-"))' in validation["expression"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
