"""Notifications: subscriptions, triggers, the rate limit, retries — the pure decisions, and the notifier
sending to a real HTTP receiver on 127.0.0.1 (its Secrets from an in-memory cluster)."""

from __future__ import annotations

import base64
import functools
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_cluster import FakeCluster
from support.http_receiver import Receiver

from certs.authority import CertificateAuthority
from reconciler import notifications
from reconciler.notifications import Aggregator, Notice, Subscription
from reconciler.notifier import Notifier, http_post

P = notifications.PREFIX


@pytest.mark.parametrize(("annotations", "subs", "problems"), [
    pytest.param({}, [], [], id="none"),
    pytest.param({f"{P}on-deny.slack": "team-slack", "other": "x"}, [Subscription("on-deny", "slack", "team-slack")],
                 [], id="one, other annotations ignored"),
    pytest.param({f"{P}on-sync-failed.webhook": " hook ", f"{P}on-health-degraded.slack": "s"},
                 [Subscription("on-health-degraded", "slack", "s"), Subscription("on-sync-failed", "webhook", "hook")],
                 [], id="several, names trimmed"),
    pytest.param({f"{P}on-coffee.slack": "s"}, [], ["unknown trigger 'on-coffee'"], id="an unknown trigger"),
    pytest.param({f"{P}on-deny.email": "s"}, [], ["unknown service 'email'"], id="an unknown service"),
    pytest.param({f"{P}on-deny.slack": ""}, [], ["name the Secret"], id="no Secret"),
])
def test_subscriptions(annotations: dict[str, str], subs: list[Subscription], problems: list[str]) -> None:
    found, said = notifications.subscriptions(annotations)
    assert found == subs
    assert len(said) == len(problems) and all(p in s for p, s in zip(problems, said, strict=True))


@pytest.mark.parametrize(("type_", "reason", "about", "trigger"), [
    ("Normal", "DriftReverted", True, "on-drift"),
    ("Warning", "FightDetected", True, "on-drift"),
    ("Warning", "FightDetected", False, None),  # the same fight's Application-level twin: one notice
    ("Warning", "SourceFailed", False, "on-sync-failed"),  # Ready went False
    ("Warning", "HookFailed", False, "on-sync-failed"),
    ("Warning", "WebhookConfigurationRestored", True, "on-webhook-missing"),
    ("Normal", "Synced", False, None),
    ("Normal", "Recovered", False, None),
    ("Warning", "UntrustedMetadataRemoved", False, None),
    ("Warning", "CascadeWaiting", False, None),
])
def test_which_event_is_which_trigger(type_: str, reason: str, about: bool, trigger: str | None) -> None:
    assert notifications.trigger_of_event(type_, reason, about) == trigger


@pytest.mark.parametrize(("decision", "trigger"), [
    ("deny", "on-deny"), ("warn", "on-warn"), ("break-glass", "on-break-glass"), ("audit", None)])
def test_which_decision_is_which_trigger(decision: str, trigger: str | None) -> None:
    assert notifications.trigger_of_decision(decision) == trigger


@pytest.mark.parametrize(("before", "after", "expected"), [
    ({"status": "Healthy"}, {"status": "Degraded"}, True),
    ({}, {"status": "Degraded"}, True),
    ({"status": "Degraded"}, {"status": "Degraded"}, False),
    ({"status": "Degraded"}, {"status": "Healthy"}, False),
    ({"status": "Healthy"}, {"status": "Progressing"}, False),
])
def test_degraded_is_a_transition(before: dict[str, str], after: dict[str, str], expected: bool) -> None:
    assert notifications.degraded(before, after) is expected


def _notice(user: str = "laptop", obj: str = "Deployment prod/web", count: int = 1) -> Notice:
    return Notice("on-deny", "prod/shop", obj, user, "spec.replicas is declared in git", "2026-12-03T12:00:00Z",
                  count)


def test_a_flood_is_one_message_then_one_summary_a_minute_per_object_and_user() -> None:
    agg = Aggregator(window=60)
    assert agg.add(_notice(), 0.0) == _notice()  # the first at once
    assert [agg.add(_notice(), t) for t in (1.0, 2.0, 30.0)] == [None, None, None]  # held
    assert agg.add(_notice(user="bob"), 3.0) == _notice(user="bob")  # another user: its own window
    assert agg.add(_notice(obj="Deployment prod/api"), 3.0) is not None  # another object too
    assert agg.due(59.0) == []
    assert agg.due(60.0) == [_notice(count=3)]  # one summary standing for the three held
    assert agg.add(_notice(), 61.0) is None  # the summary opened the next window
    assert agg.due(120.0) == [_notice(count=1)]
    assert agg.due(180.0) == []  # a quiet window closes
    assert agg.add(_notice(), 181.0) == _notice()  # and the next one goes at once again


