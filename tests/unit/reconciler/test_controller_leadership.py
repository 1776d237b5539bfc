"""Leadership lost while the API server is unreachable: the controller steps down, waits for what it
started, and campaigns again in the same process — it exits (1) only if the lost term will not stop.

A real ``Controller`` and a real ``LeaderElector`` against an in-memory Lease API that can be made
unreachable (every call raises the ``ResourceError`` the client raises for a refused connection).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from support.threads import every_thread_joined

from driftguard.kube.resources import Cluster, ResourceError, ResourceType, WatchEvent
from reconciler.controller import Controller, Settings
from reconciler.cycle import Requeue
from reconciler.leader import LeaderElector
from reconciler.record import AppState

NAMESPACE = "driftguard-system"
APPLICATION = {
    "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
    "metadata": {"name": "app", "namespace": NAMESPACE, "resourceVersion": "1", "generation": 1},
    "spec": {"source": {"repoURL": "/nowhere", "targetRevision": "main", "path": "app"},
             "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
             "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
}


class FlakyApi:
    """The Lease API in memory, plus an Applications watch; ``down`` makes every call fail."""

    def __init__(self, applications: list[dict[str, Any]] | None = None) -> None:
        self.down = threading.Event()
        self.lease: dict[str, Any] | None = None
        self.applications = applications or []
        self._lock = threading.Lock()
        self._version = 0

    def _check(self, subject: str) -> None:
        if self.down.is_set():
            raise ResourceError(subject, 0, "Unreachable", "GET https://127.0.0.1:6443: Connection refused")

    def request_counts(self) -> dict[str, int]:
        return {}

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        self._check(rt.subject(namespace, name))
        with self._lock:
            return copy.deepcopy(self.lease)

    def create(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        self._check(rt.kind)
        with self._lock:
            if self.lease is not None:
                raise ResourceError(rt.kind, 409, "AlreadyExists", "exists")
            return self._store(obj)

    def replace(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        self._check(rt.kind)
        with self._lock:
            assert self.lease is not None
            if obj["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                raise ResourceError(rt.kind, 409, "Conflict", "the object has been modified")
            return self._store(obj)

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        self.lease = copy.deepcopy(obj)
        self.lease["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(self.lease)

    def follow(self, rt: ResourceType, namespace: str = "", *, label_selector: str = "",
               stop: threading.Event | None = None, timeout: float = 30.0,
               on_error: Callable[[Exception], None] | None = None) -> Iterator[WatchEvent]:
        for app in self.applications:
            yield WatchEvent("ADDED", copy.deepcopy(app))
        assert stop is not None
        stop.wait()

    def holder(self) -> str:
        with self._lock:
            return str(((self.lease or {}).get("spec") or {}).get("holderIdentity") or "")


def controller_for(api: FlakyApi, tmp_path: Path, **settings: Any) -> tuple[Controller, LeaderElector]:
    cluster = cast(Cluster, api)
    elector = LeaderElector(cluster, NAMESPACE, "driftguard-reconciler", "me",
                            lease_duration=1.0, renew_deadline=0.3, retry_period=0.05)
    # No webhook registration to guard: this in-memory API serves only the Lease and Applications.
    controller = Controller(cluster, Settings(namespace=NAMESPACE, cache_dir=tmp_path, webhook_configuration="",
                                              **settings), elector=elector)
    return controller, elector


def wait(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def run_in_thread(controller: Controller, stop: threading.Event) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(controller.run(stop)), daemon=True)
    thread.start()
    return thread, result


def test_a_leader_cut_off_past_the_renew_deadline_steps_down_and_leads_again(tmp_path: Path) -> None:
    api = FlakyApi()
    controller, elector = controller_for(api, tmp_path)
    stop = threading.Event()
    thread, result = run_in_thread(controller, stop)
    try:
        wait(elector.leading.is_set, "the first term")
        first_term = controller._selfheal
        api.down.set()  # the API server goes away for longer than the renew deadline (0.3 s)
        wait(lambda: not elector.leading.is_set(), "stepping down")
        assert thread.is_alive() and not result, "the controller gave up instead of campaigning again"
        time.sleep(0.3)
        api.down.clear()
        wait(elector.leading.is_set, "the second term")
        assert api.holder() == "me"
        # The term's machinery starts just after the Lease is won: wait for it rather than race it.
        wait(lambda: controller._selfheal is not first_term and controller.running.is_set(),
             "the second term to start its own self-heal")
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]


def test_a_lost_term_that_will_not_stop_still_exits(tmp_path: Path) -> None:
    """The safety net: when a sync of the lost term is still running, nothing may lead again here."""
    api = FlakyApi([APPLICATION])
    controller, _ = controller_for(api, tmp_path, stop_timeout=0.2)
    release, entered = threading.Event(), threading.Event()

    def stuck_cycle(state: AppState) -> Requeue:
        entered.set()
        release.wait(30)
        return Requeue()

    controller._cycle = stuck_cycle  # type: ignore[method-assign]
    stop = threading.Event()
    with every_thread_joined():  # the stuck sync the controller left behind too, once released
        thread, result = run_in_thread(controller, stop)
        try:
            wait(entered.is_set, "the sync under way")
            api.down.set()
            thread.join(10)
            assert result == [1]
        finally:
            release.set()
            stop.set()
            thread.join(10)
