"""The durable audit trail, end to end: real ``driftguard webhook`` processes (gunicorn, TLS) write their
aggregated audit Events to the real API server, the reconciler's leader folds them into trail ConfigMaps,
and ``driftguard audit --kubeconfig`` finds every record afterwards — after a webhook restart, after the
Events are gone — with each filter; the trail's bounds hold; a flood of 10,000 denials costs a bounded
number of writes, counted by the API server itself (``apiserver_request_total``).

The webhooks are sent AdmissionReviews as the API server sends them (the live, stamped objects as
``oldObject``), straight to ``/validate``: two processes, not two registrations, and fast enough for
10,000 of them.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.reconciler_harness import Harness, wait_for
from support.webhook_harness import WebhookProcess, webhook_factory
from support.webhook_reviews import Sender, deployment_in, webhook_kubeconfig

from driftguard.core import audittrail, contract
from driftguard.kube import Kube, KubeError
from webhook.cli import main

__all__ = ["webhook_factory", "webhook_kubeconfig"]

TRAILS = "/api/v1/namespaces/driftguard-system/configmaps"


def audit(admin_kubeconfig: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    """``driftguard audit --kubeconfig … --json``, as run from a laptop."""
    capsys.readouterr()
    assert main(["audit", "--kubeconfig", str(admin_kubeconfig), "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _trail(admin: Kube, application: str) -> list[audittrail.Entry]:
    try:
        cm = admin.request("GET", f"{TRAILS}/{audittrail.trail_name(application)}")
    except KubeError as error:
        if error.status == 404:
            return []
        raise
    return audittrail.parse(cm["data"][audittrail.TRAIL_KEY])


def _delete_trail(admin: Kube, application: str) -> None:
    try:
        admin.request("DELETE", f"{TRAILS}/{audittrail.trail_name(application)}")
    except KubeError as error:
        if error.status != 404:
            raise


def _delete_events(admin: Kube, namespace: str) -> None:
    admin.request("DELETE", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")


def test_every_denial_through_two_webhooks_one_restarted_is_found_after_the_events_are_gone(
        cluster: Any, admin: Kube, namespace: str, harness: Harness, webhook_kubeconfig: Path,
        webhook_factory: Callable[..., WebhookProcess], capsys: pytest.CaptureFixture[str]) -> None:
    app, other = f"{namespace}/shop", f"{namespace}/billing"
    for application in (app, other):
        _delete_trail(admin, application)
    web = deployment_in(admin, namespace, "web", app)
    api = deployment_in(admin, namespace, "api", app, enforcement="warn")
    ledger = deployment_in(admin, namespace, "ledger", other)
    harness.start(audit_flush=0.5)
    first, second = (webhook_factory(kubeconfig=webhook_kubeconfig, event_flush_seconds=0.5) for _ in range(2))
    a, b = Sender(first), Sender(second)
    started = time.time()
    assert not a.update(web, "laptop")["allowed"]
    assert not a.update(web, "laptop", 10)["allowed"]
    assert not b.update(web, "bob")["allowed"]
    answer = b.update(api, "laptop")
    assert answer["allowed"] and answer.get("warnings"), "warn mode: admitted with a warning"
    assert not b.update(ledger, "carol")["allowed"]
    a.close()
    first.stop()  # SIGTERM, as a rollout does: it writes what its audit queue holds first
    restarted = Sender(webhook_factory(kubeconfig=webhook_kubeconfig, event_flush_seconds=0.5))
    assert not restarted.update(web, "laptop", 11)["allowed"]
    forged = _deployment_body(namespace, "forged")
    assert not restarted.create(forged, "dave")["allowed"]  # forged ownership on a CREATE: no uid yet
    restarted.close()
    b.close()

    expected = {("laptop", "deny", "web"): 2, ("bob", "deny", "web"): 1, ("laptop", "warn", "api"): 1,
                ("carol", "deny", "ledger"): 1, ("dave", "deny", "forged"): 1}

    def tally(found: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
        counts: dict[tuple[str, str, str], int] = {}
        for record in found:
            key = (record["user"], record["decision"], record["name"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    def all_folded() -> bool:
        folded = [e for application in (app, other, "") for e in _trail(admin, application)
                  if e.record.get("namespace") == namespace]
        return tally([dict(e.record) for e in folded]) == expected

    wait_for(all_folded, timeout=30, what="every record folded into the trails")
    # Events expire (an hour by default): what the trail holds is what remains.
    _delete_events(admin, namespace)
    found = [r for r in audit(cluster.admin_kubeconfig, capsys) if r["namespace"] == namespace]
    assert tally(found) == expected
    laptop_web = [r for r in found if r["user"] == "laptop" and r["name"] == "web"]
    assert sorted(r["count"] for r in laptop_web) == [1, 2], "one series per process: 2 before, 1 after restart"
    assert all(r["fields"] == [{"field": "spec.replicas", "declared": "3", "requested": r["fields"][0]["requested"]}]
               for r in laptop_web)

    def mine(*args: str) -> dict[tuple[str, str, str], int]:
        return tally([r for r in audit(cluster.admin_kubeconfig, capsys, *args) if r["namespace"] == namespace])

    assert mine("--user", "bob") == {("bob", "deny", "web"): 1}
    assert mine("--decision", "warn") == {("laptop", "warn", "api"): 1}
    assert mine("--object", f"{namespace}/ledger") == {("carol", "deny", "ledger"): 1}
    assert mine("--app", other) == {("carol", "deny", "ledger"): 1}
    assert set(mine("--app", app)) == {("laptop", "deny", "web"), ("bob", "deny", "web"), ("laptop", "warn", "api")}
    assert mine("--since", "10m") == expected
    assert mine("--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + 3600))) == {}
    capsys.readouterr()
    assert main(["audit", "--kubeconfig", str(cluster.admin_kubeconfig), "--app", app, "--user", "laptop"]) == 0
    table = capsys.readouterr().out
    assert "deny x2" in table and f"Deployment {namespace}/web" in table
    assert main(["audit", "--kubeconfig", str(cluster.admin_kubeconfig), "--app", "shop"]) == 2
    assert "expected NAMESPACE/NAME" in capsys.readouterr().err


def _deployment_body(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {contract.LABEL_MANAGED: "true"}},
            "spec": {"replicas": 1}}


def test_the_trail_keeps_the_newest_records_within_its_count_and_its_retention(
        admin: Kube, namespace: str, harness: Harness, webhook_kubeconfig: Path,
        webhook_factory: Callable[..., WebhookProcess]) -> None:
    app = f"{namespace}/bounded"
    _delete_trail(admin, app)
    web = deployment_in(admin, namespace, "web", app)
    harness.start(audit_flush=0.5, audit_max_records=3, audit_retention=6.0)
    sender = Sender(webhook_factory(kubeconfig=webhook_kubeconfig, event_flush_seconds=0.3))
    for i in range(5):
        assert not sender.update(web, f"user-{i}")["allowed"]
        time.sleep(1.1)  # distinct seconds: "newest" is well defined
    sender.close()
    wait_for(lambda: [e.record["user"] for e in _trail(admin, app)] == ["user-2", "user-3", "user-4"],
             timeout=20, what="the 3 newest of 5 series kept")
    # The Events are still there (they last an hour), yet past the retention nothing is kept.
    wait_for(lambda: _trail(admin, app) == [] and bool(admin.request(
        "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]),
        timeout=20, what="every entry gone once older than the retention")


_REQUESTS = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def _writes(cluster: Any) -> dict[str, float]:
    """Writes the API server has answered so far, by resource (its own ``apiserver_request_total``)."""
    text = subprocess.run([str(cluster.control_plane.kubectl), "--kubeconfig", str(cluster.admin_kubeconfig),
                           "get", "--raw", "/metrics"], capture_output=True, text=True, check=True, timeout=60).stdout
    counts: dict[str, float] = {}
    for match in _REQUESTS.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("verb") in WRITE_VERBS:
            resource = labels.get("resource", "")
            counts[resource] = counts.get(resource, 0.0) + float(match.group("value"))
    return counts


def test_a_flood_of_10000_denials_is_a_bounded_number_of_writes(
        cluster: Any, admin: Kube, namespace: str, harness: Harness, webhook_kubeconfig: Path,
        webhook_factory: Callable[..., WebhookProcess]) -> None:
    app, total, flush = f"{namespace}/flooded", 10_000, 1.0
    _delete_trail(admin, app)
    web = deployment_in(admin, namespace, "web", app)
    harness.start(audit_flush=flush)
    webhooks = [webhook_factory(kubeconfig=webhook_kubeconfig, event_flush_seconds=flush) for _ in range(2)]
    processes = sum(w.settings.workers for w in webhooks)
    before, started = _writes(cluster), time.monotonic()
    denied = [0]
    lock = threading.Lock()

    def send(webhook: WebhookProcess, count: int) -> None:
        sender = Sender(webhook)
        try:
            for i in range(count):
                if not sender.update(web, "laptop", 10 + i % 50)["allowed"]:
                    with lock:
                        denied[0] += 1
        finally:
            sender.close()

    threads = [threading.Thread(target=send, args=(webhooks[i % 2], total // 4)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = time.monotonic() - started
    assert denied[0] == total
    wait_for(lambda: sum(e.count for e in _trail(admin, app)) == total, timeout=60,
             what=f"{total} denials counted in the trail")
    elapsed = time.monotonic() - started
    after = _writes(cluster)
    delta = {resource: after.get(resource, 0.0) - before.get(resource, 0.0) for resource in after}
    events, configmaps = delta.get("events", 0.0), delta.get("configmaps", 0.0)
    print(f"\n{total} denials through {processes} webhook processes in {sent:.1f} s; until all in the trail "
          f"{elapsed:.1f} s: {events:.0f} Event writes, {configmaps:.0f} ConfigMap writes, "
          f"{sum(delta.values()):.0f} writes in all")
    # Per process: one create, then at most one patch per flush interval; the trail: one write per flush.
    assert events <= processes * (elapsed / flush + 2)
    assert configmaps <= elapsed / flush + 2
    assert len(_trail(admin, app)) <= processes, "one entry per Event series, not per request"
