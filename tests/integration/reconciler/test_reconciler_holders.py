"""Namespaces and CRDs holding managed objects carry the reconciler's mark (issue 10, path 3), so the
webhook can deny deleting them; the mark goes when nothing managed is left in them."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from support.reconciler_harness import TEST_GROUP, Harness, Repo, configmap, wait_for

from driftguard.core.contract import ANN_HOLDS_MANAGED, LABEL_HOLDS_MANAGED
from driftguard.kube import KubeError

pytestmark = pytest.mark.integration


def marks(obj: dict[str, Any] | None) -> tuple[str | None, str | None]:
    metadata = (obj or {}).get("metadata") or {}
    return ((metadata.get("labels") or {}).get(LABEL_HOLDS_MANAGED),
            (metadata.get("annotations") or {}).get(ANN_HOLDS_MANAGED))


def test_holders_are_marked_and_unmarked(harness: Harness, repo: Repo) -> None:
    extra = f"{harness.namespace}-h"[:63]
    kind = f"Gadget{secrets.token_hex(3)}"
    plural = kind.lower() + "s"
    crd_name = f"{plural}.{TEST_GROUP}"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": crd_name},
           "spec": {"group": TEST_GROUP, "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    repo.write("app/crd.yaml", crd)
    repo.write("app/gadget.yaml", {"apiVersion": f"{TEST_GROUP}/v1", "kind": kind, "metadata": {"name": "g1"}})
    repo.write("app/cm.yaml", configmap("settings", {"a": "1"}))
    sha = repo.commit("a CRD, one of its resources and a ConfigMap, in a namespace the reconciler creates")
    harness.make_app("svc", repo, "app", destination=extra, syncPolicy={
        "automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"]})
    app = f"{harness.namespace}/svc"
    namespace_path = f"/api/v1/namespaces/{extra}"
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}"
    try:
        harness.start()
        harness.wait_synced("svc", sha, timeout=30)
        assert wait_for(lambda: marks(harness.get(namespace_path)) == ("true", app), 10,
                        what="the created namespace marked")
        assert wait_for(lambda: marks(harness.get(crd_path)) == ("true", app), 10, what="the CRD marked")

        repo.remove("app/gadget.yaml")  # the CRD holds nothing managed any more (it stays, declared)
        harness.commit_and_sync(repo, "svc", "no gadget")
        wait_for(lambda: marks(harness.get(crd_path)) == (None, None), 10, what="the CRD's mark removed")
        assert marks(harness.get(namespace_path)) == ("true", app)

        harness.admin.request("DELETE", f"/apis/driftguard.io/v1alpha1/namespaces/{harness.namespace}/applications/svc")
        wait_for(lambda: marks(harness.get(namespace_path)) == (None, None), 15,
                 what="the namespace's mark removed with its Application")
    finally:
        for path in (namespace_path, crd_path):
            try:
                harness.admin.request("DELETE", path)
            except KubeError as e:
                if e.status != 404:
                    raise
