"""Fight detection (fake clock), the leader-election decision, and health assessment."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core.objects import ObjectRef
from reconciler.fights import FightDetector
from reconciler.health import Health, assess, worst
from reconciler.leader import Observation, Step, decide

REF = ObjectRef("apps", "Deployment", "prod", "web")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_more_than_five_reverts_a_minute_is_a_fight_then_backoff_doubles_and_is_forgiven() -> None:
    clock = Clock()
    fights = FightDetector(limit=5, window=60, backoff=30, max_backoff=100, clock=clock)
    assert [fights.record(REF) for _ in range(5)] == [False] * 5
    assert fights.allow(REF)
    assert fights.record(REF) is True
    assert not fights.allow(REF) and [f.ref for f in fights.fighting()] == [REF]
    clock.now += 30
    assert fights.allow(REF) and fights.fighting() == []
    assert [fights.record(REF) for _ in range(6)][-1] is True
    clock.now += 59
    assert not fights.allow(REF)  # second fight: 60 s
    clock.now += 1
    assert fights.allow(REF)
    clock.now += 500  # a quiet spell forgives: the next fight starts at 30 s again
    assert [fights.record(REF) for _ in range(6)][-1] is True
    clock.now += 30
    assert fights.allow(REF)


def test_reverts_spread_over_more_than_the_window_are_no_fight() -> None:
    clock = Clock()
    fights = FightDetector(limit=5, window=60, clock=clock)
    for _ in range(20):
        assert fights.record(REF) is False
        clock.now += 13
    fights.forget([REF])
    assert fights.fighting() == []


def lease(holder: str, renew: str = "t1", duration: int = 15, transitions: int = 0) -> dict[str, Any]:
    return {"spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration,
                     "leaseTransitions": transitions}}


@pytest.mark.parametrize(("current", "seen", "now", "step"), [
    (None, None, 0.0, Step.CREATE),
    (lease("me"), None, 0.0, Step.RENEW),
    (lease(""), None, 0.0, Step.TAKE),  # released
    (lease("other"), None, 100.0, Step.WAIT),  # first sighting: wait a full duration
    (lease("other"), Observation(("other", "t1", 0), 90.0), 100.0, Step.WAIT),
    (lease("other"), Observation(("other", "t1", 0), 85.0), 100.0, Step.TAKE),  # unchanged for 15 s
    (lease("other", renew="t2"), Observation(("other", "t1", 0), 0.0), 100.0, Step.WAIT),  # it renewed
])
def test_lease_decisions(current: dict[str, Any] | None, seen: Observation | None, now: float, step: Step) -> None:
    assert decide(current, "me", seen, now)[0] is step


@pytest.mark.parametrize(("current", "seen", "foreign", "step"), [
    (lease("intruder", duration=86400), None, True, Step.RECLAIM),  # no Pod of ours: at once
    (lease("intruder", duration=86400), None, False, Step.WAIT),  # a real replica: wait, but...
    (lease("pod-b", duration=86400), Observation(("pod-b", "t1", 0), 80.0), False, Step.TAKE),  # ...not 24 h
    (lease("pod-b", duration=10), Observation(("pod-b", "t1", 0), 89.0), False, Step.TAKE),  # shorter counts
    (lease("me", duration=86400), None, True, Step.RENEW),  # our own identity is never foreign
    (lease("", duration=86400), None, True, Step.TAKE),  # released
])
def test_foreign_holders_and_hand_written_durations(current: dict[str, Any], seen: Observation | None,
                                                    foreign: bool, step: Step) -> None:
    assert decide(current, "me", seen, 100.0, foreign=foreign, max_duration=15.0)[0] is step


def test_observation_time_only_moves_when_the_record_changes() -> None:
    _, first = decide(lease("other"), "me", None, 10.0)
    _, same = decide(lease("other"), "me", first, 20.0)
    _, renewed = decide(lease("other", renew="t2"), "me", same, 30.0)
    assert (first.since, same.since, renewed.since) == (10.0, 10.0, 30.0)


def deployment(replicas: int = 3, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": status}


@pytest.mark.parametrize(("obj", "state"), [
    (deployment(), Health.PROGRESSING),  # no controller-manager: never rolled out, honestly
    (deployment(observedGeneration=1, updatedReplicas=3, availableReplicas=3), Health.PROGRESSING),
    (deployment(observedGeneration=2, updatedReplicas=2, availableReplicas=3), Health.PROGRESSING),
    (deployment(observedGeneration=2, updatedReplicas=3, availableReplicas=3), Health.HEALTHY),
    (deployment(observedGeneration=2, conditions=[{"type": "Progressing", "status": "False",
                                                   "reason": "ProgressDeadlineExceeded"}]), Health.DEGRADED),
    ({"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}, Health.HEALTHY),
    ({"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}}, Health.DEGRADED),
    ({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}, Health.PROGRESSING),
    ({"kind": "CustomResourceDefinition", "status": {"conditions": [{"type": "Established", "status": "True"}]}},
     Health.HEALTHY),
    ({"kind": "Service", "spec": {"type": "LoadBalancer"}}, Health.PROGRESSING),
    ({"kind": "ConfigMap"}, Health.HEALTHY),
    ({"kind": "Deployment", "spec": {"paused": True}}, Health.SUSPENDED),
    ({"kind": "Job", "spec": {"suspend": True}}, Health.SUSPENDED),
    ({"kind": "CronJob", "spec": {"suspend": True}}, Health.SUSPENDED),
    ({"kind": "CronJob", "spec": {"suspend": False}}, Health.HEALTHY),
])
def test_health(obj: dict[str, Any], state: Health) -> None:
    assert assess(obj)[0] is state


ARGO_ORDER = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")  # Argo CD's, best first


@pytest.mark.parametrize(("better", "worse"), [(a, b) for i, a in enumerate(ARGO_ORDER) for b in ARGO_ORDER[i + 1:]])
def test_worst_health_wins_in_argo_cds_order(better: str, worse: str) -> None:
    assert worst([Health(better), Health(worse)]) is Health(worse)
    assert worst([Health(worse), Health(better), Health.HEALTHY]) is Health(worse)


def test_worst_of_nothing_is_healthy() -> None:
    assert worst([]) is Health.HEALTHY
