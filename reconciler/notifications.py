"""Notifications, decided: who subscribed to what, which happening is which trigger, when to send, what.

An Application subscribes with annotations in the style of Argo CD's notifications:
``notifications.driftguard.io/subscribe.<trigger>.<service>: <Secret name>`` — the Secret, in the
Application's namespace, holds the receiver's ``url``. Triggers: ``on-deny``, ``on-warn``,
``on-break-glass`` (the webhook's decisions, as the audit trail hears them), ``on-drift`` (a revert by
self-heal, a fight), ``on-sync-failed`` (Ready went False, a hook failed), ``on-health-degraded``
(health became Degraded) and ``on-webhook-missing`` (a webhook configuration was deleted or altered and
put back). Services: ``webhook`` (a generic JSON POST) and ``slack`` (a Slack-compatible incoming
webhook: ``{"text": …}``).

``Aggregator`` is the rate limit: per (Application, trigger, object, user) the first notice goes at
once, and whatever follows within ``window`` seconds (a flood of denials) is held and counted and sent
as one summary when the window closes — one message a minute per object and user. ``backoff`` is the
retry schedule of a failed send. Pure: the caller passes ``now``; ``reconciler.notifier`` does the I/O.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

PREFIX: Final = "notifications.driftguard.io/subscribe."
TRIGGERS: Final = ("on-deny", "on-warn", "on-break-glass", "on-drift", "on-sync-failed", "on-health-degraded",
                   "on-webhook-missing")
SERVICES: Final = ("webhook", "slack")
WINDOW: Final = 60.0
MAX_ATTEMPTS: Final = 5
_DECISIONS: Final = {"deny": "on-deny", "warn": "on-warn", "break-glass": "on-break-glass"}
_NOT_SYNC: Final = frozenset({"FightDetected", "UntrustedMetadataRemoved", "DeleteFailed", "CascadeRefused",
                              "CascadeWaiting", "HookSucceeded", "HookRunning"})


@dataclass(frozen=True, slots=True)
class Subscription:
    trigger: str
    service: str
    secret: str  # in the Application's namespace, key ``url``


def subscriptions(annotations: Mapping[str, str]) -> tuple[list[Subscription], list[str]]:
    """The subscriptions an Application's annotations declare, and a problem per one that names an unknown
    trigger or service or no Secret (ignored, never guessed)."""
    found: list[Subscription] = []
    problems: list[str] = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(PREFIX):
            continue
        trigger, _, service = key[len(PREFIX):].rpartition(".")
        secret = str(value).strip()
        if trigger not in TRIGGERS:
            problems.append(f"{key}: unknown trigger {trigger!r} (one of {', '.join(TRIGGERS)})")
        elif service not in SERVICES:
            problems.append(f"{key}: unknown service {service!r} (one of {', '.join(SERVICES)})")
        elif not secret:
            problems.append(f"{key}: name the Secret holding the receiver's url")
        else:
            found.append(Subscription(trigger, service, secret))
    return found, problems


# ---------------------------------------------------------------- what happened

@dataclass(frozen=True, slots=True)
class Notice:
    trigger: str
    application: str  # "namespace/name"
    object: str  # "Deployment production/web", or the Application itself
    user: str  # who did it ("" for the reconciler's own findings)
    message: str
    time: str  # RFC 3339, of the last occurrence
    count: int = 1  # occurrences this notice stands for

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.application, self.trigger, self.object, self.user)


def trigger_of_decision(decision: str) -> str | None:
    return _DECISIONS.get(decision)


def trigger_of_event(type_: str, reason: str, about_object: bool) -> str | None:
    """The trigger of one of the reconciler's Events (``reconciler.record``), if any."""
    if reason == "DriftReverted" or (reason == "FightDetected" and about_object):
        return "on-drift"
    if reason == "WebhookConfigurationRestored":
        return "on-webhook-missing"
    if type_ == "Warning" and not about_object and reason not in _NOT_SYNC:
        return "on-sync-failed"  # Ready went False (its reason), or HookFailed
    return None


