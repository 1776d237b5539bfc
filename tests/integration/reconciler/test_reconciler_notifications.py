"""Notifications end to end: a real reconciler (against the real API server) sends an Application's
subscribed notices to a real HTTP receiver on 127.0.0.1 — denials, warn-mode changes and break-glass heard
from a real ``driftguard webhook`` process's audit Events (a flood is one message per object and user), a
drift reverted by self-heal, a failed sync, degraded health, a deleted webhook configuration — with the
receivers' URLs in Secrets of the Application's namespace."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import perimeter
from support.http_receiver import Receiver
from support.reconciler_harness import Harness, Repo, configmap, wait_for
from support.webhook_harness import WebhookProcess, webhook_factory
from support.webhook_reviews import Sender, deployment_in, webhook_kubeconfig

from driftguard.kube import Kube
from reconciler.notifications import PREFIX

__all__ = ["webhook_factory", "webhook_kubeconfig"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _secret(admin: Kube, namespace: str, name: str, url: str) -> None:
    admin.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {"url": base64.b64encode(url.encode()).decode()}})


def test_subscribed_notices_reach_the_receiver_rate_limited(
        admin: Kube, namespace: str, harness: Harness, repo: Repo, receiver: Receiver, webhook_kubeconfig: Path,
        webhook_factory: Callable[..., WebhookProcess]) -> None:
    _secret(admin, namespace, "team-slack", receiver.url("/slack"))
    _secret(admin, namespace, "team-hook", receiver.url("/hook"))
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    sha = repo.commit("one")
    harness.make_app("shop", repo)
    harness.patch_app("shop", {"metadata": {"annotations": {
        f"{PREFIX}on-deny.slack": "team-slack", f"{PREFIX}on-deny.webhook": "team-hook",
        f"{PREFIX}on-drift.slack": "team-slack", f"{PREFIX}on-sync-failed.webhook": "team-hook",
        f"{PREFIX}on-sync-failed.slack": "no-such-secret"}}})
    harness.start(notify_loopback=True, audit_flush=0.5)
    harness.wait_synced("shop", sha)

    def got(path: str, trigger: str = "", text: str = "") -> list[dict[str, Any]]:
        return [body for p, body in receiver.received if p == path and (not trigger or body.get("trigger") == trigger)
                and text in body.get("text", "")]

    # A flood of denials by one user on one object: one message per receiver, the rest held for the summary.
    web = deployment_in(admin, namespace, "web", f"{namespace}/shop")
    sender = Sender(webhook_factory(kubeconfig=webhook_kubeconfig, event_flush_seconds=0.3))
    for i in range(100):
        assert not sender.update(web, "laptop", 10 + i)["allowed"]
    wait_for(lambda: got("/hook", "on-deny") and got("/slack", text="denied"), timeout=20,
             what="the first denial notified")
    time.sleep(3)  # several Event patches (the flood's count) heard since
    hook = got("/hook", "on-deny")
    assert len(hook) == 1 and len(got("/slack", text="denied")) == 1, receiver.received
    assert hook[0]["user"] == "laptop" and hook[0]["object"] == f"Deployment {namespace}/web"
    assert hook[0]["application"] == f"{namespace}/shop" and "spec.replicas" in hook[0]["message"]
    # Another user is another key: notified at once.
    assert not sender.update(web, "bob")["allowed"]
    sender.close()
    wait_for(lambda: [b for b in got("/hook", "on-deny") if b["user"] == "bob"], timeout=20, what="bob's denial")
    assert len(got("/slack", text="denied")) == 2

    # Drift reverted by self-heal.
    admin.request("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/alpha", body={"data": {"k": "laptop"}},
                  content_type="application/merge-patch+json")
    wait_for(lambda: got("/slack", text="drift reverted on"), timeout=20, what="the revert notified")
    assert not got("/hook", "on-drift"), "on-drift is subscribed on slack only"

    # A failed sync: to the webhook subscriber; the subscription naming no Secret sends nothing anywhere.
    repo.write("app/a.yaml", "kind: ConfigMap\nmetadata: {name: [unclosed\n")
    harness.refresh("shop") if repo.commit("broken") else None
    failed = wait_for(lambda: got("/hook", "on-sync-failed"), timeout=30, what="the failed sync notified")
    assert failed[0]["object"] == f"Application {namespace}/shop" and failed[0]["user"] == ""
    assert not got("/slack", text="sync failed")


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: site}
spec:
  replicas: 1
  selector: {matchLabels: {app: site}}
  template:
    metadata: {labels: {app: site}}
    spec: {containers: [{name: web, image: registry.example/site:1}]}
"""


