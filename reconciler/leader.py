"""Leader election on a coordination.k8s.io Lease, so two replicas never fight over one cluster.

The rules are client-go's: a candidate takes the Lease when it is free, already its own, or when the
holder has not renewed it for ``leaseDurationSeconds`` *as observed locally* (the record must stay
unchanged that long on our clock, so clock skew between nodes cannot steal a live lease). Writes
carry the resourceVersion read, so two candidates racing for one Lease cannot both win. A leader
that fails to renew within ``renew_deadline`` stops leading; on a clean stop it releases the Lease so
a standby takes over at once.

Two departures from client-go, because the Lease is writable by more than the replicas (issue 10): a
holder that is not one of the reconciler's own Pods (``legitimate``: in the cluster, a running Pod of
its ServiceAccount in the Lease's namespace) is *foreign* and taken back at once, reported by
``on_foreign``; and a record's ``leaseDurationSeconds`` counts for no longer than our own, so a
24 h lease written by hand does not stop every sync for a day even if its holder names a real Pod.

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
    RECLAIM = "reclaim"  # held by something that is not one of our replicas: take it now, and say so
    RENEW = "renew"  # ours: extend it
    WAIT = "wait"  # somebody else holds it


@dataclass(frozen=True, slots=True)
class Observation:
    """The Lease record as last seen, and when (on our monotonic clock) it last changed."""

    record: tuple[str, str, int]  # holder, renewTime, transitions
    since: float


def decide(
    lease: Mapping[str, Any] | None, me: str, seen: Observation | None, now: float, *,
    foreign: bool = False, max_duration: float | None = None,
) -> tuple[Step, Observation]:
    """What to do with the Lease, given our previous observation of it. ``foreign``: its holder is not
    one of our replicas; ``max_duration``: the longest ``leaseDurationSeconds`` we respect."""
    if lease is None:
        return Step.CREATE, Observation(("", "", 0), now)
    spec = lease.get("spec") or {}
    record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
              int(spec.get("leaseTransitions") or 0))
    observation = seen if seen is not None and seen.record == record else Observation(record, now)
    holder = record[0]
    if holder == me:
        return Step.RENEW, observation
    if foreign and holder:
        return Step.RECLAIM, observation
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if max_duration is not None:
        duration = min(duration, max_duration)
    if not holder or now - observation.since >= duration:
        return Step.TAKE, observation
    return Step.WAIT, observation


def micro_time(when: dt.datetime | None = None) -> str:
    return format_micro(when or dt.datetime.now(dt.UTC))


class LeaderElector:
    def __init__(
        self, cluster: Cluster, namespace: str, name: str, identity: str, *,
        lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
        legitimate: Callable[[str], bool] | None = None,
        on_foreign: Callable[[Mapping[str, Any], str], None] | None = None,
    ) -> None:
        """``legitimate(holder)``: is that holder one of our replicas (None: every holder is);
        ``on_foreign(lease, holder)`` is called after a foreign holder's Lease was taken back."""
        self.cluster, self.namespace, self.name, self.identity = cluster, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.legitimate, self.on_foreign = legitimate, on_foreign
        self._seen: Observation | None = None
        self.leading = threading.Event()

    @property
    def holder(self) -> str:
        """Who holds the Lease as last seen ("" when free or not read yet): a standby's answer to "who leads?"."""
        return self.identity if self.leading.is_set() else (self._seen.record[0] if self._seen else "")

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
            holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
            foreign = bool(holder) and holder != self.identity and self.legitimate is not None \
                and not self.legitimate(holder)
            step, self._seen = decide(lease, self.identity, self._seen, time.monotonic(), foreign=foreign,
                                      max_duration=self.lease_duration)
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
            if step in (Step.TAKE, Step.RECLAIM):
                spec.update(acquireTime=now, leaseTransitions=int(current.get("leaseTransitions") or 0) + 1)
            written = self.cluster.replace(LEASES, {**lease, "spec": {**current, **spec}})
            if step is Step.RECLAIM:
                log.warning("Lease %s/%s was held by %r, which is not one of the reconciler's replicas; taken back",
                            self.namespace, self.name, holder)
                if self.on_foreign is not None:
                    self.on_foreign(written, holder)
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
