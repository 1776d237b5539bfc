"""Which ServiceAccount an Application applies as, and the seal that makes its impersonated writes the
reconciler's (driftguard.core.actors)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from driftguard.core import actors, projects
from driftguard.core.actors import Actor
from driftguard.core.marks import MarkKey
from driftguard.core.projects import Project, ServiceAccountPin, Violation

KEY = MarkKey(b"actor-tests-mark-key-32-bytes-ok")
OTHER_KEY = MarkKey(b"another-key-of-at-least-32-bytes")
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
USER = "system:serviceaccount:team-a:deployer"
PLAIN = projects.builtin_default()
PINNED = dataclasses.replace(PLAIN, name="team-a", builtin=False, service_accounts=(
    ServiceAccountPin("team-a-*", "", "deployer"), ServiceAccountPin("shared", "team-a", "shared-deployer"),
    ServiceAccountPin("*", "", "fallback")))


@pytest.mark.parametrize(("project", "requested", "app_ns", "dest_ns", "default", "expected"), [
    pytest.param(PLAIN, "", "team-a", "team-a", "", None, id="nothing named: the reconciler itself"),
    pytest.param(PLAIN, "deployer", "team-a", "team-a", "", Actor("team-a", "deployer", "spec.serviceAccountName"),
                 id="spec.serviceAccountName, in the Application's namespace"),
    pytest.param(PLAIN, "deployer", "team-a", "team-b", "", Actor("team-a", "deployer", "spec.serviceAccountName"),
                 id="the Application's namespace, not the destination's"),
    pytest.param(PLAIN, "", "team-a", "team-a", "gitops", Actor("team-a", "gitops", "--default-service-account"),
                 id="the reconciler's default"),
    pytest.param(PLAIN, "mine", "team-a", "team-a", "gitops", Actor("team-a", "mine", "spec.serviceAccountName"),
                 id="the Application's own beats the default"),
    pytest.param(PINNED, "", "driftguard-system", "team-a-web", "",
                 Actor("team-a-web", "deployer", "Project team-a destinationServiceAccounts"),
                 id="a project pin, in the destination namespace"),
    pytest.param(PINNED, "", "driftguard-system", "shared", "gitops",
                 Actor("team-a", "shared-deployer", "Project team-a destinationServiceAccounts"),
                 id="a pin namespace:name, first match wins, beats the default"),
    pytest.param(PINNED, "deployer", "team-a-web", "team-a-web", "",
                 Actor("team-a-web", "deployer", "Project team-a destinationServiceAccounts"),
                 id="asking for the pinned one is fine"),
])
def test_choose(project: Project, requested: str, app_ns: str, dest_ns: str, default: str,
                expected: Actor | None) -> None:
    assert actors.choose(project, requested=requested, app_namespace=app_ns, destination_namespace=dest_ns,
                         default=default) == expected


@pytest.mark.parametrize(("project", "requested", "app_ns", "dest_ns", "default", "rule", "says"), [
    pytest.param(PINNED, "other", "team-a-web", "team-a-web", "", "destinationServiceAccounts",
                 "is not the ServiceAccount the project pins", id="another one than the pin"),
    pytest.param(PLAIN, "deployer", "driftguard-system", "team-a", "", "spec.serviceAccountName",
                 "that namespace holds only driftguard's own", id="named in driftguard's namespace"),
    pytest.param(PLAIN, "", "driftguard-system", "team-a", "gitops", "destinationServiceAccounts",
                 "requires a ServiceAccount for every Application", id="the default cannot reach the system namespace"),
    pytest.param(dataclasses.replace(PINNED, service_accounts=(ServiceAccountPin("*", "driftguard-system",
                                                                                "driftguard-reconciler"),)),
                 "", "team-a", "team-a", "", "destinationServiceAccounts", "driftguard never applies as",
                 id="a pin to the reconciler itself"),
    pytest.param(dataclasses.replace(PINNED, service_accounts=(ServiceAccountPin("*", "kube-system", "x"),)),
                 "", "team-a", "team-a", "", "destinationServiceAccounts", "the cluster's controllers",
                 id="a pin into kube-system"),
    pytest.param(dataclasses.replace(PINNED, service_accounts=(ServiceAccountPin("*", "", "x"),)),
                 "", "team-a", "", "", "destinationServiceAccounts", "names no namespace",
                 id="a pin by name with no destination namespace"),
    pytest.param(PLAIN, "Not_Valid", "team-a", "team-a", "", "spec.serviceAccountName", "not a valid",
                 id="not a name"),
])
def test_choose_refuses(project: Project, requested: str, app_ns: str, dest_ns: str, default: str, rule: str,
                        says: str) -> None:
    found = actors.choose(project, requested=requested, app_namespace=app_ns, destination_namespace=dest_ns,
                          default=default)
    assert isinstance(found, Violation)
    assert found.rule == rule and says in found.message


def test_actor_username_is_the_serviceaccount_user() -> None:
    assert Actor("team-a", "deployer", "x").username == USER


@pytest.mark.parametrize(("values", "username", "key", "at", "says"), [
    pytest.param(None, USER, KEY, NOW, "", id="fresh seal for this user"),
    pytest.param(None, USER, KEY, NOW + actors.SEAL_TTL, "", id="at expiry, within the skew"),
    pytest.param(None, USER, KEY, NOW + actors.SEAL_TTL + actors.SKEW + dt.timedelta(seconds=1), "expired",
                 id="expired"),
    pytest.param(None, "system:serviceaccount:team-b:deployer", KEY, NOW, "does not verify",
                 id="moved to another user"),
    pytest.param(None, USER, OTHER_KEY, NOW, "does not verify", id="another key"),
    pytest.param(None, USER, None, NOW, "no mark key", id="no key"),
    pytest.param(None, USER, KEY, NOW - dt.timedelta(hours=1), "further ahead", id="sealed too far ahead"),
    pytest.param(["v1.1.abc"], USER, KEY, NOW, "does not verify", id="forged"),
    pytest.param(["x"], USER, KEY, NOW, "not a driftguard seal", id="garbage"),
    pytest.param(["v2.1.a"], USER, KEY, NOW, "not a driftguard seal", id="another version"),
    pytest.param([], USER, KEY, NOW, "one value", id="empty"),
    pytest.param("two", USER, KEY, NOW, "one value", id="two values"),
])
def test_verify(values: list[str] | str | None, username: str, key: MarkKey | None, at: dt.datetime,
                says: str) -> None:
    sealed = actors.seal(KEY, USER, NOW)
    given = [sealed] if values is None else [sealed, sealed] if values == "two" else values
    why = actors.verify(key, username, list(given), at)
    assert (says in why and why) if says else why == ""


def test_parse_destination_service_accounts() -> None:
    project = projects.parse_project({"metadata": {"name": "team-a"}, "spec": {"destinationServiceAccounts": [
        {"server": "https://kubernetes.default.svc", "namespace": "team-a", "defaultServiceAccount": "deployer"},
        {"namespace": "shared-*", "defaultServiceAccount": "team-a:shared"}]}})
    assert project.service_accounts == (ServiceAccountPin("team-a", "", "deployer"),
                                        ServiceAccountPin("shared-*", "team-a", "shared"))


@pytest.mark.parametrize(("entry", "says"), [
    ({"defaultServiceAccount": "x"}, "namespace is required"),
    ({"namespace": "!a", "defaultServiceAccount": "x"}, "namespace is required"),
    ({"namespace": "a"}, "defaultServiceAccount is required"),
    ({"namespace": "a", "defaultServiceAccount": "a:b:c"}, "defaultServiceAccount is required"),
    ("team-a", "must be an object"),
])
def test_parse_destination_service_accounts_refuses(entry: object, says: str) -> None:
    with pytest.raises(projects.ProjectError, match=f"Project p: spec.destinationServiceAccounts\\[0\\].*{says}"):
        projects.parse_project({"metadata": {"name": "p"}, "spec": {"destinationServiceAccounts": [entry]}})
