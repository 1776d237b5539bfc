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
DEFAULT_READ = applications.ProjectRead("default", None)  # no Project named default: the built-in one


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
             settings: Settings = SETTINGS_ADMIN,
             project: applications.ProjectRead | None = DEFAULT_READ) -> policy.Verdict:
    request = review(operation, old=old, new=new, user=user, groups=groups, subresource=subresource)["request"]
    request["kind"] = {"group": "driftguard.io", "version": "v1alpha1", "kind": "Application"}
    request["resource"] = {"group": "driftguard.io", "version": "v1alpha1", "resource": "applications"}
    return policy.validate(request, settings, NOW, project=project)


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


TEAM_A = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
          "metadata": {"name": "team-a", "namespace": "driftguard-system"},
          "spec": {"sourceRepos": ["https://github.com/org/team-a-*"], "destinations": [{"namespace": "team-a"}],
                   "sourceNamespaces": ["team-a"]}}
TEAM_APP = with_(with_(with_(APP, "spec.project", "team-a"), "spec.source.repoURL", "https://github.com/org/team-a-web"),
                 "spec.destination.namespace", "team-a")
IN_TEAM_A = with_(TEAM_APP, "metadata.namespace", "team-a")


@pytest.mark.parametrize(("operation", "old", "new", "read", "message"), [
    pytest.param("CREATE", None, TEAM_APP, applications.ProjectRead("team-a", TEAM_A), "", id="permitted"),
    pytest.param("CREATE", None, IN_TEAM_A, applications.ProjectRead("team-a", TEAM_A), "",
                 id="permitted-source-namespace"),
    pytest.param("CREATE", None, with_(TEAM_APP, "spec.project", "tenant-only-project"),
                 applications.ProjectRead("tenant-only-project", None),
                 "Application driftguard-system/my-service: Project tenant-only-project (spec.project) does not exist "
                 "in namespace driftguard-system; create it (kind: Project) or name an existing project", id="missing"),
    pytest.param("CREATE", None, with_(TEAM_APP, "spec.destination.namespace", "kube-system"),
                 applications.ProjectRead("team-a", TEAM_A),
                 "Application driftguard-system/my-service violates its project: destination namespace kube-system "
                 "is not one of the project's destinations (team-a) (Project team-a, destinations); choose a permitted "
                 "namespace, or ask an admin to add it to the Project", id="destination"),
    pytest.param("CREATE", None, with_(APP, "spec.destination.namespace", "kube-system"), DEFAULT_READ,
                 "(Project default (built in), destinations)", id="builtin-default"),
    pytest.param("UPDATE", TEAM_APP, with_(TEAM_APP, "spec.source.repoURL", "http://10.0.0.9:8080/listener"),
                 applications.ProjectRead("team-a", TEAM_A),
                 "violates its project: repoURL http://10.0.0.9:8080/listener is not one of the project's sourceRepos "
                 "(https://github.com/org/team-a-*); use a permitted repository, or ask an admin to add it to the "
                 "Project (Project team-a, sourceRepos)", id="repo-changed"),
    pytest.param("CREATE", None, with_(IN_TEAM_A, "metadata.namespace", "team-b"),
                 applications.ProjectRead("team-a", TEAM_A),
                 "Applications in namespace team-b may not use this project", id="source-namespace"),
    pytest.param("CREATE", None, TEAM_APP, applications.ProjectRead("team-a", None, error="GET …: no answer"),
                 "its Project driftguard-system/team-a could not be read (GET …: no answer); try again",
                 id="unread-fails-closed"),
    pytest.param("CREATE", None, TEAM_APP, None,
                 "its Project team-a could not be checked (the webhook has no cluster access configured)",
                 id="no-cluster-access"),
    pytest.param("CREATE", None, TEAM_APP, applications.ProjectRead("team-a", with_(TEAM_A, "spec.sourceRepos", "x")),
                 "its project cannot be used: Project team-a: spec.sourceRepos must be a list", id="invalid-project"),
    pytest.param("UPDATE", with_(TEAM_APP, "spec.destination.namespace", "kube-system"),
                 with_(with_(TEAM_APP, "spec.destination.namespace", "kube-system"), "metadata.labels", {"a": "b"}),
                 None, "", id="an-unrelated-edit-is-not-judged"),
])
def test_an_application_is_judged_against_its_project(operation: str, old: dict[str, Any] | None,
                                                      new: dict[str, Any], read: applications.ProjectRead | None,
                                                      message: str) -> None:
    verdict = _verdict(operation, old, new, user=ADMIN[0], groups=ADMIN[1], project=read)
    if not message:
        assert verdict.allowed, verdict.message
        return
    assert verdict.outcome == "deny" and message in verdict.message
    assert verdict.record is not None and verdict.record.decision == "deny"


def test_a_project_is_read_only_when_the_placement_changes() -> None:
    def request(operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> Any:
        r = review(operation, old=old, new=new, user=ADMIN[0], groups=ADMIN[1])["request"]
        r["kind"] = {"group": "driftguard.io", "version": "v1alpha1", "kind": "Application"}
        return r
    assert applications.needs_project(request("CREATE", None, APP))
    assert applications.needs_project(request("UPDATE", APP, with_(APP, "spec.project", "team-a")))
    assert applications.needs_project(request("UPDATE", APP, with_(APP, "spec.destination.namespace", "x")))
    assert not applications.needs_project(request("UPDATE", APP, with_(APP, "spec.enforcement", "warn")))
    assert not applications.needs_project(request("DELETE", APP, None))


UNWATCHED = ("Application team-a/my-service: no driftguard reconciler watches its namespace, so nothing will sync "
             "it; create it in {watched}, or add the namespace to --application-namespaces (the reconciler's and the "
             "webhook's)")


@pytest.mark.parametrize(("operation", "old", "new", "watched", "warned"), [
    pytest.param("CREATE", None, IN_TEAM_A, ("driftguard-system",), True, id="created where nothing watches"),
    pytest.param("CREATE", None, IN_TEAM_A, ("driftguard-system", "team-*"), False, id="a pattern matches"),
    pytest.param("CREATE", None, IN_TEAM_A, ("*",), False, id="every namespace"),
    pytest.param("CREATE", None, TEAM_APP, ("driftguard-system",), False, id="in driftguard's namespace"),
    pytest.param("UPDATE", IN_TEAM_A, with_(IN_TEAM_A, "metadata.labels", {"x": "y"}), ("driftguard-system",), False,
                 id="only a CREATE is warned about"),
])
def test_an_application_no_reconciler_watches_is_admitted_with_a_warning(
        operation: str, old: dict[str, Any] | None, new: dict[str, Any], watched: tuple[str, ...],
        warned: bool) -> None:
    settings = Settings(admin_groups=("driftguard:admins",), application_namespaces=watched)
    verdict = _verdict(operation, old, new, user=ADMIN[0], groups=ADMIN[1], settings=settings,
                       project=applications.ProjectRead("team-a", TEAM_A))
    assert verdict.outcome == "allow"
    expected = (UNWATCHED.format(watched=", ".join(watched)),) if warned else ()  # whole: the fix comes first
    assert tuple(w for w in verdict.warnings if "no driftguard reconciler" in w) == expected
