"""Which driftguard.io/ marks the reconciler believes: only those on an object this Application manages.

The webhook never sees an object without the managed label, so a grant or drift mark found on an object
being adopted was never checked by anyone: it is ignored, its commit stamp is not reused, and every
driftguard.io/ key the reconciler does not write itself is listed for removal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from support.reconciler_builders import APP, MARKS, NOW, REV1, REV2, cm, desired, live_of, sealed

from driftguard.core.clock import format_time
from driftguard.core.contract import (
    ANN_ADOPT,
    ANN_APPLICATION,
    ANN_AUTHOR,
    ANN_BREAK_GLASS,
    ANN_BREAK_GLASS_GRANTED,
    ANN_COMMIT,
    ANN_DRIFT,
    LABEL_MANAGED,
    BreakGlass,
    DriftMark,
)
from reconciler.plan import Ownership, Trust, Verdict, clear_operations, describe_keys, ownership, plan, trust

LATER = NOW + dt.timedelta(days=365)
EARLIER = NOW - dt.timedelta(seconds=1)
MINE = str(APP.key)
MARK = DriftMark("victim@org", "2026-03-01T11:30:00Z", ("data.color",))


def grant_at(commit: str, expires: dt.datetime) -> BreakGlass:
    return BreakGlass("mallory", "2026-03-01T11:59:00Z", "forged?", commit, format_time(expires))


def live(owner: str, grant: str, drift: bool) -> dict[str, Any]:
    """The live ConfigMap ``web`` (data drifted to red) as ``owner`` left it, with the given marks."""
    d = desired(revision=REV1)
    obj = live_of(d, data={"color": "red"})
    labels, annotations = obj["metadata"]["labels"], obj["metadata"]["annotations"]
    if owner == "unmanaged":  # created by hand: no label, no stamp
        obj["metadata"]["labels"], obj["metadata"]["annotations"] = {}, {}
        labels, annotations = obj["metadata"]["labels"], obj["metadata"]["annotations"]
    elif owner == "unmanaged, opted in":  # created by hand, its owner lets the Application adopt it
        obj["metadata"]["labels"], obj["metadata"]["annotations"] = {}, {ANN_ADOPT: MINE}
        labels, annotations = obj["metadata"]["labels"], obj["metadata"]["annotations"]
    elif owner == "unmanaged, forged stamp":  # the whole stamp copied, only the label missing
        del labels[LABEL_MANAGED]
    elif owner == "managed, no application":  # the label set, the stamp not naming anyone
        del annotations[ANN_APPLICATION]
    elif owner == "another app":
        annotations[ANN_APPLICATION] = "team-b/other"
    if grant != "absent":
        annotations[ANN_BREAK_GLASS] = "hotfix"
        annotations[ANN_BREAK_GLASS_GRANTED] = sealed(grant_at(REV1.sha, LATER if grant == "valid" else EARLIER)
                                                      .encode())
    if drift:
        annotations[ANN_DRIFT] = sealed(MARK.encode())
    return obj


OWNERS = {
    "mine": Ownership.MINE,
    "unmanaged": Ownership.UNMANAGED,
    "unmanaged, forged stamp": Ownership.UNMANAGED,
    "managed, no application": Ownership.UNMANAGED,
    "another app": Ownership.FOREIGN,
}


@pytest.mark.parametrize("drift", [False, True], ids=["no drift mark", "drift mark"])
@pytest.mark.parametrize("grant", ["absent", "valid", "expired"])
@pytest.mark.parametrize("owner", list(OWNERS))
def test_trust_table(owner: str, grant: str, drift: bool) -> None:
    obj = live(owner, grant, drift)
    t = trust(obj, desired(revision=REV1).obj, now=NOW, marks=MARKS)

    assert t.ownership is OWNERS[owner]
    if owner == "mine":
        assert t.honoured is (grant == "valid")
        assert (t.grant is not None) is (grant != "absent")
        assert t.drift_mark == (MARK if drift else None)
        assert t.untrusted == ()
        return
    assert (t.honoured, t.grant, t.drift_mark) == (False, None, None), "nothing on it passed the webhook"
    if owner == "another app":
        assert t == Trust(Ownership.FOREIGN), "not ours to judge or to clean"
        return
    marks = {f"annotation:{ANN_BREAK_GLASS}", f"annotation:{ANN_BREAK_GLASS_GRANTED}"} if grant != "absent" else set()
    marks |= {f"annotation:{ANN_DRIFT}"} if drift else set()
    assert set(t.untrusted) == marks, "every key the reconciler does not write is removed"


def test_a_grant_at_another_commit_is_trusted_but_not_honoured() -> None:
    obj = live("mine", "absent", False)
    obj["metadata"]["annotations"][ANN_BREAK_GLASS_GRANTED] = sealed(grant_at(REV2.sha, LATER).encode())
    t = trust(obj, desired(revision=REV1).obj, now=NOW, marks=MARKS)
    assert t.grant is not None and not t.honoured


def test_a_grant_whose_expiry_has_no_timezone_is_not_honoured() -> None:
    """Fail closed, as the webhook does: a naive time is refused, never assumed to be UTC."""
    obj = live("mine", "absent", False)
    naive = BreakGlass("alice", "2026-03-01T11:59:00Z", "hotfix", REV1.sha, "2099-01-01T00:00:00")
    obj["metadata"]["annotations"][ANN_BREAK_GLASS_GRANTED] = sealed(naive.encode())
    t = trust(obj, desired(revision=REV1).obj, now=NOW, marks=MARKS)
    assert t.grant is not None and not t.honoured


@pytest.mark.parametrize("written", ["unsealed", "sealed for another object"])
def test_a_grant_on_my_object_written_around_the_webhook_is_not_believed(written: str) -> None:
    """Path 7 of the perimeter issue: a hand-written grant (2099, blaming someone else) on a managed object."""
    obj = live("mine", "absent", True)
    forged = grant_at(REV1.sha, LATER).encode()
    annotations = obj["metadata"]["annotations"]
    annotations[ANN_BREAK_GLASS_GRANTED] = forged if written == "unsealed" else sealed(forged, uid="elsewhere")
    annotations[ANN_DRIFT] = MARK.encode() if written == "unsealed" else sealed(MARK.encode(), uid="elsewhere")
    t = trust(obj, desired(revision=REV1).obj, now=NOW, marks=MARKS)
    assert (t.grant, t.drift_mark, t.honoured) == (None, None, False)


def test_ownership_reads_the_label_and_the_stamp() -> None:
    d = desired()
    assert ownership(live_of(d), MINE) is Ownership.MINE
    assert ownership(cm(), MINE) is Ownership.UNMANAGED
    assert ownership(live_of(d, labels={LABEL_MANAGED: "false"}), MINE) is Ownership.UNMANAGED
    assert ownership(live_of(d), "team-b/other") is Ownership.FOREIGN
    assert ownership(cm(annotations={ANN_APPLICATION: "team-b/other"}), MINE) is Ownership.FOREIGN


class TestAdoption:
    def test_an_object_driftguard_did_not_create_is_not_taken_over_without_its_owners_opt_in(self) -> None:
        p = plan(desired(revision=REV1), live("unmanaged", "valid", False), now=NOW, marks=MARKS)
        assert p.verdict is Verdict.UNADOPTED
        assert p.message == (
            "exists and driftguard did not create it: not taken over, not pruned. If Application "
            f"{MINE} should own it, its owner opts in: kubectl annotate configmap web -n prod {ANN_ADOPT}={MINE}")
        other = cm(annotations={ANN_ADOPT: "team-b/other"})
        p = plan(desired(), other, now=NOW, marks=MARKS)
        assert p.verdict is Verdict.UNADOPTED
        assert f"({ANN_ADOPT} names 'team-b/other', not this Application)" in p.message

    def test_a_forged_grant_on_an_unmanaged_object_is_not_honoured(self) -> None:
        d = desired(revision=REV1)
        p = plan(d, live("unmanaged, opted in", "valid", False), now=NOW, marks=MARKS)
        assert p.verdict is Verdict.UPDATE, "git's state is applied, not left alone"
        assert (p.break_glass, p.expires_at, p.clear) == (None, None, ())
        assert p.untrusted == (f"annotation:{ANN_ADOPT}", f"annotation:{ANN_BREAK_GLASS}",
                               f"annotation:{ANN_BREAK_GLASS_GRANTED}"), "the opt-in is consumed"

    def test_a_forged_stamp_and_grant_without_the_label_are_not_honoured(self) -> None:
        d = desired(revision=REV1)
        p = plan(d, live("unmanaged, forged stamp", "valid", True), now=NOW, marks=MARKS)
        assert p.verdict is Verdict.DRIFTED
        assert (p.break_glass, p.drift_mark) == (None, None), "the forged author is never reported"
        assert len(p.untrusted) == 3

    def test_a_forged_commit_stamp_is_not_reused(self) -> None:
        applied = desired(revision=REV1)
        forged = live_of(applied)
        del forged["metadata"]["labels"][LABEL_MANAGED]
        forged["metadata"]["annotations"][ANN_AUTHOR] = "victim@org"
        p = plan(desired(revision=REV2), forged, now=NOW, marks=MARKS)
        annotations = p.obj["metadata"]["annotations"]
        assert (annotations[ANN_COMMIT], annotations[ANN_AUTHOR]) == (REV2.sha, "bob@org")
        assert p.verdict is Verdict.UPDATE

    def test_other_driftguard_keys_and_labels_are_untrusted_too(self) -> None:
        obj = cm(labels={"driftguard.io/extra": "x", "app": "web"},
                 annotations={"driftguard.io/anything": "y", "note": "kept", ANN_APPLICATION: MINE})
        obj["metadata"]["resourceVersion"] = "7"
        p = plan(desired(), obj, now=NOW, marks=MARKS)
        assert p.untrusted == ("annotation:driftguard.io/anything", "label:driftguard.io/extra")
        assert describe_keys(p.untrusted) == "driftguard.io/anything, label driftguard.io/extra"
        assert clear_operations(obj, p.untrusted, resource_version="7") == [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "test", "path": "/metadata/annotations/driftguard.io~1anything", "value": "y"},
            {"op": "remove", "path": "/metadata/annotations/driftguard.io~1anything"},
            {"op": "test", "path": "/metadata/labels/driftguard.io~1extra", "value": "x"},
            {"op": "remove", "path": "/metadata/labels/driftguard.io~1extra"},
        ]

    def test_a_plain_object_opted_in_is_adopted_with_only_the_opt_in_to_remove(self) -> None:
        p = plan(desired(), cm(data={"color": "red"}, annotations={ANN_ADOPT: MINE}), now=NOW, marks=MARKS)
        assert (p.verdict, p.untrusted) == (Verdict.UPDATE, (f"annotation:{ANN_ADOPT}",))

    def test_after_adoption_a_grant_written_through_the_webhook_is_honoured(self) -> None:
        p = plan(desired(revision=REV1), live("mine", "valid", False), now=NOW, marks=MARKS)
        assert p.verdict is Verdict.BREAK_GLASS and p.untrusted == ()
