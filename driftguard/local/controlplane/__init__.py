"""A real kube-apiserver + etcd for tests and local mode, built from the Kubernetes Go modules.

``binaries`` finds or builds the version-pinned executables, ``processes`` starts and stops detached
processes recorded in ``state.json``, ``identities`` writes kubeconfigs and the RBAC for test users,
and ``cluster.ControlPlane`` puts them together. Nothing here imports ``kubernetes``: the API is
reached through ``driftguard.kube``.
"""

from driftguard.local.controlplane.binaries import (
    KUBERNETES_VERSION,
    Binaries,
    BinariesUnavailable,
    resolve_binaries,
)
from driftguard.local.controlplane.cluster import ControlPlane, ControlPlaneError
from driftguard.local.controlplane.identities import (
    LAPTOP_BINDING,
    LAPTOP_GROUP,
    LAPTOP_USER,
    ensure_laptop_binding,
    serviceaccount_token,
)

__all__ = [
    "KUBERNETES_VERSION",
    "LAPTOP_BINDING",
    "LAPTOP_GROUP",
    "LAPTOP_USER",
    "Binaries",
    "BinariesUnavailable",
    "ControlPlane",
    "ControlPlaneError",
    "ensure_laptop_binding",
    "resolve_binaries",
    "serviceaccount_token",
]
