"""driftguard suggest against the real API server, a real ``driftguard webhook`` and the real reconciler: the
webhook's denial of a change to a reconciled object (``kubectl scale deployment/my-service --replicas=9``, an image
edit) ends with a ``driftguard suggest`` line; that line, run as it is against a clone, makes a minimal commit on a
new branch of the commented manifest the live object's stamp names, and once the Application follows that branch,
the denied intent is in the cluster."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, wait_for
from support.webhook_harness import WebhookProcess, webhook_factory
from support.webhook_reviews import Sender, webhook_kubeconfig

from driftguard import cli

pytestmark = pytest.mark.integration
__all__ = ["webhook_factory", "webhook_kubeconfig"]

MANIFEST = """\
# my-service: production web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-service   # the Service selects on this name
spec:
  replicas: 3        # peak traffic: see the runbook
  selector:
    matchLabels: {app: my-service}
  template:
    metadata:
      labels: {app: my-service}
    spec:
      containers:
        - name: web
          image: "registry.example/web:1.4.2"  # pinned: see the release notes
"""


def _scale(sender: Sender, live: dict[str, Any]) -> dict[str, Any]:
    return sender.scale(live, "laptop", 9)


def _image(sender: Sender, live: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(live)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/web:1.5.0"
    return sender.edit(live, new, "laptop")


@pytest.mark.parametrize(("request_", "line", "removed", "added", "in_cluster"), [
    pytest.param(_scale, "driftguard suggest -- scale deployment/my-service -n {ns} --replicas=9",
                 "  replicas: 3        # peak traffic: see the runbook",
                 "  replicas: 9        # peak traffic: see the runbook",
                 lambda d: d["spec"]["replicas"] == 9, id="kubectl scale"),
    pytest.param(_image, "driftguard suggest --set "
                 "'spec.template.spec.containers[name=web].image=registry.example/web:1.5.0' deployment/my-service "
                 "-n {ns}",
                 '          image: "registry.example/web:1.4.2"  # pinned: see the release notes',
                 '          image: "registry.example/web:1.5.0"  # pinned: see the release notes',
                 lambda d: d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:1.5.0",
                 id="an image edit"),
])
def test_the_denials_suggest_line_makes_the_commit_the_reconciler_applies(
        harness: Harness, repo: Repo, cluster: Any, capsys: pytest.CaptureFixture[str], webhook_kubeconfig: Path,
        webhook_factory: Callable[..., WebhookProcess], request_: Callable[[Sender, dict[str, Any]], dict[str, Any]],
        line: str, removed: str, added: str, in_cluster: Callable[[dict[str, Any]], bool]) -> None:
    repo.write("app/deployment.yaml", MANIFEST)
    first = repo.commit("my-service")
    repo.git("config", "user.name", "Alice")
    repo.git("config", "user.email", "alice@org")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", first)
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/my-service"

    sender = Sender(webhook_factory(kubeconfig=webhook_kubeconfig))
    answer = request_(sender, harness.get(path))
    sender.close()
    assert not answer["allowed"], answer
    hint = answer["status"]["message"].splitlines()[-1]
    assert hint == line.format(ns=harness.namespace) + "  # the git change instead: edits a clone, prints the diff"
    words = shlex.split(hint, comments=True)  # the line as a shell runs it
    assert words[:2] == ["driftguard", "suggest"]

    code = cli.main(["suggest", "--kubeconfig", str(cluster.admin_kubeconfig), "--repo-dir", str(repo.path),
                     "--commit", *words[2:]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert [x for x in out.splitlines() if x.startswith("-") and not x.startswith("---")] == [f"-{removed}"]
    assert [x for x in out.splitlines() if x.startswith("+") and not x.startswith("+++")] == [f"+{added}"]
    assert "committed on branch driftguard/suggest-deployment-my-service" in out
    assert repo.git("rev-parse", "--abbrev-ref", "HEAD") == "driftguard/suggest-deployment-my-service"
    assert repo.git("rev-parse", "main") == first, "main is untouched"

    suggested = repo.git("rev-parse", "HEAD")
    harness.patch_app("svc", {"spec": {"source": {"targetRevision": "driftguard/suggest-deployment-my-service"}}})
    harness.wait_synced("svc", suggested)
    live = wait_for(lambda: (d := harness.get(path)) and in_cluster(d) and d, what="the suggested change applied")
    assert live["metadata"]["annotations"]["driftguard.io/commit"] == suggested


BASE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.25
"""
OVERLAY = """\
# production: more replicas, the pinned release
resources:
  - ../../base
replicas:
  - name: web
    count: 3   # peak traffic
images:
  - name: nginx
    newTag: "1.25"   # bump with the release
"""


def _rendered_web(harness: Harness, repo: Repo, cluster: Any, files: dict[str, str], app_path: str,
                  stamped: str) -> tuple[list[str], str]:
    """Deployment web rendered from ``files`` at ``app_path`` and synced, its stamp naming ``stamped``: the
    ``driftguard suggest`` arguments that edit and commit in that repository, and the synced commit."""
    for name, text in files.items():
        repo.write(name, text)
    first = repo.commit("web, rendered")
    repo.git("config", "user.name", "Alice")
    repo.git("config", "user.email", "alice@org")
    harness.make_app("web", repo, path=app_path)
    harness.start()
    harness.wait_synced("web", first)
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web"
    assert harness.get(path)["metadata"]["annotations"]["driftguard.io/path"] == stamped
    return ["suggest", "--kubeconfig", str(cluster.admin_kubeconfig), "--repo-dir", str(repo.path), "--commit"], first