def test_warn_break_glass_and_degraded_health_reach_their_subscribers(
        admin: Kube, namespace: str, harness: Harness, repo: Repo, receiver: Receiver, webhook_kubeconfig: Path,
        webhook_factory: Callable[..., WebhookProcess]) -> None:
    _secret(admin, namespace, "team-hook", receiver.url("/hook"))
    repo.write("app/site.yaml", DEPLOYMENT)
    sha = repo.commit("site")
    harness.make_app("shop", repo)
    harness.patch_app("shop", {"metadata": {"annotations": {
        f"{PREFIX}on-warn.webhook": "team-hook", f"{PREFIX}on-break-glass.webhook": "team-hook",
        f"{PREFIX}on-health-degraded.webhook": "team-hook"}}})
    harness.start(notify_loopback=True, audit_flush=0.5)
    harness.wait_synced("shop", sha)

    def got(trigger: str) -> list[dict[str, Any]]:
        return [body for p, body in receiver.received if p == "/hook" and body.get("trigger") == trigger]

    # Warn mode: admitted with warnings, recorded; the audit Event is heard and sent on.
    api = deployment_in(admin, namespace, "api", f"{namespace}/shop", enforcement="warn")
    sender = Sender(webhook_factory(kubeconfig=webhook_kubeconfig, event_flush_seconds=0.3,
                                    break_glass_groups=("sre",)))
    warned = sender.update(api, "laptop", 7)
    assert warned["allowed"] and warned.get("warnings"), warned
    (warn,) = wait_for(lambda: got("on-warn"), timeout=20, what="the warn-mode change notified")
    assert (warn["user"], warn["object"], warn["application"]) == ("laptop", f"Deployment {namespace}/api",
                                                                   f"{namespace}/shop")
    assert "spec.replicas" in warn["message"]

    # Break-glass by a member of the break-glass group, with a reason: admitted, recorded, sent with the reason.
    web = deployment_in(admin, namespace, "web", f"{namespace}/shop")
    granted = sender.break_glass(web, "oncall", ["sre"], "INC-42 rollback")
    sender.close()
    assert granted["allowed"], granted
    (glass,) = wait_for(lambda: got("on-break-glass"), timeout=20, what="the break-glass notified")
    assert glass["user"] == "oncall" and glass["object"] == f"Deployment {namespace}/web"
    assert "INC-42 rollback" in glass["message"]
    assert not got("on-deny"), "not subscribed"

    # The git Deployment stops progressing (its controller's status): the Application's health degrades.
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/site/status"
    live = admin.request("GET", path)
    live["status"] = {"observedGeneration": live["metadata"]["generation"], "replicas": 1, "unavailableReplicas": 1,
                      "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                      "message": 'ReplicaSet "site-1" has timed out progressing.'}]}
    admin.request("PUT", path, body=live)
    harness.refresh("shop")
    (degraded,) = wait_for(lambda: got("on-health-degraded"), timeout=30, what="the degraded health notified")
    assert degraded["object"] == f"Application {namespace}/shop" and degraded["user"] == ""
    assert "timed out progressing" in degraded["message"], degraded


@pytest.fixture
def registered(harness: Harness, admin: Kube) -> Iterator[dict[str, dict[str, Any]]]:
    yield from perimeter.registered(harness, admin)


def test_a_deleted_webhook_configuration_is_notified(
        admin: Kube, namespace: str, harness: Harness, repo: Repo, receiver: Receiver,
        registered: dict[str, dict[str, Any]]) -> None:
    _secret(admin, namespace, "team-slack", receiver.url("/slack"))
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    sha = repo.commit("one")
    harness.make_app("shop", repo)
    harness.patch_app("shop", {"metadata": {"annotations": {f"{PREFIX}on-webhook-missing.slack": "team-slack"}}})
    harness.start(notify_loopback=True)
    # The registration's webhooks cover no test namespace, so the sync itself is refused (not subscribed here):
    # the Application only has to be known to the reconciler.
    wait_for(lambda: (harness.app("shop").get("status") or {}).get("sync", {}).get("revision") == sha, timeout=30,
             what="the Application seen")
    admin.request("DELETE", perimeter.VALIDATING)
    (sent,) = wait_for(lambda: [b for p, b in receiver.received if p == "/slack"], timeout=30,
                       what="the missing webhook configuration notified")
    assert sent["text"].startswith(f"[driftguard] {namespace}/shop: webhook configuration missing — "
                                   "ValidatingWebhookConfiguration driftguard"), sent
    assert "was deleted" in sent["text"]
    wait_for(lambda: admin.request("GET", perimeter.VALIDATING), timeout=30, what="it is re-created")
