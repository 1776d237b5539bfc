"""Through a real kube-apiserver: the laptop user is stopped, the reconciler is not, everything is recorded.

One webhook (``driftguard webhook`` over TLS, run as its own ServiceAccount with the RBAC that
``registration.rbac`` renders) serves this module. Its configurations come from
``registration.configurations`` by URL + caBundle, confined by ``namespaceSelector`` to this module's
namespace and removed afterwards, so other tests on the shared control plane never reach it.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from typing import Any

import pytest
from support.guarded import (
    APPLY,
    JSON_PATCH,
    MERGE,
    SOURCE,
    STRATEGIC,
    Guarded,
    deployment,
    eventually,
    story,
)

from driftguard.core import contract
from driftguard.core.contract import BreakGlass, DriftMark
from driftguard.kube import Kube, KubeError

pytestmark = pytest.mark.integration

# ---------------------------------------------------------------- denied, with the full message

def test_server_side_apply_from_a_laptop_is_denied(guarded: Guarded) -> None:
    guarded.from_git("ssa")
    change = deployment("ssa", guarded.namespace, replicas=9)
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path("ssa"), body=change, content_type=APPLY,
                               query={"fieldManager": "kubectl", "force": "true"})
    assert guarded.denied_by_us(denied.value) == story(guarded, "ssa")
    record = guarded.wait_record("ssa", decision="deny")
    assert (record.user, record.operation, record.dry_run) == ("laptop", "UPDATE", False)
    assert record.fields == ({"field": "spec.replicas", "declared": "3", "requested": "9"},)


@pytest.mark.parametrize(("content_type", "body", "field", "declared", "sets"), [
    pytest.param(STRATEGIC, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}},
                 "spec.template.spec.containers[name=web].image", "registry.example/my-service:1.4.2", "nginx",
                 id="strategic merge patch"),
    pytest.param(JSON_PATCH, [{"op": "replace", "path": "/spec/replicas", "value": 9}],
                 "spec.replicas", "3", "9", id="JSON patch"),
    pytest.param(MERGE, {"spec": {"template": {"spec": {"containers": [  # a merge patch replaces the whole list
        {"name": "web", "image": "registry.example/my-service:1.4.2", "env": [{"name": "MODE", "value": "debug"}],
         "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}]}}}},
                 "spec.template.spec.containers[name=web].env[name=MODE].value", "production", "debug",
                 id="merge patch"),
])
def test_patches_from_a_laptop_are_denied(guarded: Guarded, content_type: str, body: Any, field: str,
                                          declared: str, sets: str) -> None:
    name = f"patch-{secrets.token_hex(2)}"
    guarded.from_git(name)
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path(name), body=body, content_type=content_type)
    assert guarded.denied_by_us(denied.value) == story(guarded, name, field, declared, sets)
    guarded.wait_record(name, decision="deny")


def test_put_from_a_laptop_is_denied(guarded: Guarded) -> None:
    guarded.from_git("put")
    current = guarded.laptop.request("GET", guarded.path("put"))
    current["spec"]["replicas"] = 9
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PUT", guarded.path("put"), body=current)
    assert guarded.denied_by_us(denied.value) == story(guarded, "put")


def test_scale_from_a_laptop_is_denied(guarded: Guarded) -> None:
    guarded.from_git("scaled")
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path("scaled", "scale"), body={"spec": {"replicas": 9}},
                               content_type=MERGE)
    assert guarded.denied_by_us(denied.value) == story(guarded, "scaled")
    scale = guarded.laptop.request("GET", guarded.path("scaled", "scale"))
    scale["spec"]["replicas"] = 9
    with pytest.raises(KubeError) as denied_put:
        guarded.laptop.request("PUT", guarded.path("scaled", "scale"), body=scale)
    assert guarded.denied_by_us(denied_put.value) == story(guarded, "scaled")
    record = guarded.wait_record("scaled", subresource="scale")
    assert record.decision == "deny" and record.object_uid


def test_kubectl_scale_prints_the_message(guarded: Guarded) -> None:
    if guarded.kubectl is None or guarded.laptop_kubeconfig is None:
        pytest.skip("no kubectl built next to the control plane")
    guarded.from_git("kubectl-scale")
    result = subprocess.run(
        [str(guarded.kubectl), "--kubeconfig", str(guarded.laptop_kubeconfig), "-n", guarded.namespace,
         "scale", "deployment/kubectl-scale", "--replicas=9"], capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode != 0
    assert f'admission webhook "scale.{guarded.name}.io" denied the request: ' + story(guarded, "kubectl-scale") \
        in result.stderr


def test_scale_of_what_git_does_not_declare_or_does_not_manage_passes(guarded: Guarded) -> None:
    guarded.from_git("no-replicas")
    guarded.reconciler.request("PATCH", guarded.path("no-replicas"), content_type=JSON_PATCH, body=[
        {"op": "replace", "path": "/metadata/annotations/driftguard.io~1declared",
         "value": contract.encode_declared({"spec": {"template": {"metadata": {"labels": {"app": "no-replicas"}}}}})},
    ])
    guarded.laptop.request("PATCH", guarded.path("no-replicas", "scale"), body={"spec": {"replicas": 9}},
                           content_type=MERGE)
    guarded.admin.request("POST", f"/apis/apps/v1/namespaces/{guarded.namespace}/deployments",
                          body=deployment("unmanaged", guarded.namespace))
    guarded.laptop.request("PATCH", guarded.path("unmanaged", "scale"), body={"spec": {"replicas": 9}},
                           content_type=MERGE)
    assert guarded.laptop.request("GET", guarded.path("unmanaged"))["spec"]["replicas"] == 9


def test_delete_from_a_laptop_is_denied_dry_run_or_not(guarded: Guarded) -> None:
    guarded.from_git("deleted")
    for query in ({"dryRun": "All"}, None):
        with pytest.raises(KubeError) as denied:
            guarded.laptop.request("DELETE", guarded.path("deleted"), query=query)
        assert guarded.denied_by_us(denied.value).startswith(
            f"Deployment {guarded.namespace}/deleted is managed by driftguard (Application driftguard-system/app)")
    assert guarded.wait_record("deleted", operation="DELETE", dry_run=True).decision == "deny"
    assert guarded.wait_record("deleted", operation="DELETE", dry_run=False).decision == "deny"
    assert guarded.laptop.request("GET", guarded.path("deleted"))["metadata"]["name"] == "deleted"


@pytest.mark.parametrize(("patch", "expected"), [
    pytest.param([{"op": "remove", "path": "/metadata/labels/driftguard.io~1managed"}],
                 "driftguard.io/ labels and annotations are written only by driftguard; this request changes "
                 "label driftguard.io/managed", id="the managed label"),
    pytest.param([{"op": "remove", "path": "/metadata/labels/app"}], "metadata.labels.app of Deployment",
                 id="a declared label"),
])
def test_label_removal_is_denied(guarded: Guarded, patch: Any, expected: str) -> None:
    name = f"labels-{secrets.token_hex(2)}"
    guarded.from_git(name)
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path(name), body=patch, content_type=JSON_PATCH)
    assert expected in guarded.denied_by_us(denied.value)


def test_creating_forged_ownership_is_denied(guarded: Guarded) -> None:
    forged = contract.stamp(deployment("forged", guarded.namespace), application="x/y", source=SOURCE,
                            enforcement="off")
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("POST", f"/apis/apps/v1/namespaces/{guarded.namespace}/deployments", body=forged)
    assert guarded.denied_by_us(denied.value).startswith(
        f"Deployment {guarded.namespace}/forged: forged ownership:")
    assert guarded.wait_record("forged", operation="CREATE").decision == "deny"


# ---------------------------------------------------------------- allowed

def test_undeclared_edits_pass_silently(guarded: Guarded) -> None:
    guarded.from_git("undeclared")
    answer = guarded.laptop.request_with_warnings(
        "PATCH", guarded.path("undeclared"), content_type=MERGE,
        body={"metadata": {"labels": {"owner": "bob"}, "annotations": {"note": "hi"}},
              "spec": {"minReadySeconds": 5, "template": {"spec": {"containers": [
                  {"name": "web", "image": "registry.example/my-service:1.4.2", "env": [
                      {"name": "MODE", "value": "production"}],
                   "resources": {"limits": {"cpu": "1", "memory": "0.5Gi"}, "requests": {"cpu": "100m"}}}]}}}})
    assert answer.body["metadata"]["labels"]["owner"] == "bob" and answer.body["spec"]["minReadySeconds"] == 5
    assert answer.warnings == ()
    time.sleep(0.3)
    assert guarded.records("undeclared") == []


def test_the_reconciler_passes_with_the_same_edits(guarded: Guarded) -> None:
    guarded.from_git("reconciled")
    patched = guarded.reconciler.request("PATCH", guarded.path("reconciled"), body={"spec": {"replicas": 9}},
                                         content_type=MERGE)
    assert patched["spec"]["replicas"] == 9
    guarded.reconciler.request("PATCH", guarded.path("reconciled", "scale"), body={"spec": {"replicas": 4}},
                               content_type=MERGE)
    assert guarded.from_git("reconciled", replicas=5)["spec"]["replicas"] == 5
    guarded.reconciler.request("DELETE", guarded.path("reconciled"))
    assert guarded.records("reconciled") == []


# ---------------------------------------------------------------- warn, break-glass, dry-run

def test_warn_mode_admits_with_warnings_and_stamps_the_drift(guarded: Guarded) -> None:
    guarded.from_git("warned", enforcement="warn")
    answer = guarded.laptop.request_with_warnings("PATCH", guarded.path("warned"), body={"spec": {"replicas": 9}},
                                                  content_type=MERGE)
    assert answer.body["spec"]["replicas"] == 9
    assert answer.warnings[1] == (f"spec.replicas of Deployment {guarded.namespace}/warned is declared in git (3); "
                                  "this request sets 9")
    assert "https://github.com/org/k8s-manifests" in answer.warnings[0]  # the fix and the repository first
    mark = DriftMark.decode(contract.annotations_of(answer.body)[contract.ANN_DRIFT])
    assert mark is not None and (mark.user, mark.fields) == ("laptop", ("spec.replicas",))
    assert guarded.wait_record("warned").decision == "warn"
    with pytest.raises(KubeError) as denied:  # own metadata stays protected in warn mode
        guarded.laptop.request("PATCH", guarded.path("warned"), content_type=MERGE,
                               body={"metadata": {"annotations": {contract.ANN_ENFORCEMENT: "off"}}})
    assert "annotation driftguard.io/enforcement" in guarded.denied_by_us(denied.value)


def test_break_glass_works_for_the_group_only(guarded: Guarded) -> None:
    guarded.from_git("glass")
    body = {"metadata": {"annotations": {contract.ANN_BREAK_GLASS: "INC-4711: hotfix"}}, "spec": {"replicas": 9}}
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path("glass"), body=body, content_type=MERGE)
    assert "break-glass requires membership in group sre; laptop is not a member" in guarded.denied_by_us(
        denied.value)

    answer = guarded.oncall.request_with_warnings("PATCH", guarded.path("glass"), body=body, content_type=MERGE)
    assert answer.body["spec"]["replicas"] == 9
    grant = BreakGlass.decode(contract.annotations_of(answer.body)[contract.ANN_BREAK_GLASS_GRANTED])
    assert grant is not None
    assert (grant.user, grant.reason, grant.commit) == ("oncall", "INC-4711: hotfix", SOURCE.commit)
    assert "driftguard break-glass" in answer.warnings[0]
    record = guarded.wait_record("glass", decision="break-glass")
    assert record.user == "oncall" and "sre" in record.groups

    guarded.oncall.request("PATCH", guarded.path("glass", "scale"), body={"spec": {"replicas": 12}},
                           content_type=MERGE)  # the standing grant covers scale
    with pytest.raises(KubeError):
        guarded.laptop.request("PATCH", guarded.path("glass", "scale"), body={"spec": {"replicas": 1}},
                               content_type=MERGE)


def test_dry_run_is_decided_identically_and_recorded_as_dry_run(guarded: Guarded) -> None:
    guarded.from_git("dry")
    messages = []
    for query in ({"dryRun": "All"}, None):
        with pytest.raises(KubeError) as denied:
            guarded.laptop.request("PATCH", guarded.path("dry"), body={"spec": {"replicas": 9}},
                                   content_type=MERGE, query=query)
        messages.append(guarded.denied_by_us(denied.value))
    assert messages[0] == messages[1] == story(guarded, "dry")
    assert guarded.wait_record("dry", dry_run=True).decision == "deny"
    assert guarded.wait_record("dry", dry_run=False).decision == "deny"


# ---------------------------------------------------------------- Events

def _events_about(guarded: Guarded, uid: str) -> list[dict[str, Any]]:
    listed = guarded.admin.request("GET", f"/apis/events.k8s.io/v1/namespaces/{guarded.namespace}/events")
    return [e for e in listed["items"] if e.get("regarding", {}).get("uid") == uid]


def test_a_flood_of_denials_is_a_few_aggregated_events(guarded: Guarded) -> None:
    uid = guarded.from_git("flooded")["metadata"]["uid"]
    dry_uid = guarded.from_git("flooded-dry")["metadata"]["uid"]
    for replicas in range(10, 40):
        with pytest.raises(KubeError):
            guarded.laptop.request("PATCH", guarded.path("flooded"), body={"spec": {"replicas": replicas}},
                                   content_type=MERGE)
        with pytest.raises(KubeError):
            guarded.laptop.request("PATCH", guarded.path("flooded-dry"), body={"spec": {"replicas": replicas}},
                                   content_type=MERGE, query={"dryRun": "All"})

    def counted() -> int:
        return sum(e.get("series", {}).get("count", 1) for e in _events_about(guarded, uid))

    eventually(lambda: counted() == 30, timeout=20, what="30 denials counted in Events")
    events = _events_about(guarded, uid)
    assert 1 <= len(events) <= guarded.webhook.settings.workers  # one series per worker process
    assert all(e["reason"] == "DriftguardDenied" and e["type"] == "Warning" for e in events)
    assert events[0]["note"].startswith("laptop: spec.replicas of Deployment")
    assert len(guarded.records("flooded-dry", dry_run=True)) == 30
    assert _events_about(guarded, dry_uid) == [], "dry-run records make no Event"


# ---------------------------------------------------------------- calls the API server spares

def _calls(guarded: Guarded) -> dict[str, float]:
    text = guarded.webhook.call("GET", "/metrics")[1].decode()
    totals = {"validate": 0.0, "mutate": 0.0}
    for webhook, count in re.findall(r'driftguard_webhook_decisions_total\{result="[^"]+",webhook="(\w+)"\} (\S+)',
                                     text):
        totals[webhook] += float(count)
    return totals


def test_match_conditions_spare_the_calls_whose_answer_is_known(guarded: Guarded) -> None:
    guarded.from_git("spared")
    guarded.from_git("spared-warn", enforcement="warn")
    undeclared = {"metadata": {"labels": {"touched": "yes"}}}

    def delta(kube: Kube, name: str) -> dict[str, float]:
        before = _calls(guarded)
        kube.request("PATCH", guarded.path(name), body=undeclared, content_type=MERGE)
        after = _calls(guarded)
        return {key: after[key] - before[key] for key in after}

    assert delta(guarded.reconciler, "spared") == {"validate": 0, "mutate": 0}
    assert delta(guarded.laptop, "spared") == {"validate": 1, "mutate": 0}
    assert delta(guarded.laptop, "spared-warn") == {"validate": 1, "mutate": 1}
