"""The webhook registration the reconciler restores: reading the installer's ConfigMap, and what changed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from certs.authority import CertificateAuthority
from reconciler.perimeter import (
    REGISTRATION_KEY,
    RegistrationError,
    decide,
    differences,
    needs_labels,
    registration_configmap,
    registration_from,
    selects,
    services_of,
    uninstalling,
    validate_selector,
)
from webhook import registration


def hook(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "failurePolicy": "Fail", "timeoutSeconds": 3, **fields}


VALIDATING = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
              "metadata": {"name": "driftguard"}, "webhooks": [hook("validate.driftguard.io"),
                                                                hook("scale.driftguard.io")]}
MUTATING = {**VALIDATING, "kind": "MutatingWebhookConfiguration", "webhooks": [hook("mutate.driftguard.io")]}


def test_the_installers_configmap_reads_back_by_kind() -> None:
    configmap = registration_configmap([VALIDATING, MUTATING], "driftguard-system")
    assert configmap["metadata"] == {"name": "driftguard-webhook-registration", "namespace": "driftguard-system",
                                     "labels": {"app.kubernetes.io/part-of": "driftguard"}}
    assert registration_from(configmap, "driftguard") == {"ValidatingWebhookConfiguration": VALIDATING,
                                                          "MutatingWebhookConfiguration": MUTATING}


@pytest.mark.parametrize(("data", "says"), [
    ({}, "must be a JSON list"),
    ({REGISTRATION_KEY: "{not json"}, "is not JSON"),
    ({REGISTRATION_KEY: json.dumps({"kind": "ValidatingWebhookConfiguration"})}, "must be a JSON list"),
    ({REGISTRATION_KEY: json.dumps([{"kind": "ClusterRole", "metadata": {"name": "driftguard"}, "rules": []}])},
     "holds ClusterRole other than the two webhook configurations"),
    ({REGISTRATION_KEY: json.dumps([{**VALIDATING, "metadata": {"name": "someone-else"}}])},
     "is named 'someone-else', the reconciler guards 'driftguard'"),
])
def test_an_unusable_registration_names_the_configmap_and_the_fix(data: dict[str, str], says: str) -> None:
    configmap = {"metadata": {"name": "driftguard-webhook-registration", "namespace": "driftguard-system"},
                 "data": data}
    with pytest.raises(RegistrationError) as raised:
        registration_from(configmap, "driftguard")
    assert says in str(raised.value)
    assert "ConfigMap driftguard-system/driftguard-webhook-registration" in str(raised.value)
    assert "driftguard certs install" in str(raised.value)


@pytest.mark.parametrize(("live", "expected"), [
    (VALIDATING["webhooks"], []),
    ([hook("validate.driftguard.io")], ["webhook scale.driftguard.io removed"]),
    ([*VALIDATING["webhooks"], hook("evil.example.com")], ["webhook evil.example.com added"]),
    ([hook("validate.driftguard.io", failurePolicy="Ignore"), hook("scale.driftguard.io")],
     ["webhook validate.driftguard.io: failurePolicy changed"]),
    ([hook("validate.driftguard.io", objectSelector={"matchLabels": {"x": "y"}}, timeoutSeconds=30),
      hook("scale.driftguard.io")], ["webhook validate.driftguard.io: objectSelector, timeoutSeconds changed"]),
    ([hook("scale.driftguard.io"), hook("validate.driftguard.io")], ["webhooks reordered"]),
    ([], ["webhook validate.driftguard.io removed", "webhook scale.driftguard.io removed"]),
])
def test_differences(live: list[dict[str, Any]], expected: list[str]) -> None:
    assert differences(live, VALIDATING["webhooks"]) == expected


CA = CertificateAuthority.generate().cert_pem


@pytest.mark.parametrize(("namespace", "covered"), [
    ("production", True), ("default", True), ("kube-system", False), ("driftguard-system", False),
])
def test_the_registrations_own_selector_says_which_namespaces_the_webhook_covers(namespace: str,
                                                                                covered: bool) -> None:
    """Read from what webhook/registration.py renders, not a copy of its exclusion list."""
    validating, _ = registration.configurations(registration.url_client("https://127.0.0.1:8443", CA))
    selector = validate_selector(validating)
    assert selector is not None and not needs_labels(selector)
    assert selects(selector, {"kubernetes.io/metadata.name": namespace}) is covered


@pytest.mark.parametrize(("selector", "labels", "selected"), [
    ({}, {}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "a"}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, {"team": "b"}, True),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": "a"}, False),
    ({"matchExpressions": [{"key": "team", "operator": "Sometimes"}]}, {"team": "a"}, False),  # unknown: not covered
])
def test_selects(selector: dict[str, Any], labels: dict[str, str], selected: bool) -> None:
    assert selects(selector, labels) is selected


def test_the_selector_comes_from_the_validate_webhook() -> None:
    assert validate_selector({"webhooks": [{"name": "scale.driftguard.io", "namespaceSelector": {"a": 1}},
                                           {"name": "validate.driftguard.io"}]}) == {}
    assert validate_selector({"webhooks": [{"name": "mutate.driftguard.io"}]}) is None


TERMINATING = {"metadata": {"name": "driftguard-system", "deletionTimestamp": "2026-12-03T07:00:00Z"}}
REGISTRATION = registration_configmap([VALIDATING, MUTATING], "driftguard-system")
GOING = {**REGISTRATION, "metadata": {**REGISTRATION["metadata"], "deletionTimestamp": "2026-12-03T07:00:00Z"}}


@pytest.mark.parametrize(("namespace", "says"), [
    ({"metadata": {"name": "driftguard-system"}}, ""),
    ({"metadata": {"name": "driftguard-system", "finalizers": ["x"]}}, ""),
    (TERMINATING, "namespace driftguard-system is being deleted"),
    (None, "namespace driftguard-system is gone"),
], ids=["installed", "finalizers-alone", "namespace-terminating", "namespace-gone"])
def test_an_uninstall_is_driftguards_namespace_going(namespace: dict[str, Any] | None, says: str) -> None:
    assert uninstalling("driftguard-system", namespace) == says


@pytest.mark.parametrize(("uninstall", "registration", "live", "stopping", "action"), [
    # installed: a user deleting or altering the configurations sees them put back
    ("", REGISTRATION, False, False, "restore"),
    ("", REGISTRATION, True, False, "restore"),
    # nothing to restore from: the live ones are left as they are
    ("", None, False, False, "leave"),
    ("", None, True, False, "leave"),
    ("", GOING, False, False, "leave"),
    ("", GOING, True, False, "leave"),
    # a leader whose term ends (SIGTERM, Lease lost) restores nothing more; the next leader will
    ("", REGISTRATION, False, True, "leave"),
    ("", REGISTRATION, True, True, "leave"),
    # uninstalling: never restored, and what is there is taken away, even by a leader that is stopping
    ("namespace driftguard-system is being deleted", REGISTRATION, False, False, "leave"),
    ("namespace driftguard-system is being deleted", REGISTRATION, True, False, "retract"),
    ("namespace driftguard-system is being deleted", None, True, False, "retract"),
    ("namespace driftguard-system is being deleted", REGISTRATION, True, True, "retract"),
    ("namespace driftguard-system is gone", None, True, True, "retract"),
])
def test_what_the_leader_does_with_a_configuration(uninstall: str, registration: dict[str, Any] | None, live: bool,
                                                   stopping: bool, action: str) -> None:
    assert decide(uninstall=uninstall, registration=registration, live=live, stopping=stopping) == action


@pytest.mark.parametrize(("live", "backend_gone", "settled", "action"), [
    (False, False, False, "wait"),      # just deleted: look again at the end of the settle time
    (False, False, True, "restore"),    # still missing then, the webhook still there: a user deleted it
    (False, True, True, "leave"),       # the Service it calls is gone too: an uninstall (Helm's order)
    (False, True, False, "leave"),
    (True, True, True, "restore"),      # an altered one is put back whatever else is going on
    (True, False, False, "restore"),
])
def test_a_deleted_configuration_comes_back_after_the_settle_time_while_its_webhook_is_there(
        live: bool, backend_gone: bool, settled: bool, action: str) -> None:
    assert decide(uninstall="", registration=REGISTRATION, live=live, stopping=False, backend_gone=backend_gone,
                  settled=settled) == action


def test_the_services_a_registration_calls() -> None:
    service = {"service": {"namespace": "driftguard-system", "name": "driftguard-webhook", "path": "/validate"}}
    registered = {**VALIDATING, "webhooks": [hook("validate.driftguard.io", clientConfig=service),
                                             hook("scale.driftguard.io", clientConfig=service),
                                             hook("url.driftguard.io", clientConfig={"url": "https://127.0.0.1:1/"})]}
    assert services_of(registered) == [("driftguard-system", "driftguard-webhook")]
    assert services_of(VALIDATING) == []
