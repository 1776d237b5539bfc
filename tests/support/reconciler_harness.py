"""Helpers for the reconciler's integration tests: a git repository, and a harness around one test's
reconciler and Applications (the fixtures that build them are in this directory's conftest)."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from driftguard.core.marks import MarkKey, seal
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster
from driftguard.local.controlplane.binaries import resolve_render_tools
from reconciler import crd
from reconciler.controller import Settings
from reconciler.service import Options, Service, start

REFRESH_TOKEN = "harness-refresh-token"
ROOT = Path(__file__).resolve().parents[2]
SA_NAMESPACE, SA_NAME = "driftguard-system", "driftguard-reconciler"
APPS = "/apis/driftguard.io/v1alpha1/namespaces/{ns}/applications"
PODS = "/api/v1/namespaces/{ns}/pods"
T = TypeVar("T")
TEST_GROUP = "driftguard-tests.example.com"  # custom resources the reconciler may manage in tests

TEST_EXTRAS: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "driftguard-reconciler-test-extras",
                 "labels": {"driftguard.io/aggregate-to-reconciler": "true"}},
    "rules": [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": [TEST_GROUP], "resources": ["*"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    ],
}


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except KubeError as e:
            last = None
            if e.status != 404:
                raise
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last value: {last!r}")


def install_reconciler_access(admin: Kube) -> None:
    """The Application CRD, namespace ``driftguard-system`` and the reconciler's ServiceAccount and RBAC
    from ``manifests/``. A bare control plane has no ClusterRole aggregation controller, so the SA is
    bound to the aggregated roles' parts directly, plus ``TEST_EXTRAS`` (CRDs and ``TEST_GROUP``)."""
    crd.install(Cluster(admin))
    for path in ("namespace.yaml", "rbac-reconciler.yaml"):
        for document in yaml.safe_load_all((ROOT / "manifests" / path).read_text()):
            apply_admin(admin, document)
    apply_admin(admin, TEST_EXTRAS)
    for role in ("driftguard-reconciler-core", "driftguard-reconciler-workloads", TEST_EXTRAS["metadata"]["name"]):
        apply_admin(admin, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{role}-direct"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}],
        })


def apply_admin(admin: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    path = _path_for(obj)
    return admin.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                         query={"fieldManager": "test-admin", "force": "true"})


def _path_for(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"]
    base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    plural = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles", "ClusterRoleBinding":
              "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings", "Namespace": "namespaces"}
    ns = obj["metadata"].get("namespace")
    scope = f"/namespaces/{ns}" if ns else ""
    return f"{base}{scope}/{plural[obj['kind']]}/{obj['metadata']['name']}"


@dataclass
class Repo:
    path: Path

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@org",
               "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@org"}
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def write(self, relative: str, content: str | list[dict[str, Any]] | dict[str, Any]) -> None:
        if not isinstance(content, str):
            docs = content if isinstance(content, list) else [content]
            content = yaml.safe_dump_all(docs, sort_keys=False)
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def remove(self, relative: str) -> None:
        self.git("rm", "-q", "-r", relative)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def configmap(name: str, data: dict[str, str], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **metadata}, "data": data}


@functools.cache
def login_leaks(text: str, user: str, *passwords: str) -> list[str]:
    """Every form of a password (or token) that could end up in ``text``: clear, base64, Basic credentials."""
    forms = []
    for password in passwords:
        forms += [password, base64.b64encode(password.encode()).decode(),
                  base64.b64encode(f"{user}:{password}".encode()).decode()]
    return [form for form in forms if form in text]


def render_tools() -> dict[str, Path]:
    """kustomize, helm and jsonnet as ``make tools`` built them (``make test-integration`` depends on it)."""
    return resolve_render_tools()


