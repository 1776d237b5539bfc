"""Integration fixtures: one real control plane per session, one namespace per test.

By default the session starts driftguard's own etcd + kube-apiserver (``ControlPlane``) in a pytest
temp dir and stops it at the end. With ``DRIFTGUARD_TEST_KUBECONFIG=/path/admin.kubeconfig`` the same
tests run against that existing cluster (e.g. kind) instead: identities are then made by
impersonation, and the ``laptop`` → cluster-admin binding is ensured.

Missing binaries are an error, not a skip: the binaries are resolved (and built, when Go is there)
once after collection, outside any test timeout, and a failure is re-raised by the ``cluster``
fixture with the message that says what to install.

Fixtures (names are the API other tests use):

- ``cluster`` (session) → ``Cluster``: ``.admin()``, ``.laptop()``, ``.user(name, groups)``,
  ``.serviceaccount(namespace, name)`` each return a new ``Kube``; ``.control_plane`` is the
  ``ControlPlane`` or None on an external cluster; ``.server`` the API URL.
- ``control_plane`` (session) → ``ControlPlane``; skips, with the reason, on an external cluster.
- ``admin``, ``laptop`` (session) → ``Kube``.
- ``namespace`` (function) → ``str``: a fresh namespace named after the test, deleted afterwards.
- ``as_user`` (function) → ``(name, groups=()) -> Kube``.
- ``as_serviceaccount`` (function) → ``(name, namespace=None) -> Kube``; ``None`` means the test's
  ``namespace``. The ServiceAccount is created if needed; the token comes from TokenRequest.
- ``reconciler_kubeconfig`` (session) → ``Path``: the Application CRD and the reconciler's RBAC from
  ``manifests/`` installed; a kubeconfig for ServiceAccount ``driftguard-system/driftguard-reconciler``
  (TokenRequest). A bare control plane has no ClusterRole aggregation controller, so the SA is bound
  to the aggregated roles' parts directly, plus a test-only role for CRDs and ``*.example.com``.
- ``repo`` (function) → ``Repo``: a real git repository in a temp dir.
- ``harness`` (function) → ``Harness``: starts in-process reconcilers for the test's namespace as that SA
  (no leader election, random port) and stops them at teardown; creates and reads Applications.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support.reconciler_harness import SA_NAME, SA_NAMESPACE, Harness, Repo, install_reconciler_access

from driftguard.kube import Kube, KubeError
from driftguard.local.controlplane import (
    LAPTOP_GROUP,
    LAPTOP_USER,
    Binaries,
    BinariesUnavailable,
    ControlPlane,
    ensure_laptop_binding,
    resolve_binaries,
    serviceaccount_token,
)
from driftguard.local.controlplane.identities import write_token_kubeconfig

EXTERNAL_KUBECONFIG = "DRIFTGUARD_TEST_KUBECONFIG"
_BINARIES = pytest.StashKey[Binaries | BinariesUnavailable]()


class Cluster:
    """How tests reach the API server as each identity, on either kind of cluster."""

    def __init__(self, admin_kubeconfig: Path, control_plane: ControlPlane | None) -> None:
        self.admin_kubeconfig = admin_kubeconfig
        self.control_plane = control_plane
        with self.admin() as admin:
            self.server = admin.server

    def admin(self) -> Kube:
        return Kube(self.admin_kubeconfig)

    def laptop(self) -> Kube:
        if self.control_plane:
            return Kube(self.control_plane.laptop_kubeconfig)
        return self.user(LAPTOP_USER, [LAPTOP_GROUP])

    def user(self, name: str, groups: Sequence[str] = ()) -> Kube:
        if self.control_plane:
            return Kube(self.control_plane.kubeconfig_for_user(name, groups))
        if len(groups) > 1:
            raise ValueError("impersonation through driftguard.kube carries one group")
        return Kube(self.admin_kubeconfig, impersonate_user=name, impersonate_group=next(iter(groups), None))

    def serviceaccount(self, namespace: str, name: str, *, bound: bool = True) -> Kube:
        """The ServiceAccount with a TokenRequest token, bound to a Pod made for it unless ``bound=False``."""
        if self.control_plane:
            return Kube(self.control_plane.kubeconfig_for_serviceaccount(namespace, name, bound=bound))
        with self.admin() as admin:
            return admin.with_token(serviceaccount_token(admin, namespace, name, bound=bound))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Resolve (build) the binaries once, before any test runs and outside any test timeout."""
    here = Path(__file__).parent
    wanted = any(here in item.path.parents for item in items)
    if not wanted or os.environ.get(EXTERNAL_KUBECONFIG):
        return
    try:
        config.stash[_BINARIES] = resolve_binaries(progress=sys.__stderr__ or sys.stderr)
    except BinariesUnavailable as error:
        config.stash[_BINARIES] = error


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get(EXTERNAL_KUBECONFIG)
    if external:
        yield _external_cluster(Path(external))
        return
    binaries = request.config.stash.get(_BINARIES, None) or resolve_binaries()
    if isinstance(binaries, BinariesUnavailable):
        raise binaries
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), binaries)
    plane.start()
    try:
        yield Cluster(plane.admin_kubeconfig, plane)
    finally:
        plane.stop()
        shutil.rmtree(plane.directory / "etcd", ignore_errors=True)  # WAL files are 64 MB each


