"""The UI's pure parts: rows, filters, the resource tree, words, redaction, access bodies and settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2
import pytest

import ui
from driftguard.core import contract
from ui import access, settings, views
from webhook.records import AuditRecord

NOW = dt.datetime(2026, 1, 2, 12, 0, 0, tzinfo=dt.UTC)


def app(name: str = "web", namespace: str = "team-a", **status: Any) -> dict[str, Any]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"project": status.pop("project", "default"), "enforcement": status.pop("enforcement", "deny"),
                     "syncPolicy": status.pop("policy", {})},
            "status": status}


@pytest.mark.parametrize(("timestamp", "shown"), [
    ("2026-01-02T11:59:18Z", "42s"), ("2026-01-02T11:55:00Z", "5m"), ("2026-01-02T09:00:00Z", "3h"),
    ("2025-12-31T12:00:00Z", "2d"), (None, "-"), ("yesterday", "-"), ("2026-01-02T12:00:05Z", "0s"),
])
def test_age(timestamp: str | None, shown: str) -> None:
    assert views.age(timestamp, NOW) == shown


@pytest.mark.parametrize(("word", "css"), [
    ("Synced", "synced"), ("OutOfSync", "outofsync"), ("Degraded", "degraded"), ("Healthy", "healthy"),
    (None, "unknown"), ("Weird", "unknown"), ("Suspended", "suspended"),
])
def test_one_colour_per_word(word: str | None, css: str) -> None:
    assert views.badge(word) == css


def test_app_row_reads_status() -> None:
    row = views.app_row(app(sync={"status": "OutOfSync", "shortRevision": "abc1234", "author": "Ann",
                                  "message": "bump", "committedAt": "2026-01-02T11:00:00Z"},
                            health={"status": "Degraded", "message": "Deployment x: 0/1"},
                            drift=[{"object": "Deployment team-a/x", "state": "Unresolved"},
                                   {"object": "Deployment team-a/y", "state": "Reverted"}],
                            inventoryCount=3, lastSyncTime="2026-01-02T11:59:00Z", policy={"automated": False}),
                        denials=2, now=NOW)
    assert (row.key, row.sync, row.health, row.revision, row.author, row.subject) == (
        "team-a/web", "OutOfSync", "Degraded", "abc1234", "Ann", "bump")
    assert (row.committed, row.objects, row.drift, row.denials, row.last_sync, row.automated) == (
        "1h", 3, 1, 2, "1m", False)


def test_app_row_of_an_unsynced_application() -> None:
    row = views.app_row(app(), denials=0, now=NOW)
    assert (row.sync, row.health, row.revision, row.objects, row.last_sync, row.automated) == (
        "Unknown", "Unknown", "-", 0, "-", False)


@pytest.mark.parametrize(("policy", "automated"), [
    ({}, False), ({"automated": None}, False), ({"automated": False}, False), ({"syncOptions": ["x"]}, False),
    ({"automated": {}}, True), ({"automated": {"prune": True, "selfHeal": True}}, True),
])
def test_automated_as_the_reconciler_reads_it(policy: dict[str, Any], automated: bool) -> None:
    """No ``automated`` is a manual Application (Argo CD's default): the page offers Sync for it."""
    assert views.app_row(app(policy=policy), denials=0, now=NOW).automated is automated


ROWS = [views.app_row(app("a", "ns1", project="p1", sync={"status": "Synced", "author": "Ann"}), denials=0, now=NOW),
        views.app_row(app("b", "ns2", project="p2", sync={"status": "OutOfSync"}, health={"status": "Degraded"}),
                      denials=0, now=NOW)]


@pytest.mark.parametrize(("filters", "names"), [
    ({}, ["a", "b"]), ({"project": "p1"}, ["a"]), ({"namespace": "ns2"}, ["b"]), ({"status": "Degraded"}, ["b"]),
    ({"status": "Synced"}, ["a"]), ({"search": "ann"}, ["a"]), ({"search": "NS2/B"}, ["b"]), ({"search": "zzz"}, []),
])
def test_filters(filters: dict[str, str], names: list[str]) -> None:
    assert [r.name for r in views.filter_rows(ROWS, **filters)] == names


def _obj(kind: str, name: str, uid: str, owner: str = "", namespace: str = "team-a") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "kind": "X", "name": "x"}]
    return {"apiVersion": "v1" if kind == "Pod" else "apps/v1", "kind": kind, "metadata": meta}


