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

from reconciler.application import AppSpec, Retry
from reconciler.revision import Revision

MAX_DOUBLINGS: Final = 10


class Cycled(Protocol):
    """What the decisions read of an Application's record (``reconciler.record.AppState``)."""

    spec: AppSpec
    synced: tuple[str, tuple[tuple[str, str], ...], int]  # (sha, refs, generation) of the last good full sync
    attempted: tuple[str, tuple[tuple[str, str], ...], int]  # ... of the last full sync, good or failed
    force_full: bool
    next_full: float
    failures: int


@dataclass(frozen=True, slots=True)
class Requeue:
    """What a cycle asks for next: ``failed`` → retry with exponential backoff; otherwise the next poll
    (or sooner, when a full sync falls due before it)."""

    failed: bool = False


def gave_up(state: Cycled) -> bool:
    """Whether ``syncPolicy.retry.limit`` retries of the failing revision are spent: it is not synced again until
    the revision or the spec changes, or a refresh asks (as Argo CD's automated sync does not retry it)."""
    return state.spec.retry is not None and state.spec.retry.exhausted(state.failures)


def full_due(state: Cycled, now: float) -> bool:
    """Whether a full sync is due whatever the revision: asked for, resync time, or retrying a failure."""
    if state.force_full:
        return True
    if gave_up(state):
        return False
    return now >= state.next_full or state.failures > 0


def needs_full(state: Cycled, revision: Revision | None, *, due: bool) -> bool:
    """Whether this cycle is a full sync, once the revision is resolved (None: it could not be, or the
    spec is invalid); ``due`` is ``full_due`` as it was before resolving."""
    if due or revision is None:
        return True
    key = (revision.sha, revision.refs, state.spec.generation)
    return state.attempted != key if gave_up(state) else state.synced != key


def delay(failures: int, *, refresh_interval: float, max_backoff: float, next_full: float, now: float,
          retry: Retry | None = None) -> float:
    """Seconds until the next cycle, after ``failures`` consecutive failed ones (0: the last succeeded);
    with ``syncPolicy.retry``, its backoff (and, once its limit is spent, the poll for a new revision)."""
    if failures and retry is not None:
        return refresh_interval if retry.exhausted(failures) else retry.delay(failures)
    if failures:
        return min(max_backoff, refresh_interval * 2.0 ** min(failures, MAX_DOUBLINGS))
    if next_full:
        return max(0.0, min(refresh_interval, next_full - now))
    return refresh_interval
