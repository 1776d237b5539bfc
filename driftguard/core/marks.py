"""Authenticated marks: a break-glass grant or drift mark is trusted only with a valid MAC. Pure.

The grant (``driftguard.io/break-glass-granted``) and the drift mark (``driftguard.io/drift``) are
annotations, and an annotation is written by whoever could write the object: through a path around
the webhook (an excluded namespace, a moment the webhook was off, impersonation of the reconciler),
anyone could hand-write a grant that expires in 2099 and blames someone else. So the mutating webhook
*seals* each mark: it adds ``"mac"``, an HMAC-SHA256 under a key only driftguard's components hold
(a Secret in ``driftguard-system`` mounted into the webhook and the reconciler; a 0600 file in local
mode), over the object's uid and every field of the mark (user, times, reason, commit, fields) in
canonical JSON. A mark moved to another object, edited, or written without the key does not verify.

``unseal`` returns the mark's fields only when the MAC verifies; ``sealed_grant`` additionally caps
the grant's life at grant time + TTL (a forged or stretched ``expires_at`` never buys more) and says
whether it still holds at ``now`` for the object's stamped commit: the one call the reconciler needs.
The key is never logged: ``MarkKey`` has no repr of its bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from driftguard.core.clock import format_time, time_or_none
from driftguard.core.contract import ANN_BREAK_GLASS_GRANTED, ANN_DRIFT, BreakGlass, DriftMark, annotations_of

MAC_KEY: Final = "mac"
KEY_BYTES: Final = 32
_DOMAIN: Final = b"driftguard-mark-v1\0"


@dataclass(frozen=True)
class MarkKey:
    """The shared secret (at least 32 bytes); its repr never shows them."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < KEY_BYTES:
            raise ValueError(f"a mark key needs at least {KEY_BYTES} bytes, not {len(self.secret)}")

    @classmethod
    def generate(cls) -> MarkKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> MarkKey:
        """The key as stored in a file or Secret: hex (what ``to_text`` writes)."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as e:
            raise ValueError(f"mark key: not hex, or too short ({e})") from None

    def to_text(self) -> str:
        return self.secret.hex()


def seal(key: MarkKey, object_uid: str, text: str) -> str:
    """``text`` (a mark's JSON object) with ``"mac"`` added for the object ``object_uid``."""
    data = _object(text)
    if data is None:
        raise ValueError("a mark must be a JSON object")
    data.pop(MAC_KEY, None)
    data[MAC_KEY] = _mac(key, object_uid, data)
    return json.dumps(data, separators=(",", ":"))


def unseal(key: MarkKey, object_uid: str, text: str) -> dict[str, Any] | None:
    """The mark's fields (without ``mac``) when its MAC verifies for ``object_uid``; None otherwise."""
    data = _object(text)
    if data is None or not object_uid:
        return None
    given = data.pop(MAC_KEY, None)
    if not isinstance(given, str) or not hmac.compare_digest(given, _mac(key, object_uid, data)):
        return None
    return data


@dataclass(frozen=True, slots=True)
class GrantCheck:
    grant: BreakGlass | None  # None: unsealed, forged or unreadable
    holds: bool
    expires_at: dt.datetime | None  # the capped expiry
    reason: str  # why it does not hold ("" when it does)


def sealed_grant(key: MarkKey, object_uid: str, text: str, *, commit: str, ttl: dt.timedelta,
                 now: dt.datetime) -> GrantCheck:
    """Whether a ``driftguard.io/break-glass-granted`` value holds: sealed for this object, naming the
    stamped ``commit``, and ``now`` before min(``expires_at``, ``at`` + ``ttl``)."""
    data = unseal(key, object_uid, text)
    if data is None:
        return GrantCheck(None, False, None, "the grant carries no valid MAC (forged, edited or moved)")
    grant = BreakGlass.decode(json.dumps(data))
    granted = time_or_none(grant.at) if grant else None
    expires = time_or_none(grant.expires_at) if grant else None
    if grant is None or granted is None or expires is None:
        return GrantCheck(grant, False, None, "the grant is unreadable")
    capped = min(expires, granted + ttl)
    if grant.commit != commit:
        return GrantCheck(grant, False, capped, f"the grant names commit {grant.commit[:7]}, not the stamped one")
    if now >= capped:
        return GrantCheck(grant, False, capped, f"the grant expired at {format_time(capped)}")
    return GrantCheck(grant, True, capped, "")


@dataclass(frozen=True)
class Marks:
    """What a driftguard component knows to read and write marks: the key (None: none configured, so no
    mark is ever believed and none can be sealed) and the break-glass TTL that caps every grant."""

    key: MarkKey | None
    ttl: dt.timedelta

    @classmethod
    def unkeyed(cls, ttl: dt.timedelta = dt.timedelta(hours=1)) -> Marks:
        return cls(None, ttl)

    def seal(self, obj: Mapping[str, Any], text: str) -> str | None:
        """``text`` sealed for ``obj`` (its ``metadata.uid``); None without a key or a uid."""
        uid = uid_of(obj)
        return seal(self.key, uid, text) if self.key is not None and uid else None

    def grant(self, obj: Mapping[str, Any], *, commit: str, now: dt.datetime) -> GrantCheck:
        """The break-glass grant on ``obj`` as ``sealed_grant`` judges it (absent: not held, no reason)."""
        text = annotations_of(obj).get(ANN_BREAK_GLASS_GRANTED)
        if text is None:
            return GrantCheck(None, False, None, "")
        if self.key is None:
            return GrantCheck(None, False, None, "no mark key is configured, so no grant can be verified")
        return sealed_grant(self.key, uid_of(obj), text, commit=commit, ttl=self.ttl, now=now)

    def drift_mark(self, obj: Mapping[str, Any]) -> DriftMark | None:
        """The drift mark on ``obj`` when it is sealed for it; None when absent, unsealed or forged."""
        text = annotations_of(obj).get(ANN_DRIFT)
        data = unseal(self.key, uid_of(obj), text) if text is not None and self.key is not None else None
        return DriftMark.decode(json.dumps(data)) if data is not None else None


def uid_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("uid") or "") if isinstance(metadata, Mapping) else ""


def _mac(key: MarkKey, object_uid: str, data: Mapping[str, Any]) -> str:
    message = _DOMAIN + json.dumps([object_uid, data], sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
