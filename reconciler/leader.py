"""Leader election on a coordination.k8s.io Lease, so two replicas never fight over one cluster.

The rules are client-go's: a candidate takes the Lease when it is free, already its own, or when the
holder has not renewed it for ``leaseDurationSeconds`` *as observed locally* (the record must stay
unchanged that long on our clock, so clock skew between nodes cannot steal a live lease). Writes
carry the resourceVersion read, so two candidates racing for one Lease cannot both win. A leader
that fails to renew within ``renew_deadline`` stops leading; on a clean stop it releases the Lease so
a standby takes over at once.

``decide`` is the pure part; ``LeaderElector`` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from driftguard.core.clock import format_micro
from driftguard.kube.resources import LEASES, Cluster, ResourceError

log = logging.getLogger(__name__)


class Step(enum.Enum):
    CREATE = "create"  # no Lease yet
    TAKE = "take"  # free or expired: become the holder
    RENEW = "renew"  # ours: extend it
    WAIT = "wait"  # somebody else holds it


@dataclass(frozen=True, slots=True)
class Observation:
    """The Lease record as last seen, and when (on our monotonic clock) it last changed."""

    record: tuple[str, str, int]  # holder, renewTime, transitions
    since: float


def decide(lease: Mapping[str, Any] | None, me: str, seen: Observation | None, now: float) -> tuple[Step, Observation]:
    """What to do with the Lease, given our previous observation of it."""
    if lease is None:
        return Step.CREATE, Observation(("", "", 0), now)
    spec = lease.get("spec") or {}
    record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
              int(spec.get("leaseTransitions") or 0))
    observation = seen if seen is not None and seen.record == record else Observation(record, now)
    holder = record[0]
    if holder == me:
        return Step.RENEW, observation
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if not holder or now - observation.since >= duration:
        return Step.TAKE, observation
    return Step.WAIT, observation


def micro_time(when: dt.datetime | None = None) -> str:
    return format_micro(when or dt.datetime.now(dt.UTC))


class LeaderElector:
    def __init__(
        self, cluster: Cluster, namespace: str, name: str, identity: str, *,
        lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
    ) -> None:
        self.cluster, self.namespace, self.name, self.identity = cluster, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self._seen: Observation | None = None
        self.leading = threading.Event()

    def run(self, stop: threading.Event, lead: Callable[[threading.Event], None]) -> bool:
        """Campaign until elected, then call ``lead(lost)`` in this thread while renewing in another.

        ``lost`` is set when leadership ends (renewal failed, or ``stop``). Returns True when we led and
        lost the Lease (the caller may campaign again once ``lead`` has stopped acting), False on a
        clean stop.
        """
        while not stop.is_set():
            if self._try():
                break
            stop.wait(self.retry_period)
        else:
            return False
        log.info("%s became the leader (Lease %s/%s)", self.identity, self.namespace, self.name)
        self.leading.set()
        lost = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop, lost), name="lease-renew", daemon=True)
        renewer.start()
        try:
            lead(lost)
        finally:
            lost.set()
            renewer.join(timeout=self.retry_period * 2)
            self.leading.clear()
        if stop.is_set():
            self._release()
            return False
        return True

    def _renew(self, stop: threading.Event, lost: threading.Event) -> None:
        last = time.monotonic()
        while not (stop.is_set() or lost.is_set()):
            lost.wait(self.retry_period)
            if stop.is_set() or lost.is_set():
                break
            if self._try():
                last = time.monotonic()
            elif time.monotonic() - last > self.renew_deadline:
                log.error("%s lost the Lease %s/%s", self.identity, self.namespace, self.name)
                break
        lost.set()

    def _try(self) -> bool:
        """One round: True when we hold the Lease afterwards."""
        try:
            lease = self.cluster.get(LEASES, self.namespace, self.name)
            step, self._seen = decide(lease, self.identity, self._seen, time.monotonic())
            if step is Step.WAIT:
                return False
            now = micro_time()
            spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                    "renewTime": now}
            if step is Step.CREATE:
                self.cluster.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": now, "leaseTransitions": 0},
                })
                return True
            assert lease is not None
            current = dict(lease.get("spec") or {})
            if step is Step.TAKE:
                spec.update(acquireTime=now, leaseTransitions=int(current.get("leaseTransitions") or 0) + 1)
            self.cluster.replace(LEASES, {**lease, "spec": {**current, **spec}})
            return True
        except ResourceError as e:
            if not e.conflict:
                log.warning("leader election: %s", e)
            return False

    def _release(self) -> None:
        try:
            lease = self.cluster.get(LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time()}
                self.cluster.replace(LEASES, {**lease, "spec": spec})
        except ResourceError as e:
            log.info("could not release the Lease: %s", e)