@dataclass
class Harness:
    """One test's reconciler and the clients around it."""

    admin: Kube
    namespace: str
    kubeconfig: Path
    cache_dir: Path
    service: Service | None = None
    services: list[Service] = field(default_factory=list)
    mark_key: MarkKey = field(default_factory=MarkKey.generate)  # what the webhook would seal marks with

    def sealed(self, obj: dict[str, Any] | None, text: str) -> str:
        """A grant or drift mark as the mutating webhook writes it on the live ``obj``."""
        assert obj is not None
        return seal(self.mark_key, obj["metadata"]["uid"], text)

    # -- Applications ---------------------------------------------------------------------------
    def make_app(self, name: str, repo: Repo | str, path: str = "app", *, prune: bool = True,
                 self_heal: bool = True, destination: str | None = None, source: dict[str, Any] | None = None,
                 **spec: Any) -> dict[str, Any]:
        automated: dict[str, Any] | None = {"prune": prune, "selfHeal": self_heal}
        if spec.pop("automated", True) is False:
            automated = None
        body = {
            "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "project": "default",
                "source": {"repoURL": repo.url if isinstance(repo, Repo) else repo, "targetRevision": "main",
                           "path": path, **(source or {})},
                "destination": {"server": "https://kubernetes.default.svc",
                                "namespace": destination or self.namespace},
                "syncPolicy": {"automated": automated} if automated else {},
                **spec,
            },
        }
        return self.admin.request("POST", APPS.format(ns=self.namespace), body=body)

    def patch_app(self, name: str, patch: dict[str, Any]) -> None:
        self.admin.request("PATCH", APPS.format(ns=self.namespace) + f"/{name}", body=patch,
                           content_type="application/merge-patch+json")

    def app(self, name: str) -> dict[str, Any]:
        return self.admin.request("GET", APPS.format(ns=self.namespace) + f"/{name}")

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.app(name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == type_), {})

    def wait_synced(self, name: str, sha: str, timeout: float = 30.0) -> dict[str, Any]:
        seen: list[dict[str, Any]] = [{}]

        def synced() -> dict[str, Any] | None:
            seen[0] = status = self.status(name)
            sync = status.get("sync") or {}
            return status if sync.get("revision") == sha and sync.get("status") == "Synced" else None
        try:
            return wait_for(synced, timeout, what=f"Application {name} Synced at {sha[:7]}")
        except AssertionError as e:
            seen[0].pop("inventory", None)
            raise AssertionError(f"{e}; status: {json.dumps(seen[0], indent=1)}") from None

    def wait_condition(self, name: str, type_: str, status: str, reason: str = "",
                       timeout: float = 30.0) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            c = self.condition(name, type_)
            return c if c.get("status") == status and (not reason or c.get("reason") == reason) else None
        return wait_for(matches, timeout, what=f"{name} condition {type_}={status} {reason}")

    # -- objects --------------------------------------------------------------------------------
    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.admin.request("GET", path)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def cm(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.get(f"/api/v1/namespaces/{namespace or self.namespace}/configmaps/{name}")

    def put_secret(self, name: str, string_data: dict[str, str]) -> None:
        """Create or replace the Secret ``name`` in the test's namespace (a source's login, CA, url)."""
        path = f"/api/v1/namespaces/{self.namespace}/secrets"
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()}}
        if self.get(f"{path}/{name}") is None:
            self.admin.request("POST", path, body=body)
        else:
            self.admin.request("PUT", f"{path}/{name}", body=body)

    # -- the reconciler -------------------------------------------------------------------------
    def start(self, *, ui_service_account: str = "", identity: str = "", **settings: Any) -> Service:
        """An in-process reconciler for this namespace, as the reconciler's ServiceAccount (trusting the UI's
        ServiceAccount ``ui_service_account`` to name users, when given). With an ``identity`` it campaigns for
        a Lease of this test's (3 s, where the reconciler's RBAC allows Leases), so several started are one
        leader and standbys."""
        for tool, path in render_tools().items():
            settings.setdefault(tool, str(path))
        if "mark_key_file" not in settings:
            key_file = self.cache_dir.with_name("mark-key")
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(self.mark_key.to_text() + "\n")
            settings["mark_key_file"] = key_file
        options = Options(
            kubeconfig=str(self.kubeconfig), namespace=self.namespace, listen="127.0.0.1:0",
            cache_dir=self.cache_dir, leader_elect=bool(identity), refresh_token=REFRESH_TOKEN,
            ui_service_account=ui_service_account, lease_namespace=SA_NAMESPACE,
            lease_name=f"test-{self.namespace}"[:63], lease_duration=3.0,
            **({"identity": identity} if identity else {}),
            settings=Settings(**{"namespace": self.namespace, "cache_dir": self.cache_dir, "watch_timeout": 5.0,
                                 "allow_local_repos": True, **settings}),  # the tests' repositories are local
        )
        self.service = start(options)
        self.services.append(self.service)
        return self.service

    @contextlib.contextmanager
    def leader_and_standby(self, **start: Any) -> Iterator[tuple[Service, Service]]:
        """Two replicas (``start``'s arguments for both) campaigning for this test's Lease, each also a Pod of the
        reconciler's ServiceAccount as a cluster has them (made by hand, no kubelet: Running at 127.0.0.1 and the
        replica's port as its ``http`` port), so that a standby finds the leader's Pod and passes syncs on to it.
        Yields ``(leader, standby)`` once the first leads and the second sees it hold the Lease; the Pods are
        deleted at the end."""
        suffix = self.namespace[-6:]
        names = (f"reconciler-a-{suffix}", f"reconciler-b-{suffix}")
        try:
            leader = self.start(identity=names[0], **start)
            self._replica_pod(names[0], leader.url)
            wait_for(lambda: leader.controller.leading, 30, what=f"{names[0]} to lead")
            standby = self.start(identity=names[1], **start)
            self._replica_pod(names[1], standby.url)
            wait_for(lambda: standby.controller.elector is not None and standby.controller.elector.holder == names[0],
                     30, what=f"{names[1]} to see {names[0]} hold the Lease")
            yield leader, standby
        finally:
            for name in names:
                with contextlib.suppress(KubeError):  # not made, if it failed before
                    self.admin.request("DELETE", f"{PODS.format(ns=SA_NAMESPACE)}/{name}",
                                       query={"gracePeriodSeconds": "0"})

    def _replica_pod(self, name: str, url: str) -> None:
        self.admin.request("POST", PODS.format(ns=SA_NAMESPACE), body={
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"serviceAccountName": SA_NAME, "automountServiceAccountToken": False,
                     "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "reconciler", "image": "driftguard:test",
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}},
                                     "ports": [{"name": "http", "containerPort": int(url.rpartition(":")[2])}]}]}})
        self.admin.request("PATCH", f"{PODS.format(ns=SA_NAMESPACE)}/{name}/status",
                           content_type="application/merge-patch+json", body={
                               "status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}})

    def refresh(self, name: str | None = None) -> dict[str, Any]:
        assert self.service is not None
        url = self.service.url + "/refresh" + (f"/{self.namespace}/{name}" if name else "")
        request = urllib.request.Request(url, method="POST", data=b"",
                                         headers={"Authorization": f"Bearer {REFRESH_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def commit_and_sync(self, repo: Repo, name: str, message: str = "change") -> str:
        sha = repo.commit(message)
        self.refresh(name)
        self.wait_synced(name, sha)
        return sha
