"""driftguard's own objects: Applications change through git, the reconciler or an admin group; risky changes
are always recorded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.admission import NOW, RECONCILER, SETTINGS, live, review

from driftguard.core import contract
from webhook import applications, messages, policy
from webhook.settings import Settings

ADMIN = ("platform-admin", ("driftguard:admins", "system:authenticated"))
SETTINGS_ADMIN = Settings(break_glass_groups=SETTINGS.break_glass_groups, admin_groups=("driftguard:admins",))


def application(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": "https://github.com/org/k8s-manifests", "targetRevision": "main", "path": "apps"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "production"},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        "enforcement": "deny",
    }
    body.update(spec)
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "my-service", "namespace": "driftguard-system", "uid": "a-uid",
                         "resourceVersion": "7"},
            "spec": body}


def with_(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target.setdefault(key, {})
    if value is ...:
        target.pop(last, None)
    else:
        target[last] = value
    return out


APP = application()


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param(APP, with_(APP, "spec.enforcement", "off"), ["downgrades spec.enforcement from deny to off"],
                 id="enforcement deny to off"),
    pytest.param(with_(APP, "spec.enforcement", ...), with_(APP, "spec.enforcement", "warn"),
                 ["downgrades spec.enforcement from deny to warn"], id="a missing enforcement is deny"),
    pytest.param(with_(APP, "spec.enforcement", "off"), APP, [], id="an upgrade is not risky"),
    pytest.param(APP, with_(APP, "spec.syncPolicy.automated", None),
                 ["removes spec.syncPolicy.automated (no more automatic sync, prune or self-heal)"],
                 id="automated: null"),
    pytest.param(APP, with_(APP, "spec.syncPolicy.automated", {"prune": True}),
                 ["turns spec.syncPolicy.automated.selfHeal off"], id="selfHeal off"),
    pytest.param(APP, with_(APP, "spec.source.path", "elsewhere"), ["changes spec.source"], id="source"),
    pytest.param(APP, with_(APP, "metadata.finalizers", [contract.PRUNE_ON_DELETE]),
                 [f"adds finalizer {contract.PRUNE_ON_DELETE} (a cascading delete: deleting the Application then "
                  "deletes what it manages)"], id="cascading finalizer"),
    pytest.param(APP, with_(APP, "metadata.finalizers", ["example.com/other"]),
                 ["adds finalizer example.com/other"], id="another finalizer"),
    pytest.param(with_(APP, "metadata.finalizers", ["example.com/other"]), APP,
                 ["removes finalizer example.com/other"], id="finalizer removed"),
    pytest.param(APP, None, ["deletes the Application"], id="delete"),
    pytest.param(with_(APP, "metadata.finalizers", ["resources-finalizer.argocd.argoproj.io"]), None,
                 ["deletes the Application with finalizer resources-finalizer.argocd.argoproj.io (a cascading "
                  "delete of what it manages)"], id="cascading delete"),
    pytest.param(None, with_(APP, "spec.enforcement", "off"), [], id="a CREATE downgrades nothing"),
    pytest.param(APP, with_(APP, "metadata.labels", {"team": "a"}), [], id="a label"),
])
def test_risky_changes(old: dict[str, Any] | None, new: dict[str, Any] | None, expected: list[str]) -> None:
    assert applications.risky_changes(old, new) == expected


def test_only_meaningful_changes_count() -> None:
    assert not applications.changed(APP, with_(APP, "metadata.resourceVersion", "8"))
    assert applications.changed(APP, with_(APP, "metadata.labels", {"team": "a"}))


def _verdict(operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None, *, user: str = "laptop",
             groups: tuple[str, ...] = ("engineers",), subresource: str = "",
             settings: Settings = SETTINGS_ADMIN) -> policy.Verdict:
    request = review(operation, old=old, new=new, user=user, groups=groups, subresource=subresource)["request"]
    request["kind"] = {"group": "driftguard.io", "version": "v1alpha1", "kind": "Application"}
    request["resource"] = {"group": "driftguard.io", "version": "v1alpha1", "resource": "applications"}
    return policy.validate(request, settings, NOW)


@pytest.mark.parametrize(("operation", "old", "new"), [
    ("UPDATE", APP, with_(APP, "spec.enforcement", "off")),
    ("UPDATE", APP, with_(APP, "spec.syncPolicy.automated", None)),
    ("UPDATE", APP, with_(APP, "metadata.finalizers", [contract.PRUNE_ON_DELETE])),
    ("UPDATE", APP, with_(APP, "metadata.labels", {"team": "a"})),
    ("DELETE", APP, None),
    ("CREATE", None, APP),
])
def test_anyone_but_git_the_reconciler_and_admins_is_denied(operation: str, old: dict[str, Any] | None,
                                                            new: dict[str, Any] | None) -> None:
    verdict = _verdict(operation, old, new)
    assert verdict.outcome == "deny"
    assert verdict.message.startswith("Application driftguard-system/my-service is driftguard's own: it changes "
                                      "through git (an app-of-apps Application), the reconciler, or a member of "
                                      "group driftguard:admins; laptop is not a member")
    assert verdict.record is not None and verdict.record.decision == "deny"


def test_the_denial_names_what_the_request_would_have_done() -> None:
    verdict = _verdict("UPDATE", APP, with_(APP, "spec.enforcement", "off"))
    assert verdict.message.endswith("This request downgrades spec.enforcement from deny to off. Ask a member of "
                                    "driftguard:admins, or change it in the git repository of its app-of-apps")


@pytest.mark.parametrize(("operation", "old", "new", "decision"), [
    ("UPDATE", APP, with_(APP, "spec.enforcement", "off"), "audit"),
    ("UPDATE", APP, with_(APP, "metadata.finalizers", [contract.PRUNE_ON_DELETE]), "audit"),
    ("DELETE", APP, None, "audit"),
    ("UPDATE", APP, with_(APP, "metadata.labels", {"team": "a"}), None),
    ("CREATE", None, APP, None),
])
def test_admins_may_and_their_risky_changes_are_recorded(operation: str, old: dict[str, Any] | None,
                                                         new: dict[str, Any] | None, decision: str | None) -> None:
    verdict = _verdict(operation, old, new, user=ADMIN[0], groups=ADMIN[1])
    assert verdict.outcome == "allow"
    assert (verdict.record.decision if verdict.record else None) == decision
    if verdict.record:
        assert verdict.record.reason.startswith(f"Application driftguard-system/my-service: {ADMIN[0]} (admin) ")
        assert verdict.warnings == (messages.cut(verdict.record.reason),)


def test_status_is_the_reconcilers() -> None:
    verdict = _verdict("UPDATE", APP, with_(APP, "status", {"sync": {"status": "Synced"}}), subresource="status")
    assert verdict.outcome == "deny"
    assert "status of Application driftguard-system/my-service is written by driftguard's reconciler only" in (
        verdict.message)
    assert _verdict("UPDATE", APP, APP, user=RECONCILER, subresource="status").outcome == "allow"


def test_the_reconciler_passes_and_a_name_alone_does_not() -> None:
    old = with_(APP, "metadata.finalizers", [contract.PRUNE_ON_DELETE])
    assert _verdict("UPDATE", old, APP, user=RECONCILER).outcome == "allow"  # releasing its finalizer
    request = review("UPDATE", old=old, new=APP, user=RECONCILER, extra={})["request"]
    request["kind"] = {"group": "driftguard.io", "version": "v1alpha1", "kind": "Application"}
    assert policy.validate(request, SETTINGS_ADMIN, NOW).outcome == "deny"


def test_an_app_of_apps_application_is_a_managed_object_like_any_other() -> None:
    managed = live(application())
    verdict = _verdict("UPDATE", managed, with_(managed, "spec.enforcement", "off"), user=ADMIN[0], groups=ADMIN[1])
    assert verdict.outcome == "deny"
    assert verdict.message.startswith("spec.enforcement of Application driftguard-system/my-service is declared in "
                                      "git (deny)")