def test_the_aggregator_holds_a_bounded_number_of_keys() -> None:
    agg = Aggregator(window=60, max_keys=2)
    assert agg.add(_notice("a"), 0) and agg.add(_notice("b"), 0)
    assert agg.add(_notice("c"), 0) is None


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, None)])
def test_backoff(attempt: int, delay: float | None) -> None:
    assert notifications.backoff(attempt) == delay


@pytest.mark.parametrize(("status", "retry"), [(0, True), (429, True), (500, True), (503, True), (400, False),
                                                (404, False), (200, False)])
def test_retryable(status: int, retry: bool) -> None:
    assert notifications.retryable(status) is retry


@pytest.mark.parametrize(("url", "loopback", "error"), [
    ("https://hooks.slack.com/services/T/B/X", False, None),
    ("http://receiver.example:8080/hook", False, None),
    ("http://127.0.0.1:9000/", True, None),
    ("http://127.0.0.1:9000/", False, "loopback is refused"),
    ("http://localhost/", False, "loopback is refused"),
    ("http://[::1]/", False, "loopback is refused"),
    ("http://169.254.169.254/latest/meta-data", True, "link-local"),
    ("http://0.0.0.0/", True, "unspecified"),
    ("file:///etc/passwd", True, "http:// or https://"),
    ("https://", True, "with a host"),
])
def test_check_url(url: str, loopback: bool, error: str | None) -> None:
    if error is None:
        assert notifications.check_url(url, allow_loopback=loopback) == url
    else:
        with pytest.raises(ValueError, match=error):
            notifications.check_url(url, allow_loopback=loopback)


def test_payloads() -> None:
    slack = notifications.payload(_notice(count=40), "slack")
    assert set(slack) == {"text"}
    assert slack["text"].startswith(
        "[driftguard] prod/shop: denied — Deployment prod/web (40 times in the last minute)")
    generic = notifications.payload(_notice(), "webhook")
    assert {k: generic[k] for k in ("trigger", "application", "object", "user", "count")} == {
        "trigger": "on-deny", "application": "prod/shop", "object": "Deployment prod/web", "user": "laptop",
        "count": 1}


# ---------------------------------------------------------------- the notifier, against a real receiver

@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _cluster(**urls: str) -> FakeCluster:
    cluster = FakeCluster()
    for name, url in urls.items():
        cluster.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "prod"},
                     "data": {"url": base64.b64encode(url.encode()).decode()}})
    return cluster


def _app(*subscriptions: str) -> dict[str, Any]:
    """An Application in prod subscribed as "trigger.service=secret" says."""
    pairs = (s.split("=") for s in subscriptions)
    return {"metadata": {"name": "shop", "namespace": "prod", "annotations": {P + k: v for k, v in pairs}}}


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_notifier_sends_to_both_services_and_a_flood_is_one_message_then_a_summary(receiver: Receiver) -> None:
    clock = [0.0]
    cluster = _cluster(slack=receiver.url("/slack"), hook=receiver.url("/hook"))
    notifier = Notifier(cluster, allow_loopback=True, window=60, clock=lambda: clock[0])  # type: ignore[arg-type]
    done = threading.Event()
    notifier.start(done)
    app = _app("on-deny.slack=slack", "on-deny.webhook=hook", "on-drift.slack=slack")
    try:
        started = time.monotonic()
        for _ in range(1000):
            notifier.notify(app, _notice())
        assert time.monotonic() - started < 5, "notify never waits on the receiver"
        _wait(lambda: len(receiver.received) == 2)
        assert sorted(path for path, _ in receiver.received) == ["/hook", "/slack"]
        time.sleep(0.5)
        assert len(receiver.received) == 2, "the rest of the flood is held"
        clock[0] = 61.0
        _wait(lambda: len(receiver.received) == 4)
        summaries = {path: body for path, body in receiver.received[2:]}
        assert summaries["/hook"]["count"] == 999
        assert "(999 times in the last minute)" in summaries["/slack"]["text"]
        notifier.notify(app, Notice("on-warn", "prod/shop", "x", "laptop", "m", "t"))  # not subscribed
        time.sleep(0.3)
        assert len(receiver.received) == 4
    finally:
        done.set()
        assert notifier.join(5)


def test_a_failing_receiver_is_retried_with_backoff_and_a_refusal_is_not() -> None:
    receiver = Receiver(statuses=[503, 500])
    try:
        notifier = Notifier(_cluster(hook=receiver.url("/hook")), allow_loopback=True)  # type: ignore[arg-type]
        done = threading.Event()
        notifier.start(done)
        notifier.notify(_app("on-deny.webhook=hook"), _notice())
        _wait(lambda: notifier.sent == 1, timeout=15)  # 503, 1 s, 500, 2 s, 200
        assert len(receiver.received) == 3
        receiver.statuses = [400]
        notifier.notify(_app("on-deny.webhook=hook"), _notice(user="bob"))
        _wait(lambda: notifier.failed == 1)
        assert len(receiver.received) == 4 and notifier.sent == 1
        done.set()
        assert notifier.join(5)
    finally:
        receiver.close()


