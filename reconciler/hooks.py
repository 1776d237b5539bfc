"""Running hooks: create, await, delete per policy — and never manage them.

A hook (``driftguard.core.phases``) is created afresh for the sync that runs it: with ``generateName`` a new
object each time; a named one is deleted first under ``BeforeHookCreation`` (Argo CD's default), and an
existing one is otherwise reused as it is (Argo CD's "named hooks are created once"). A hook carries no
ownership stamp and no managed label — the webhook never sees it, so the Job controller's writes to it
(status, its Pods) never meet driftguard — only ``driftguard.io/hook-of`` naming the Application, so a
named object that some other party created is never deleted: the hook fails with a message saying so.

A hook is *awaited* until it completes: a Job when its ``Complete`` or ``Failed`` condition is true, a Pod
when it has ``Succeeded`` or ``Failed``, anything else when it is healthy (``reconciler.health``). Then its
delete policy applies: ``HookSucceeded`` deletes it once it succeeded, ``HookFailed`` once it failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from driftguard import logs
from driftguard.core.clock import format_time
from driftguard.core.contract import annotations_of
from driftguard.core.phases import DeletePolicy, Phase
from driftguard.kube.resources import Cluster, ResourceError, ResourceType
from reconciler import health
from reconciler.desired import ANN_HOOK_OF, Desired

log = logging.getLogger(__name__)

POLL: Final = 0.2
Result = Literal["Succeeded", "Failed", "Running"]


@dataclass(frozen=True, slots=True)
class HookRun:
    """One hook of one sync, as status shows it."""

    kind: str
    namespace: str
    name: str
    phase: Phase
    wave: int
    result: Result
    message: str = ""
    started: str = ""
    finished: str = ""
    path: str = ""  # the file in git

    @property
    def what(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.phase} hook {self.kind} {where}{self.name}"

    def to_status(self) -> dict[str, Any]:
        out = {"kind": self.kind, "name": self.name, "phase": str(self.phase), "wave": self.wave,
               "result": self.result, "message": self.message, "startedAt": self.started,
               "finishedAt": self.finished, "path": self.path}
        if self.namespace:
            out["namespace"] = self.namespace
        return {k: v for k, v in out.items() if v != ""}


def completion(obj: Mapping[str, Any]) -> tuple[Result, str]:
    """Whether a live hook object has finished, and how."""
    kind = str(obj.get("kind", ""))
    status = obj.get("status") or {}
    if kind == "Job":
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Failed":
                return "Failed", str(condition.get("message") or condition.get("reason") or "job failed")
            if condition.get("type") == "Complete":
                return "Succeeded", "job complete"
        return "Running", "job running"
    if kind == "Pod":
        phase = str(status.get("phase") or "Pending")
        if phase in ("Succeeded", "Failed"):
            return phase, f"pod {phase.lower()}"  # type: ignore[return-value]
        return "Running", f"pod {phase.lower()}"
    state, why = health.assess(obj)
    if state is health.Health.HEALTHY:
        return "Succeeded", why or "created"
    if state is health.Health.DEGRADED:
        return "Failed", why
    return "Running", why


class Hooks:
    def __init__(self, cluster: Cluster, *, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cluster, self._clock, self._sleep = cluster, clock, sleep

    def run(self, hooks: Sequence[Desired], phase: Phase, application: str, deadline: float) -> list[HookRun]:
        """Create ``hooks`` (one wave of ``phase``), await them until the monotonic ``deadline``, then apply
        their delete policies. Never raises: what went wrong is in each run's result and message."""
        started = format_time(self._clock())
        created: list[tuple[Desired, ResourceType | None, dict[str, Any] | None, HookRun | None]] = []
        for hook in hooks:
            try:
                if hook.error:
                    raise HookRefused(hook.error)
                rt = self.cluster.discovery.resolve(hook.api_version, hook.ref.kind)
                live = self._create(hook, rt, application)
                created.append((hook, rt, live, None))
            except (ResourceError, HookRefused) as e:
                message = e.message if isinstance(e, ResourceError) else str(e)
                run = self._run(hook, phase, "", "Failed", message=message, started=started)
                created.append((hook, None, None, run))
        runs: list[HookRun] = []
        for hook, made_rt, made, failed in created:
            if failed is not None or made_rt is None or made is None:
                assert failed is not None
                runs.append(failed)
                continue
            runs.append(self._await(hook, phase, made_rt, made, deadline=deadline, started=started))
        return runs

    def _run(self, hook: Desired, phase: Phase, name: str, result: Result, *, message: str, started: str
             ) -> HookRun:
        metadata = hook.obj.get("metadata") or {}
        return HookRun(hook.ref.kind, hook.ref.namespace, name or str(metadata.get("name") or
                       f"{metadata.get('generateName', '')}…"), phase, hook.traits.wave, result, message, started,
                       format_time(self._clock()) if result != "Running" else "", f"{hook.path}:{hook.line}")

    def _create(self, hook: Desired, rt: ResourceType, application: str) -> dict[str, Any]:
        name = str((hook.obj.get("metadata") or {}).get("name") or "")
        if name:
            live = self.cluster.get(rt, hook.ref.namespace, name)
            if live is not None:
                owner = annotations_of(live).get(ANN_HOOK_OF, "")
                if owner != application:
                    raise HookRefused(
                        f"{hook.ref.kind} {name} exists and was not created by a hook of Application {application}"
                        f"{f' (it is a hook of {owner})' if owner else ''}: not deleted, not run; rename the hook "
                        "or use metadata.generateName")
                if DeletePolicy.BEFORE_HOOK_CREATION not in hook.traits.delete_policies:
                    return live  # a named hook without BeforeHookCreation is created once, as in Argo CD
                self._delete(rt, live)
                self._gone(rt, hook.ref.namespace, name, time.monotonic() + 30.0)
        return self.cluster.create(rt, hook.obj)

    def _await(self, hook: Desired, phase: Phase, rt: ResourceType, live: dict[str, Any], *, deadline: float,
               started: str) -> HookRun:
        name = str(live["metadata"]["name"])
        while True:
            result, message = completion(live)
            if result != "Running" or time.monotonic() >= deadline:
                break
            self._sleep(POLL)
            try:
                got = self.cluster.get(rt, hook.ref.namespace, name)
            except ResourceError as e:
                log.info("hook %s: %s", name, e.message)
                continue
            if got is None:
                result, message = "Failed", "deleted before it completed"
                break
            live = got
        if result == "Running":
            message = f"did not complete in time ({message}); the sync failed"
            result = "Failed"
        policies = hook.traits.delete_policies
        if (result == "Succeeded" and DeletePolicy.HOOK_SUCCEEDED in policies) or (
                result == "Failed" and DeletePolicy.HOOK_FAILED in policies):
            try:
                self._delete(rt, live)
                message += f"; deleted ({'HookSucceeded' if result == 'Succeeded' else 'HookFailed'})"
            except ResourceError as e:
                message += f"; could not be deleted: {e.message}"
        log.info("%s hook %s %s: %s %s", phase, hook.ref.kind, name, result, message,
                 extra=logs.ctx(object=f"{hook.ref.kind} {hook.ref.namespace}/{name}"))
        return self._run(hook, phase, name, result, message=message, started=started)

    def _delete(self, rt: ResourceType, live: Mapping[str, Any]) -> None:
        metadata = live.get("metadata") or {}
        self.cluster.delete(rt, str(metadata.get("namespace") or ""), str(metadata["name"]),
                            uid=str(metadata.get("uid") or ""))

    def _gone(self, rt: ResourceType, namespace: str, name: str, deadline: float) -> None:
        while self.cluster.get(rt, namespace, name) is not None and time.monotonic() < deadline:
            self._sleep(POLL)


class HookRefused(Exception):
    pass
