"""One Application's cycle, decided: a full sync or nothing, and when the next cycle is due.

Shaped like controller-runtime's ``Reconcile → Result``: a cycle returns a ``Requeue`` and exactly one
place (``Controller._requeue``) turns it into the next schedule entry. The decisions are pure (the
caller passes the monotonic ``now``), so they are tested as tables.

A cycle of an Application being deleted is a delete pass (``reconciler.deletion`` decides which). Otherwise
it is a *no-op* — the fetch was all there was to do, no API call — when the revision is the one last
synced at this generation, nothing failed, nothing asked for a sync and the resync is not due; a *full*
sync (render, compare every object, prune) in every other case, including a revision that could not
be resolved (the full cycle reports why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from reconciler.application import AppSpec
from reconciler.revision import Revision

MAX_DOUBLINGS: Final = 10


class Cycled(Protocol):
    """What the decisions read of an Application's record (``reconciler.record.AppState``)."""

    spec: AppSpec
    synced: tuple[str, tuple[tuple[str, str], ...], int]  # (sha, refs, generation) of the last good full sync
    force_full: bool
    next_full: float
    failures: int


@dataclass(frozen=True, slots=True)
class Requeue:
    """What a cycle asks for next: ``failed`` → retry with exponential backoff; otherwise the next poll
    (or sooner, when a full sync falls due before it)."""

    failed: bool = False


def full_due(state: Cycled, now: float) -> bool:
    """Whether a full sync is due whatever the revision: asked for, resync time, or retrying a failure."""
    return state.force_full or now >= state.next_full or state.failures > 0


def needs_full(state: Cycled, revision: Revision | None, *, due: bool) -> bool:
    """Whether this cycle is a full sync, once the revision is resolved (None: it could not be, or the
    spec is invalid); ``due`` is ``full_due`` as it was before resolving."""
    return due or revision is None or state.synced != (revision.sha, revision.refs, state.spec.generation)


def delay(failures: int, *, refresh_interval: float, max_backoff: float, next_full: float, now: float) -> float:
    """Seconds until the next cycle, after ``failures`` consecutive failed ones (0: the last succeeded)."""
    if failures:
        return min(max_backoff, refresh_interval * 2.0 ** min(failures, MAX_DOUBLINGS))
    if next_full:
        return max(0.0, min(refresh_interval, next_full - now))
    return refresh_interval
