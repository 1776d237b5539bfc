"""Carry out plans against the cluster: per object, and for a whole desired set in apply order.

Per object (``Applier.sync``): plan (pure) → only when the plan says something differs, server-side
apply as a dry run → compare with live → apply for real only if the result differs → remove the
webhook's marks that no longer hold (JSON patch: SSA cannot remove another manager's fields). When
adopting an object driftguard did not manage, the ``driftguard.io/`` keys found on it (never seen by the
webhook, so not trusted) are removed by the same JSON patch *first*, guarded by resourceVersion, and git's
state is applied at exactly the version that patch produced: there is never a moment when the object is
managed and still carries a forged mark. The
periodic sync and the watch-driven self-heal both go through it, one object at a time (striped
locks), so they never interleave on an object.

For a desired set (``Applier.sync_all``): ranks in order (CRDs first, waiting until Established and
served; webhook configurations last), objects within a rank concurrently. Live objects are read per
(kind, namespace) with one paginated list when there are many, so a no-op resync of thousands of
objects costs a handful of requests and no writes. One object failing never stops the others.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal

from driftguard import logs
from driftguard.core import ordering, phases
from driftguard.core.changes import Action, Change
from driftguard.core.clock import format_time
from driftguard.core.contract import ANN_ADOPT, ANN_APPLICATION, ContractError, annotations_of, read_stamp
from driftguard.core.inventory import Entry
from driftguard.core.marks import Marks
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import CRDS, Cluster, ResourceError, ResourceType
from reconciler import health, leftovers
from reconciler.desired import Desired
from reconciler.fights import FightDetector
from reconciler.plan import Plan, Verdict, clear_operations, describe_keys, plan, same_object
from reconciler.writers import field_owners

log = logging.getLogger(__name__)

LIST_THRESHOLD: Final = 8  # from this many objects of one kind in one namespace, list instead of get
CRD_TIMEOUT: Final = 30.0
RECREATE_TIMEOUT: Final = 30.0
OPT_IN: Final = f"annotation:{ANN_ADOPT}"

DriftState = Literal["Reverted", "Unresolved", "BreakGlass", "BackedOff"]


@dataclass(frozen=True, slots=True)
class DriftRecord:
    """Someone changed declared fields of a managed object; what driftguard did about it."""

    ref: ObjectRef
    fields: tuple[str, ...]
    by: str  # the user, from the webhook's drift mark ("" when unknown)
    manager: str  # the field manager that last wrote the object
    at: str
    state: DriftState
    message: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    change: Change
    health: tuple[health.Health, str] = (health.Health.HEALTHY, "")
    drift: DriftRecord | None = None
    expires_at: dt.datetime | None = None  # a break-glass to revisit then
    fight: bool = False  # this revert started a fight
    untrusted: tuple[str, ...] = ()  # driftguard.io/ keys removed from an adopted object (not trusted)

    @property
    def ref(self) -> ObjectRef:
        return self.change.ref


@dataclass(frozen=True, slots=True)
class Mode:
    apply: bool = True  # automated sync (otherwise: report only)
    self_heal: bool = True  # revert drift of declared fields


def _author(p: Plan, live: dict[str, Any] | None) -> str:
    """Who made a drift, as a revert message says it: the sealed mark's user, else the managers owning the
    drifted fields with the user unknown — never a manager that merely wrote something else."""
    if p.drift_mark and p.drift_mark.user:
        return f"changed by {p.drift_mark.user}"
    owners = field_owners(live, (d.path for d in p.drifts))
    return f"changed by an unknown user, field manager {owners}" if owners else "changed by an unknown user"


class StripedLock:
    """One lock per object, from a fixed pool (objects hash onto ``size`` locks)."""

    def __init__(self, size: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(size)]

    def __call__(self, ref: ObjectRef) -> threading.Lock:
        return self._locks[hash(ref) % len(self._locks)]


class Applier:
    def __init__(
        self, cluster: Cluster, *, fights: FightDetector | None = None, concurrency: int = 4,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC), marks: Marks | None = None,
    ) -> None:
        self.cluster = cluster
        self.marks = marks or Marks.unkeyed()  # unkeyed: no break-glass grant or drift mark is believed
        self.fights = fights or FightDetector()
        self.concurrency = max(1, concurrency)
        self.lock = StripedLock()
        self._clock = clock

    def acting_as(self, cluster: Cluster) -> Applier:
        """This applier (same locks, fight detector and marks) writing and reading through ``cluster``: an
        Application's objects go out as its ServiceAccount (``Cluster.acting_as``)."""
        view = copy.copy(self)
        view.cluster = cluster
        return view

    # ------------------------------------------------------------ one object

    def sync(self, desired: Desired, live: dict[str, Any] | None, mode: Mode, *, refetch: bool = False) -> Outcome:
        """Bring one object to git's state (as far as ``mode`` allows); never raises."""
        with self.lock(desired.ref):
            return self._sync_locked(desired, live, mode, refetch)

    def sync_if(
        self, still: Callable[[], bool], desired: Desired, live: dict[str, Any] | None, mode: Mode, *,
        refetch: bool = False,
    ) -> Outcome | None:
        """``sync``, if ``still()`` holds once this object's lock is held (None otherwise): self-heal asks
        whether the object is still its Application's, so a heal racing the cascading delete of that
        Application can never re-create what the delete removed (prune takes the same lock)."""
        with self.lock(desired.ref):
            return self._sync_locked(desired, live, mode, refetch) if still() else None

    def _sync_locked(self, desired: Desired, live: dict[str, Any] | None, mode: Mode, refetch: bool) -> Outcome:
        try:
            if refetch:
                live = self.cluster.get(self._rt(desired), desired.ref.namespace, desired.ref.name)
            return self._sync(desired, live, mode, plan(desired, live, now=self._clock(), marks=self.marks))
        except ResourceError as e:
            return Outcome(Change(desired.ref, Action.FAILED, e.message if e.subject == str(desired.ref)
                                  else str(e)))

    def _sync(self, desired: Desired, live: dict[str, Any] | None, mode: Mode, p: Plan) -> Outcome:
        ref = desired.ref
        match p.verdict:
            case Verdict.INVALID | Verdict.FOREIGN | Verdict.UNADOPTED:
                return Outcome(Change(ref, Action.FAILED, p.message))
            case Verdict.TERMINATING:
                return Outcome(Change(ref, Action.SKIPPED, p.message))
            case Verdict.BREAK_GLASS:
                record = self._record(p, live, "BreakGlass", p.message) if p.drifts else None
                return Outcome(Change(ref, Action.SKIPPED, p.message), _assess(live), record, p.expires_at)
            case Verdict.UNCHANGED:
                if p.clear and mode.apply and live is not None:
                    self._clear(desired, live, p)
                    return Outcome(Change(ref, Action.CONFIGURED, "removed stale marks " + ", ".join(p.clear)),
                                   _assess(live))
                return Outcome(Change(ref, Action.UNCHANGED), _assess(live))
            case Verdict.CREATE:
                if not mode.apply:
                    return Outcome(Change(ref, Action.SKIPPED, "missing (automated sync is off)"),
                                   (health.Health.MISSING, "not created"))
                rt = self._rt(desired)
                after = self.cluster.create(rt, p.obj) if desired.traits.replace else self.cluster.apply(p.obj, rt=rt)
                return Outcome(Change(ref, Action.CREATED), _assess(after))
            case Verdict.UPDATE:
                if not mode.apply:
                    return Outcome(Change(ref, Action.SKIPPED, "out of sync with git (automated sync is off)"),
                                   _assess(live))
                return self._update(desired, live, p, "")
            case Verdict.DRIFTED:
                return self._heal(desired, live, mode, p)
        raise AssertionError(p.verdict)

    def _heal(self, desired: Desired, live: dict[str, Any] | None, mode: Mode, p: Plan) -> Outcome:
        fields = ", ".join(p.drift_fields)
        if not (mode.apply and mode.self_heal):
            message = f"drifted from git: {fields} (selfHeal is off)"
            return Outcome(Change(desired.ref, Action.SKIPPED, message), _assess(live),
                           self._record(p, live, "Unresolved", message))
        if not self.fights.allow(desired.ref):
            message = f"drifted from git: {fields}; self-heal is backed off (another writer keeps changing it)"
            return Outcome(Change(desired.ref, Action.SKIPPED, message), _assess(live),
                           self._record(p, live, "BackedOff", message))
        outcome = self._update(desired, live, p, f"reverted drift: {fields} ({_author(p, live)})")
        if outcome.change.action is not Action.CONFIGURED:
            return outcome
        fight = self.fights.record(desired.ref)
        return Outcome(outcome.change, outcome.health, self._record(p, live, "Reverted", outcome.change.message),
                       fight=fight, untrusted=outcome.untrusted)

    def _update(self, desired: Desired, live: dict[str, Any] | None, p: Plan, message: str) -> Outcome:
        rt = self._rt(desired)
        if p.untrusted and live is not None:
            return self._adopt(desired, rt, live, p, message)
        try:
            after = self._write(desired, p.obj, rt, live, dry_run=True)
        except ResourceError as e:
            if not (desired.traits.force and e.status == 422 and live is not None):
                raise
            return self._recreate(desired, rt, live, p, e)
        changed = live is None or not same_object(after, live)
        if changed:
            after = self._write(desired, p.obj, rt, live)
            removed, after = self._remove_leftovers(desired, rt, live, p, after)
            message = "; ".join(filter(None, (message, removed)))
        if p.extras:
            removed, after, state = self._remove_extras(desired, rt, after, p)
            message = "; ".join(filter(None, (message, removed)))
            if state == "failed":
                return Outcome(Change(desired.ref, Action.FAILED, message), _assess(after))
            changed = changed or state == "removed"
        if p.clear and live is not None:
            self._clear(desired, live, p)
            changed = True
        if not changed:
            return Outcome(Change(desired.ref, Action.UNCHANGED), _assess(live))
        return Outcome(Change(desired.ref, Action.CONFIGURED, message), _assess(after))

    def _write(self, desired: Desired, obj: dict[str, Any], rt: ResourceType, live: dict[str, Any] | None, *,
               dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply; with ``Replace=true`` on the object a PUT of git's object at the live version."""
        if desired.traits.replace and live is not None:
            version = (live.get("metadata") or {}).get("resourceVersion")
            return self.cluster.replace(rt, {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}},
                                        dry_run=dry_run)
        return self.cluster.apply(obj, dry_run=dry_run, rt=rt)

    def _recreate(self, desired: Desired, rt: ResourceType, live: dict[str, Any], p: Plan,
                  error: ResourceError) -> Outcome:
        """``Force=true``: git's object cannot be applied over the live one (an immutable field): delete it (at the
        version read) and create it again."""
        metadata = live.get("metadata") or {}
        ref = desired.ref
        self.cluster.delete(rt, ref.namespace, ref.name, uid=str(metadata.get("uid") or ""),
                            resource_version=str(metadata.get("resourceVersion") or ""))
        deadline = time.monotonic() + RECREATE_TIMEOUT
        while self.cluster.get(rt, ref.namespace, ref.name) is not None:
            if time.monotonic() >= deadline:
                return Outcome(Change(ref, Action.FAILED, f"deleted to re-create it (Force=true), but it is still "
                                      f"there after {RECREATE_TIMEOUT:g}s (a finalizer?)"), _assess(live))
            time.sleep(0.1)
        after = self.cluster.create(rt, p.obj) if desired.traits.replace else self.cluster.apply(p.obj, rt=rt)
        return Outcome(Change(ref, Action.CONFIGURED, f"re-created (Force=true): {error.message}"), _assess(after))

    def _remove_leftovers(self, desired: Desired, rt: ResourceType, live: dict[str, Any] | None, p: Plan,
                          after: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Remove what git stopped declaring and another manager's co-ownership kept (``reconciler.leftovers``);
        the message saying so ("" when nothing), and the object as it now is."""
        try:
            old, new = read_stamp(live), read_stamp(p.obj)
        except ContractError:
            return "", after
        if old is None or new is None or old.declared == new.declared:
            return "", after
        operations, paths = leftovers.removals(old.declared, new.declared, after)
        if not operations:
            return "", after
        try:
            after = self.cluster.json_patch(rt, desired.ref.namespace, desired.ref.name, operations)
        except ResourceError as e:  # changed meanwhile: reported, and the drift check sees what is left
            log.warning("%s: fields git no longer declares not removed: %s", desired.ref, e.message,
                        extra=logs.ctx(object=str(desired.ref)))
            return f"fields git no longer declares could not be removed ({', '.join(paths)}): {e.message}", after
        return f"removed fields git no longer declares, kept by another manager: {', '.join(paths)}", after

    def _remove_extras(self, desired: Desired, rt: ResourceType, after: dict[str, Any],
                       p: Plan) -> tuple[str, dict[str, Any], Literal["none", "removed", "failed"]]:
        """Remove what git does not list under the pod template (the strict pod profile, for writes made around
        the webhook); the message, the object as it now is, and what happened."""
        operations, paths = leftovers.element_removals(after, (d.path for d in p.extras))
        if not operations:
            return "", after, "none"
        try:
            after = self.cluster.json_patch(rt, desired.ref.namespace, desired.ref.name, operations)
        except ResourceError as e:  # changed meanwhile, or immutable (a Job's template): reported
            log.warning("%s: undeclared elements not removed: %s", desired.ref, e.message,
                        extra=logs.ctx(object=str(desired.ref)))
            return f"what git does not list could not be removed ({', '.join(paths)}): {e.message}", after, "failed"
        return f"removed what git does not list: {', '.join(paths)}", after, "removed"

    def _adopt(self, desired: Desired, rt: ResourceType, live: dict[str, Any], p: Plan, message: str) -> Outcome:
        """Remove the untrusted keys from an object driftguard did not manage, then apply git's state to
        exactly the version that removal produced (a conflict leaves it unmanaged for the next attempt)."""
        version = str(live["metadata"]["resourceVersion"])
        try:
            cleaned = self.cluster.json_patch(rt, desired.ref.namespace, desired.ref.name,
                                              clear_operations(live, p.untrusted, resource_version=version))
        except ResourceError as e:  # changed meanwhile: nothing applied; the next event or sync decides again
            return Outcome(Change(desired.ref, Action.FAILED, "not adopted: could not remove driftguard.io/ metadata "
                                  f"driftguard did not write: {e.message}"), _assess(live))
        obj = {**p.obj, "metadata": {**p.obj["metadata"], "resourceVersion": cleaned["metadata"]["resourceVersion"]}}
        after = self.cluster.apply(obj, rt=rt)
        untrusted = tuple(k for k in p.untrusted if k != OPT_IN)  # the owner's opt-in, consumed: not a forgery
        adopted = f"adopted ({ANN_ADOPT} on it)" if OPT_IN in p.untrusted else ""
        message = "; ".join(filter(None, (message, adopted, untrusted_message(untrusted) if untrusted else "")))
        return Outcome(Change(desired.ref, Action.CONFIGURED, message), _assess(after), untrusted=untrusted)

    def _clear(self, desired: Desired, live: dict[str, Any], p: Plan) -> None:
        try:
            self.cluster.json_patch(self._rt(desired), desired.ref.namespace, desired.ref.name,
                                    clear_operations(live, p.clear))
        except ResourceError as e:  # the marks changed meanwhile: the next event decides again
            log.info("%s: marks not removed: %s", desired.ref, e.message, extra=logs.ctx(object=str(desired.ref)))

    def _record(self, p: Plan, live: dict[str, Any] | None, state: DriftState, message: str) -> DriftRecord:
        at = p.drift_mark.at if p.drift_mark and p.drift_mark.at else format_time(self._clock())
        return DriftRecord(
            ref=ObjectRef.of(p.obj), fields=tuple(p.drift_fields), by=p.drift_mark.user if p.drift_mark else "",
            manager=field_owners(live, (d.path for d in p.drifts)), at=at, state=state, message=message,
        )

    def _rt(self, desired: Desired) -> ResourceType:
        return self.cluster.discovery.resolve(desired.api_version, desired.ref.kind)

    # ------------------------------------------------------------ a desired set

    def sync_all(self, desired: Sequence[Desired], mode: Mode) -> list[Outcome]:
        """Sync every object, rank by rank; CRDs are waited for before their custom resources."""
        outcomes: list[Outcome] = []
        by_rank: dict[int, list[Desired]] = defaultdict(list)
        for d in desired:
            by_rank[ordering.rank(d.ref)].append(d)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="apply") as pool:
            for rank in sorted(by_rank):
                done = self._sync_rank(by_rank[rank], mode, pool)
                outcomes.extend(done)
                crds = [o.ref for o in done if o.ref.kind == "CustomResourceDefinition"
                        and o.change.action in (Action.CREATED, Action.CONFIGURED)]
                if crds:
                    self._await_crds(crds, [d for r in sorted(by_rank) if r > rank for d in by_rank[r]])
        return outcomes

    def _sync_rank(self, desired: list[Desired], mode: Mode, pool: ThreadPoolExecutor) -> list[Outcome]:
        ready: list[Outcome] = []
        pending: list[Future[Outcome]] = []
        groups: dict[tuple[str, str, str], list[Desired]] = defaultdict(list)
        for d in desired:
            groups[(d.api_version, d.ref.kind, d.ref.namespace)].append(d)
        for (api_version, kind, namespace), members in groups.items():
            try:
                rt = self.cluster.discovery.resolve(api_version, kind)
            except ResourceError as e:
                ready += [Outcome(Change(d.ref, Action.FAILED, str(e))) for d in members]
                continue
            if len(members) < LIST_THRESHOLD:
                pending += [pool.submit(self.sync, d, None, mode, refetch=True) for d in members]
                continue
            try:
                for d, live in self._with_live(rt, namespace, members):
                    p = plan(d, live, now=self._clock(), marks=self.marks)
                    if p.verdict is Verdict.UNCHANGED and not p.clear:
                        ready.append(Outcome(Change(d.ref, Action.UNCHANGED), _assess(live)))
                    else:
                        pending.append(pool.submit(self.sync, d, live, mode))
            except ResourceError as e:
                ready += [Outcome(Change(d.ref, Action.FAILED, str(e))) for d in members]
        return ready + [f.result() for f in pending]

    def out_of_sync(self, desired: Sequence[Desired], mode: Mode) -> list[ObjectRef]:
        """The objects a sync in ``mode`` would write (created, updated, or drift reverted), from reads alone —
        the plans ``sync`` would make; an object that cannot be read counts as out of sync."""
        out: list[ObjectRef] = []
        groups: dict[tuple[str, str, str], list[Desired]] = defaultdict(list)
        for d in desired:
            groups[(d.api_version, d.ref.kind, d.ref.namespace)].append(d)
        writes = {Verdict.CREATE, Verdict.UPDATE} | ({Verdict.DRIFTED} if mode.self_heal else set())
        for (api_version, kind, namespace), members in groups.items():
            try:
                rt = self.cluster.discovery.resolve(api_version, kind)
                if len(members) < LIST_THRESHOLD:
                    lives = [(d, self.cluster.get(rt, d.ref.namespace, d.ref.name)) for d in members]
                else:
                    lives = list(self._with_live(rt, namespace, members))
            except ResourceError:
                out += [d.ref for d in members]
                continue
            now = self._clock()
            out += [d.ref for d, live in lives if plan(d, live, now=now, marks=self.marks).verdict in writes]
        return out

    def _with_live(
        self, rt: ResourceType, namespace: str, members: list[Desired]
    ) -> Iterator[tuple[Desired, dict[str, Any] | None]]:
        wanted = {d.ref.name: d for d in members}
        for page in self.cluster.pages(rt, namespace):
            for item in page.items:
                d = wanted.pop(str((item.get("metadata") or {}).get("name")), None)
                if d is not None:
                    item.setdefault("apiVersion", rt.api_version)
                    item.setdefault("kind", rt.kind)
                    yield d, item
        for d in wanted.values():
            yield d, None

    def _await_crds(self, crds: list[ObjectRef], later: Iterable[Desired], timeout: float = CRD_TIMEOUT) -> None:
        """Wait until each CRD is Established and its kinds are served (bounded; failures show later)."""
        deadline = time.monotonic() + timeout
        for ref in crds:
            while time.monotonic() < deadline:
                crd = self.cluster.get(CRDS, "", ref.name)
                if crd is None or health.assess(crd)[0] is health.Health.HEALTHY:
                    break
                time.sleep(0.05)
        self.cluster.discovery.invalidate()
        kinds = {(d.api_version, d.ref.kind) for d in later}
        crd_groups = {ref.name.split(".", 1)[1] for ref in crds if "." in ref.name}
        for api_version, kind in kinds:
            if api_version.split("/")[0] not in crd_groups:
                continue
            while time.monotonic() < deadline:
                try:
                    self.cluster.discovery.resolve(api_version, kind)
                    break
                except ResourceError:
                    time.sleep(0.1)

    # ------------------------------------------------------------ prune

    def prune(
        self, stale: Iterable[Entry], application: str, *, why: str = "no longer declared in git",
        deleting: bool = False,
    ) -> tuple[list[Outcome], list[Entry]]:
        """Delete stale objects (reverse apply order) that are still stamped as ``application``'s.

        Returns the outcomes and the entries to keep in the inventory (failed deletes, retried next time).
        The same path deletes a whole inventory when an Application with a cascading finalizer is deleted
        (``deleting``): then an object whose ``argocd.argoproj.io/sync-options`` say ``Delete=false`` is left in
        the cluster (and dropped from the inventory).
        """
        outcomes: list[Outcome] = []
        keep: list[Entry] = []
        for entry in ordering.for_prune(stale, lambda e: e.ref):
            outcome = self._prune_one(entry, application, why, deleting=deleting)
            outcomes.append(outcome)
            if outcome.change.action is Action.FAILED:
                keep.append(entry)
        return outcomes, keep

    def _prune_one(self, entry: Entry, application: str, why: str, *, deleting: bool = False) -> Outcome:
        ref = entry.ref
        with self.lock(ref):
            try:
                rt = self.cluster.discovery.resolve(entry.api_version, ref.kind)
                live = self.cluster.get(rt, ref.namespace, ref.name)
                if live is None:
                    return Outcome(Change(ref, Action.SKIPPED, "already gone"))
                owner = annotations_of(live).get(ANN_APPLICATION, "")
                if owner != application:
                    why = f"stamped by Application {owner}" if owner else "no longer stamped by driftguard"
                    return Outcome(Change(ref, Action.SKIPPED, f"not pruned: {why}"))
                metadata = live.get("metadata") or {}
                if deleting and not _traits(live).delete:
                    return Outcome(Change(ref, Action.SKIPPED, "left in the cluster: sync-options Delete=false"))
                if metadata.get("deletionTimestamp"):
                    return Outcome(Change(ref, Action.SKIPPED, "already being deleted"))
                self.cluster.delete(rt, ref.namespace, ref.name, uid=str(metadata.get("uid", "")),
                                    resource_version=str(metadata.get("resourceVersion", "")))
                return Outcome(Change(ref, Action.DELETED, f"pruned: {why}"))
            except ResourceError as e:
                if e.status == 404 and "does not serve" in e.message:
                    return Outcome(Change(ref, Action.SKIPPED, "already gone (its kind is no longer served)"))
                return Outcome(Change(ref, Action.FAILED, str(e)))


def untrusted_message(keys: tuple[str, ...]) -> str:
    return f"removed {describe_keys(keys)} found on an object driftguard did not manage (not trusted)"


def _traits(live: dict[str, Any]) -> phases.Traits:
    try:
        return phases.traits(live)
    except phases.PhaseError:
        return phases.RESOURCE


def _assess(obj: dict[str, Any] | None) -> tuple[health.Health, str]:
    return health.assess(obj) if obj is not None else (health.Health.MISSING, "not found")
