"""Sending notifications: a bounded queue and one worker thread, so nothing ever waits on a receiver.

``notify`` is called from the sync workers, self-heal, the perimeter and the audit trail's watch; it
reads the Application's subscriptions (``reconciler.notifications``), passes the notice through the
rate limit and puts what is to be sent on a bounded queue — a full queue drops the message and counts
it, it never blocks. The worker resolves each subscription's Secret (in the Application's namespace,
key ``url``; cached for a minute), resolves the url's host once and refuses the send if any address is
link-local, cloud metadata, unspecified, multicast or (unless allowed) loopback, POSTs the JSON to an address it
checked (TLS still verifying the url's host name: no second lookup to rebind), and retries a failed send
with backoff (unreachable, 429, 5xx; at most ``MAX_ATTEMPTS``) from a schedule of its own, so a slow
receiver delays only its own messages' retries. Held notices (a flood) go out as one summary when their window closes.
Receiver URLs are never logged (a Slack webhook URL is a credential).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import heapq
import http.client
import itertools
import json
import logging
import queue
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from driftguard.kube.resources import Cluster, ResourceError, ResourceType
from reconciler import notifications
from reconciler.notifications import Aggregator, Notice, Subscription

log = logging.getLogger(__name__)

SECRETS: Final = ResourceType("", "v1", "Secret", "secrets", namespaced=True)
SEND_TIMEOUT: Final = 5.0
URL_TTL: Final = 60.0

Post = Callable[[str, bytes], int]  # (url, body) → HTTP status (0: unreachable); ValueError: refused, never retried
Resolve = Callable[[str, int], list[str]]  # (host, port) → its addresses, in the resolver's order


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (getaddrinfo, TCP), once; an IP literal is itself."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ValueError(f"{host} does not resolve ({e})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to ``address``, whatever ``host`` (the Host header) resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to ``address`` whose TLS still names ``host``: SNI, and the certificate verified for it."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address, self.tls = address, context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def http_post(url: str, body: bytes, *, allow_loopback: bool = False, resolver: Resolve = resolve,
              context: ssl.SSLContext | None = None) -> int:
    """POST ``body`` to ``url``: its host resolved once, every address checked (``notifications.check_addresses``:
    ValueError, one bad address refuses the send), then a connection to a checked address — never a second
    resolution that could answer differently — with TLS verifying the certificate for the url's host."""
    parts = urllib.parse.urlsplit(url)
    host, https = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    addresses = notifications.check_addresses(host, resolver(host, port), allow_loopback=allow_loopback)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    for address in addresses:
        connection: http.client.HTTPConnection = (
            _PinnedHTTPS(host, port, address, SEND_TIMEOUT, context or ssl.create_default_context()) if https
            else _PinnedHTTP(host, port, address, SEND_TIMEOUT))
        try:
            connection.request("POST", target, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return int(response.status)
        except (OSError, http.client.HTTPException):
            continue
        finally:
            connection.close()
    return 0


@dataclass(order=True)
class _Send:
    not_before: float
    order: int
    namespace: str = field(compare=False)
    subscription: Subscription = field(compare=False)
    notice: Notice = field(compare=False)
    attempt: int = field(default=1, compare=False)


class Notifier:
    def __init__(self, cluster: Cluster, *, allow_loopback: bool = False, queue_size: int = 1000,
                 window: float = notifications.WINDOW, post: Post | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster, self.allow_loopback, self.clock = cluster, allow_loopback, clock
        self.post: Post = post or functools.partial(http_post, allow_loopback=allow_loopback)
        self.aggregator = Aggregator(window)
        self._queue: queue.Queue[_Send] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._apps: dict[str, tuple[str, list[Subscription]]] = {}  # application → (namespace, subscriptions)
        self._urls: dict[tuple[str, str], tuple[float, str]] = {}
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    # ------------------------------------------------------------ the callers' side (never blocks)

    def notify(self, app: Mapping[str, Any], notice: Notice) -> None:
        """Send ``notice`` to ``app``'s subscribers of its trigger, subject to the rate limit."""
        try:
            metadata = app.get("metadata") or {}
            subs, problems = notifications.subscriptions(metadata.get("annotations") or {})
            for problem in problems:
                log.debug("Application %s: %s", notice.application, problem)
            wanted = [s for s in subs if s.trigger == notice.trigger]
            namespace = str(metadata.get("namespace") or "")
            with self._lock:
                self._apps[notice.application] = (namespace, subs)
                if not wanted:
                    return
                due = self.aggregator.add(notice, self.clock())
            if due is not None:
                self._enqueue(namespace, wanted, due)
        except Exception:  # a notification is never worth a failed sync
            log.exception("notification not queued")

    def _enqueue(self, namespace: str, subs: list[Subscription], notice: Notice) -> None:
        for sub in subs:
            try:
                self._queue.put_nowait(_Send(0.0, next(self._order), namespace, sub, notice))
            except queue.Full:
                self.dropped += 1
                log.warning("notification queue full: %s for %s dropped", notice.trigger, notice.application)

    # ------------------------------------------------------------ the worker

    def start(self, done: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(done,), name="notifier", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self, done: threading.Event) -> None:
        retries: list[_Send] = []
        while not done.is_set():
            wait = 0.5
            if retries:
                wait = max(0.0, min(wait, retries[0].not_before - self.clock()))
            with contextlib.suppress(queue.Empty):
                self._send(self._queue.get(timeout=wait), retries)
            while retries and retries[0].not_before <= self.clock() and not done.is_set():
                self._send(heapq.heappop(retries), retries)
            self._summaries()

    def _summaries(self) -> None:
        with self._lock:
            due = self.aggregator.due(self.clock())
            targets = {n.application: self._apps.get(n.application) for n in due}
        for notice in due:
            namespace, subs = targets.get(notice.application) or ("", [])
            self._enqueue(namespace, [s for s in subs if s.trigger == notice.trigger], notice)

    def _send(self, item: _Send, retries: list[_Send]) -> None:
        try:
            url = self._url(item.namespace, item.subscription.secret)
        except (ValueError, ResourceError) as e:
            self.failed += 1
            log.warning("Application %s: notification %s via %s not sent: Secret %s/%s: %s", item.notice.application,
                        item.notice.trigger, item.subscription.service, item.namespace, item.subscription.secret, e)
            return
        body = json.dumps(notifications.payload(item.notice, item.subscription.service)).encode()
        try:
            status = self.post(url, body)
        except ValueError as e:  # the receiver's host resolves to an address driftguard never sends to
            self.failed += 1
            log.warning("Application %s: notification %s via %s (Secret %s) not sent: %s", item.notice.application,
                        item.notice.trigger, item.subscription.service, item.subscription.secret, e)
            return
        if 200 <= status < 300:
            self.sent += 1
            return
        delay = notifications.backoff(item.attempt) if notifications.retryable(status) else None
        if delay is None:
            self.failed += 1
            log.warning("Application %s: notification %s via %s (Secret %s) failed: answer %s after %d attempt(s)",
                        item.notice.application, item.notice.trigger, item.subscription.service,
                        item.subscription.secret, status or "none", item.attempt)
            return
        item.attempt += 1
        item.not_before = self.clock() + delay
        heapq.heappush(retries, item)

    def _url(self, namespace: str, secret: str) -> str:
        cached = self._urls.get((namespace, secret))
        if cached is not None and self.clock() - cached[0] < URL_TTL:
            return cached[1]
        found = self.cluster.get(SECRETS, namespace, secret)
        if found is None:
            raise ValueError("not found")
        encoded = (found.get("data") or {}).get("url")
        if not encoded:
            raise ValueError("has no key 'url'")
        url = notifications.check_url(base64.b64decode(encoded).decode(), allow_loopback=self.allow_loopback)
        self._urls[(namespace, secret)] = (self.clock(), url)
        return url
