"""Time as the contract writes it, and the break-glass rule: one parser that fails closed, one grant rule
for the webhook and the reconciler."""

from __future__ import annotations

import datetime as dt

import pytest

from driftguard.core.clock import as_micro, format_micro, format_time, holds_until, parse_time, time_or_none
from driftguard.core.contract import BreakGlass

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
COMMIT = "1" * 40


@pytest.mark.parametrize(("text", "parsed"), [
    ("2026-03-01T12:00:00Z", NOW),
    ("2026-03-01T12:00:00.000000Z", NOW),
    ("2026-03-01T13:00:00+01:00", NOW),
    (" 2026-03-01T12:00:00Z\n", NOW),
    ("2026-03-01T12:00:00", None),  # no timezone: refused, not assumed to be UTC
    ("2026-03-01", None),
    ("tomorrow", None),
    ("", None),
])
def test_parse_time_fails_closed(text: str, parsed: dt.datetime | None) -> None:
    assert time_or_none(text) == parsed
    if parsed is None:
        with pytest.raises(ValueError):
            parse_time(text)


@pytest.mark.parametrize(("moment", "seconds", "micro"), [
    (NOW, "2026-03-01T12:00:00Z", "2026-03-01T12:00:00.000000Z"),
    (NOW.astimezone(dt.timezone(dt.timedelta(hours=-5))), "2026-03-01T12:00:00Z", "2026-03-01T12:00:00.000000Z"),
    (NOW + dt.timedelta(microseconds=1500), "2026-03-01T12:00:00Z", "2026-03-01T12:00:00.001500Z"),
])
def test_formats_are_utc_with_a_z(moment: dt.datetime, seconds: str, micro: str) -> None:
    assert (format_time(moment), format_micro(moment)) == (seconds, micro)
    assert parse_time(format_micro(moment)) == moment
    assert as_micro(seconds) == micro.replace(micro[19:26], ".000000") and as_micro(micro) == micro


def grant(commit: str = COMMIT, expires_at: str = "2026-03-01T12:30:00Z") -> BreakGlass:
    return BreakGlass("alice", "2026-03-01T11:30:00Z", "incident 42", commit, expires_at)


@pytest.mark.parametrize(("given", "now", "holds"), [
    pytest.param(grant(), NOW, True, id="at-the-stamped-commit-before-expiry"),
    pytest.param(grant(), NOW + dt.timedelta(minutes=30), False, id="expiry-is-exclusive"),
    pytest.param(grant(), NOW + dt.timedelta(hours=1), False, id="expired"),
    pytest.param(grant(commit="2" * 40), NOW, False, id="another-commit"),
    pytest.param(grant(expires_at="2026-03-01T12:30:00"), NOW, False, id="expiry-without-timezone"),
    pytest.param(grant(expires_at="soon"), NOW, False, id="unreadable-expiry"),
    pytest.param(None, NOW, False, id="no-grant"),
])
def test_a_grant_holds_only_at_its_commit_until_it_expires(given: BreakGlass | None, now: dt.datetime,
                                                           holds: bool) -> None:
    until = holds_until(given, COMMIT, now)
    assert (until is not None) is holds
    if holds:
        assert until == dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
