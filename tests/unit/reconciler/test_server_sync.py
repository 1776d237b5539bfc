"""POST /sync's answer: what a sync did, and a dry run's compare said as what the sync would do."""

from __future__ import annotations

from support.reconciler_builders import NOW, REV1

from driftguard.core.changes import Action, Change, ChangeSet
from driftguard.core.objects import ObjectRef
from reconciler.application import AppKey
from reconciler.record import Operation
from reconciler.server import sync_result
from reconciler.status import SyncReport

A = ObjectRef("", "ConfigMap", "prod", "a")
CHANGES = ChangeSet([Change(A, Action.SKIPPED, "missing (automated sync is off)"),
                     Change(A, Action.SKIPPED, "out of sync with git (automated sync is off)"),
                     Change(A, Action.SKIPPED, "drifted from git: data.k, data.j (selfHeal is off)"),
                     Change(A, Action.SKIPPED, "being deleted; will be re-created when gone"),
                     Change(A, Action.UNCHANGED)])


def answer(dry_run: bool) -> dict[str, object]:
    operation = Operation("carol", dry_run=dry_run)
    operation.report = SyncReport(target="main", started=NOW, duration=0.1, revision=REV1, applied=CHANGES)
    return sync_result(AppKey("ns", "app"), operation)


def test_a_dry_run_says_what_the_sync_would_do() -> None:
    assert answer(True)["changes"] == [
        "ConfigMap prod/a would be created", "ConfigMap prod/a would be configured",
        "ConfigMap prod/a would be reverted: data.k, data.j",
        "ConfigMap prod/a skipped: being deleted; will be re-created when gone"]  # unchanged ones are not listed


def test_a_sync_says_what_it_did() -> None:
    result = answer(False)
    assert result["changes"][0] == "ConfigMap prod/a skipped: missing (automated sync is off)"  # type: ignore[index]
    assert (result["initiator"], result["result"], result["revision"]) == ("carol", "Succeeded", REV1.sha)