def _external_cluster(kubeconfig: Path) -> Cluster:
    cluster = Cluster(kubeconfig, None)
    with cluster.admin() as admin:
        ensure_laptop_binding(admin)
    return cluster


@pytest.fixture(scope="session")
def control_plane(cluster: Cluster) -> ControlPlane:
    if cluster.control_plane is None:
        pytest.skip(f"needs driftguard's own control plane; {EXTERNAL_KUBECONFIG} selects an external cluster")
    return cluster.control_plane


@pytest.fixture(scope="session")
def admin(cluster: Cluster) -> Iterator[Kube]:
    with cluster.admin() as kube:
        yield kube


@pytest.fixture(scope="session")
def laptop(cluster: Cluster) -> Iterator[Kube]:
    with cluster.laptop() as kube:
        yield kube


@pytest.fixture
def namespace(request: pytest.FixtureRequest, admin: Kube) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"driftguard.io/test": "true"}},
    }
    admin.request("POST", "/api/v1/namespaces", body=body)
    yield name
    try:
        admin.request("DELETE", f"/api/v1/namespaces/{name}")
    except KubeError as error:
        if error.status != 404:
            raise


@pytest.fixture
def as_user(cluster: Cluster) -> Iterator[Callable[..., Kube]]:
    clients: list[Kube] = []

    def make(name: str, groups: Sequence[str] = ()) -> Kube:
        clients.append(cluster.user(name, groups))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def as_serviceaccount(cluster: Cluster, namespace: str) -> Iterator[Callable[..., Kube]]:
    clients: list[Kube] = []
    test_namespace = namespace

    def make(name: str, namespace: str | None = None) -> Kube:
        clients.append(cluster.serviceaccount(namespace or test_namespace, name))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def _namespace_name(test_name: str) -> str:
    """``test_foo[bar-1]`` → ``test-foo-bar-1-3f9a1`` (a DNS label: ≤ 63 chars, unique per run)."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:50].strip("-")
    return f"{slug or 'test'}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def reconciler_kubeconfig(cluster: Cluster, admin: Kube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reconciler's own identity, with the RBAC this repository ships (see module docstring)."""
    install_reconciler_access(admin)
    if cluster.control_plane is not None:
        return Path(cluster.control_plane.kubeconfig_for_serviceaccount(SA_NAMESPACE, SA_NAME))
    ca = tmp_path_factory.mktemp("sa") / "ca.crt"
    ca.write_text(Path(admin._api.configuration.ssl_ca_cert).read_text())
    token = serviceaccount_token(admin, SA_NAMESPACE, SA_NAME)
    return write_token_kubeconfig(ca.parent / "reconciler.kubeconfig", admin.server, ca, SA_NAME, token)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "manifests-repo"
    path.mkdir()
    repository = Repo(path)
    repository.git("init", "-q", "-b", "main")
    return repository


@pytest.fixture
def harness(admin: Kube, namespace: str, reconciler_kubeconfig: Path, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(admin, namespace, reconciler_kubeconfig, tmp_path / "git-cache")
    yield h
    for service in h.services:
        service.stop()
