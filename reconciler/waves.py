"""One automated sync carried out phase by phase, wave by wave (the plan is ``driftguard.core.phases``).

Each step applies its objects (``Applier.sync_all``: kinds in order, concurrently within a kind), runs its
hooks (``reconciler.hooks``: created, awaited), prunes its stale objects, and — when a later step follows —
waits until every object it applied is healthy (``reconciler.health``), bounded by ``timeout``. A step
that fails (a write failed, a hook failed, an object is Degraded or not healthy in time) ends the sync:
later steps are not carried out (their new objects are not created, their prunes wait), the ``SyncFail``
hooks run, and a ``Problem`` says which step, which object and why.

Hooks run only when something is out of sync: ``out_of_sync`` answers that from reads alone (the same
plans the apply would make), so a resync of an Application that is in sync runs no hook and writes
nothing — as Argo CD's automated sync runs only on OutOfSync.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from driftguard.core import phases
from driftguard.core.changes import Action, Change
from driftguard.core.inventory import Entry
from driftguard.core.objects import ObjectRef
from driftguard.core.phases import Phase, Step, Traits
from driftguard.kube.resources import Cluster, ResourceError
from reconciler import health
from reconciler.apply import Applier, Mode, Outcome
from reconciler.desired import Desired
from reconciler.hooks import HookRun, Hooks
from reconciler.status import Problem

log = logging.getLogger(__name__)

POLL: Final = 0.2
LISTED: Final = 3


@dataclass(slots=True)
class WaveResult:
    outcomes: list[Outcome] = field(default_factory=list)  # objects applied, and those never reached (SKIPPED)
    pruned: list[Outcome] = field(default_factory=list)
    keep: list[Entry] = field(default_factory=list)  # stale entries not deleted (failed, or never reached)
    not_reached: set[ObjectRef] = field(default_factory=set)
    hooks: list[HookRun] = field(default_factory=list)
    problem: Problem | None = None


class Waves:
    def __init__(self, *, timeout: float = 300.0, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.timeout, self._clock, self._sleep = timeout, clock, sleep

    def sync(self, application: str, applier: Applier, steps: Sequence[Step[Desired, Entry]],
             hooks: Sequence[Desired], mode: Mode) -> WaveResult:
        """Carry out ``steps`` in order with ``applier`` (the Application's identity: its hooks are created with
        the same); on failure run the ``SyncFail`` hooks among ``hooks``."""
        out = WaveResult()
        runner = Hooks(applier.cluster, clock=self._clock, sleep=self._sleep)
        for i, step in enumerate(steps):
            applied = applier.sync_all(step.apply, mode) if step.apply else []
            out.outcomes += applied
            runs = runner.run(step.hooks, step.phase, application, time.monotonic() + self.timeout) \
                if step.hooks else []
            out.hooks += runs
            if step.prune:
                pruned, keep = applier.prune(step.prune, application)
                out.pruned += pruned
                out.keep += keep
            why = self._failed(step, applied, runs, out.pruned)
            if i + 1 == len(steps):  # the last step: a failed write is the sync's ApplyFailed, as it always was
                if why is not None:
                    if why[0] == "HookFailed":
                        out.problem = Problem("Applied", why[0], self._message(step, why[1], ()))
                    out.hooks += self.sync_fail(application, hooks, applier)
                return out
            why = why or self._await_healthy(applier.cluster, step, applied)
            if why:
                rest = steps[i + 1:]
                self._not_reached(out, rest, f"not applied: {step.label} failed")
                out.problem = Problem("Applied", why[0], self._message(step, why[1], rest))
                out.hooks += self.sync_fail(application, hooks, applier)
                return out
        return out

    def sync_fail(self, application: str, hooks: Sequence[Desired], applier: Applier) -> list[HookRun]:
        return self._phase(Phase.SYNC_FAIL, application, hooks, applier)

    def post_delete(self, application: str, hooks: Sequence[Desired], applier: Applier) -> list[HookRun]:
        return self._phase(Phase.POST_DELETE, application, hooks, applier)

    def _phase(self, phase: Phase, application: str, hooks: Sequence[Desired], applier: Applier) -> list[HookRun]:
        """Run the hooks of ``phase`` among ``hooks``, wave by wave."""
        runner = Hooks(applier.cluster, clock=self._clock, sleep=self._sleep)
        runs: list[HookRun] = []
        for wave in phases.hooks_of(((h, h.traits) for h in hooks), phase):
            runs += runner.run(wave, phase, application, time.monotonic() + self.timeout)
        return runs

    @staticmethod
    def _failed(step: Step[Desired, Entry], applied: list[Outcome], runs: list[HookRun],
                pruned: list[Outcome]) -> tuple[str, str] | None:
        bad = [r for r in runs if r.result == "Failed"]
        if bad:
            return "HookFailed", "; ".join(f"{r.what} failed: {r.message}" for r in bad[:LISTED])
        failed = [o.change for o in applied if o.change.action is Action.FAILED]
        mine = {e.ref for e in step.prune}
        failed += [o.change for o in pruned if o.change.action is Action.FAILED and o.ref in mine]
        if failed:
            return "WaveFailed", "; ".join(str(c) for c in failed[:LISTED])
        return None

    def _await_healthy(self, cluster: Cluster, step: Step[Desired, Entry], applied: list[Outcome]
                       ) -> tuple[str, str] | None:
        """Wait until every object ``step`` applied is healthy (None), or say why not."""
        waiting = {o.ref: o.health for o in applied if o.health[0] is not health.Health.HEALTHY}
        index = {d.ref: d for d in step.apply}
        deadline = time.monotonic() + self.timeout
        while waiting:
            degraded = [(ref, why) for ref, (h, why) in waiting.items() if h is health.Health.DEGRADED]
            if degraded:
                return "WaveDegraded", "; ".join(f"{ref} is Degraded: {why}" for ref, why in degraded[:LISTED])
            if time.monotonic() >= deadline:
                named = "; ".join(f"{ref} is {h}: {why}" for ref, (h, why) in sorted(waiting.items())[:LISTED])
                return "WaveNotHealthy", f"not healthy after {self.timeout:g}s (--wave-timeout): {named}"
            self._sleep(POLL)
            for ref in list(waiting):
                d = index[ref]
                try:
                    live = cluster.get(cluster.discovery.resolve(d.api_version, ref.kind), ref.namespace, ref.name)
                except ResourceError as e:
                    waiting[ref] = (health.Health.UNKNOWN, e.message)
                    continue
                state = health.assess(live) if live is not None else (health.Health.MISSING, "not found")
                if state[0] is health.Health.HEALTHY:
                    del waiting[ref]
                else:
                    waiting[ref] = state
        return None

    @staticmethod
    def _not_reached(out: WaveResult, rest: Sequence[Step[Desired, Entry]], message: str) -> None:
        for step in rest:
            for d in step.apply:
                out.outcomes.append(Outcome(Change(d.ref, Action.SKIPPED, message), (health.Health.UNKNOWN, message)))
                out.not_reached.add(d.ref)
            out.keep += step.prune

    @staticmethod
    def _message(step: Step[Desired, Entry], why: str, rest: Sequence[Step[Desired, Entry]]) -> str:
        objects = sum(len(s.apply) for s in rest)
        hooks = sum(len(s.hooks) for s in rest)
        later = [f"{objects} object(s)" for _ in [0] if objects] + [f"{hooks} hook(s)" for _ in [0] if hooks]
        prunes = sum(len(s.prune) for s in rest)
        later += [f"{prunes} prune(s)" for _ in [0] if prunes]
        tail = f"; not carried out: {', '.join(later)} of {', '.join(s.label for s in rest)}" if later else ""
        return f"{step.label}: {why}{tail}; retried with backoff"


def resource_traits(desired: Sequence[Desired]) -> list[tuple[Desired, Traits]]:
    return [(d, d.traits) for d in desired]
