"""What the controller knows of each Application, and how results fold into it — purely.

``AppState`` is the per-Application record. A full cycle's ``Result`` (``absorb``), a self-heal outcome
(``heard``) and a cascading delete pass (``deleted``) fold into it here, and each fold *returns* the
Events it calls for instead of writing them: ``reconciler.reporting.Reporter`` is the only Event writer,
and ``status.compose`` derives the status from the record. Nothing here calls the cluster or reads a
clock (``new`` only logs an unreadable inventory): the caller passes ``now`` (monotonic, for scheduling)
and ``wall`` (UTC, for break-glass expiry).

The record's own lock (``AppState.lock``) guards it while folding and while status is composed and
written; the scheduling fields (``due``, ``running``, ``again``) belong to ``reconciler.schedule`` and its lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from driftguard import logs
from driftguard.core.changes import Action, ChangeSet
from driftguard.core.clock import parse_time
from driftguard.core.inventory import Inventory
from driftguard.core.objects import ObjectRef
from reconciler import deletion, standby
from reconciler.application import AppKey, AppSpec, parse_application
from reconciler.apply import DriftRecord, Outcome
from reconciler.health import Health
from reconciler.reconcile import Memory, Result
from reconciler.settings import Settings
from reconciler.status import DeletionReport, SyncReport, record_history

log = logging.getLogger(__name__)

REVERTED_KEPT: Final = 20
LISTED: Final = 20  # objects named in one Event message
ATTRIBUTION_WINDOW: Final = 120.0  # seconds between a drift and the audit record that names its user
REVISIT_MARGIN: Final = 0.1  # seconds after a break-glass grant expires before the full sync that follows it


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to write: about the Application (``about`` None) or about one of its objects."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    about: ObjectRef | None = None


@dataclass(eq=False)
class Operation:
    """A sync someone asked for (``POST /sync``): run by the next cycle, which sets ``report`` and ``done``."""

    initiator: str  # the authenticated user
    prune: bool = False
    dry_run: bool = False
    report: SyncReport | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class AppState:
    key: AppKey
    obj: dict[str, Any]
    spec: AppSpec
    status: dict[str, Any]
    memory: Memory = field(default_factory=Memory)
    report: SyncReport | None = None
    synced: tuple[str, tuple[tuple[str, str], ...], int] = ("", (), -1)  # (sha, refs, generation) of the last
    # good full sync
    attempted: tuple[str, tuple[tuple[str, str], ...], int] = ("", (), -1)  # ... of the last full sync at all
    drift: dict[ObjectRef, DriftRecord] = field(default_factory=dict)
    reverted: deque[DriftRecord] = field(default_factory=lambda: deque(maxlen=REVERTED_KEPT))
    health: dict[ObjectRef, tuple[Health, str]] = field(default_factory=dict)
    failures: int = 0
    force_full: bool = True
    next_full: float = 0.0
    due: float | None = None
    running: bool = False
    again: bool = False
    status_dirty: bool = False
    deletion: DeletionReport | None = None  # the last pass of a cascading delete
    delete_warning: str = ""  # the last DeleteFailed message recorded as an Event (not repeated per retry)
    history: list[dict[str, Any]] = field(default_factory=list)  # status.history, oldest first
    history_key: tuple[str, ...] | None = None  # what the newest entry this process recorded was about
    operation: Operation | None = None  # an on-demand sync waiting for the next cycle
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def new(cls, obj: dict[str, Any]) -> AppState:
        """The record of an Application first seen (now, or again after a restart or a new term)."""
        state = cls(AppKey.of(obj), obj, parse_application(obj), dict(obj.get("status") or {}))
        history = state.status.get("history")
        state.history = [dict(h) for h in history if isinstance(h, dict)] if isinstance(history, list) else []
        try:
            state.memory.inventory = Inventory.from_list(state.status.get("inventory"))
        except (KeyError, ValueError, TypeError) as e:
            log.warning("Application %s: unreadable status.inventory (%s); starting empty, nothing will be pruned",
                        state.key, e, extra=logs.ctx(application=str(state.key)))
        return state

    def seen(self, obj: dict[str, Any]) -> bool:
        """Take the Application's new version; whether it calls for a full sync now (spec changed,
        refresh asked, deletion started)."""
        spec, before = parse_application(obj), self.obj
        self.obj = obj
        if spec == self.spec and not standby.asked(before, obj) and (
                deletion.being_deleted(before) == deletion.being_deleted(obj)):
            return False
        self.spec, self.force_full = spec, True
        return True

    def absorb(self, result: Result, settings: Settings, *, now: float, wall: dt.datetime) -> list[Event]:
        """Fold a full cycle's result in (a failed cycle keeps what was known); the objects' Events.
        Hold ``lock``."""
        report = self.report = result.report
        if self.spec.automated or report.initiator:  # a sync: the reconciler's own, or one someone asked for
            self.history, self.history_key = record_history(self.history, report, limit=self.spec.history_limit,
                                                            last=self.history_key)
        if report.revision is not None:
            key = (report.revision.sha, report.revision.refs, self.spec.generation)
            if key != self.attempted:  # a new revision or spec: its retries count from the start
                self.failures = 0
            self.attempted = key
        if report.problem is not None:
            return []
        assert report.revision is not None
        self.synced = (report.revision.sha, report.revision.refs, self.spec.generation)
        wanted = {d.ref for d in result.desired}
        self.drift = {r: d for r, d in self.drift.items() if r in wanted}
        self.health = {r: h for r, h in self.health.items() if r in wanted}
        events = [event for outcome in result.outcomes for event in self.note(outcome, settings)]
        self.next_full = now + settings.resync_interval
        for outcome in result.outcomes:
            self.revisit(outcome, now=now, wall=wall)
        return events

    def heard(self, outcome: Outcome, settings: Settings, *, now: float, wall: dt.datetime) -> list[Event] | None:
        """Fold a self-heal outcome in; None when it tells nothing new (nothing to write). Hold ``lock``."""
        ref = outcome.ref
        quiet = outcome.health[0] is Health.HEALTHY and ref not in self.health
        if outcome.change.action is Action.UNCHANGED and ref not in self.drift and (
                quiet or self.health.get(ref) == outcome.health):
            return None
        events = self.note(outcome, settings)
        self.revisit(outcome, now=now, wall=wall)
        self.status_dirty = True
        return events

    def note(self, outcome: Outcome, settings: Settings) -> list[Event]:
        """Record one object's outcome (from a full cycle or self-heal); the Events it calls for."""
        ref, events = outcome.ref, list[Event]()
        if outcome.health[0] is Health.HEALTHY:
            self.health.pop(ref, None)
        elif outcome.change.action is not Action.FAILED:
            self.health[ref] = outcome.health
        drift = outcome.drift
        if drift is None:
            if outcome.change.action is not Action.FAILED:
                self.drift.pop(ref, None)
        elif drift.state == "Reverted":
            self.drift.pop(ref, None)
            self.reverted.append(drift)
            events.append(Event("Normal", "DriftReverted", outcome.change.message, about=ref))
        else:
            self.drift[ref] = drift
        if outcome.untrusted:  # an adopted object carried driftguard.io/ keys the webhook never saw
            events.append(Event("Warning", "UntrustedMetadataRemoved", str(outcome.change)))
        if outcome.fight:
            message = (f"{ref} was changed back {settings.fight_limit}+ times in "
                       f"{settings.fight_window:.0f}s; self-heal backs off")
            events += [Event("Warning", "FightDetected", message, about=ref),
                       Event("Warning", "FightDetected", message)]
        return events

    def attribute(self, obj: str, fields: tuple[str, ...], user: str, at: str) -> bool:
        """Name ``user`` (from the webhook's audit record of a warn-mode change of ``obj``'s ``fields`` at ``at``)
        as the author of the drift records of ``obj`` that name no user and share a field, within
        ``ATTRIBUTION_WINDOW`` of it; whether any changed. Hold ``lock``."""
        if not user or not fields:
            return False

        def matches(d: DriftRecord) -> bool:
            return (not d.by and str(d.ref) == obj and bool(set(d.fields) & set(fields))
                    and _near(d.at, at, ATTRIBUTION_WINDOW))
        changed = False
        for ref, d in list(self.drift.items()):
            if matches(d):
                self.drift[ref], changed = dataclasses.replace(d, by=user), True
        for i, d in enumerate(self.reverted):
            if matches(d):
                self.reverted[i], changed = dataclasses.replace(d, by=user), True
        return changed

    def revisit(self, outcome: Outcome, *, now: float, wall: dt.datetime) -> None:
        """Make the next full sync happen when a break-glass grant seen in ``outcome`` expires."""
        if outcome.expires_at is None:
            return
        left = (outcome.expires_at - wall).total_seconds()
        self.next_full = min(self.next_full, now + max(0.0, left) + REVISIT_MARGIN)

    def deleted(self, changes: ChangeSet, finalizers: tuple[str, ...]) -> list[Event]:
        """Fold one pass of a cascading delete in; its Events (a repeated failure is reported once)."""
        self.deletion = DeletionReport(finalizers, changes)
        events = []
        gone = [str(c.ref) for c in changes.changes if c.action is Action.DELETED]
        if gone:
            events.append(Event("Normal", "PrunedOnDelete", f"deleted {', '.join(gone[:LISTED])}"))
        failed = changes.failed()
        message = "; ".join(str(c) for c in failed[:LISTED]) + "; retrying" if failed else ""
        if message and message != self.delete_warning:
            events.append(Event("Warning", "DeleteFailed", message))
        if message:
            self.delete_warning = message
        return events


