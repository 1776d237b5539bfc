"""driftguard's webhook registration as the installer writes it, for the reconciler's perimeter tests: the
configurations' webhooks point at a closed port and select only namespaces labelled
``driftguard-tests/perimeter=never`` (none is), so no other test's request ever reaches them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from certs.authority import CertificateAuthority
from driftguard import install
from driftguard.kube import Kube
from driftguard.kube.resources import Cluster
from reconciler.perimeter import REGISTRATION_CONFIGMAP
from support.guarded import delete_if_present
from support.reconciler_harness import Harness
from webhook import registration

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
VALIDATING = f"{ADMISSION}/validatingwebhookconfigurations/driftguard"
MUTATING = f"{ADMISSION}/mutatingwebhookconfigurations/driftguard"
CONFIGMAP = f"/api/v1/namespaces/driftguard-system/configmaps/{REGISTRATION_CONFIGMAP}"
NOWHERE = {"matchLabels": {"driftguard-tests/perimeter": "never"}}


def registered(harness: Harness, admin: Kube) -> Iterator[dict[str, dict[str, Any]]]:
    """The registration as installed (live objects by path), for a fixture; the reconciler is stopped before
    cleanup, or it would put them back."""
    client = registration.url_client("https://127.0.0.1:1", CertificateAuthority.generate().cert_pem)
    install.register_webhook(Cluster(admin, field_manager=install.INSTALL_MANAGER), client,
                             namespace_selector=NOWHERE)
    yield {path: admin.request("GET", path) for path in (VALIDATING, MUTATING)}
    while harness.services:
        harness.services.pop().stop()
    for path in (VALIDATING, MUTATING, CONFIGMAP):
        delete_if_present(admin, path)
