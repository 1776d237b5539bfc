"""The on-demand verbs against a real API server and real git: ``driftguard diff`` (git or a local checkout
against the cluster, declared fields only, exit 0/1/2 as kubectl diff) and ``driftguard sync``."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard import cli
from driftguard.local import verbs
from driftguard.local.controlplane import serviceaccount_token

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def deployment(replicas: int = 2, image: str = "nginx:1.27") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def test_diff_git_and_local_against_the_cluster(harness: Harness, repo: Repo, cluster: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("app/d.yaml", deployment())
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    sha = repo.commit("two")
    harness.make_app("svc", repo, self_heal=False, ignoreDifferences=[
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}])
    harness.start()
    harness.wait_synced("svc", sha)
    who = ("-n", harness.namespace, "--kubeconfig", str(cluster.admin_kubeconfig))
    # an autoscaler's replicas: ignored by spec.ignoreDifferences, so not a difference
    harness.admin.request("PATCH", f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web/scale",
                          body={"spec": {"replicas": 7}}, content_type=MERGE)

    rc, out, err = run_cli(capsys, "diff", "svc", *who)
    assert (rc, out) == (0, ""), err  # server defaults, status, other fields and ignored ones never show
    assert f"0 of 2 declared objects differ from the cluster, 0 applied object(s) no longer declared (git {sha})" in err

    # someone changes a declared field (selfHeal is off, so it stays): git vs cluster shows it
    harness.admin.request("PATCH", f"/api/v1/namespaces/{harness.namespace}/configmaps/alpha",
                          body={"data": {"color": "red"}, "metadata": {"labels": {"extra": "x"}}}, content_type=MERGE)
    rc, out, err = run_cli(capsys, "diff", "svc", *who)
    assert rc == 1, err
    assert out.splitlines()[:2] == [f"--- live/ConfigMap/{harness.namespace}/alpha",
                                    f"+++ git/ConfigMap/{harness.namespace}/alpha"]
    assert [line for line in out.splitlines()[2:] if line[:1] in "+-"] == ["-  color: red", "+  color: blue"]
    assert "extra" not in out  # a label git does not declare is not git's business

    # --local: a checkout with a change not pushed yet — replicas 2 → 5, a new object, alpha removed
    checkout = tmp_path / "checkout"
    shutil.copytree(repo.path, checkout)
    (checkout / "app" / "a.yaml").unlink()
    Repo(checkout).write("app/d.yaml", deployment(replicas=5, image="nginx:1.28"))
    Repo(checkout).write("app/b.yaml", configmap("beta", {"k": "v"}))
    Repo(checkout).write("app/hook.yaml", configmap("pre-sync-hook", {"k": "v"},
                                                    annotations={"argocd.argoproj.io/hook": "PreSync"}))
    rc, out, err = run_cli(capsys, "diff", "svc", *who, "--local", str(checkout))
    assert rc == 1, err
    assert f"--- live/ConfigMap/{harness.namespace}/beta (absent: the sync creates it)" in out
    assert "replicas" not in out  # git changes 2 -> 5, but the field is ignored (the live 7 stays the HPA's)
    assert "-      - image: nginx:1.27\n+      - image: nginx:1.28\n" in out
    assert "pre-sync-hook" not in out  # a hook is run by a sync, not a managed object to compare
    assert f"+++ git/ConfigMap/{harness.namespace}/alpha (no longer in git: a sync with prune deletes it)" in out
    assert ("2 of 2 declared objects differ from the cluster, 1 applied object(s) no longer declared "
            f"(--local {checkout})") in err

    # errors are exit 2, naming what is wrong
    rc, _, err = run_cli(capsys, "diff", "svc", *who, "--local", str(tmp_path / "nowhere"))
    assert rc == 2 and "nowhere" in err
    rc, _, err = run_cli(capsys, "diff", "nope", *who)
    assert rc == 2 and f"no Application {harness.namespace}/nope" in err


def test_sync_on_demand_is_decided_by_rbac_and_recorded(harness: Harness, repo: Repo, cluster: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A non-automated Application synced with ``driftguard sync``: refused to a ServiceAccount RBAC does not
    allow verb sync, run for one it does (dry run first: nothing changes), prune only with --prune, each real
    sync in status.history with the authenticated user as initiator."""
    ns = harness.namespace
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    first = repo.commit("alpha")
    harness.make_app("manual", repo, automated=False)
    service = harness.start()
    wait_status = harness.wait_condition("manual", "Ready", "False", "OutOfSync")
    assert wait_status and harness.cm("alpha") is None
    harness.admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "syncer"},
        "rules": [{"apiGroups": ["driftguard.io"], "resources": ["applications"], "verbs": ["sync"],
                   "resourceNames": ["manual"]}]})
    harness.admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "syncer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "syncer"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]})
    deployer = serviceaccount_token(harness.admin, ns, "deployer", bound=False)
    bystander = serviceaccount_token(harness.admin, ns, "bystander", bound=False)
    who = ("-n", ns, "--server", service.url, "--kubeconfig", str(cluster.admin_kubeconfig))
    user = f"system:serviceaccount:{ns}:deployer"

    rc, _, err = run_cli(capsys, "sync", "manual", *who, "--token", bystander)
    assert rc == 2 and (f"system:serviceaccount:{ns}:bystander may not sync Application {ns}/manual: grant verb "
                        f'"sync" on applications.driftguard.io in namespace {ns}') in err and "HTTP 403" in err
    rc, _, err = run_cli(capsys, "sync", "manual", *who, "--token", "not-a-token")
    assert rc == 2 and "HTTP 401" in err
    rc, _, err = run_cli(capsys, "sync", "other", *who, "--token", deployer)  # resourceNames: manual only
    assert rc == 2 and "HTTP 403" in err

    rc, out, err = run_cli(capsys, "sync", "manual", *who, "--token", deployer, "--dry-run")
    assert rc == 0, err
    assert out.splitlines()[0] == f"Application {ns}/manual would sync at {first[:7]} by {user}: dry run"
    assert f"  ConfigMap {ns}/alpha would be created" in out.splitlines()
    assert harness.cm("alpha") is None and harness.status("manual")["history"] == []

    rc, out, err = run_cli(capsys, "sync", "manual", *who, "--token", deployer)
    assert rc == 0, err
    assert out.splitlines()[0] == f"Application {ns}/manual synced at {first[:7]} by {user}: Succeeded"
    assert f"  ConfigMap {ns}/alpha created" in out.splitlines()
    assert harness.cm("alpha") is not None
    history = harness.status("manual")["history"]
    assert [(h["revision"], h["result"], h["initiator"]) for h in history] == [(first, "Succeeded", user)]

    # git drops alpha and adds beta: a sync without --prune keeps alpha and says so; --prune deletes it
    repo.remove("app/a.yaml")
    repo.write("app/b.yaml", configmap("beta", {"k": "1"}))
    second = repo.commit("beta instead")
    rc, out, err = run_cli(capsys, "sync", "manual", *who, "--token", deployer)
    assert rc == 0, err
    assert f"  ConfigMap {ns}/alpha: no longer in git, kept (use --prune to delete it)" in out.splitlines()
    assert harness.cm("beta") is not None and harness.cm("alpha") is not None
    rc, out, err = run_cli(capsys, "sync", "manual", *who, "--token", deployer, "--prune", "--dry-run")
    assert rc == 0 and f"  ConfigMap {ns}/alpha would be deleted: no longer in git" in out.splitlines(), out
    assert harness.cm("alpha") is not None
    rc, out, err = run_cli(capsys, "sync", "manual", *who, "--token", deployer, "--prune")
    assert rc == 0, err
    assert f"  ConfigMap {ns}/alpha deleted: pruned: no longer declared in git" in out.splitlines()
    assert harness.cm("alpha") is None
    history = harness.status("manual")["history"]
    assert [(h["id"], h["revision"], h["initiator"]) for h in history] == [
        (0, first, user), (1, second, user), (2, second, user)]

    rc, _, err = run_cli(capsys, "sync", "manual", *who, "--token", deployer, "--server", "http://127.0.0.1:1")
    assert rc == 2 and "cannot reach the reconciler" in err


