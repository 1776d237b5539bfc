"""The run queue on its own: the earliest request wins, stale entries are skipped, a slot never runs twice
at once, and a request made while it runs is served right after."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from reconciler.application import AppKey
from reconciler.schedule import Schedule


@dataclass(eq=False)
class Slot:
    key: AppKey
    due: float | None = None
    running: bool = False
    again: bool = False


def queue(*names: str) -> tuple[Schedule[Slot], dict[AppKey, Slot]]:
    slots = {AppKey("ns", name): Slot(AppKey("ns", name)) for name in names}
    return Schedule(slots.get), slots


def take(schedule: Schedule[Slot]) -> Slot | None:
    with schedule.cv:
        return schedule.next_due()


@pytest.mark.parametrize(("delays", "expected"), [
    ((0.0,), 0.0),
    ((30.0, 0.0), 0.0),  # an earlier request moves it up
    ((0.0, 30.0), 0.0),  # a later one does not move it back
])
def test_the_earliest_request_wins(delays: tuple[float, ...], expected: float) -> None:
    schedule, slots = queue("a")
    slot = slots[AppKey("ns", "a")]
    before = time.monotonic()
    with schedule.cv:
        for delay in delays:
            schedule.request(slot, delay)
    assert slot.due is not None and before + expected <= slot.due < before + expected + 10.0
    assert take(schedule) is slot


def test_due_slots_come_out_in_order_and_gone_ones_are_skipped() -> None:
    schedule, slots = queue("a", "b", "c")
    with schedule.cv:
        for name, delay in (("c", 0.0), ("a", 0.0), ("b", 0.0)):
            schedule.request(slots[AppKey("ns", name)], delay)
            time.sleep(0.001)
    del slots[AppKey("ns", "a")]
    taken = [take(schedule), take(schedule)]
    assert [s.key.name if s else None for s in taken] == ["c", "b"]


def test_a_request_while_running_is_remembered_not_queued_twice() -> None:
    schedule, slots = queue("a")
    slot = slots[AppKey("ns", "a")]
    slot.running = True
    with schedule.cv:
        schedule.request(slot, 0.0)
    assert slot.again and slot.due is None


def test_serve_runs_a_slot_again_when_asked_during_its_cycle_and_never_overlaps() -> None:
    schedule, slots = queue("a")
    slot = slots[AppKey("ns", "a")]
    done, runs, overlaps = threading.Event(), list[AppKey](), list[AppKey]()
    active = threading.Semaphore(1)

    def cycle(s: Slot) -> None:
        if not active.acquire(blocking=False):
            overlaps.append(s.key)
            return
        try:
            runs.append(s.key)
            if len(runs) == 1:
                with schedule.cv:
                    schedule.request(s, 0.0)  # asked again while running
            time.sleep(0.01)
        finally:
            active.release()
        if len(runs) >= 2:
            done.set()

    workers = [threading.Thread(target=schedule.serve, args=(done, cycle, lambda s: None)) for _ in range(2)]
    with schedule.cv:
        schedule.request(slot, 0.0)
    for worker in workers:
        worker.start()
    assert done.wait(5.0)
    with schedule.cv:
        schedule.cv.notify_all()
    for worker in workers:
        worker.join(5.0)
    assert len(runs) == 2 and overlaps == []


def test_a_cycle_that_raises_is_handed_to_failed_and_the_worker_goes_on() -> None:
    schedule, slots = queue("a")
    slot = slots[AppKey("ns", "a")]
    done, failed = threading.Event(), list[bool]()

    def cycle(s: Slot) -> None:
        raise RuntimeError("boom")

    def on_failure(s: Slot) -> None:
        failed.append(s.running)  # still marked running while it is rescheduled
        done.set()

    with schedule.cv:
        schedule.request(slot, 0.0)
    worker = threading.Thread(target=schedule.serve, args=(done, cycle, on_failure))
    worker.start()
    worker.join(5.0)
    assert failed == [True] and not slot.running and not worker.is_alive()
