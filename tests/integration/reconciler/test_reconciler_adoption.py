"""Adoption does not trust driftguard.io/ metadata the webhook never saw.

The webhook only sees objects labelled ``driftguard.io/managed=true``, so anyone can put a forged
break-glass grant or drift mark on an object before git declares it. When the reconciler adopts such an
object (its owner opted in: ``driftguard.io/adopt``, or a stamp naming the Application) it applies git's
state, removes every driftguard.io/ key it did not write, and says so (the Change, a Warning Event on the
Application); grants written on the *managed* object afterwards are honoured as before.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard.core.clock import format_time
from driftguard.core.contract import (
    ANN_ADOPT,
    ANN_APPLICATION,
    ANN_AUTHOR,
    ANN_BREAK_GLASS,
    ANN_BREAK_GLASS_GRANTED,
    ANN_COMMIT,
    ANN_DRIFT,
    LABEL_MANAGED,
    PREFIX,
    BreakGlass,
    DriftMark,
)
from driftguard.kube import Kube

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"


def grant(commit: str, user: str, seconds: float) -> str:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return BreakGlass(user=user, at=format_time(dt.datetime.now(dt.UTC)), reason="hotfix", commit=commit,
                      expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ")).encode()


def deployment(replicas: int, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", **metadata},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    }


def own_keys(obj: dict[str, Any]) -> dict[str, str]:
    metadata = obj["metadata"]
    return {k: v for k, v in {**metadata.get("labels", {}), **metadata.get("annotations", {})}.items()
            if k.startswith(PREFIX)}


def test_forged_marks_on_an_unmanaged_object_are_not_trusted_when_adopted(
    harness: Harness, repo: Repo, laptop: Kube, admin: Kube
) -> None:
    ns = harness.namespace
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    repo.write("app/d.yaml", deployment(2))
    sha = repo.commit("declare alpha and web")  # public: anyone can read the commit the reconciler will stamp

    # the laptop user, whom no webhook sees while the objects are unmanaged, prepares them
    forged_grant = grant(sha, "mallory", 365 * 24 * 3600)
    victim = DriftMark(user="victim@org", at="2026-01-01T00:00:00Z", fields=("data.color",)).encode()
    forged = {ANN_BREAK_GLASS: "hotfix", ANN_BREAK_GLASS_GRANTED: forged_grant, ANN_DRIFT: victim,
              ANN_APPLICATION: f"{ns}/svc", ANN_COMMIT: sha, ANN_AUTHOR: "victim@org", "note": "not ours, kept"}
    laptop.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                   body=configmap("alpha", {"color": "red"}, annotations=forged))
    laptop.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deployment(
        5, labels={"app": "web", "driftguard.io/team": "mallory"},
        annotations={ANN_BREAK_GLASS_GRANTED: forged_grant, ANN_DRIFT: victim, ANN_ADOPT: f"{ns}/svc"}))

    harness.make_app("svc", repo)
    harness.start()
    status = harness.wait_synced("svc", sha)

    alpha = harness.cm("alpha")
    assert alpha is not None and alpha["data"] == {"color": "blue"}, "git's value applied, not left 'under break-glass'"
    assert alpha["metadata"]["annotations"]["note"] == "not ours, kept"
    stamp = own_keys(alpha)
    assert not {ANN_BREAK_GLASS, ANN_BREAK_GLASS_GRANTED, ANN_DRIFT} & stamp.keys()
    assert (stamp[LABEL_MANAGED], stamp[ANN_COMMIT], stamp[ANN_AUTHOR]) == ("true", sha, "alice@org")
    web = harness.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert web is not None and web["spec"]["replicas"] == 2
    assert not {ANN_BREAK_GLASS_GRANTED, ANN_DRIFT, "driftguard.io/team"} & own_keys(web).keys()
    assert web["metadata"]["labels"]["app"] == "web"

    assert status["drift"] == [], "neither the forged grant nor the forged author is reported"
    assert "break-glass" not in harness.condition("svc", "Ready").get("message", "")

    def warnings() -> list[dict[str, Any]] | None:
        events = admin.request("GET", f"/api/v1/namespaces/{ns}/events")["items"]
        found = [e for e in events if e["involvedObject"]["kind"] == "Application"
                 and e["reason"] == "UntrustedMetadataRemoved"]
        return found if len(found) == 2 else None
    by_object = {e["message"].split(":", 1)[0]: e for e in wait_for(warnings, what="two UntrustedMetadataRemoved")}
    message = by_object[f"ConfigMap {ns}/alpha configured"]["message"]
    assert by_object[f"ConfigMap {ns}/alpha configured"]["type"] == "Warning"
    assert message.endswith(
        "removed driftguard.io/break-glass, driftguard.io/break-glass-granted, driftguard.io/drift "
        "found on an object driftguard did not manage (not trusted)")
    assert "label driftguard.io/team" in by_object[f"Deployment {ns}/web configured"]["message"]

    # once managed, a grant written on the object (by the webhook; here, with no webhook, by admin) holds
    sealed = harness.sealed(harness.cm("alpha"), grant(sha, "oncall@org", 3600))
    legit = {ANN_BREAK_GLASS: "INC-7", ANN_BREAK_GLASS_GRANTED: sealed}
    admin.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/alpha", content_type=MERGE,
                  body={"metadata": {"annotations": legit}, "data": {"color": "red"}})
    entry = wait_for(lambda: next(iter(harness.status("svc")["drift"]), None), what="break-glass reported")
    assert entry["state"] == "BreakGlass"
    wait_for(lambda: "break-glass by oncall@org" in harness.condition("svc", "Ready")["message"],
             what="the grant shown in status")
    harness.refresh("svc")
    time.sleep(0.5)
    assert (harness.cm("alpha") or {})["data"] == {"color": "red"}
