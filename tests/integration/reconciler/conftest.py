"""Fixtures for the reconciler's integration tests (``reconciler_kubeconfig``, ``repo`` and ``harness`` are in
tests/integration/conftest.py, shared with the UI's tests).

* ``ca`` (function): a test CA for the https sources' servers (git, OCI registry, Helm repository); the
  Application's Secret carries it as ``ca.crt``.
"""

from __future__ import annotations

import pytest

from certs import CertificateAuthority


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate("driftguard-test-source-ca")
