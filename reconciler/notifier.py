"""Sending notifications: a bounded queue and one worker thread, so nothing ever waits on a receiver.

``notify`` is called from the sync workers, self-heal, the perimeter and the audit trail's watch; it
reads the Application's subscriptions (``reconciler.notifications``), passes the notice through the
rate limit and puts what is to be sent on a bounded queue — a full queue drops the message and counts
it, it never blocks. The worker resolves each subscription's Secret (in the Application's namespace,
key ``url``; cached for a minute), POSTs the JSON, and retries a failed send with backoff (unreachable,
429, 5xx; at most ``MAX_ATTEMPTS``) from a schedule of its own, so a slow receiver delays only its
own messages' retries. Held notices (a flood) go out as one summary when their window closes.
Receiver URLs are never logged (a Slack webhook URL is a credential).
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
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

Post = Callable[[str, bytes], int]  # (url, body) → HTTP status (0: unreachable)


def http_post(url: str, body: bytes) -> int:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked by notifications.check_url
        url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
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
                 window: float = notifications.WINDOW, post: Post = http_post,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster, self.allow_loopback, self.post, self.clock = cluster, allow_loopback, post, clock
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
        status = self.post(url, body)
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
