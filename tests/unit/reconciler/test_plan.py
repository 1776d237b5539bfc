"""Per-object decisions: unchanged / update / drift / break-glass / foreign, and commit-stamp reuse."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from support.reconciler_builders import MARKS, NOW, REV1, REV2, cm, desired, live_of, sealed

from driftguard.core.contract import (
    ANN_APPLICATION,
    ANN_BREAK_GLASS,
    ANN_BREAK_GLASS_GRANTED,
    ANN_COMMIT,
    ANN_DRIFT,
    ANN_ENFORCEMENT,
    BreakGlass,
    DriftMark,
)
from driftguard.core.marks import Marks
from reconciler.plan import Verdict, clear_operations, plan, reuse_commit, same_object

LATER = NOW + dt.timedelta(hours=1)


def grant(commit: str, expires: dt.datetime) -> str:
    """A grant as the mutating webhook seals it on the live object."""
    return sealed(BreakGlass("oncall@org", "2026-03-01T11:59:00Z", "INC-1", commit,
                             expires.strftime("%Y-%m-%dT%H:%M:%SZ")).encode())


def test_missing_object_is_created() -> None:
    assert plan(desired(), None, now=NOW, marks=MARKS).verdict is Verdict.CREATE


def test_live_equal_to_git_is_unchanged() -> None:
    d = desired()
    p = plan(d, live_of(d), now=NOW, marks=MARKS)
    assert (p.verdict, p.drifts, p.clear) == (Verdict.UNCHANGED, (), ())


def test_server_defaults_and_foreign_fields_are_not_drift() -> None:
    d = desired(cm(data={"a": "1"}))
    live = live_of(d, binaryData={"x": "eA=="}, annotations={"kubectl.kubernetes.io/last-applied": "{}"})
    assert plan(d, live, now=NOW, marks=MARKS).verdict is Verdict.UNCHANGED


@pytest.mark.parametrize(("change", "field"), [
    ({"data": {"color": "red"}}, "data.color"),
    ({"data": {}}, "data.color"),
    ({"labels": {"driftguard.io/managed": "false"}}, 'metadata.labels["driftguard.io/managed"]'),
])
def test_drift_of_declared_fields_and_the_managed_label(change: dict[str, Any], field: str) -> None:
    d = desired()
    p = plan(d, live_of(d, **change), now=NOW, marks=MARKS)
    assert p.verdict is Verdict.DRIFTED
    assert p.drift_fields == [field]


def test_a_new_declaration_is_an_update_with_the_new_commit() -> None:
    old = desired(cm(data={"color": "blue"}), revision=REV1)
    new = desired(cm(data={"color": "green"}), revision=REV2)
    p = plan(new, live_of(old), now=NOW, marks=MARKS)
    assert p.verdict is Verdict.UPDATE
    assert p.obj["metadata"]["annotations"][ANN_COMMIT] == REV2.sha


def test_a_commit_that_does_not_touch_the_object_keeps_its_stamp() -> None:
    applied = desired(revision=REV1)
    again = desired(revision=REV2)  # same content, newer commit
    p = plan(again, live_of(applied), now=NOW, marks=MARKS)
    assert p.verdict is Verdict.UNCHANGED
    assert p.obj["metadata"]["annotations"][ANN_COMMIT] == REV1.sha
    assert p.obj["metadata"]["annotations"]["driftguard.io/author"] == "alice@org"


@pytest.mark.parametrize("changed", [
    {"path": "app/moved.yaml"},
    {"enforcement": "warn"},
])
def test_declaration_changes_restamp(changed: dict[str, str]) -> None:
    applied = desired(revision=REV1)
    if "path" in changed:
        again = desired(revision=REV2, path=changed["path"])
    else:
        again = desired(revision=REV2)
        again.obj["metadata"]["annotations"][ANN_ENFORCEMENT] = changed["enforcement"]
    assert reuse_commit(again.obj, live_of(applied)) is again.obj
    assert plan(again, live_of(applied), now=NOW, marks=MARKS).verdict is Verdict.UPDATE


def test_reuse_needs_a_complete_live_stamp() -> None:
    applied = desired(revision=REV1)
    live = live_of(applied)
    del live["metadata"]["annotations"]["driftguard.io/author"]
    assert reuse_commit(desired(revision=REV2).obj, live)["metadata"]["annotations"][ANN_COMMIT] == REV2.sha


def test_another_applications_object_is_never_taken_over() -> None:
    d = desired()
    live = live_of(d, annotations={ANN_APPLICATION: "team-b/other"})
    p = plan(d, live, now=NOW, marks=MARKS)
    assert p.verdict is Verdict.FOREIGN
    assert p.message == "already managed by Application team-b/other; not taking it over"


def test_terminating_and_invalid() -> None:
    d = desired()
    live = live_of(d)
    live["metadata"]["deletionTimestamp"] = "2026-03-01T11:00:00Z"
    assert plan(d, live, now=NOW, marks=MARKS).verdict is Verdict.TERMINATING
    nameless = desired(cm(), app=_app_without_destination())
    assert plan(nameless, None, now=NOW, marks=MARKS).verdict is Verdict.INVALID


def _app_without_destination() -> Any:
    from reconciler.application import parse_application

    return parse_application({"metadata": {"name": "svc", "namespace": "ns"}, "spec": {"source": {"repoURL": "x"}}})


class TestBreakGlass:
    def test_active_grant_at_the_stamped_commit_is_left_alone(self) -> None:
        d = desired(revision=REV1)
        live = live_of(d, data={"color": "red"},
                       annotations={ANN_BREAK_GLASS: "INC-1", ANN_BREAK_GLASS_GRANTED: grant(REV1.sha, LATER)})
        p = plan(d, live, now=NOW, marks=MARKS)
        assert p.verdict is Verdict.BREAK_GLASS
        assert p.drift_fields == ["data.color"] and p.expires_at == LATER
        assert p.message.startswith("break-glass by oncall@org until 2026-03-01T13:00:00Z: INC-1")

    def test_it_holds_across_commits_that_do_not_touch_the_object(self) -> None:
        d = desired(revision=REV1)
        live = live_of(d, data={"color": "red"},
                       annotations={ANN_BREAK_GLASS_GRANTED: grant(REV1.sha, LATER)})
        assert plan(desired(revision=REV2), live, now=NOW, marks=MARKS).verdict is Verdict.BREAK_GLASS

    def test_a_commit_touching_the_object_ends_it(self) -> None:
        d = desired(revision=REV1)
        live = live_of(d, data={"color": "red"},
                       annotations={ANN_BREAK_GLASS: "x", ANN_BREAK_GLASS_GRANTED: grant(REV1.sha, LATER)})
        p = plan(desired(cm(data={"color": "green"}), revision=REV2), live, now=NOW, marks=MARKS)
        assert p.verdict is Verdict.UPDATE
        assert p.clear == (ANN_BREAK_GLASS, ANN_BREAK_GLASS_GRANTED)

    @pytest.mark.parametrize("granted", [
        grant(REV1.sha, NOW - dt.timedelta(seconds=1)),  # expired
        grant("0" * 40, LATER),  # granted at another commit
        "not json",
        sealed(BreakGlass("u", "t", "r", REV1.sha, "yesterday").encode()),  # unreadable expiry
        BreakGlass("oncall@org", "2026-03-01T11:59:00Z", "INC-1", REV1.sha, "2099-01-01T00:00:00Z").encode(),  # no MAC
        sealed(BreakGlass("oncall@org", "2026-03-01T11:59:00Z", "INC-1", REV1.sha, "2099-01-01T00:00:00Z").encode(),
               uid="another-object"),  # sealed for another object, copied here
        grant(REV1.sha, LATER).replace("INC-1", "INC-2"),  # edited after sealing
    ], ids=["expired", "another commit", "not json", "unreadable expiry", "no MAC", "moved", "edited"])
    def test_expired_or_invalid_grants_are_reverted_and_removed(self, granted: str) -> None:
        d = desired(revision=REV1)
        live = live_of(d, data={"color": "red"}, annotations={ANN_BREAK_GLASS_GRANTED: granted})
        p = plan(d, live, now=NOW, marks=MARKS)
        assert (p.verdict, p.clear) == (Verdict.DRIFTED, (ANN_BREAK_GLASS_GRANTED,))

    def test_a_stale_mark_on_a_matching_object_is_removed(self) -> None:
        d = desired()
        live = live_of(d, annotations={ANN_BREAK_GLASS_GRANTED: grant(REV1.sha, NOW - dt.timedelta(hours=1))})
        p = plan(d, live, now=NOW, marks=MARKS)
        assert (p.verdict, p.clear) == (Verdict.UNCHANGED, (ANN_BREAK_GLASS_GRANTED,))


    def test_the_grant_holds_no_longer_than_grant_time_plus_ttl_whatever_it_says(self) -> None:
        d = desired(revision=REV1)
        stretched = sealed(BreakGlass("oncall@org", "2026-03-01T11:59:00Z", "INC-1", REV1.sha,
                                      "2099-01-01T00:00:00Z").encode())
        live = live_of(d, data={"color": "red"}, annotations={ANN_BREAK_GLASS_GRANTED: stretched})
        capped = dataclasses.replace(MARKS, ttl=dt.timedelta(minutes=30))
        held = plan(d, live, now=NOW, marks=capped)
        assert (held.verdict, held.expires_at) == (Verdict.BREAK_GLASS, dt.datetime(2026, 3, 1, 12, 29, tzinfo=dt.UTC))
        assert "until 2026-03-01T12:29:00Z" in held.message
        after = plan(d, live, now=NOW + dt.timedelta(minutes=29), marks=capped)
        assert after.verdict is Verdict.DRIFTED

    def test_without_a_key_no_grant_is_believed(self) -> None:
        d = desired(revision=REV1)
        live = live_of(d, data={"color": "red"}, annotations={ANN_BREAK_GLASS_GRANTED: grant(REV1.sha, LATER)})
        p = plan(d, live, now=NOW, marks=Marks.unkeyed())
        assert (p.verdict, p.clear) == (Verdict.DRIFTED, (ANN_BREAK_GLASS_GRANTED,))


def test_drift_mark_names_the_user_and_is_cleared() -> None:
    d = desired()
    mark = DriftMark("bob@org", "2026-03-01T11:30:00Z", ("data.color",))
    p = plan(d, live_of(d, data={"color": "red"}, annotations={ANN_DRIFT: sealed(mark.encode())}), now=NOW,
             marks=MARKS)
    assert (p.verdict, p.drift_mark, p.clear) == (Verdict.DRIFTED, mark, (ANN_DRIFT,))


def test_an_unsealed_drift_mark_blames_nobody_and_is_cleared() -> None:
    d = desired()
    forged = DriftMark("victim@org", "2026-03-01T11:30:00Z", ("data.color",)).encode()
    p = plan(d, live_of(d, data={"color": "red"}, annotations={ANN_DRIFT: forged}), now=NOW, marks=MARKS)
    assert (p.verdict, p.drift_mark, p.clear) == (Verdict.DRIFTED, None, (ANN_DRIFT,))


def test_clear_operations_are_guarded_json_patch() -> None:
    live = {"metadata": {"annotations": {ANN_DRIFT: "{}", "other": "x"}}}
    assert clear_operations(live, (ANN_DRIFT, ANN_BREAK_GLASS)) == [
        {"op": "test", "path": "/metadata/annotations/driftguard.io~1drift", "value": "{}"},
        {"op": "remove", "path": "/metadata/annotations/driftguard.io~1drift"},
    ]


def test_same_object_ignores_server_bookkeeping() -> None:
    d = desired()
    live = live_of(d)
    after = live_of(d)
    after["metadata"].update(resourceVersion="43", managedFields=[{"manager": "driftguard"}], generation=2)
    assert same_object(after, live)
    after["data"] = {"color": "red"}
    assert not same_object(after, live)


def deployment(containers: list[dict[str, Any]], volumes: list[dict[str, Any]] | None = None,
               kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers, **({"volumes": volumes} if volumes is not None else {})}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}


WEB = {"name": "web", "image": "nginx:1.27"}
SIDECAR = {"name": "sidecar", "image": "evil:1", "securityContext": {"privileged": True}}
ROOT = {"name": "root", "hostPath": {"path": "/"}}


class TestUndeclaredPodTemplateElements:
    """Path 5 around the webhook: what git does not list under a workload's pod template is drift, removed."""

    def test_a_sidecar_and_a_volume_git_does_not_list_are_drift(self) -> None:
        d = desired(deployment([WEB]))
        live = live_of(d)
        live["spec"]["template"]["spec"] |= {"containers": [WEB, SIDECAR], "volumes": [ROOT], "hostPID": True,
                                             "hostNetwork": False}
        p = plan(d, live, now=NOW, marks=MARKS)
        assert p.verdict is Verdict.DRIFTED
        assert p.drift_fields == ["spec.template.spec.containers[name=sidecar]",
                                  "spec.template.spec.volumes[name=root]", "spec.template.spec.hostPID"]
        assert [e.path_text for e in p.extras] == p.drift_fields

    def test_what_git_lists_and_server_defaults_are_not(self) -> None:
        d = desired(deployment([WEB], [{"name": "cache", "emptyDir": {}}]))
        live = live_of(d)
        template = live["spec"]["template"]["spec"]
        template["containers"] = [{**WEB, "terminationMessagePath": "/dev/termination-log",
                                   "imagePullPolicy": "IfNotPresent"}]
        template |= {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "securityContext": {}}
        p = plan(d, live, now=NOW, marks=MARKS)
        assert (p.verdict, p.extras) == (Verdict.UNCHANGED, ())

    @pytest.mark.parametrize("kind", ["Pod", "ConfigMap"])
    def test_pods_and_non_workloads_have_none(self, kind: str) -> None:
        if kind == "Pod":
            d = desired(deployment([WEB], kind="Pod"))
            live = live_of(d)
            live["spec"] |= {"containers": [WEB, SIDECAR], "volumes": [{"name": "kube-api-access-x", "projected": {}}]}
        else:
            d = desired()
            live = live_of(d)
        assert plan(d, live, now=NOW, marks=MARKS).extras == ()

    def test_an_object_being_adopted_is_not_judged_by_it(self) -> None:
        d = desired(deployment([WEB]))
        live = live_of(d)
        live["metadata"]["labels"], live["metadata"]["annotations"] = {}, {}
        live["spec"]["template"]["spec"]["containers"] = [WEB, SIDECAR]
        assert plan(d, live, now=NOW, marks=MARKS).extras == ()