def test_a_standby_names_the_leader_and_the_cli_says_how_to_reach_it(
        harness: Harness, repo: Repo, cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Two replicas campaigning for one Lease: POST /sync to the standby answers 503 naming the leader (the
    Lease's holder); ``driftguard sync`` asks it again, then says which Pod to port-forward; the leader syncs."""
    ns = harness.namespace
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    repo.commit("alpha")
    harness.make_app("manual", repo, automated=False)
    first = harness.start(identity="replica-a")
    wait_for(lambda: first.controller.leading, 30, what="replica-a to lead")
    second = harness.start(identity="replica-b")
    wait_for(lambda: second.controller.elector is not None and second.controller.elector.holder == "replica-a",
             30, what="replica-b to see replica-a hold the Lease")
    token = _admin_token(harness, "admin-sa")
    who = ("-n", ns, "--kubeconfig", str(cluster.admin_kubeconfig), "--token", token)

    status, body = verbs.post_sync(second.url, ns, "manual", token, prune=False, dry_run=False, wait=5)
    assert status == 503 and body["leader"] == "replica-a"
    assert body["error"].startswith("this reconciler replica (replica-b) is a standby; the leader, which runs syncs, "
                                    "is replica-a (Lease driftguard-system/test-")
    rc, _, err = run_cli(capsys, "sync", "manual", *who, "--server", second.url)
    assert rc == 2 and "the leader, which runs syncs, is replica-a" in err and "HTTP 503" in err
    assert "kubectl -n driftguard-system port-forward pod/replica-a 8081:8080" in err
    assert not harness.status("manual").get("history")  # the standby ran nothing
    rc, out, err = run_cli(capsys, "sync", "manual", *who, "--server", first.url)
    assert rc == 0 and f"by system:serviceaccount:{ns}:admin-sa: Succeeded" in out.splitlines()[0], err


def _admin_token(harness: Harness, name: str) -> str:
    """A token of ServiceAccount ``name`` in the test namespace, bound to cluster-admin there."""
    ns = harness.namespace
    token = serviceaccount_token(harness.admin, ns, name, bound=False)
    harness.admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})
    return token


