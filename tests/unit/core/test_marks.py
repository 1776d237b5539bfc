"""Authenticated marks: sealed by the webhook, verified by anyone holding the key; forgeries never hold."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from driftguard.core import marks
from driftguard.core.contract import BreakGlass, DriftMark
from driftguard.core.marks import MarkKey

KEY = MarkKey(b"k" * 32)
OTHER = MarkKey(b"o" * 32)
UID = "0b1c2d3e-uid"
NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=1)
COMMIT = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
GRANT = BreakGlass("oncall", "2024-06-01T11:30:00Z", "incident 42", COMMIT, "2024-06-01T12:30:00Z")


def _tamper(text: str, **changes: str) -> str:
    data = json.loads(text)
    data.update(changes)
    return json.dumps(data)


SEALED = marks.seal(KEY, UID, GRANT.encode())


@pytest.mark.parametrize(("key", "uid", "text", "fields"), [
    pytest.param(KEY, UID, SEALED, True, id="sealed for this object"),
    pytest.param(OTHER, UID, SEALED, False, id="another key"),
    pytest.param(KEY, "another-uid", SEALED, False, id="moved to another object"),
    pytest.param(KEY, UID, GRANT.encode(), False, id="hand-written, no mac"),
    pytest.param(KEY, UID, _tamper(SEALED, expires_at="2099-01-01T00:00:00Z"), False, id="expiry stretched"),
    pytest.param(KEY, UID, _tamper(SEALED, user="alice"), False, id="blames someone else"),
    pytest.param(KEY, UID, _tamper(SEALED, mac="0" * 64), False, id="made-up mac"),
    pytest.param(KEY, UID, "not json", False, id="not JSON"),
    pytest.param(KEY, "", SEALED, False, id="no object uid"),
])
def test_unseal_verifies_the_mac(key: MarkKey, uid: str, text: str, fields: bool) -> None:
    unsealed = marks.unseal(key, uid, text)
    assert (unsealed is not None) is fields
    if fields:
        assert unsealed == json.loads(GRANT.encode())


def test_a_drift_mark_seals_the_same_way() -> None:
    mark = DriftMark("laptop", "2024-06-01T11:59:00Z", ("spec.replicas",)).encode()
    sealed = marks.seal(KEY, UID, mark)
    assert marks.unseal(KEY, UID, sealed) == json.loads(mark)
    assert DriftMark.decode(sealed) == DriftMark.decode(mark)  # readers that ignore the mac still read it
    assert marks.unseal(KEY, UID, _tamper(sealed, fields='["nothing"]')) is None


@pytest.mark.parametrize(("text", "commit", "now", "holds", "reason"), [
    pytest.param(SEALED, COMMIT, NOW, True, "", id="holds"),
    pytest.param(SEALED, "ffff" * 10, NOW, False, "the grant names commit 1a2b3c4, not the stamped one",
                 id="git moved on"),
    pytest.param(SEALED, COMMIT, NOW + dt.timedelta(hours=1), False, "the grant expired at 2024-06-01T12:30:00Z",
                 id="expired"),
    pytest.param(marks.seal(KEY, UID, BreakGlass("oncall", "2024-06-01T11:30:00Z", "r", COMMIT,
                                                 "2099-01-01T00:00:00Z").encode()),
                 COMMIT, NOW + dt.timedelta(minutes=45), False, "the grant expired at 2024-06-01T12:30:00Z",
                 id="expiry capped at grant time + TTL"),
    pytest.param(GRANT.encode(), COMMIT, NOW, False, "the grant carries no valid MAC (forged, edited or moved)",
                 id="unsealed"),
    pytest.param(marks.seal(KEY, UID, '{"user": "x"}'), COMMIT, NOW, False, "the grant is unreadable",
                 id="sealed but not a grant"),
])
def test_sealed_grant(text: str, commit: str, now: dt.datetime, holds: bool, reason: str) -> None:
    check = marks.sealed_grant(KEY, UID, text, commit=commit, ttl=TTL, now=now)
    assert (check.holds, check.reason) == (holds, reason)


def test_keys_round_trip_as_hex_and_never_show() -> None:
    key = MarkKey.generate()
    assert MarkKey.from_text(key.to_text() + "\n") == key
    assert key.to_text() not in repr(key)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        MarkKey(b"short")
    with pytest.raises(ValueError, match="not hex"):
        MarkKey.from_text("zz")