def test_tree_nests_what_objects_own_and_marks_missing_and_drift() -> None:
    application = app(inventory=[{"id": "team-a_web_apps_Deployment", "v": "apps/v1"},
                                 {"id": "team-a_cfg__ConfigMap", "v": "v1"}, {"id": "team-a_pw__Secret", "v": "v1"}],
                      drift=[{"object": "Deployment team-a/web", "fields": ["spec.replicas"], "state": "Unresolved"}])
    live = {("Deployment", "team-a", "web"): _obj("Deployment", "web", "d1")}
    owned = [_obj("ReplicaSet", "web-1", "r1", owner="d1"), _obj("Pod", "web-1-a", "p1", owner="r1"),
             _obj("Pod", "stray", "p2", owner="zz")]
    nodes = views.flatten(views.tree(application, live, owned, lambda o: ("Healthy", "")))
    assert [(depth, n.kind, n.name, n.sync, n.health) for depth, n in nodes] == [
        (0, "ConfigMap", "cfg", "OutOfSync", "Missing"),
        (0, "Deployment", "web", "OutOfSync", "Healthy"),
        (1, "ReplicaSet", "web-1", "-", "Healthy"),
        (2, "Pod", "web-1-a", "-", "Healthy"),
        (0, "Secret", "pw", "-", "Unknown"),  # the UI never reads Secrets
    ]
    assert nodes[1][1].drift == ("spec.replicas",)


def test_conditions_in_plain_words() -> None:
    rows = views.conditions(app(conditions=[
        {"type": "Ready", "status": "False", "reason": "OutOfSync", "message": "m",
         "lastTransitionTime": "2026-01-02T11:00:00Z"},
        {"type": "Fighting", "status": "False", "reason": "NoFight", "message": "n"}]), NOW)
    assert [(r.words, r.holds, r.ok, r.since) for r in rows] == [
        ("Ready", False, False, "1h"), ("Another writer keeps changing objects", False, True, "-")]


def test_history_newest_first_with_duration() -> None:
    rows = views.history(app(history=[
        {"id": 1, "revision": "a" * 40, "startedAt": "2026-01-02T10:00:00Z", "finishedAt": "2026-01-02T10:00:02Z"},
        {"id": 2, "revision": "b" * 40, "startedAt": "2026-01-02T11:00:00Z", "finishedAt": "bad"}]), NOW)
    assert [(r.id, r.revision, r.duration) for r in rows] == [("2", "bbbbbbb", "-"), ("1", "aaaaaaa", "2.0s")]


def test_grant_row_shows_who_why_and_expiry() -> None:
    grant = contract.BreakGlass(user="ann", at="2026-01-02T11:30:00Z", reason="INC-1", commit="c",
                                expires_at="2026-01-02T12:30:00Z")
    obj = _obj("Deployment", "web", "d1")
    obj["metadata"]["annotations"] = {contract.ANN_BREAK_GLASS_GRANTED: grant.encode()}
    row = views.grant_row(obj, NOW)
    assert row == views.GrantRow("Deployment team-a/web", "ann", "INC-1", "30m", "in 30m")
    assert views.grant_row(_obj("Deployment", "x", "1"), NOW) is None
    assert views.until("2026-01-02T11:00:00Z", NOW) == "expired 1h ago"


def test_redact_never_shows_secret_values() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"password": "c2VjcmV0"}, "stringData": {"token": "t0k"},
              "metadata": {"name": "s", "namespace": "n", "managedFields": [{"x": 1}],
                           "annotations": {views.LAST_APPLIED: '{"data":{"password":"c2VjcmV0"}}'}}}
    shown = views.redact(secret)
    text = repr(shown)
    assert "c2VjcmV0" not in text and "t0k" not in text and "managedFields" not in text
    assert shown["data"] == {"password": views.REDACTED}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}, "metadata": {"name": "c"}}
    assert views.redact(config)["data"] == {"k": "v"}


def test_yaml_lines_flag_declared_paths() -> None:
    declared = views.declared_paths({"spec": {"replicas": 2}})
    lines = views.yaml_lines({"spec": {"replicas": 3, "paused": False}, "status": {"x": 1}}, declared)
    assert lines == [("spec:", True), ("  replicas: 3", True), ("  paused: false", False), ("status:", False),
                     ("  x: 1", False)]