def test_suggest_proposes_a_kustomize_overlays_entries_the_reconciler_renders(
        harness: Harness, repo: Repo, cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    common, first = _rendered_web(harness, repo, cluster, {"base/deployment.yaml": BASE, "base/kustomization.yaml":
                           "resources: [deployment.yaml]\n", "overlays/prod/kustomization.yaml": OVERLAY},
                           "overlays/prod", "kustomize build overlays/prod")
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web"

    def changed(out: str) -> tuple[list[str], list[str]]:
        lines = out.splitlines()
        return ([x for x in lines if x.startswith("-") and not x.startswith("---")],
                [x for x in lines if x.startswith("+") and not x.startswith("+++")])

    assert cli.main([*common, "--", "scale", "deployment/web", "-n", harness.namespace, "--replicas=5"]) == 0
    out = capsys.readouterr().out
    assert "# spec.replicas of Deployment web: the replicas: entry for web in overlays/prod/kustomization.yaml" in out
    assert changed(out) == (["-    count: 3   # peak traffic"], ["+    count: 5   # peak traffic"])
    image = "spec.template.spec.containers[name=web].image=nginx:1.27"
    assert cli.main([*common, "--branch", "release-1.27", "--set", image, "deployment/web",
                     "-n", harness.namespace]) == 0
    out = capsys.readouterr().out
    assert "the images: entry for nginx in overlays/prod/kustomization.yaml" in out
    assert changed(out) == (['-    newTag: "1.25"   # bump with the release'],
                            ['+    newTag: "1.27"   # bump with the release'])
    assert repo.git("rev-parse", "main") == first, "main is untouched"

    suggested = repo.git("rev-parse", "HEAD")
    harness.patch_app("web", {"spec": {"source": {"targetRevision": "release-1.27"}}})
    harness.wait_synced("web", suggested)
    live = wait_for(lambda: (d := harness.get(path)) and d["spec"]["replicas"] == 5 and d, what="replicas 5")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"

    # what no entry or patch of the overlay sets is said plainly, and nothing is written
    code = cli.main([*common, "--set", "spec.template.spec.containers[name=web].imagePullPolicy=Always",
                     "deployment/web", "-n", harness.namespace])
    assert code == 2
    err = capsys.readouterr().err
    assert "neither a replicas:/images: entry of overlays/prod/kustomization.yaml nor a patch" in err
    assert repo.git("status", "--porcelain") == ""


CHART = "apiVersion: v2\nname: web\nversion: 0.1.0\n"
VALUES = """\
# web: the values the team edits
replicaCount: 2   # one per zone
image:
  repository: registry.example/web
  tag: "1.4.2"
"""
TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"""


def test_suggest_proposes_a_charts_values_key_the_reconciler_renders(
        harness: Harness, repo: Repo, cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    common, _ = _rendered_web(harness, repo, cluster, {"chart/Chart.yaml": CHART, "chart/values.yaml": VALUES,
                           "chart/templates/deployment.yaml": TEMPLATE}, "chart", "helm template chart")
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web"

    assert cli.main([*common, "--", "scale", "deployment/web", "-n", harness.namespace, "--replicas=4"]) == 0
    out = capsys.readouterr().out
    assert "the values key replicaCount of chart/values.yaml" in out and "spec.source.helm" in out
    assert "-replicaCount: 2   # one per zone\n+replicaCount: 4   # one per zone" in out
    image = "spec.template.spec.containers[name=web].image=registry.example/web:1.5.0"
    assert cli.main([*common, "--branch", "web-1.5.0", "--set", image, "deployment/web", "-n", harness.namespace]) == 0
    out = capsys.readouterr().out
    assert "the values key image.tag of chart/values.yaml" in out
    assert '-  tag: "1.4.2"\n+  tag: "1.5.0"' in out

    suggested = repo.git("rev-parse", "HEAD")
    harness.patch_app("web", {"spec": {"source": {"targetRevision": "web-1.5.0"}}})
    harness.wait_synced("web", suggested)
    live = wait_for(lambda: (d := harness.get(path)) and d["spec"]["replicas"] == 4 and d, what="replicas 4")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:1.5.0"


def test_suggest_says_when_the_object_is_not_managed(harness: Harness, capsys: pytest.CaptureFixture[str],
                                                     cluster: Any) -> None:
    harness.admin.request("POST", f"/api/v1/namespaces/{harness.namespace}/configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "loose"}, "data": {}})
    code = cli.main(["suggest", "--kubeconfig", str(cluster.admin_kubeconfig), "--", "label", "cm/loose",
                     "-n", harness.namespace, "a=b"])
    assert code == 2
    assert f"ConfigMap {harness.namespace}/loose is not managed by driftguard" in capsys.readouterr().err
