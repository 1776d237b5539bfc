"""An Application's status, computed (purely) from the last sync and what self-heal has seen since.

The status says what happened in words a person reads: the synced revision (and who committed it),
``sync`` Synced / OutOfSync / Error, ``health`` from the cluster's own reports, conditions (each with
a reason and a message naming objects), the drift list (object, fields, who changed them when the
webhook's mark or the field managers say), last sync time and duration, and the inventory.

Conditions keep their ``lastTransitionTime`` while their status does not change, so an unchanged
Application produces an unchanged status — and the controller writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from driftguard.core.changes import Action, Change, ChangeSet
from driftguard.core.clock import format_time
from driftguard.core.inventory import Inventory
from driftguard.core.objects import ObjectRef
from reconciler.application import AppSpec, format_duration
from reconciler.apply import DriftRecord
from reconciler.fights import Fight
from reconciler.health import Health, worst
from reconciler.hooks import HookRun
from reconciler.revision import Revision

SyncState = Literal["Synced", "OutOfSync", "Error", "Unknown"]
ConditionStatus = Literal["True", "False", "Unknown"]
LISTED: Final = 5  # objects named in one condition message
DRIFT_LIMIT: Final = 50
UNKNOWN_USER: Final = "unknown"  # drift whose author no sealed mark names
AUTOMATED: Final = "automated"  # status.history's initiator of the reconciler's own syncs
STAGES: Final = ("SourceReady", "SourceVerified", "RenderReady", "Applied", "Pruned")
CONDITION_TYPES: Final = ("Ready", "SpecValid", "ProjectPermitted", *STAGES, "Fighting", "Deleting")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a cycle stopped before applying anything."""

    condition: Literal["SpecValid", "ProjectPermitted", "SourceReady", "SourceVerified", "RenderReady", "Applied"]
    reason: str
    message: str


@dataclass(slots=True)
class SyncReport:
    """What one full sync cycle found and did."""

    target: str
    started: dt.datetime
    duration: float
    revision: Revision | None = None
    problem: Problem | None = None
    applied: ChangeSet = field(default_factory=ChangeSet)
    pruned: ChangeSet = field(default_factory=ChangeSet)
    rendered: int = 0
    renderer: str = ""  # which renderer produced the revision ("plain", "kustomize v5.8.1", ...)
    pending_prune: tuple[ObjectRef, ...] = ()  # stale, kept because prune is off
    out_of_sync: tuple[str, ...] = ()  # objects git and the cluster disagree on, other than drift
    project: str = ""  # the Project that bounded this sync ("default (built in)" for the built-in one)
    refused: tuple[tuple[ObjectRef, str], ...] = ()  # declared objects the project does not permit, and why
    initiator: str = ""  # who asked for this sync on demand ("": the reconciler's own, automated)
    actor: str = ""  # the ServiceAccount the sync applied as ("namespace/name"; "": the reconciler itself)
    hooks: tuple[HookRun, ...] = ()  # the hooks of the last sync that ran any (reconciler.hooks)
    hooks_ran: bool = False  # whether this sync ran them
    attempt: int = 1  # of this revision and spec: 1, then each retry of a failed sync
    verification: str = ""  # the spec.verify in force (``Policy.described``); "": none, no SourceVerified condition

    @property
    def changes(self) -> ChangeSet:
        return ChangeSet(self.applied.changes + self.pruned.changes)

    def failures(self) -> list[Change]:
        return self.changes.failed()

    @property
    def failed(self) -> bool:
        """Whether the cycle is retried: it stopped, a write failed, or the project refused objects."""
        return self.problem is not None or bool(self.failures()) or bool(self.refused)


@dataclass(frozen=True, slots=True)
class DeletionReport:
    """The last pass of a cascading delete: the Application is being deleted and carries ``finalizers``."""

    finalizers: tuple[str, ...]
    deleted: ChangeSet  # that pass's outcomes (deleted, skipped, failed — failed ones stay in the inventory)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the status is computed from."""

    spec: AppSpec
    report: SyncReport | None
    inventory: Inventory
    drift: Sequence[DriftRecord] = ()  # current (unresolved, break-glass, backed off) and recent reverts
    health: Mapping[ObjectRef, tuple[Health, str]] = field(default_factory=dict)  # non-healthy objects
    fights: Sequence[Fight] = ()
    deletion: DeletionReport | None = None  # set while a cascading delete is under way
    history: Sequence[Mapping[str, Any]] = ()  # status.history, oldest first


