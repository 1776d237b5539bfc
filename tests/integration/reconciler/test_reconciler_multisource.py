"""Several rendered sources in one Application (Argo CD's ``spec.sources``): each rendered by its own renderer
at its own revision — a plain directory from one git repository, a Kustomize overlay from another, a chart from
a real OCI registry — combined into one synced set, object by object; a commit to one source alone re-syncs;
an object two sources declare is a condition naming both, and nothing is applied or pruned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.oci_registry import OCIRegistry
from support.reconciler_harness import APPS, Harness, Repo, configmap, wait_for

from certs import CertificateAuthority
from driftguard.core.contract import read_stamp

pytestmark = pytest.mark.integration

USER, PASSWORD = "reader", "multi-source-pw"
CHART = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-chart}\n"
         "data: {version: {{ .Chart.Version | quote }}}\n")


@pytest.fixture
def registry(tmp_path: Path, ca: CertificateAuthority) -> Iterator[tuple[OCIRegistry, CertificateAuthority]]:
    with OCIRegistry(tmp_path / "registry", ca=ca, users={USER: PASSWORD}) as served:
        served.login(USER)
        yield served, ca


def new_repo(tmp_path: Path, name: str) -> Repo:
    repo = Repo(tmp_path / name)
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    return repo


def multi_app(harness: Harness, sources: list[dict[str, Any]]) -> None:
    harness.admin.request("POST", APPS.format(ns=harness.namespace), body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "multi", "namespace": harness.namespace},
        "spec": {"project": "default", "destination": {"namespace": harness.namespace}, "refreshInterval": "1s",
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}, "sources": sources}})


def test_several_rendered_sources_are_combined_each_by_its_own_renderer(
    harness: Harness, tmp_path: Path, registry: tuple[OCIRegistry, CertificateAuthority],
) -> None:
    served, ca = registry
    digest = served.push("web", "1.0.0", CHART)
    plain, overlay = new_repo(tmp_path, "plain-repo"), new_repo(tmp_path, "overlay-repo")
    plain.write("app/a.yaml", configmap("alpha", {"from": "plain"}))
    plain.write("app/b.yaml", configmap("beta", {"from": "plain"}))
    plain_sha = plain.commit("plain")
    overlay.write("base/cm.yaml", configmap("gamma", {"from": "kustomize"}))
    overlay.write("base/kustomization.yaml", {"resources": ["cm.yaml"]})
    overlay_sha = overlay.commit("overlay")
    harness.put_secret("registry", {"url": f"oci://{served.host}", "username": USER, "password": PASSWORD,
                                    "ca.crt": ca.cert_pem.decode()})
    multi_app(harness, [
        {"repoURL": plain.url, "targetRevision": "main", "path": "app"},
        {"repoURL": overlay.url, "targetRevision": "main", "path": "base", "kustomize": {"namePrefix": "k-"}},
        {"repoURL": f"oci://{served.host}/charts", "chart": "web", "targetRevision": "1.*",
         "helm": {"releaseName": "shop"}, "secretRef": {"name": "registry"}},
    ])
    harness.start()

    status = harness.wait_synced("multi", plain_sha, timeout=60)
    assert status["sync"]["refs"] == {"sources[1]": overlay_sha, "sources[2]": digest.split(":", 1)[1][:40]}
    assert status["sync"]["renderedBy"] == "plain, kustomize v5.8.1, helm v4.3.2"
    assert (harness.cm("alpha") or {})["data"] == {"from": "plain"}
    assert (harness.cm("k-gamma") or {})["data"] == {"from": "kustomize"}, "the overlay's namePrefix"
    assert (harness.cm("shop-chart") or {})["data"] == {"version": "1.0.0"}
    assert status["inventoryCount"] == 4
    stamps = {name: read_stamp(harness.cm(name) or {}) for name in ("alpha", "k-gamma", "shop-chart")}
    assert {name: (s.source.repo, s.source.commit) for name, s in stamps.items() if s is not None} == {
        "alpha": (plain.url, plain_sha), "k-gamma": (overlay.url, overlay_sha),
        "shop-chart": (f"oci://{served.host}/charts", digest.split(":", 1)[1][:40])}, "each stamped with its own"

    overlay.write("base/cm.yaml", configmap("gamma", {"from": "kustomize, changed"}))
    moved = overlay.commit("a commit to the second source alone")
    wait_for(lambda: (harness.cm("k-gamma") or {}).get("data", {}).get("from") == "kustomize, changed",
             timeout=60, what="a commit to one source alone is synced")
    wait_for(lambda: harness.status("multi")["sync"].get("refs", {}).get("sources[1]") == moved, what="named")

    served.push("web", "1.1.0", CHART)
    wait_for(lambda: (harness.cm("shop-chart") or {}).get("data", {}).get("version") == "1.1.0", timeout=60,
             what="a new chart version in the third source")
    plain.remove("app/b.yaml")
    plain.commit("beta goes")
    wait_for(lambda: harness.cm("beta") is None, timeout=60, what="what one source drops is pruned")
    assert harness.cm("k-gamma") is not None and harness.cm("shop-chart") is not None


def test_an_object_two_sources_declare_is_refused_naming_both(harness: Harness, tmp_path: Path) -> None:
    first, second = new_repo(tmp_path, "first-repo"), new_repo(tmp_path, "second-repo")
    first.write("app/a.yaml", configmap("alpha", {"from": "first"}))
    first.write("app/b.yaml", configmap("beta", {"from": "first"}))
    sha = first.commit("first")
    second.write("extra/c.yaml", configmap("gamma", {"from": "second"}))
    second.commit("second")
    multi_app(harness, [{"repoURL": first.url, "targetRevision": "main", "path": "app"},
                        {"repoURL": second.url, "targetRevision": "main", "path": "extra"}])
    harness.start()
    harness.wait_synced("multi", sha, timeout=60)
    assert harness.cm("gamma") is not None

    second.write("extra/c.yaml", configmap("gamma", {"from": "second"}))
    second.write("extra/dup.yaml", configmap("alpha", {"from": "second"}))  # alpha is the first source's
    first.remove("app/b.yaml")  # would be pruned, were anything synced
    first.commit("beta goes")
    second.commit("declares alpha too")
    refused = harness.wait_condition("multi", "RenderReady", "False", "RepeatedResource", timeout=60)
    assert f"is declared by spec.sources[0] ({first.url} app/a.yaml)" in refused["message"], refused["message"]
    assert f"and by spec.sources[1] ({second.url} extra/dup.yaml)" in refused["message"]
    assert "nothing applied or pruned" in refused["message"]
    assert (harness.cm("alpha") or {})["data"] == {"from": "first"}
    assert harness.cm("beta") is not None, "nothing pruned"
