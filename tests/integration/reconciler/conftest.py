"""Fixtures for the reconciler's integration tests.

* ``reconciler_kubeconfig`` (session): the Application CRD and the reconciler's RBAC from
  ``manifests/`` installed; a kubeconfig for ServiceAccount ``driftguard-system/driftguard-reconciler``
  (TokenRequest). A bare control plane has no ClusterRole aggregation controller, so the SA is bound
  to the aggregated roles' parts directly, plus a test-only role for CRDs and ``*.example.com``.
* ``repo`` (function): a real git repository in a temp dir.
* ``harness`` (function): starts in-process reconcilers for the test's namespace as that SA (no leader
  election, random port) and stops them at teardown; creates and reads Applications.
* ``ca`` (function): a test CA for the https sources' servers (git, OCI registry, Helm repository); the
  Application's Secret carries it as ``ca.crt``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.reconciler_harness import (
    SA_NAME,
    SA_NAMESPACE,
    Harness,
    Repo,
    install_reconciler_access,
)

from certs import CertificateAuthority
from driftguard.kube import Kube
from driftguard.local.controlplane import serviceaccount_token
from driftguard.local.controlplane.identities import write_token_kubeconfig


@pytest.fixture(scope="session")
def reconciler_kubeconfig(cluster: Any, admin: Kube, tmp_path_factory: pytest.TempPathFactory) -> Path:
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


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate("driftguard-test-source-ca")