def test_a_standby_passes_a_sync_on_to_the_leaders_pod(harness: Harness, repo: Repo) -> None:
    """In a cluster the Service reaches standbys too: a standby passes POST /sync on to the leader's Pod (IP and
    ``http`` port as the API server has them), once, and answers what the leader answered."""
    ns = harness.namespace
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    sha = repo.commit("alpha")
    harness.make_app("manual", repo, automated=False)
    with harness.leader_and_standby() as (leader, standby):
        token = _admin_token(harness, "syncer-sa")

        status, body = verbs.post_sync(standby.url, ns, "manual", token, prune=False, dry_run=False, wait=30)
        assert status == 200 and body["result"] == "Succeeded" and body["revision"] == sha, body
        history = harness.status("manual")["history"]
        assert [h["initiator"] for h in history] == [f"system:serviceaccount:{ns}:syncer-sa"]
        assert harness.cm("alpha") is not None
        # a sync a standby already passed on is never passed on again (no loops between replicas)
        request = urllib.request.Request(f"{standby.url}/sync/{ns}/manual", method="POST", data=b"{}", headers={
            "Authorization": f"Bearer {token}", "X-Driftguard-Forwarded-By": "someone"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 503 and leader.controller.elector is not None
        assert json.loads(refused.value.read())["leader"] == leader.controller.elector.identity
