"""The names driftguard gives itself in a cluster, spelled once (the manifests under ``manifests/`` use
the same; ``certs/``, a leaf, repeats the namespace as its CLI default)."""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "driftguard-system"
RECONCILER_SERVICE_ACCOUNT: Final = "driftguard-reconciler"
RECONCILER_USER: Final = f"system:serviceaccount:{NAMESPACE}:{RECONCILER_SERVICE_ACCOUNT}"