def compose(snapshot: Snapshot, previous: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The full ``status`` of the Application."""
    spec, report = snapshot.spec, snapshot.report
    state = sync_state(snapshot)
    status: dict[str, Any] = {
        "observedGeneration": spec.generation,
        "sync": _sync(spec, report, state, previous.get("sync") or {}),
        "health": _health(snapshot),
        "conditions": _conditions(snapshot, state, previous.get("conditions") or [], now),
        "drift": [_drift(d) for d in _drift_list(snapshot.drift)],
        "inventoryCount": len(snapshot.inventory),
        "inventory": snapshot.inventory.to_list(),
        "history": [dict(h) for h in snapshot.history],
    }
    if report is not None:
        status["lastSyncTime"] = format_time(report.started)
        status["lastSyncDuration"] = format_duration(report.duration)
        status["lastSyncResult"] = {**{a.value: n for a, n in report.changes.counts().items()},
                                    "summary": report.changes.summary()}
    if report is not None and report.hooks:
        status["hooks"] = [h.to_status() for h in report.hooks]
    if report is not None and report.failed and spec.retry is not None:
        status["retry"] = _retry(spec, report.attempt)
    return status


def _retry(spec: AppSpec, attempt: int) -> dict[str, Any]:
    """``syncPolicy.retry``: which attempt failed, and what happens next."""
    assert spec.retry is not None
    limit = spec.retry.limit
    out: dict[str, Any] = {"attempt": attempt, "limit": limit}
    if spec.retry.exhausted(attempt):
        out["message"] = (f"attempt {attempt} failed; no retries left (limit {limit}): synced again when the "
                          "revision or the spec changes, or on a refresh")
    else:
        out["message"] = f"attempt {attempt} failed; retrying in {spec.retry.delay(attempt):g}s"
    return out


def sync_state(snapshot: Snapshot) -> SyncState:
    report = snapshot.report
    if snapshot.spec.problems:
        return "Error"
    if report is None:
        return "Unknown"
    if report.failed:
        return "Error"
    if report.pending_prune or report.out_of_sync or any(d.state != "Reverted" for d in snapshot.drift):
        return "OutOfSync"
    return "Synced"


def _sync(spec: AppSpec, report: SyncReport | None, state: SyncState, previous: Mapping[str, Any]) -> dict[str, Any]:
    """The sync state and the revision last compared; a cycle that could not resolve one (the fetch failed)
    keeps the previous revision's fields, as Argo CD does, rather than show none."""
    out: dict[str, Any] = {"status": state, "targetRevision": spec.source.target_revision}
    if report is not None and report.revision is None:
        out.update({k: v for k, v in previous.items() if k in _REVISION_FIELDS})
    if report is not None and report.revision is not None:
        revision = report.revision
        out.update(revision=revision.sha, shortRevision=revision.short, author=revision.author,
                   committedAt=revision.committed_at, message=revision.subject[:200])
    if report is not None and report.renderer:
        out["renderedBy"] = report.renderer
    if report is not None and report.actor:
        out["appliedAs"] = report.actor
    if report is not None and report.revision is not None and report.revision.verified_by:
        out["verifiedBy"] = report.revision.verified_by
    if report is not None and report.revision is not None and report.revision.refs:
        out["refs"] = dict(report.revision.refs)
    return out


_REVISION_FIELDS: Final = ("revision", "shortRevision", "author", "committedAt", "message", "renderedBy", "refs",
                           "verifiedBy")


def _health(snapshot: Snapshot) -> dict[str, str]:
    """The worst health of the declared objects (Argo CD's order), never Healthy for what is not there: an
    object whose create failed or that the project refused is Missing, and so is an Application whose failed
    sync left nothing applied."""
    report = snapshot.report
    if report is None:
        return {"status": Health.UNKNOWN.value, "message": "not synced yet"}
    inventory = snapshot.inventory
    if not len(inventory) and report.problem is not None:
        return {"status": Health.MISSING.value, "message": f"nothing applied: {report.problem.reason}"}
    present = inventory.refs()
    states = dict(snapshot.health)
    for change in report.applied.failed():
        if change.ref not in present:
            states[change.ref] = (Health.MISSING, f"not created: {change.message}" if change.message else "not created")
    for ref, why in report.refused:
        if ref not in present:
            states[ref] = (Health.MISSING, f"not created: {why}")
    if not states:
        count = len(inventory)
        return {"status": Health.HEALTHY.value, "message": f"{count} objects healthy" if count else "no objects"}
    state = worst(h for h, _ in states.values())
    named = sorted((ref, why) for ref, (h, why) in states.items() if h is state)
    message = "; ".join(f"{ref}: {why}" if why else str(ref) for ref, why in named[:LISTED])
    return {"status": state.value, "message": message + _more(len(named))}


def _drift_list(drift: Sequence[DriftRecord]) -> list[DriftRecord]:
    current = [d for d in drift if d.state != "Reverted"]
    reverted = sorted((d for d in drift if d.state == "Reverted"), key=lambda d: d.at, reverse=True)
    return sorted(current, key=lambda d: d.ref)[:DRIFT_LIMIT] + reverted[: max(0, DRIFT_LIMIT - len(current))]


def _drift(d: DriftRecord) -> dict[str, Any]:
    """One drift entry: ``by`` is the user from the webhook's sealed drift mark or its audit record of the change
    (``AppState.attribute``: a warn-mode ``scale``), else ``unknown`` (a change made while the webhook was off);
    ``manager`` is the field manager that owns the drifted
    fields now (never merely the last writer of the object)."""
    out: dict[str, Any] = {"object": str(d.ref), "fields": list(d.fields), "state": d.state, "at": d.at,
                           "by": d.by or UNKNOWN_USER}
    if d.manager:
        out["manager"] = d.manager
    return out


# ---------------------------------------------------------------- conditions

Condition = tuple[ConditionStatus, str, str]  # status, reason, message


def _conditions(
    snapshot: Snapshot, state: SyncState, previous: Sequence[Mapping[str, Any]], now: dt.datetime
) -> list[dict[str, str]]:
    found = {
        "Ready": _ready(snapshot, state),
        "SpecValid": _spec_valid(snapshot.spec),
        **_project(snapshot),
        **_stages(snapshot),
        "Fighting": _fighting(snapshot.fights),
    }
    if snapshot.deletion is not None:
        _, reason, message = found["Deleting"] = _deleting(snapshot.deletion, len(snapshot.inventory))
        found["Ready"] = ("False", reason, message)
    before = {str(c.get("type")): c for c in previous}
    out = []
    for type_ in CONDITION_TYPES:
        if type_ not in found:
            continue
        status, reason, message = found[type_]
        old = before.get(type_) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append({"type": type_, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": str(since or format_time(now))})
    return out


def _ready(snapshot: Snapshot, state: SyncState) -> Condition:
    report = snapshot.report
    if state == "Synced":
        assert report is not None and report.revision is not None
        return "True", "Synced", f"in sync with {report.revision.short} ({len(snapshot.inventory)} objects)"
    if state == "Unknown":
        return "Unknown", "Pending", "not synced yet"
    if snapshot.spec.problems:
        return "False", "InvalidSpec", "; ".join(snapshot.spec.problems)
    assert report is not None
    if report.problem is not None:
        return "False", report.problem.reason, report.problem.message
    if report.refused:
        return "False", "ProjectViolation", _refused(report)
    if report.failures():
        return "False", "ApplyFailed", _list(report.failures())
    return "False", "OutOfSync", _out_of_sync_message(snapshot)


def _out_of_sync_message(snapshot: Snapshot) -> str:
    report = snapshot.report
    assert report is not None
    parts = [f"{d.ref}: {d.message or ', '.join(d.fields)}" for d in snapshot.drift if d.state != "Reverted"]
    parts += list(report.out_of_sync)
    if report.pending_prune:
        parts.append(f"{len(report.pending_prune)} object(s) no longer in git, kept because prune is off")
    return "; ".join(parts[:LISTED]) + _more(len(parts))


def _spec_valid(spec: AppSpec) -> Condition:
    if spec.problems:
        return "False", "InvalidSpec", "; ".join(spec.problems)
    if spec.warnings:
        return "True", "ValidWithWarnings", "; ".join(spec.warnings)
    return "True", "Valid", "spec is valid"


def _project(snapshot: Snapshot) -> dict[str, Condition]:
    """ProjectPermitted: whether the project lets this Application sync, and what it refused."""
    report = snapshot.report
    if report is None or snapshot.spec.problems:
        return {}
    problem = report.problem
    if problem is not None and problem.condition == "ProjectPermitted":
        return {"ProjectPermitted": ("False", problem.reason, problem.message)}
    if not report.project:
        return {}
    if report.refused:
        return {"ProjectPermitted": ("False", "ProjectViolation", _refused(report))}
    applied_as = f"; applied as ServiceAccount {report.actor}" if report.actor else ""
    return {"ProjectPermitted": ("True", "Permitted",
                                 f"Project {report.project} permits every declared object{applied_as}")}


def _refused(report: SyncReport) -> str:
    named = "; ".join(f"{ref}: {why}" for ref, why in report.refused[:LISTED]) + _more(len(report.refused))
    return f"not applied or pruned, the project does not permit them: {named}"


def _stages(snapshot: Snapshot) -> dict[str, Condition]:
    """SourceReady, RenderReady, Applied, Pruned — up to the stage where the cycle stopped."""
    report = snapshot.report
    if report is None or snapshot.spec.problems:
        return {}
    if report.problem is not None and report.problem.condition == "ProjectPermitted":
        return {}
    problem = report.problem
    out: dict[str, Condition] = {}
    for stage in STAGES:
        if problem is not None and problem.condition == stage:
            out[stage] = ("False", problem.reason, problem.message)
            return out
        if stage == "SourceVerified" and not report.verification:
            continue
        out[stage] = _stage_done(stage, report)
    return out


def _stage_done(stage: str, report: SyncReport) -> Condition:
    revision = report.revision
    if stage == "SourceReady":
        assert revision is not None
        return "True", "Fetched", f"{report.target} is {revision.short} by {revision.author}"
    if stage == "SourceVerified":
        assert revision is not None
        return "True", "Verified", f"{revision.short} signed by {revision.verified_by}; {report.verification}"
    if stage == "RenderReady":
        return "True", "Rendered", f"{report.rendered} objects"
    if stage == "Applied":
        failed = report.applied.failed()
        return ("False", "ApplyFailed", _list(failed)) if failed else ("True", "Applied", report.applied.summary())
    if report.pruned.failed():
        return "False", "PruneFailed", _list(report.pruned.failed())
    if report.pending_prune:
        return "False", "PruneDisabled", "no longer in git, kept because prune is off: " + _refs(report.pending_prune)
    deleted = [c.ref for c in report.pruned.changes if c.action is Action.DELETED]
    return "True", "Pruned", f"deleted {_refs(deleted)}" if deleted else "nothing to prune"


def _fighting(fights: Sequence[Fight]) -> Condition:
    if not fights:
        return "False", "NoFight", "no object is being changed back and forth"
    named = ", ".join(f"{f.ref} (fight #{f.fights})" for f in fights[:LISTED])
    return "True", "FightDetected", f"another writer keeps changing {named}{_more(len(fights))}; self-heal backs off"


def _deleting(report: DeletionReport, left: int) -> Condition:
    finalizer = ", ".join(report.finalizers)
    failed = report.deleted.failed()
    if failed:
        return ("True", "DeleteFailed", f"{_list(failed)}; retrying — finalizer {finalizer} "
                f"stays until the inventory is empty ({left} left)")
    return "True", "Deleting", (f"deleting the Application's objects (finalizer {finalizer}); "
                                f"{left} left in the inventory")


def _list(changes: Sequence[Change]) -> str:
    return "; ".join(str(c) for c in changes[:LISTED]) + _more(len(changes)) + _rbac_hint(changes)


APP_OF_APPS_ROLE: Final = "driftguard-reconciler-app-of-apps"
_APP_OF_APPS_KINDS: Final = frozenset({"Application", "Project"})


def _rbac_hint(changes: Sequence[Change]) -> str:
    """The fix for an app of apps the reconciler may not write: its opt-in ClusterRole."""
    if not any(c.ref.group == "driftguard.io" and c.ref.kind in _APP_OF_APPS_KINDS
               and "forbidden" in c.message.lower() for c in changes):
        return ""
    return (f" — Applications and Projects in git (app of apps) need the reconciler's opt-in ClusterRole: kubectl "
            f"label clusterrole {APP_OF_APPS_ROLE} driftguard.io/aggregate-to-reconciler=true")


def _refs(refs: Sequence[ObjectRef]) -> str:
    return ", ".join(str(r) for r in refs[:LISTED]) + _more(len(refs))


def _more(count: int) -> str:
    return f" (and {count - LISTED} more)" if count > LISTED else ""


# ---------------------------------------------------------------- history

def history_entry(report: SyncReport, *, id_: int) -> dict[str, Any]:
    """One ``status.history`` entry: a sync that applied (or tried to apply) a revision."""
    revision = report.revision
    finished = report.started + dt.timedelta(seconds=report.duration)
    if report.problem is not None:
        message = report.problem.message
    elif report.refused:
        message = _refused(report)
    elif report.failures():
        message = _list(report.failures())
    else:
        message = report.changes.summary()
    entry: dict[str, Any] = {
        "id": id_,
        "revision": revision.sha if revision else "",
        "author": revision.author if revision else "",
        "commitTime": revision.committed_at if revision else "",
        "startedAt": format_time(report.started),
        "finishedAt": format_time(finished),
        "result": "Failed" if report.failed else "Succeeded",
        "initiator": report.initiator or AUTOMATED,
        "message": message[:300],
    }
    if revision is not None and revision.verified_by:
        entry["verifiedBy"] = revision.verified_by
    return entry


def record_history(history: Sequence[Mapping[str, Any]], report: SyncReport, *, limit: int,
                   last: tuple[str, ...] | None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """``history`` with ``report`` recorded, at most ``limit`` entries (the oldest go first), and the key of what
    was recorded. A sync someone asked for is always recorded; the reconciler's own is recorded only when it
    differs (revision, result) from ``last`` — a resync or a retry of the same failure is not a new
    deployment. ``last`` None: nothing recorded by this process yet (the key of the newest entry is taken)."""
    revision = report.revision.sha if report.revision else ""
    result = "Failed" if report.failed else "Succeeded"
    entries = [dict(h) for h in history]
    key = (revision, result, report.initiator or AUTOMATED)
    if last is None and entries:
        newest = entries[-1]
        last = (str(newest.get("revision", "")), str(newest.get("result", "")), str(newest.get("initiator", "")))
    if not report.initiator and key == last:
        return entries[-limit:] if limit else [], key
    next_id = max((int(h.get("id") or 0) for h in entries), default=-1) + 1
    entries.append(history_entry(report, id_=next_id))
    return (entries[-limit:] if limit else []), key


def patch_for(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch (RFC 7386) turning status ``previous`` into ``current`` (empty: nothing to write).
    Nested maps are diffed too, so a key gone from one (a counter of ``lastSyncResult``, ``sync.renderedBy``)
    is removed, not kept by the merge; lists are replaced whole, as merge patches replace them."""
    patch: dict[str, Any] = {}
    for key, value in current.items():
        before = previous.get(key)
        if before == value:
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = patch_for(before, value)
        else:
            patch[key] = value
    patch.update({k: None for k in previous if k not in current})
    return patch
