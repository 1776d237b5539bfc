"""Fixtures for the reconciler's integration tests.

* ``reconciler_kubeconfig`` (session): the Application CRD and the reconciler's RBAC from
  ``manifests/`` installed; a kubeconfig for ServiceAccount ``driftguard-system/driftguard-reconciler``
  (TokenRequest). A bare control plane has no ClusterRole aggregation controller, so the SA is bound
  to the aggregated roles' parts directly, plus a test-only role for CRDs and ``*.example.com``.
* ``repo`` (function): a real git repository in a temp dir.
* ``harness`` (function): starts in-process reconcilers for the test's namespace as that SA (no leader
  election, random port) and stops them at teardown; creates and reads Applications.

pytest runs with ``--import-mode=importlib``, so this directory is put on ``sys.path`` for the tests to
import ``reconciler_support``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from reconciler_support import (  # noqa: E402
    SA_NAME,
    SA_NAMESPACE,
    Harness,
    Repo,
    install_reconciler_access,
)

from driftguard.kube import Kube  # noqa: E402
from driftguard.local.controlplane import serviceaccount_token  # noqa: E402
from driftguard.local.controlplane.identities import write_token_kubeconfig  # noqa: E402


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
