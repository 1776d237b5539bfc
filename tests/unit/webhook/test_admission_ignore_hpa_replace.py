"""The webhook's side of issue 13's Argo CD semantics: ignoreDifferences (an ignored field is not enforced, and
the stamp is the only place the rules are read from), the HPA warning, ``kubectl replace`` of git's manifest,
and audit rows that say what a metadata denial changed."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
from support.admission import (
    MARKS,
    NOW,
    SETTINGS,
    SOURCE,
    apply_patch,
    deployment_manifest,
    edited,
    live,
    review,
    scale_review,
)

from driftguard.core import contract
from driftguard.core.contract import Enforcement
from driftguard.core.ignore import Ignore
from webhook import autoscalers, policy
from webhook.kubeio import parent_path
from webhook.policy import Parent


def ignoring(rules: Ignore, enforcement: Enforcement = "deny") -> dict[str, Any]:
    """live(), stamped with ``rules`` as the reconciler stamps an object its Application ignores parts of."""
    obj = live(enforcement=enforcement)
    stamped = contract.stamp(deployment_manifest(), application="driftguard-system/my-service", source=SOURCE,
                             enforcement=enforcement, ignore=rules)
    obj["metadata"]["annotations"] = stamped["metadata"]["annotations"]
    return obj


REPLICAS = Ignore(("/spec/replicas",))


# ---------------------------------------------------------------- ignoreDifferences

def test_an_ignored_field_is_not_enforced_and_the_rest_still_is() -> None:
    old = ignoring(REPLICAS)
    allowed = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"], SETTINGS,
                              NOW, marks=MARKS)
    assert (allowed.outcome, allowed.record, allowed.warnings) == ("allow", None, ())
    both = edited(edited(old, "spec", "replicas", 9), "spec", "template", "spec", "containers", 0, "image", "evil")
    denied = policy.validate(review("UPDATE", old=old, new=both)["request"], SETTINGS, NOW, marks=MARKS)
    assert denied.outcome == "deny"
    assert denied.message.startswith("spec.template.spec.containers[name=web].image of Deployment production/"
                                     "my-service is declared in git")
    assert "spec.replicas" not in denied.message


def test_a_scale_of_ignored_replicas_is_admitted() -> None:
    parent = Parent(ignoring(REPLICAS))
    verdict = policy.validate(scale_review(9)["request"], SETTINGS, NOW, parent, marks=MARKS)
    assert verdict.outcome == "allow"
    denied = policy.validate(scale_review(9)["request"], SETTINGS, NOW, Parent(live()), marks=MARKS)
    assert denied.outcome == "deny"


def test_a_manager_rule_admits_that_manager_and_only_it() -> None:
    def owned_by(manager: str) -> dict[str, Any]:
        new = edited(ignoring(Ignore((), (), ("hpa-controller",))), "spec", "replicas", 9)
        new["metadata"]["managedFields"] = [{"manager": manager, "operation": "Update", "fieldsType": "FieldsV1",
                                             "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
        return new

    old = ignoring(Ignore((), (), ("hpa-controller",)))
    assert policy.validate(review("UPDATE", old=old, new=owned_by("hpa-controller"))["request"], SETTINGS, NOW,
                           marks=MARKS).outcome == "allow"
    assert policy.validate(review("UPDATE", old=old, new=owned_by("kubectl-edit"))["request"], SETTINGS, NOW,
                           marks=MARKS).outcome == "deny"


def test_a_scale_is_judged_by_who_owns_replicas_after_it() -> None:
    """The Scale a validating webhook sees has no managedFields: the manager is the one the request names."""
    parent = Parent(ignoring(Ignore((), (), ("hpa-controller",))))
    request = cast(dict[str, Any], scale_review(9)["request"])
    assert policy.validate(request, SETTINGS, NOW, parent, marks=MARKS).outcome == "deny"  # type: ignore[arg-type]
    request["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl"}
    assert policy.validate(request, SETTINGS, NOW, parent, marks=MARKS).outcome == "deny"  # type: ignore[arg-type]
    request["options"]["fieldManager"] = "hpa-controller"
    assert policy.validate(request, SETTINGS, NOW, parent, marks=MARKS).outcome == "allow"  # type: ignore[arg-type]


def test_nobody_widens_the_ignore_set_by_editing_the_annotation() -> None:
    old = live()
    new = edited(edited(old, "metadata", "annotations", contract.ANN_IGNORE, '{"jsonPointers":["/spec"]}'),
                 "spec", "replicas", 9)
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny"
    assert "annotation driftguard.io/ignore-differences" in verdict.message
    assert "Also: spec.replicas of Deployment production/my-service is declared in git (3)" in verdict.message
    narrowed = edited(ignoring(REPLICAS), "metadata", "annotations", contract.ANN_IGNORE, ...)
    assert policy.validate(review("UPDATE", old=ignoring(REPLICAS), new=narrowed)["request"], SETTINGS, NOW,
                           marks=MARKS).outcome == "deny"


def test_an_expression_that_fails_on_the_object_is_enforced_and_said() -> None:
    old = ignoring(Ignore((), ('.spec.replicas | error("no")',)))
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"], SETTINGS,
                              NOW, marks=MARKS)
    assert verdict.outcome == "deny"
    text, hint = verdict.message.rsplit("\n", 1)
    assert hint.startswith("driftguard suggest -- scale deployment/my-service -n production --replicas=9  # ")
    assert text.endswith("Also: Deployment production/my-service: spec.ignoreDifferences: jq expression "
                                    "'.spec.replicas | error(\"no\")' failed on this object: no; those fields are "
                                    "enforced as declared until the Application's rule is fixed")


# ---------------------------------------------------------------- HPA

def hpa(target_kind: str = "Deployment", name: str = "my-service") -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "my-service", "namespace": "production"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": name},
                     "minReplicas": 2, "maxReplicas": 10}}


def hpa_review(obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    request = cast(dict[str, Any], review("UPDATE" if old else "CREATE", new=obj, old=old)["request"])
    request["kind"] = {"group": "autoscaling", "version": "v2", "kind": "HorizontalPodAutoscaler"}
    request["resource"] = {"group": "autoscaling", "version": "v2", "resource": "horizontalpodautoscalers"}
    return request


HPA_WARNINGS = [
    "driftguard: every scale HorizontalPodAutoscaler production/my-service makes will be denied: git declares "
    "spec.replicas (3) of Deployment production/my-service at services/my-service/production/deployment.yaml, "
    "commit 1a2b3c4 by alice@org",
    "Fix 1: remove spec.replicas from Deployment my-service in git: https://github.com/org/k8s-manifests "
    "(services/my-service/production/deployment.yaml)",
    "Fix 2: add to Application driftguard-system/my-service spec.ignoreDifferences: [{group: apps, kind: Deployment, "
    "name: my-service, jsonPointers: [/spec/replicas]}]",
]


def test_an_hpa_on_declared_replicas_is_admitted_with_what_will_happen_and_the_two_fixes() -> None:
    request = hpa_review(hpa())
    assert policy.needs_parent(request, SETTINGS)  # type: ignore[arg-type]
    assert parent_path(request) == "/apis/apps/v1/namespaces/production/deployments/my-service"  # type: ignore[arg-type]
    verdict = policy.validate(request, SETTINGS, NOW, Parent(live()), marks=MARKS)  # type: ignore[arg-type]
    assert verdict.outcome == "allow" and verdict.record is None
    assert list(verdict.warnings) == HPA_WARNINGS
    assert all(len(w) <= 256 for w in verdict.warnings)


def test_an_hpa_in_warn_mode_is_told_its_scales_are_reverted() -> None:
    verdict = policy.validate(hpa_review(hpa()), SETTINGS, NOW, Parent(live(enforcement="warn")),  # type: ignore[arg-type]
                              marks=MARKS)
    assert verdict.warnings[0].startswith("driftguard: every scale HorizontalPodAutoscaler production/my-service makes "
                                          "will be reverted by the reconciler (warn mode): git declares")


@pytest.mark.parametrize(("name", "parent"), [
    ("replicas ignored", Parent(ignoring(REPLICAS))),
    ("replicas not declared", Parent(live(edited(deployment_manifest(), "spec", "replicas", ...)))),
    ("target not managed", Parent({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})),
    ("target absent", Parent(None)),
    ("enforcement off", Parent(live(enforcement="off"))),
])
def test_an_hpa_that_will_work_gets_no_warning(name: str, parent: Parent) -> None:
    verdict = policy.validate(hpa_review(hpa()), SETTINGS, NOW, parent, marks=MARKS)  # type: ignore[arg-type]
    assert (verdict.outcome, verdict.warnings) == ("allow", ()), name


def test_an_unreadable_target_is_a_warning_not_a_denial() -> None:
    verdict = policy.validate(hpa_review(hpa()), SETTINGS, NOW, Parent(None, "GET …: 403 forbidden"),  # type: ignore[arg-type]
                              marks=MARKS)
    assert verdict.outcome == "allow"
    assert verdict.warnings == ("driftguard: could not read Deployment production/my-service to check whether git "
                                "declares its replicas (GET …: 403 forbidden); if it does, every scale "
                                "HorizontalPodAutoscaler production/my-service makes will be denied",)


def test_only_a_new_target_is_read() -> None:
    assert not policy.needs_parent(hpa_review(hpa(), old=hpa()), SETTINGS)  # type: ignore[arg-type]
    assert policy.needs_parent(hpa_review(hpa(), old=hpa(name="other")), SETTINGS)  # type: ignore[arg-type]
    assert not policy.needs_parent(hpa_review(hpa(target_kind="Rollout")), SETTINGS)  # type: ignore[arg-type]
    assert autoscalers.target(hpa(target_kind="Rollout"), "production") is None


# ---------------------------------------------------------------- kubectl replace

def put(old: dict[str, Any], new: dict[str, Any]) -> Any:
    """The request of ``kubectl replace`` (to a webhook a PUT and a PATCH are both an UPDATE)."""
    request = cast(dict[str, Any], review("UPDATE", old=old, new=new)["request"])
    request["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    return request


def replaced(old: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """What ``kubectl replace -f`` of git's manifest sends: git's object, server fields kept by the server, and
    none of driftguard's labels or annotations."""
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {k: v for k, v in new["metadata"]["labels"].items()
                                 if not k.startswith(contract.PREFIX)}
    new["metadata"]["annotations"] = {k: v for k, v in new["metadata"].get("annotations", {}).items()
                                      if not k.startswith(contract.PREFIX)}
    new["spec"].update(spec)
    return new


