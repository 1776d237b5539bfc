"""The webhook's only API-server calls: reading a scale request's parent or an Application's Project,
writing audit Events.

Everything goes through ``driftguard.kube`` (the one package allowed to import the client library).
Parent reads use their own client with a short timeout (``--parent-timeout``, default 1 s): a scale
request's decision waits on it, and the webhook's own ``timeoutSeconds`` is 3. Failures become a
``Parent`` with an error, which the policy turns into a denial (fail closed); a 404 means the object
does not exist, which is nobody's drift.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from driftguard.kube import Kube, KubeError
from webhook import autoscalers
from webhook.applications import ProjectRead
from webhook.policy import Parent
from webhook.reviews import Request
from webhook.settings import Settings

EVENT_TIMEOUT: Final = 5.0
READERS: Final = 4
IN_CLUSTER_ENV: Final = "KUBERNETES_SERVICE_HOST"


class ClusterAccess:
    """Parent reads and Event writes for one webhook process."""

    def __init__(self, kubeconfig: Path | None, parent_timeout: float) -> None:
        self._reader = Kube(kubeconfig, timeout=parent_timeout)
        self._writer = Kube(kubeconfig, timeout=EVENT_TIMEOUT)
        self._deadline = parent_timeout
        # The client retries idempotent reads (a 1 s read timeout can become 4 s, past the webhook's
        # own 3 s), so the read runs on a small pool and the answer waits for it at most the deadline.
        self._readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="driftguard-parent")

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterAccess | None:
        """A client from ``--kubeconfig``, else in-cluster when running in a Pod, else None."""
        if settings.kubeconfig is None and not os.environ.get(IN_CLUSTER_ENV):
            return None
        return cls(settings.kubeconfig, settings.parent_timeout)

    def read_parent(self, request: Request) -> Parent:
        path = parent_path(request)
        try:
            return Parent(self._readers.submit(self._reader.request, "GET", path).result(self._deadline))
        except FutureTimeout:
            return Parent(None, error=f"GET {path}: no answer within {self._deadline:g} s")
        except KubeError as error:
            if error.status == 404:
                return Parent(None)
            return Parent(None, error=f"GET {path}: {error}")
        except Exception as error:  # a transport failure is a failed read, never a crash
            return Parent(None, error=f"GET {path}: {type(error).__name__}: {error}")

    def read_project(self, namespace: str, name: str) -> ProjectRead:
        """The Project ``namespace/name`` (an Application CREATE/UPDATE waits on it, as a scale on its parent)."""
        path = f"/apis/driftguard.io/v1alpha1/namespaces/{quote(namespace)}/projects/{quote(name)}"
        try:
            return ProjectRead(name, self._readers.submit(self._reader.request, "GET", path).result(self._deadline))
        except FutureTimeout:
            return ProjectRead(name, None, error=f"GET {path}: no answer within {self._deadline:g} s")
        except KubeError as error:
            if error.status == 404:
                return ProjectRead(name, None)
            return ProjectRead(name, None, error=f"GET {path}: {error}")
        except Exception as error:  # a transport failure is a failed read, never a crash
            return ProjectRead(name, None, error=f"GET {path}: {type(error).__name__}: {error}")

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self._writer.request("POST", f"/apis/events.k8s.io/v1/namespaces/{quote(namespace)}/events", body=body)

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = f"/apis/events.k8s.io/v1/namespaces/{quote(namespace)}/events/{quote(name)}"
        self._writer.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def close(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)
        self._reader.close()
        self._writer.close()


def parent_path(request: Request) -> str:
    """The URL path of the object a subresource request addresses (for an HPA: its scale target)."""
    if autoscalers.is_autoscaler(request):
        return autoscalers.target_path(request)
    resource = request["resource"]
    prefix = f"/apis/{resource['group']}/{resource['version']}" if resource["group"] else f"/api/{resource['version']}"
    namespace = request.get("namespace", "")
    scope = f"/namespaces/{quote(namespace)}" if namespace else ""
    return f"{prefix}{scope}/{quote(resource['resource'])}/{quote(request.get('name', ''))}"


def no_cluster_parent(request: Request) -> Parent:
    return Parent(None, error="the webhook has no cluster access configured (--kubeconfig or in-cluster)")