@pytest.mark.parametrize(("repo", "link"), [
    ("https://github.com/acme/app.git", "https://github.com/acme/app/tree/abc/deploy"),
    ("file:///tmp/repo", None), ("git@github.com:acme/app.git", None), ("/srv/git/app", None),
])
def test_repo_link_only_for_web_urls(repo: str, link: str | None) -> None:
    assert views.repo_link(repo, "abc", "deploy/") == link


def test_access_review_and_answers() -> None:
    who = access.Identity("ann", ("team-a",))
    body = access.access_review(who, access.Question("get", "driftguard.io", "applications", "team-a"))
    assert body["spec"] == {"user": "ann", "groups": ["team-a"], "resourceAttributes": {
        "verb": "get", "group": "driftguard.io", "resource": "applications", "namespace": "team-a"}}
    assert access.allowed({"status": {"allowed": True}})
    assert not access.allowed({"status": {"allowed": True, "denied": True}})
    assert not access.allowed({})
    assert access.reviewed_identity({"status": {"authenticated": True, "user": {"username": "bob", "groups": ["g"]}}}
                                    ) == access.Identity("bob", ("g",), "token")
    assert access.reviewed_identity({"status": {"authenticated": False}}) is None
    assert access.Identity.from_session(who.to_session()) == who
    assert access.Identity.from_session({"user": ""}) is None


def test_proxy_identity_only_when_configured() -> None:
    headers = {"X-Remote-User": "ann", "X-Remote-Group": "a, b"}
    assert access.proxy_identity(headers, "X-Remote-User", "X-Remote-Group") == access.Identity(
        "ann", ("a", "b"), "proxy")
    assert access.proxy_identity(headers, "", "") is None
    assert access.proxy_identity({}, "X-Remote-User", "") is None


def test_same_secret() -> None:
    assert access.same_secret("abc", "abc")
    assert not access.same_secret("abd", "abc")
    assert not access.same_secret("", "")


def test_access_cache_reuses_answers_within_ttl() -> None:
    asked: list[str] = []
    clock = [0.0]
    cache = access.AccessCache(lambda who, q: asked.append(who.user) or True, ttl=10, clock=lambda: clock[0])
    question = access.Question("get", "", "pods", "n")
    assert cache.can(access.Identity("a"), question) and cache.can(access.Identity("a"), question)
    clock[0] = 11
    cache.can(access.Identity("a"), question)
    cache.can(access.Identity("b"), question)
    assert asked == ["a", "a", "b"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({}, "TLS only"),
    ({"cert_file": "c", "key_file": "k", "login_token_file": "t"}, "needs --login-user"),
    ({"cert_file": "c", "key_file": "k", "proxy_user_header": "X-Remote-User"}, "needs --client-ca-file"),
    ({"cert_file": "c", "key_file": "k", "port": 0}, "--port must be positive"),
])
def test_settings_refuse_unsafe_combinations(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings.from_sources(None, {}, **overrides)


def test_settings_from_environment() -> None:
    chosen = settings.from_sources(None, {"DRIFTGUARD_UI_CERT_FILE": "c", "DRIFTGUARD_UI_KEY_FILE": "k",
                                          "DRIFTGUARD_UI_LOGIN_GROUPS": "a,b", "DRIFTGUARD_UI_PORT": "9000"})
    assert (chosen.login_groups, chosen.port, chosen.host) == (("a", "b"), 9000, "127.0.0.1")


@pytest.mark.parametrize(("operation", "subresource", "fields", "cell"), [
    ("DELETE", "", (), "whole object (delete)"),
    ("UPDATE", "status", (), "status subresource (update)"),
    ("UPDATE", "", ({"field": "spec.replicas", "declared": "3", "requested": "9"},), "spec.replicas</code>: 3 → 9"),
])
def test_audit_rows_say_what_a_request_without_fields_attempted(
        operation: str, subresource: str, fields: tuple[dict[str, str], ...], cell: str) -> None:
    record = AuditRecord(time="2026-12-03T10:00:00Z", uid="u", user="alice", groups=(), operation=operation,
                         subresource=subresource, object="Deployment prod/web", api_version="apps/v1",
                         kind="Deployment", namespace="prod", name="web", object_uid="", application="argocd/web",
                         decision="deny", reason="denied", fields=fields, dry_run=False)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(ui.__file__).parent / "templates"),
                                   autoescape=True)
    html = templates.get_template("_audit_table.html").render(audit=[record])
    assert cell in html
