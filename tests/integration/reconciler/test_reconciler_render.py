"""What real GitOps repositories hold — Kustomize overlays, Helm charts, Jsonnet — rendered by the real tools
(``make tools``) and synced to the real API server, object by object; and what must never be silently wrong.

Fixtures are written here: a Kustomize base with two overlays (namePrefix, images, a strategic and a
JSON 6902 patch, a configMapGenerator with its hash suffix, a resource in a sibling directory, a
component), a Helm chart with value files, ``valuesObject`` and ``parameters``, a Jsonnet app with TLAs.
Hostile inputs leave the reconciler healthy with a condition naming the problem, and nothing pruned.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.reconciler_harness import Harness, Repo, configmap, render_tools, wait_for

pytestmark = pytest.mark.integration

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
}


def kustomize_repo(repo: Repo, tag: str = "1.27") -> None:
    repo.write("base/deployment.yaml", DEPLOYMENT)
    repo.write("base/kustomization.yaml", {"resources": ["deployment.yaml", "../shared"]})
    repo.write("shared/service.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    repo.write("shared/kustomization.yaml", {"resources": ["service.yaml"]})
    repo.write("components/monitoring/kustomization.yaml", {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
        "resources": ["monitor.yaml"]})
    repo.write("components/monitoring/monitor.yaml", configmap("monitoring", {"scrape": "true"}))
    repo.write("overlays/prod/kustomization.yaml", {
        "resources": ["../../base"], "components": ["../../components/monitoring"],
        "namePrefix": "prod-", "images": [{"name": "nginx", "newTag": tag}],
        "configMapGenerator": [{"name": "settings", "literals": ["color=blue"]}],
        "patches": [
            {"path": "replicas.yaml"},
            {"target": {"kind": "Deployment", "name": "web"},
             "patch": '[{"op": "add", "path": "/metadata/labels/tier", "value": "frontend"}]'},
        ]})
    repo.write("overlays/prod/replicas.yaml", {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "metadata": {"name": "web"}, "spec": {"replicas": 3}})
    repo.write("overlays/staging/kustomization.yaml", {"resources": ["../../base"], "namePrefix": "staging-"})


def names(harness: Harness, plural: str, group: str = "") -> list[str]:
    base = f"/apis/{group}" if group else "/api/v1"
    items = harness.admin.request("GET", f"{base}/namespaces/{harness.namespace}/{plural}")["items"]
    return sorted(i["metadata"]["name"] for i in items if (i["metadata"].get("labels") or {}).get(
        "driftguard.io/managed") == "true")


def deployment(harness: Harness, name: str) -> dict[str, Any]:
    found = harness.get(f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/{name}")
    assert found is not None, name
    return found


def test_a_kustomize_overlay_is_built_and_applied_object_by_object(harness: Harness, repo: Repo) -> None:
    kustomize_repo(repo)
    sha = repo.commit("kustomize base and overlays")
    harness.make_app("prod", repo, path="overlays/prod")
    harness.start()
    status = harness.wait_synced("prod", sha)
    assert status["sync"]["renderedBy"] == "kustomize v5.8.1"

    web = deployment(harness, "prod-web")
    assert web["spec"]["replicas"] == 3, "the strategic merge patch"
    assert web["metadata"]["labels"]["tier"] == "frontend", "the JSON 6902 patch"
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27", "images"
    assert names(harness, "services") == ["prod-web"], "a resource from a sibling directory"
    configmaps = names(harness, "configmaps")
    assert "prod-monitoring" in configmaps, "the component"
    [generated] = [n for n in configmaps if n.startswith("prod-settings-")]
    assert len(generated) == len("prod-settings-") + 10, "configMapGenerator's hash suffix"

    kustomize_repo(repo, tag="1.28")
    repo.write("overlays/prod/kustomization.yaml", (repo.path / "overlays/prod/kustomization.yaml").read_text()
               .replace("color=blue", "color=green"))
    harness.commit_and_sync(repo, "prod", "new tag, new settings")
    assert deployment(harness, "prod-web")["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    regenerated = [n for n in names(harness, "configmaps") if n.startswith("prod-settings-")]
    assert len(regenerated) == 1 and regenerated != [generated], "the old generated ConfigMap is pruned"


def test_source_kustomize_options_apply_over_the_overlay(harness: Harness, repo: Repo) -> None:
    kustomize_repo(repo)
    sha = repo.commit("kustomize")
    repo.write("overlays/staging/more-replicas.yaml", {"apiVersion": "apps/v1", "kind": "Deployment",
                                                       "metadata": {"name": "web", "labels": {"patched": "file"}}})
    sha = repo.commit("a patch file")
    harness.make_app("staging", repo, path="overlays/staging", source={"kustomize": {
        "namePrefix": "team-", "images": ["nginx=registry.example/nginx:2.0"],
        "commonLabels": {"team": "blue"}, "commonAnnotations": {"owner": "blue@org"},
        "components": ["../../components/monitoring"], "replicas": [{"name": "staging-web", "count": 5}],
        "patches": [{"path": "more-replicas.yaml"},
                    {"patch": '[{"op": "add", "path": "/metadata/labels/inline", "value": "yes"}]',
                     "target": {"kind": "Deployment"}}]}})
    harness.start()
    harness.wait_synced("staging", sha)
    web = deployment(harness, "team-staging-web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/nginx:2.0"
    assert web["metadata"]["labels"]["team"] == "blue" and web["metadata"]["annotations"]["owner"] == "blue@org"
    assert web["spec"]["selector"]["matchLabels"]["team"] == "blue", "commonLabels include selectors, as in Argo CD"
    assert web["spec"]["replicas"] == 5, "replicas"
    assert web["metadata"]["labels"]["patched"] == "file" and web["metadata"]["labels"]["inline"] == "yes", "patches"
    assert "team-monitoring" in names(harness, "configmaps"), "a component (under the outer prefix only)"


def helm_chart(repo: Repo) -> None:
    repo.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
    repo.write("chart/values.yaml", "replicas: 1\nimage: nginx:1.25\ncolor: red\nteam: none\n")
    repo.write("chart/values-prod.yaml", "replicas: 2\n")
    repo.write("chart/templates/deployment.yaml", (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\n"
        "  labels: {team: {{ .Values.team | quote }}}\n"
        "spec:\n  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {app: web}}\n"
        "  template:\n    metadata: {labels: {app: web}}\n"
        "    spec:\n      containers: [{name: web, image: {{ .Values.image | quote }}}]\n"))
    repo.write("chart/templates/configmap.yaml", (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-settings}\n"
        "data: {color: {{ .Values.color | quote }}, namespace: {{ .Release.Namespace | quote }}}\n"))
    repo.write("chart/templates/hook.yaml", (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n"
        "  annotations: {helm.sh/hook: pre-install}\ndata: {x: y}\n"))


def test_a_helm_chart_with_value_files_values_object_and_parameters(harness: Harness, repo: Repo) -> None:
    helm_chart(repo)
    sha = repo.commit("a chart")
    harness.make_app("svc", repo, path="chart", source={"helm": {
        "releaseName": "shop", "valueFiles": ["values-prod.yaml", "missing.yaml"], "ignoreMissingValueFiles": True,
        "valuesObject": {"color": "green"}, "parameters": [{"name": "image", "value": "nginx:1.27"},
                                                          {"name": "team", "value": "42", "forceString": True}]}})
    harness.start()
    status = harness.wait_synced("svc", sha)
    assert status["sync"]["renderedBy"] == "helm v4.3.2"
    web = deployment(harness, "shop-web")
    assert web["spec"]["replicas"] == 2, "the value file"
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27", "a parameter"
    assert web["metadata"]["labels"]["team"] == "42", "forceString"
    settings = harness.cm("shop-settings")
    assert settings is not None and settings["data"] == {"color": "green", "namespace": harness.namespace}
    hook = harness.cm("shop-hook")  # helm.sh/hook: pre-install is Argo CD's PreSync: run as a hook, not managed
    assert hook is not None and "driftguard.io/managed" not in (hook["metadata"].get("labels") or {})
    assert [(h["name"], h["phase"], h["result"]) for h in status["hooks"]] == [("shop-hook", "PreSync", "Succeeded")]
    assert not any("shop-hook" in e["id"] for e in status["inventory"])

    repo.write("chart/values-prod.yaml", "replicas: 4\n")
    harness.commit_and_sync(repo, "svc", "scale in git")
    assert deployment(harness, "shop-web")["spec"]["replicas"] == 4


def test_jsonnet_with_top_level_arguments(harness: Harness, repo: Repo) -> None:
    repo.write("app/lib/cm.libsonnet", "{ cm(name, color):: { apiVersion: 'v1', kind: 'ConfigMap', "
                                       "metadata: { name: name }, data: { color: color } } }")
    repo.write("app/main.jsonnet", "local lib = import 'lib/cm.libsonnet';\n"
                                   "function(color='red', count=1) [lib.cm('cm-%d' % i, color) for i in "
                                   "std.range(1, count)]")
    repo.write("app/plain.yaml", configmap("plain", {"k": "v"}))
    sha = repo.commit("jsonnet")
    harness.make_app("svc", repo, source={"directory": {"jsonnet": {"tlas": [
        {"name": "color", "value": "blue"}, {"name": "count", "value": "2", "code": True}]}}})
    harness.start()
    status = harness.wait_synced("svc", sha)
    assert status["sync"]["renderedBy"] == "jsonnet v0.22.0"
    assert names(harness, "configmaps") == ["cm-1", "cm-2", "plain"]
    assert (harness.cm("cm-2") or {})["data"] == {"color": "blue"}


# ---------------------------------------------------------------- never silently wrong; hostile input

def test_plain_directories_follow_argo_cd_recurse_include_exclude(harness: Harness, repo: Repo) -> None:
    repo.write("app/top.yaml", configmap("top", {"k": "v"}))
    repo.write("app/sub/deep.yaml", configmap("deep", {"k": "v"}))
    repo.write("app/sub/skip.yaml", configmap("skip", {"k": "v"}))
    sha = repo.commit("nested")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", sha)
    assert names(harness, "configmaps") == ["top"], "not recursive by default, as in Argo CD"
    harness.patch_app("svc", {"spec": {"source": {"directory": {"recurse": True, "exclude": "*skip*"}}}})
    wait_for(lambda: names(harness, "configmaps") == ["deep", "top"], what="recursed, skip.yaml excluded")


def test_a_nested_kustomization_in_a_plain_directory_is_refused(harness: Harness, repo: Repo) -> None:
    repo.write("app/cm.yaml", configmap("alpha", {"k": "v"}))
    repo.write("app/overlay/kustomization.yaml", {"resources": ["../cm.yaml"]})
    repo.write("app/overlay/patch.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "alpha"}})
    sha = repo.commit("overlay inside a plain directory")
    harness.make_app("svc", repo, source={"directory": {"recurse": True}})
    harness.start()
    condition = harness.wait_condition("svc", "RenderReady", "False", "NestedKustomization")
    assert "app/overlay/kustomization.yaml" in condition["message"] and sha[:7] in condition["message"]
    assert harness.cm("alpha") is None, "the patch fragment is never applied as an object"


@pytest.mark.parametrize(("files", "reason", "says"), [
    pytest.param({"app/kustomization.yaml": {"resources": ["../../../etc"]}}, "RenderFailed",
                 "app/kustomization.yaml:2: resources entry '../../../etc' leaves the repository", id="escape"),
    pytest.param({"app/kustomization.yaml": {"resources": ["cm.yaml"], "patches": [{"path": "../../../etc/passwd"}]},
                  "app/cm.yaml": configmap("alpha", {"color": "green"})}, "RenderFailed",
                 "security; file", id="patch-outside-the-root"),
    pytest.param({"app/kustomization.yaml": {"resources": ["https://github.com/org/repo//base?ref=v1"]}},
                 "RenderFailed", "is remote; driftguard renders offline", id="remote-base"),
    pytest.param({"app/Chart.yaml": "apiVersion: v2\nname: x\nversion: 0.1.0\n",
                  "app/templates/bad.yaml": "{{ fail \"chart says no\" }}\n"}, "RenderFailed", "chart says no",
                 id="helm-fails"),
    pytest.param({"app/main.jsonnet": "error 'jsonnet says no'"}, "RenderFailed", "jsonnet says no",
                 id="jsonnet-fails"),
    pytest.param({"app/README.md": "docs", "app/run.sh": "#!/bin/sh"}, "EmptyRender",
                 "app/README.md, app/run.sh are neither *.yaml/*.yml/*.json nor a source", id="no-manifests"),
])
def test_a_bad_render_is_a_condition_and_nothing_is_pruned(harness: Harness, repo: Repo, files: dict[str, Any],
                                                          reason: str, says: str) -> None:
    repo.write("app/cm.yaml", configmap("alpha", {"color": "blue"}))
    good = repo.commit("good")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", good)
    repo.remove("app")
    for path, content in files.items():
        repo.write(path, content)
    bad = repo.commit("bad")
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "RenderReady", "False", reason)
    assert says in condition["message"] and bad[:7] in condition["message"], condition["message"]
    assert "allowEmpty" not in condition["message"], "the dangerous hint only when the render is really empty"
    assert harness.cm("alpha") is not None, "nothing pruned"
    wait_for(lambda: harness.service is not None and harness.service.controller.running.is_set(),
             what="the reconciler still runs")


def test_driftguard_render_local_prints_what_would_be_applied(repo: Repo, tmp_path: Path) -> None:
    kustomize_repo(repo)
    application = tmp_path / "app.yaml"
    application.write_text(yaml.safe_dump({
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application", "metadata": {"name": "prod"},
        "spec": {"source": {"repoURL": "x", "path": "overlays/prod", "kustomize": {"nameSuffix": "-v2"}}}}))
    done = subprocess.run([sys.executable, "-m", "driftguard.cli", "render", "--local", str(repo.path),
                           "--application", str(application)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment") == ["prod-web-v2"]
    assert "rendered by kustomize v5.8.1" in done.stderr
    assert not (repo.path / ".driftguard-overlay").exists(), "the checkout is never written to"
    broken = subprocess.run([sys.executable, "-m", "driftguard.cli", "render", "--local", str(repo.path),
                             "--path", "../outside"], capture_output=True, text=True, timeout=60, check=False)
    assert broken.returncode == 1 and "--path '../outside' must be relative" in broken.stderr


class ChartRepository:
    """A Helm chart repository on loopback: ``index.yaml`` and packaged versions of a chart ``lib``."""

    def __init__(self, tmp_path: Path) -> None:
        self.helm, self.tmp = str(render_tools()["helm"]), tmp_path
        self.served = tmp_path / "served"
        self.served.mkdir()
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(self.served))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, version: str, data: str = "repository") -> None:
        source = self.tmp / f"lib-{version}"
        (source / "templates").mkdir(parents=True)
        (source / "Chart.yaml").write_text(f"apiVersion: v2\nname: lib\nversion: {version}\n")
        (source / "templates" / "cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-lib}\n"
            f"data: {{from: {data}, version: {{{{ .Chart.Version | quote }}}}}}\n")
        env = {"HOME": str(self.tmp), "PATH": "/usr/bin:/bin"}
        for argv in ([self.helm, "package", str(source), "--destination", str(self.served)],
                     [self.helm, "repo", "index", str(self.served), "--url", self.url]):
            subprocess.run(argv, check=True, capture_output=True, env=env, timeout=60)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def chart_repository(tmp_path: Path) -> Iterator[str]:
    """The URL of a chart repository serving ``lib`` 0.1.0."""
    served = ChartRepository(tmp_path)
    served.publish("0.1.0")
    yield served.url
    served.close()


def test_a_chart_from_a_helm_repository_is_verified_rendered_and_followed(harness: Harness, tmp_path: Path) -> None:
    served = ChartRepository(tmp_path)
    try:
        served.publish("0.1.0")
        harness.make_app("svc", served.url, path="", source={"chart": "lib", "targetRevision": "0.1.*",
                                                              "helm": {"releaseName": "shop"}}, refreshInterval="1s")
        harness.start()
        index = yaml.safe_load((served.served / "index.yaml").read_text())
        digest = index["entries"]["lib"][0]["digest"]
        status = harness.wait_synced("svc", digest[:40])
        assert status["sync"]["renderedBy"] == "helm v4.3.2" and status["sync"]["message"] == "chart lib 0.1.0"
        assert (harness.cm("shop-lib") or {}).get("data") == {"from": "repository", "version": "0.1.0"}

        served.publish("0.1.1", data="newer")
        wait_for(lambda: (harness.cm("shop-lib") or {}).get("data", {}).get("version") == "0.1.1", timeout=120,
                 what="the newest matching version, by polling the index")
        served.publish("0.2.0", data="too-new")  # outside 0.1.*
        time.sleep(3)
        assert (harness.cm("shop-lib") or {})["data"]["version"] == "0.1.1"
    finally:
        served.close()


def test_a_chart_dependency_comes_from_the_repository_the_chart_declares(harness: Harness, repo: Repo,
                                                                        chart_repository: str) -> None:
    helm_chart(repo)
    repo.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
                                   f"- name: lib\n  version: 0.1.0\n  repository: {chart_repository}\n")
    sha = repo.commit("a chart with a dependency")
    harness.make_app("svc", repo, path="chart", source={"helm": {"releaseName": "shop"}})
    harness.start()
    harness.wait_synced("svc", sha)
    assert (harness.cm("shop-lib") or {}).get("data") == {"from": "repository", "version": "0.1.0"}, "the dependency"
    assert harness.cm("shop-settings") is not None, "the chart's own"

    repo.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
                                   "- name: lib\n  version: 0.1.0\n  repository: '@stable'\n")
    bad = repo.commit("an alias")
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "RenderReady", "False", "RenderFailed")
    assert "names the repository '@stable', an alias" in condition["message"] and bad[:7] in condition["message"]
    assert harness.cm("shop-lib") is not None, "nothing pruned"


def test_a_multi_source_app_takes_helm_values_from_a_second_repository(harness: Harness, repo: Repo,
                                                                       tmp_path: Path) -> None:
    helm_chart(repo)
    chart_sha = repo.commit("the chart")
    values = Repo(tmp_path / "values-repo")
    values.path.mkdir()
    values.git("init", "-q", "-b", "main")
    values.write("envs/prod.yaml", "replicas: 3\ncolor: purple\n")
    values_sha = values.commit("prod values")
    chart = {"repoURL": repo.url, "targetRevision": "main", "path": "chart",
             "helm": {"releaseName": "shop", "valueFiles": ["values.yaml", "$values/envs/prod.yaml"]}}
    harness.admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{harness.namespace}/applications", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "multi", "namespace": harness.namespace},
        "spec": {"project": "default", "destination": {"namespace": harness.namespace}, "refreshInterval": "1s",
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
                 "sources": [chart, {"repoURL": values.url, "targetRevision": "main", "ref": "values"}]}})
    harness.start()
    status = harness.wait_synced("multi", chart_sha)
    assert status["sync"]["refs"] == {"values": values_sha}
    assert deployment(harness, "shop-web")["spec"]["replicas"] == 3
    assert (harness.cm("shop-settings") or {})["data"]["color"] == "purple"

    values.write("envs/prod.yaml", "replicas: 4\ncolor: purple\n")
    moved = values.commit("scale in the values repository only")
    wait_for(lambda: deployment(harness, "shop-web")["spec"]["replicas"] == 4, timeout=60,
             what="a commit to the ref source alone is synced")
    wait_for(lambda: harness.status("multi")["sync"].get("refs") == {"values": moved}, what="status names it")


def test_a_chart_archive_that_does_not_match_its_digest_is_refused(harness: Harness, tmp_path: Path) -> None:
    served = ChartRepository(tmp_path)
    try:
        served.publish("0.1.0")
        [archive] = served.served.glob("lib-0.1.0.tgz")
        archive.write_bytes(archive.read_bytes() + b"tampered")  # the index still names the original digest
        harness.make_app("svc", served.url, path="", source={"chart": "lib", "targetRevision": "0.1.0"})
        harness.start()
        condition = harness.wait_condition("svc", "SourceReady", "False", "FetchFailed")
        assert "does not match the index's sha256 digest" in condition["message"]
        assert harness.cm("svc-lib") is None
    finally:
        served.close()