def _near(a: str, b: str, seconds: float) -> bool:
    try:
        return abs((parse_time(a) - parse_time(b)).total_seconds()) <= seconds
    except ValueError:
        return False


def failed(report: SyncReport) -> bool:
    """Whether a full cycle failed (and is retried with backoff)."""
    return report.failed


def sync_events(report: SyncReport, before: dict[str, Any], after: dict[str, Any]) -> list[Event]:
    """The Application's Events for a full cycle: what it wrote and pruned, and a change of its Ready
    condition (``before``/``after``: the condition, ``{}`` when absent)."""
    short = report.revision.short if report.revision else "?"
    if report.revision is not None and report.revision.verified_by:  # and the verified signer
        short = f"{short} signed by {report.revision.verified_by}"
    if report.project:  # Events name the Project that bounded the sync
        short = f"{short} (Project {report.project})"
    events = []
    if report.applied.writes():
        events.append(Event("Normal", "Synced", f"{short}: {report.applied.summary()}"))
    if report.hooks_ran:
        for run in report.hooks:
            events.append(Event("Warning" if run.result == "Failed" else "Normal", f"Hook{run.result}",
                                f"{short}: {run.what}: {run.message}"))
    deleted = [str(c.ref) for c in report.pruned.changes if c.action is Action.DELETED]
    if deleted:
        events.append(Event("Normal", "Pruned", f"{short}: deleted {', '.join(deleted[:LISTED])}"))
    moved = (before.get("status"), before.get("reason")) != (after.get("status"), after.get("reason"))
    if moved and after.get("status") == "False":
        events.append(Event("Warning", str(after.get("reason")), str(after.get("message"))))
    elif moved and after.get("status") == "True" and before:
        events.append(Event("Normal", "Recovered", str(after.get("message"))))
    return events


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == type_), {})