def degraded(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether an Application's ``status.health`` became Degraded."""
    return after.get("status") == "Degraded" and before.get("status") != "Degraded"


# ---------------------------------------------------------------- the rate limit

@dataclass
class _Window:
    opened: float
    held: Notice | None = None  # the latest held notice, its count the number held


class Aggregator:
    """Per notice key: the first notice is sent at once; the rest within ``window`` are held and sent as one."""

    def __init__(self, window: float = WINDOW, max_keys: int = 10_000) -> None:
        self.window, self.max_keys = window, max_keys
        self._open: dict[tuple[str, str, str, str], _Window] = {}

    def add(self, notice: Notice, now: float) -> Notice | None:
        """The notice to send now, or None when it is held (counted into the window's summary)."""
        current = self._open.get(notice.key)
        if current is None or (now - current.opened >= self.window and current.held is None):
            if len(self._open) >= self.max_keys and current is None:
                return None  # bounded: a flood of distinct keys waits for windows to close
            self._open[notice.key] = _Window(now)
            return notice
        held = current.held
        current.held = notice if held is None else replace(notice, count=held.count + notice.count)
        return None

    def due(self, now: float) -> list[Notice]:
        """Summaries of the windows that closed, each standing for what it held; closed empty ones are forgotten."""
        out: list[Notice] = []
        for key, current in list(self._open.items()):
            if now - current.opened < self.window:
                continue
            if current.held is None:
                del self._open[key]
                continue
            out.append(current.held)
            self._open[key] = _Window(now)  # the summary opens the next window
        return out


def backoff(attempt: int) -> float | None:
    """Seconds before retry ``attempt`` (1-based) of a failed send; None: give up."""
    return None if attempt >= MAX_ATTEMPTS else min(1.0 * 2 ** (attempt - 1), 30.0)


def retryable(status: int) -> bool:
    """A receiver's answer worth retrying: none (0: unreachable), 429, or a 5xx."""
    return status in {0, 429} or status >= 500


# ---------------------------------------------------------------- the message

_TITLES: Final = {"on-deny": "denied", "on-warn": "drifted (warn mode)", "on-break-glass": "broke glass on",
                  "on-drift": "drift reverted on", "on-sync-failed": "sync failed", "on-health-degraded":
                  "health degraded", "on-webhook-missing": "webhook configuration missing"}


def text(notice: Notice) -> str:
    times = f" ({notice.count} times in the last minute)" if notice.count > 1 else ""
    who = f"{notice.user}: " if notice.user else ""
    return (f"[driftguard] {notice.application}: {_TITLES[notice.trigger]} — {notice.object}{times}. "
            f"{who}{notice.message}")[:3000]


def payload(notice: Notice, service: str) -> dict[str, Any]:
    if service == "slack":
        return {"text": text(notice)}
    return {"trigger": notice.trigger, "application": notice.application, "object": notice.object,
            "user": notice.user, "message": notice.message, "count": notice.count, "time": notice.time,
            "text": text(notice)}


# Cloud metadata services outside 169.254.0.0/16 (AWS's IPv6 IMDS, Alibaba Cloud's): refused like link-local
METADATA: Final = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


def address_refusal(text: str, *, allow_loopback: bool = False) -> str | None:
    """Why driftguard may not connect to the address ``text`` (None: it may): link-local (169.254.0.0/16,
    fe80::/10: cloud metadata), a metadata address, unspecified, multicast, loopback unless allowed; an
    IPv4-mapped IPv6 address is judged as its IPv4 address."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"{text!r} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address in METADATA:
        return f"{address} is a link-local or cloud metadata address"
    if address.is_unspecified or address.is_multicast:
        return f"{address} is an unspecified or multicast address"
    if address.is_loopback and not allow_loopback:
        return f"{address}: loopback is refused (--notify-loopback allows it)"
    return None


def check_addresses(host: str, addresses: Sequence[str], *, allow_loopback: bool = False) -> list[str]:
    """``addresses`` (what ``host`` resolved to, in order) if every one may be connected to; ValueError naming the
    first that may not — one bad address refuses the send, so a name cannot hide metadata among other answers."""
    if not addresses:
        raise ValueError(f"{host} resolves to no address")
    for address in addresses:
        refusal = address_refusal(address, allow_loopback=allow_loopback)
        if refusal:
            raise ValueError(f"{host} resolves to {refusal}; refused")
    return list(addresses)


def check_url(url: str, *, allow_loopback: bool = False) -> str:
    """``url`` if driftguard may POST to it (http or https; never link-local such as a cloud metadata
    address, never loopback unless allowed); ValueError saying why not."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the url must be http:// or https:// with a host")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower() == "localhost" and not allow_loopback:
            raise ValueError("the url names localhost (loopback is refused)") from None
        return url.strip()  # a name: its addresses are checked when it is resolved, once per send
    refusal = address_refusal(parts.hostname, allow_loopback=allow_loopback)
    if refusal:
        raise ValueError(f"the url names {refusal}")
    return url.strip()
