"""Starting the reconciler as a service, from Python (tests, local mode) or from the CLI.

``start(Options(...))`` (declared in ``reconciler.settings``) connects, optionally installs the
Application CRD, starts the HTTP server and the controller (campaigning for the Lease unless
``leader_elect`` is off) in background threads, and returns a ``Service`` to stop it. ``run`` is the
foreground form the CLI uses (SIGTERM/SIGINT stop it cleanly and release the Lease).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from driftguard.core.names import NAMESPACE, RECONCILER_SERVICE_ACCOUNT
from driftguard.kube import Kube
from driftguard.kube.resources import PODS, Cluster, ResourceError
from reconciler import crd
from reconciler.controller import Controller
from reconciler.leader import LeaderElector
from reconciler.server import ReconcilerServer
from reconciler.settings import Options, Settings

log = logging.getLogger(__name__)

__all__ = ["Options", "Service", "Settings", "run", "start"]



def pod_of(cluster: Cluster, namespace: str, service_account: str, me: str) -> Callable[[str], bool]:
    """Is a Lease holder one of the reconciler's replicas: a live Pod of ``service_account`` in
    ``namespace``? (Creating such a Pod takes the rights of that namespace, which are the reconciler's.)

    Only asked when ``me`` is such a Pod itself: replicas that are not Pods (local mode, a laptop) cannot
    be told apart from a forged holder this way, so every holder counts as legitimate for them (the
    duration cap in ``leader.decide`` still applies). When a Pod cannot be read the answer is yes too:
    two replicas must never fight over a doubt."""
    known: list[bool] = []  # whether ``me`` is a Pod of ours, once we could tell

    def ours(name: str) -> bool | None:
        try:
            pod = cluster.get(PODS, namespace, name)
        except ResourceError as e:
            log.warning("cannot tell whether %r is a reconciler Pod: %s", name, e)
            return None
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return False
        return bool((pod.get("spec") or {}).get("serviceAccountName") == service_account
                    and (pod.get("status") or {}).get("phase", "Pending") in ("Pending", "Running"))

    def legitimate(holder: str) -> bool:
        if not known:
            mine = ours(me)
            if mine is None:
                return True
            known.append(mine)
        return not known[0] or ours(holder) is not False

    return legitimate

def leader_url(cluster: Cluster, namespace: str, service_account: str) -> Callable[[str], str | None]:
    """Where a Lease holder serves (``pod_url`` of its Pod in ``namespace``, read from the API server; None for a
    holder that is no such Pod: local mode, a forged name). A standby passes syncs on to it."""
    def locate(holder: str) -> str | None:
        try:
            pod = cluster.get(PODS, namespace, holder)
        except ResourceError as e:
            log.warning("cannot find the leader's Pod %s: %s", holder, e)
            return None
        return pod_url(pod, service_account) if pod is not None else None

    return locate


def pod_url(pod: Mapping[str, Any], service_account: str) -> str | None:
    """``http://<IP>:<container port named http>`` of a running, not deleting Pod of ``service_account``; else None."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ip = str(status.get("podIP") or "")
    ports = [p.get("containerPort") for c in spec.get("containers") or [] for p in c.get("ports") or []
             if p.get("name") == "http" and isinstance(p.get("containerPort"), int)]
    if (pod.get("metadata") or {}).get("deletionTimestamp") or spec.get("serviceAccountName") != service_account \
            or status.get("phase") != "Running" or not ip or not ports:
        return None
    return f"http://[{ip}]:{ports[0]}" if ":" in ip else f"http://{ip}:{ports[0]}"


@dataclass
class Service:
    controller: Controller
    server: ReconcilerServer
    stop_event: threading.Event
    thread: threading.Thread
    exit_code: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        self.server.shutdown()
        self.server.server_close()
        self.controller.cluster.kube.close()


def start(options: Options) -> Service:
    """Start the reconciler in background threads and return at once."""
    kube = Kube(options.kubeconfig, context=options.context)
    cluster = Cluster(kube)
    if options.install_crd:
        crd.install(cluster)
    settings = options.settings
    if settings.namespace != options.namespace or settings.cache_dir != options.cache_dir:
        settings = Settings(**{**settings.__dict__, "namespace": options.namespace, "cache_dir": options.cache_dir})
    elector = None
    locate = None
    if options.leader_elect:
        lease_namespace = options.lease_namespace or options.namespace or NAMESPACE
        elector = LeaderElector(cluster, lease_namespace, options.lease_name, options.identity,
                                lease_duration=options.lease_duration,
                                renew_deadline=options.lease_duration * 2 / 3,
                                retry_period=max(0.2, options.lease_duration / 7.5),
                                legitimate=pod_of(cluster, lease_namespace, RECONCILER_SERVICE_ACCOUNT,
                                                  options.identity))
        locate = leader_url(cluster, lease_namespace, RECONCILER_SERVICE_ACCOUNT)
    controller = Controller(cluster, settings, elector=elector)
    host, _, port = options.listen.rpartition(":")
    server = ReconcilerServer((host or "127.0.0.1", int(port)), controller, options.refresh_token,
                              options.ui_service_account, locate)
    server.start()
    stop = threading.Event()
    service = Service(controller, server, stop, threading.Thread())

    def main() -> None:
        service.exit_code.append(controller.run(stop))

    service.thread = threading.Thread(target=main, name="controller", daemon=True)
    service.thread.start()
    log.info("reconciler serving on %s (Applications in %s, identity %s)", server.url,
             options.namespace or "all namespaces", options.identity)
    return service


def run(options: Options) -> int:
    """Run in the foreground until SIGTERM/SIGINT (0), or until the Lease is lost while a sync of the
    lost term would not stop (1); a Lease lost otherwise (API server down past the renew deadline) is
    campaigned for again in this process."""
    service = start(options)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        service.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while service.thread.is_alive():
        service.thread.join(0.5)
    service.stop()
    return service.exit_code[0] if service.exit_code else 1
