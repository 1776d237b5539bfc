"""The per-Application run queue: when each Application's next cycle is due, and the workers that run them.

A min-heap of ``(due, seq, key)``. Asking again only ever moves a slot's due time earlier; a heap entry
whose due time no longer matches its slot (moved, running, or the key is gone) is dropped when it comes
up, never searched for. A slot is never run twice at once: a request while it runs is remembered
(``again``) and served when it ends.

The queue knows nothing of syncing, only of slots: anything with an Application's key, a due time and
the two running flags. Its condition also guards whatever table ``lookup`` reads — the controller passes its own, so the
queue and its table of Applications change under one lock; hold ``cv`` for everything but ``serve``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from driftguard import logs
from reconciler.application import AppKey

log = logging.getLogger(__name__)


class Slot(Protocol):
    key: AppKey
    due: float | None  # when a request is pending, None otherwise
    running: bool
    again: bool  # asked to run at once while running


S = TypeVar("S", bound=Slot)


class Schedule(Generic[S]):
    def __init__(self, lookup: Callable[[AppKey], S | None], cv: threading.Condition | None = None) -> None:
        self.cv = cv or threading.Condition()
        self._lookup = lookup
        self._heap: list[tuple[float, int, AppKey]] = []
        self._seq = 0

    def clear(self) -> None:
        """Forget every request. Hold ``cv``."""
        self._heap.clear()

    def request(self, slot: S, delay: float) -> None:
        """Run ``slot``'s cycle after ``delay`` seconds (earliest request wins). Hold ``cv``."""
        due = time.monotonic() + delay
        if slot.running:
            slot.again = slot.again or delay == 0.0
            if delay > 0.0 and (slot.due is None or due < slot.due):
                slot.due = due
                self._push(due, slot.key)
            return
        if slot.due is None or due < slot.due:
            slot.due = due
            self._push(due, slot.key)
            self.cv.notify()

    def _push(self, due: float, key: AppKey) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))

    def next_due(self) -> S | None:
        """Pop the next due slot (holding ``cv``), waiting at most a second."""
        while self._heap:
            due, _, key = self._heap[0]
            slot = self._lookup(key)
            if slot is None or slot.due != due or slot.running:
                heapq.heappop(self._heap)
                continue
            wait = due - time.monotonic()
            if wait > 0:
                self.cv.wait(min(wait, 1.0))
                return None
            heapq.heappop(self._heap)
            return slot
        self.cv.wait(1.0)
        return None

    def serve(self, done: threading.Event, cycle: Callable[[S], None], failed: Callable[[S], None]) -> None:
        """A worker: run due slots' ``cycle`` until ``done``. When a cycle raises, ``failed`` is called
        (holding ``cv``) to reschedule it; a request made while it ran is served right after."""
        while not done.is_set():
            with self.cv:
                slot = self.next_due()
                if slot is None:
                    continue
                slot.running, slot.due = True, None
            try:
                cycle(slot)
            except Exception:  # one Application's bug must not stop the others
                log.exception("Application %s: cycle failed", slot.key, extra=logs.ctx(application=str(slot.key)))
                with self.cv:
                    failed(slot)
            finally:
                with self.cv:
                    slot.running = False
                    if slot.again and self._lookup(slot.key) is not None:
                        slot.again = False
                        self.request(slot, 0.0)