@pytest.mark.parametrize("enforcement", ["deny", "warn"])
def test_replace_with_gits_manifest_gets_its_stamp_back_and_is_admitted(enforcement: Enforcement) -> None:
    old = ignoring(REPLICAS, enforcement)
    new = replaced(old)
    mutated = policy.mutate(put(old, new), SETTINGS, NOW, marks=MARKS)
    assert mutated.patch
    after = apply_patch(new, list(mutated.patch))
    assert contract.own_metadata(after) == contract.own_metadata(old)
    verdict = policy.validate(put(old, after), SETTINGS, NOW, marks=MARKS)
    assert (verdict.outcome, verdict.record) == ("allow", None)


def test_a_write_that_removes_some_driftguard_keys_is_not_undone_but_denied() -> None:
    """``kubectl label deploy x driftguard.io/managed-`` meant it: told, not silently put back."""
    old = live()
    new = edited(old, "metadata", "labels", contract.LABEL_MANAGED, ...)
    assert policy.mutate(put(old, new), SETTINGS, NOW, marks=MARKS).patch == ()
    verdict = policy.validate(put(old, new), SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny" and "driftguard.io/ labels and annotations are written only by" in verdict.message


def test_replace_restores_into_absent_maps_too() -> None:
    old = live()
    new = replaced(old)
    del new["metadata"]["annotations"]
    mutated = policy.mutate(put(old, new), SETTINGS, NOW, marks=MARKS)
    assert {"op": "add", "path": "/metadata/annotations",
            "value": dict(contract.annotations_of(old))} in list(mutated.patch)
    assert contract.own_metadata(apply_patch(new, list(mutated.patch))) == contract.own_metadata(old)


@pytest.mark.parametrize(("name", "change"), [
    ("a declared field changed", lambda o: replaced(o, replicas=9)),
    ("a driftguard key changed rather than dropped",
     lambda o: edited(replaced(o), "metadata", "labels", contract.LABEL_MANAGED, "false")),
    ("nothing dropped", lambda o: edited(o, "spec", "replicas", 9)),
])
def test_replace_restores_nothing_otherwise(name: str, change: Any) -> None:
    old = live()
    assert policy.mutate(put(old, change(old)), SETTINGS, NOW, marks=MARKS).patch == ()


def test_audit_rows_of_metadata_denials_list_the_keys() -> None:
    old = live()
    new = edited(old, "metadata", "annotations", contract.ANN_ENFORCEMENT, "off")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.record is not None
    assert verdict.record.fields == ({"field": 'metadata.annotations["driftguard.io/enforcement"]',
                                      "declared": "deny", "requested": "off"},)
    forged = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "c", "namespace": "production", "labels": {contract.LABEL_MANAGED: "true"}}}
    record = policy.validate(review("CREATE", new=forged)["request"], SETTINGS, NOW).record
    assert record is not None and [f["field"] for f in record.fields] == ['metadata.labels["driftguard.io/managed"]']
