"""Installing driftguard into a cluster: the ``manifests/`` base, webhook TLS and registration.

``base`` holds the mechanism (shared by local mode and real clusters), ``cli`` the ``certs install``
command. This layer sits above ``webhook`` and ``reconciler`` (it renders their registration and waits
with the reconciler's CRD check) and below local mode.
"""

from driftguard.core.names import NAMESPACE
from driftguard.install.base import (
    AGGREGATE_LABEL,
    AGGREGATED_ROLE,
    INSTALL_MANAGER,
    WEBHOOK_SECRET,
    WEBHOOK_SERVICE,
    InstallError,
    aggregate_cluster_roles,
    apply_manifests,
    base_manifests,
    install_in_cluster,
    manifests_dir,
    register_webhook,
    render_webhook_configurations,
    webhook_tls_secret,
)

__all__ = [
    "AGGREGATED_ROLE",
    "AGGREGATE_LABEL",
    "INSTALL_MANAGER",
    "NAMESPACE",
    "WEBHOOK_SECRET",
    "WEBHOOK_SERVICE",
    "InstallError",
    "aggregate_cluster_roles",
    "apply_manifests",
    "base_manifests",
    "install_in_cluster",
    "manifests_dir",
    "register_webhook",
    "render_webhook_configurations",
    "webhook_tls_secret",
]