def test_a_missing_secret_or_a_refused_url_is_logged_without_the_url(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(_cluster(meta="http://169.254.169.254/secret-token"))  # type: ignore[arg-type]
    done = threading.Event()
    notifier.start(done)
    try:
        notifier.notify(_app("on-deny.webhook=nope"), _notice())
        notifier.notify(_app("on-deny.webhook=meta"), _notice(user="bob"))
        _wait(lambda: notifier.failed == 2)
    finally:
        done.set()
        notifier.join(5)
    text = caplog.text
    assert "Secret prod/nope: not found" in text and "link-local" in text
    assert "secret-token" not in text


# ---------------------------------------------------------------- resolved addresses (SSRF)

@pytest.mark.parametrize(("addresses", "loopback", "error"), [
    (["203.0.113.7", "2001:db8::7"], False, None),
    (["127.0.0.1", "::1"], True, None),
    (["::1"], False, "loopback is refused"),
    (["203.0.113.7", "169.254.169.254"], False, "169.254.169.254 is a link-local or cloud metadata address"),
    (["169.254.0.1"], True, "link-local"),
    (["fe80::1%eth0"], True, "fe80::1 is a link-local"),
    (["::ffff:169.254.169.254"], True, "169.254.169.254 is a link-local"),
    (["fd00:ec2::254"], True, "cloud metadata"),
    (["100.100.100.200"], True, "cloud metadata"),
    (["0.0.0.0"], True, "unspecified"),
    (["224.0.0.1"], True, "multicast"),
    ([], True, "resolves to no address"),
])
def test_every_resolved_address_is_checked(addresses: list[str], loopback: bool, error: str | None) -> None:
    if error is None:
        assert notifications.check_addresses("hooks.example", addresses, allow_loopback=loopback) == addresses
    else:
        with pytest.raises(ValueError, match=error):
            notifications.check_addresses("hooks.example", addresses, allow_loopback=loopback)


def _pinned(answers: dict[str, list[str]]) -> Any:
    """A resolver that knows only ``answers`` (tests make no lookups) and counts the lookups it is asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]
    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def test_a_name_is_resolved_once_checked_and_connected_to_at_the_checked_address(receiver: Receiver) -> None:
    assert http_post(receiver.url("/real", host="localhost"), b"{}", allow_loopback=True) == 200  # the real resolver
    resolver = _pinned({"hooks.example": ["127.0.0.1"]})
    assert http_post(receiver.url("/pinned", host="hooks.example"), b"{}", allow_loopback=True,
                     resolver=resolver) == 200
    assert resolver.asked == ["hooks.example"]
    assert [p for p, _ in receiver.received] == ["/real", "/pinned"]
    assert receiver.hosts[1] == f"hooks.example:{receiver.port}", "the url's host, connected at its checked address"
    hidden = _pinned({"hooks.example": ["127.0.0.1", "169.254.169.254"]})
    with pytest.raises(ValueError, match=r"hooks\.example resolves to 169\.254\.169\.254 is a link-local"):
        http_post(receiver.url("/hidden", host="hooks.example"), b"{}", allow_loopback=True, resolver=hidden)
    with pytest.raises(ValueError, match="loopback is refused"):
        http_post(receiver.url("/loop", host="localhost"), b"{}")
    assert len(receiver.received) == 2


def test_https_to_the_checked_address_keeps_sni_and_verifies_the_host_name(tmp_path: Path) -> None:
    ca = CertificateAuthority.generate("notify-test-ca")
    ca.issue_serving("hooks", dns_names=["hooks.example"]).write(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cadata=ca.cert_pem.decode())
    receiver = Receiver(tls=server)
    try:
        resolver = _pinned({"hooks.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        assert http_post(receiver.url("/tls", host="hooks.example"), b"{}", allow_loopback=True, resolver=resolver,
                         context=client) == 200
        assert receiver.sni == ["hooks.example"] and [p for p, _ in receiver.received] == ["/tls"]
        assert http_post(receiver.url("/wrong", host="other.example"), b"{}", allow_loopback=True, resolver=resolver,
                         context=client) == 0, "a certificate for another name is refused"
        assert [p for p, _ in receiver.received] == ["/tls"]
    finally:
        receiver.close()


def test_a_secret_whose_host_resolves_to_metadata_is_not_sent_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    resolver = _pinned({"hooks.example": ["169.254.169.254"]})
    notifier = Notifier(_cluster(hook="http://hooks.example/secret-token"),  # type: ignore[arg-type]
                        post=functools.partial(http_post, resolver=resolver))
    done = threading.Event()
    notifier.start(done)
    try:
        notifier.notify(_app("on-deny.webhook=hook"), _notice())
        _wait(lambda: notifier.failed == 1)
    finally:
        done.set()
        notifier.join(5)
    assert notifier.sent == 0 and resolver.asked == ["hooks.example"], "refused once, never retried"
    assert "hooks.example resolves to 169.254.169.254 is a link-local or cloud metadata address" in caplog.text
    assert "secret-token" not in caplog.text
