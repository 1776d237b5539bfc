"""Time as the contract writes it, and the one rule that depends on it: whether a break-glass grant holds.

Times on the wire are RFC 3339 in UTC with a ``Z``: to the second (``format_time``, what Kubernetes
writes in ``metav1.Time``) or to the microsecond (``format_micro``, ``metav1.MicroTime``: Lease renewals,
Event times). ``parse_time`` reads either, with ``Z`` or an offset, and *fails closed*: a time without a
timezone is not guessed to be UTC but refused, because the times it reads gate security decisions
(a grant's expiry, a drift mark's recency) and an annotation is written by whoever could write it.

A break-glass grant (``contract.BreakGlass``, written by the mutating webhook) lets an object differ
from git while it still names the object's stamped commit and has not expired; ``holds_until`` is
that rule, for the webhook (which also checks the user) and the reconciler alike. An unreadable expiry
never holds.

Pure: nothing here reads the clock; callers pass ``now`` (an aware datetime).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from driftguard.core.contract import BreakGlass

SECONDS: Final = "%Y-%m-%dT%H:%M:%SZ"
MICROSECONDS: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second: ``2026-03-01T12:00:00Z``."""
    return moment.astimezone(dt.UTC).strftime(SECONDS)


def format_micro(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the microsecond: ``2026-03-01T12:00:00.000000Z``."""
    return moment.astimezone(dt.UTC).strftime(MICROSECONDS)


def parse_time(text: str) -> dt.datetime:
    """An aware datetime from RFC 3339 (``Z`` or an offset); ``ValueError`` otherwise, also for a time
    without a timezone."""
    moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment


def time_or_none(text: str) -> dt.datetime | None:
    """``parse_time``, or None when ``text`` is not a time it accepts."""
    try:
        return parse_time(text)
    except ValueError:
        return None


def as_micro(text: str) -> str:
    """A ``format_time`` string as a ``MicroTime`` (``…:00Z`` → ``…:00.000000Z``); others unchanged."""
    return text.replace("Z", ".000000Z") if text.endswith("Z") and "." not in text else text


def holds_until(grant: BreakGlass | None, commit: str, now: dt.datetime) -> dt.datetime | None:
    """When ``grant`` expires, if it holds for an object stamped at ``commit`` at ``now``; None when it
    does not hold (no grant, another commit, expired, or an expiry that cannot be read)."""
    if grant is None or grant.commit != commit:
        return None
    expires = time_or_none(grant.expires_at)
    return expires if expires is not None and expires > now else None
