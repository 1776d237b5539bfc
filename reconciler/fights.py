"""Fight detection: when something keeps changing an object back, stop reverting it for a while.

Two controllers owning one field (an HPA and git both setting ``replicas``, a mutating webhook, a
cron job running ``kubectl scale``) turn self-heal into a write loop. More than ``limit`` reverts of
one object within ``window`` seconds is a fight: self-heal backs off that object (30 s, doubling up
to 10 min), the Application gets a condition and an Event, and the drift stays visible in status.
A quiet spell twice the window long after the backoff forgives the object.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from driftguard.core.objects import ObjectRef


@dataclass(slots=True)
class _Record:
    reverts: deque[float] = field(default_factory=deque)
    until: float = 0.0
    backoff: float = 0.0
    last: float = 0.0
    fights: int = 0


@dataclass(frozen=True, slots=True)
class Fight:
    ref: ObjectRef
    backed_off_for: float  # seconds left
    fights: int


class FightDetector:
    def __init__(
        self, *, limit: int = 5, window: float = 60.0, backoff: float = 30.0, max_backoff: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.backoff, self.max_backoff = limit, window, backoff, max_backoff
        self._clock = clock
        self._records: dict[ObjectRef, _Record] = {}
        self._lock = threading.Lock()

    def allow(self, ref: ObjectRef) -> bool:
        """Whether self-heal may revert ``ref`` now."""
        with self._lock:
            record = self._records.get(ref)
            return record is None or self._clock() >= record.until

    def record(self, ref: ObjectRef) -> bool:
        """Count one revert of ``ref``; True when it makes a fight (self-heal now backs off)."""
        now = self._clock()
        with self._lock:
            record = self._records.setdefault(ref, _Record())
            if record.backoff and now - max(record.last, record.until) > 2 * self.window:
                record.backoff, record.fights = 0.0, 0  # forgiven after a quiet spell
            record.last = now
            record.reverts.append(now)
            while record.reverts and now - record.reverts[0] > self.window:
                record.reverts.popleft()
            if len(record.reverts) <= self.limit:
                return False
            record.backoff = min(self.max_backoff, record.backoff * 2 if record.backoff else self.backoff)
            record.until = now + record.backoff
            record.fights += 1
            record.reverts.clear()
            return True

    def fighting(self, refs: Iterable[ObjectRef] | None = None) -> list[Fight]:
        """Objects currently backed off (among ``refs`` when given)."""
        now = self._clock()
        with self._lock:
            keys = self._records.keys() if refs is None else [r for r in refs if r in self._records]
            return sorted(
                (Fight(ref, self._records[ref].until - now, self._records[ref].fights)
                 for ref in keys if self._records[ref].until > now),
                key=lambda f: f.ref,
            )

    def forget(self, refs: Iterable[ObjectRef]) -> None:
        with self._lock:
            for ref in refs:
                self._records.pop(ref, None)
