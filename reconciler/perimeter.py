"""Keep driftguard's webhook registration in place: what admission cannot protect, the reconciler restores.

Writes to ValidatingWebhookConfigurations and MutatingWebhookConfigurations never reach a webhook, so
a user allowed to write them can switch driftguard's admission off. The leader watches both named
configurations and puts them back — created when deleted, replaced when their ``webhooks`` differ
from the registration — with a Warning Event, a log line and ``driftguard_perimeter_restored_total``.

Where the registration comes from: the installer (``driftguard.install.register_webhook``) writes the
exact objects it applied into the ConfigMap ``driftguard-webhook-registration`` in driftguard's
namespace, *before* applying them, and the reconciler reads that ConfigMap at every check. Not a
snapshot of the live objects at start: those may already be altered when the reconciler starts, a
configuration deleted while it is down could never come back, and a caBundle rotated by the installer
would be reverted. Not re-rendered here: the clientConfig (URL or Service, caBundle) is only known to
whoever installed the webhook. The ConfigMap is as trusted as driftguard's namespace, which is
admin-equivalent already (whoever writes there can edit the reconciler's Deployment).

"Differs" is judged by the API server, not by us: the registration goes through a dry-run PUT, so the
server's defaults are filled in, and its ``webhooks`` are compared with the live ones. A configuration
verified once is not compared again until its uid or generation (or the registration) changes.

The same registration says where the webhook looks: the ``validate`` webhook's ``namespaceSelector``
(kube-system and driftguard's own namespace are always excluded, so a broken webhook cannot lock out
its own repair). Nothing protects a managed object outside it, so the reconciler refuses to manage
objects there (``Perimeter.uncovered``, asked by each full sync; the registration ConfigMap, else the
live configuration, read at most every ``interval``).

Uninstalling is not an attack: ``helm uninstall`` deletes the configurations *first* (Helm's uninstall
order), while the leader still runs; ``kubectl delete -k`` deletes them after the namespace. Restored,
they would point at a Service that is going away and, failing closed, block every managed object. So a
deleted configuration is re-created only once it has been missing for ``settle`` seconds (Helm deletes
the webhook's Service next, then driftguard's RBAC, within a second), and only while the Service its
registration calls exists. An altered one is put back at once (no uninstall alters). Once driftguard's
namespace is being deleted (``uninstalling``: it holds the webhook, its Service and the registration,
and its deletion cannot be undone) the configurations are taken away, not restored. A registration
ConfigMap that is missing or being deleted is nothing to restore from. A leader whose term ends (SIGTERM,
Lease lost) restores nothing more, and before it lets the Lease go it checks once more (``finish``).
Every signal lives in driftguard's namespace, as trusted as the registration ConfigMap itself: whoever
can delete the Service could delete that ConfigMap and stop the restore already. Deleting only the
configurations still brings them back, ``settle`` seconds later.

``registration_from``, ``differences``, ``validate_selector``, ``selects``, ``uninstalling``,
``services_of`` and ``decide`` are the pure parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from driftguard.kube.resources import (
    CONFIGMAPS,
    MUTATING_WEBHOOKS,
    NAMESPACES,
    SERVICES,
    VALIDATING_WEBHOOKS,
    Cluster,
    ResourceError,
    ResourceType,
)

log = logging.getLogger(__name__)

REGISTRATION_CONFIGMAP: Final = "driftguard-webhook-registration"
REGISTRATION_KEY: Final = "configurations.json"
KINDS: Final = (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS)
NAME_LABEL: Final = "kubernetes.io/metadata.name"

Report = Callable[[Mapping[str, Any], str, str], None]  # (object, reason, message): a Warning Event
Restored = Callable[[str, str], None]  # (kind, cause): count it


class RegistrationError(ValueError):
    """The registration ConfigMap cannot be used; the message names it and the fix."""


def registration_configmap(objects: Sequence[Mapping[str, Any]], namespace: str) -> dict[str, Any]:
    """The ConfigMap the installer writes next to the configurations it applies."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": REGISTRATION_CONFIGMAP, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "driftguard"}},
        "data": {REGISTRATION_KEY: json.dumps(list(objects), sort_keys=True)},
    }


def registration_from(configmap: Mapping[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """The registered configurations by kind, each named ``name``; RegistrationError when unusable."""
    where = f"ConfigMap {(configmap.get('metadata') or {}).get('namespace')}/{REGISTRATION_CONFIGMAP}"
    fix = "re-run `driftguard certs install` (or local up) to write it again"
    raw = (configmap.get("data") or {}).get(REGISTRATION_KEY)
    try:
        objects = json.loads(raw) if isinstance(raw, str) else None
    except ValueError as e:
        raise RegistrationError(f"{where}: {REGISTRATION_KEY} is not JSON ({e}); {fix}") from None
    if not isinstance(objects, list):
        raise RegistrationError(f"{where}: {REGISTRATION_KEY} must be a JSON list of webhook configurations; {fix}")
    kinds = {rt.kind for rt in KINDS}
    out: dict[str, dict[str, Any]] = {}
    for obj in objects:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if kind not in kinds or not isinstance(obj.get("webhooks"), list):
            raise RegistrationError(f"{where}: holds {kind or 'something'} other than the two webhook "
                                    f"configurations; {fix}")
        if (obj.get("metadata") or {}).get("name") != name:
            raise RegistrationError(f"{where}: {kind} is named {(obj.get('metadata') or {}).get('name')!r}, "
                                    f"the reconciler guards {name!r}; {fix}")
        out[str(kind)] = obj
    return out


def differences(live: Sequence[Mapping[str, Any]], registered: Sequence[Mapping[str, Any]]) -> list[str]:
    """What changed in ``live`` webhooks against the ``registered`` ones (both as the server stores them)."""
    by_name = {str(w.get("name")): w for w in live}
    wanted = {str(w.get("name")): w for w in registered}
    out = [f"webhook {name} removed" for name in wanted if name not in by_name]
    out += [f"webhook {name} added" for name in by_name if name not in wanted]
    for name, want in wanted.items():
        have = by_name.get(name)
        if have is None:
            continue
        fields = sorted(k for k in {*want, *have} if want.get(k) != have.get(k))
        if fields:
            out.append(f"webhook {name}: {', '.join(fields)} changed")
    if not out and [w.get("name") for w in live] != [w.get("name") for w in registered]:
        out.append("webhooks reordered")
    return out


def validate_selector(configuration: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``namespaceSelector`` of the ``validate.`` webhook (the one judging managed objects), or None."""
    for hook in configuration.get("webhooks") or []:
        if str(hook.get("name", "")).startswith("validate."):
            selector = hook.get("namespaceSelector")
            return selector if isinstance(selector, Mapping) else {}
    return None


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Label-selector semantics, as the API server applies a webhook's ``namespaceSelector``; an operator
    it does not know selects nothing (so the namespace counts as not covered)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


Action = Literal["restore", "wait", "retract", "leave"]


def uninstalling(namespace_name: str, namespace: Mapping[str, Any] | None) -> str:
    """Why driftguard is being uninstalled ("" when it is not): its namespace is gone or being deleted."""
    if namespace is None:
        return f"namespace {namespace_name} is gone"
    if (namespace.get("metadata") or {}).get("deletionTimestamp"):
        return f"namespace {namespace_name} is being deleted"
    return ""


def services_of(registered: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The Services (namespace, name) a registered configuration's webhooks call (none for URL clients)."""
    out: list[tuple[str, str]] = []
    for hook in registered.get("webhooks") or []:
        service = (hook.get("clientConfig") or {}).get("service") or {}
        key = (str(service.get("namespace") or ""), str(service.get("name") or ""))
        if all(key) and key not in out:
            out.append(key)
    return out


def decide(*, uninstall: str, registration: Mapping[str, Any] | None, live: bool, stopping: bool,
           backend_gone: bool = False, settled: bool = True) -> Action:
    """What to do with one configuration: put it back as registered ("restore": create, or compare and
    replace), look again once it has been missing for the settle time ("wait"), take it away ("retract")
    or "leave" it.

    ``uninstall`` is ``uninstalling``'s reason; ``registration`` the ConfigMap (None when missing);
    ``live`` whether the configuration exists; ``stopping`` whether this leader's term is ending;
    ``backend_gone`` whether a Service the registration calls is gone or being deleted; ``settled``
    whether a missing configuration has been missing for the settle time."""
    if uninstall:
        return "retract" if live else "leave"
    if stopping or registration is None or (registration.get("metadata") or {}).get("deletionTimestamp"):
        return "leave"
    if live:
        return "restore"
    if backend_gone:
        return "leave"
    return "restore" if settled else "wait"


def needs_labels(selector: Mapping[str, Any]) -> bool:
    """Whether deciding takes a namespace's labels, not only its name."""
    keys = set(selector.get("matchLabels") or {}) | {e.get("key") for e in selector.get("matchExpressions") or []}
    return bool(keys - {NAME_LABEL})


class Perimeter:
    """Watches both webhook configurations named ``name`` and restores them from the registration."""

    def __init__(self, cluster: Cluster, namespace: str, *, name: str, report: Report, restored: Restored,
                 interval: float = 10.0, watch_timeout: float = 30.0, settle: float = 3.0) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.report, self.restored = report, restored
        self.interval, self.watch_timeout, self.settle = interval, watch_timeout, settle
        self._missing: dict[str, float] = {}  # kind -> when this leader first saw it missing (monotonic)
        self._rechecks: set[str] = set()  # kinds with a re-check pending at the end of their settle time
        self._verified: dict[str, tuple[str, int, str]] = {}  # kind -> (uid, generation, registration digest)
        self._locks = {rt.kind: threading.Lock() for rt in KINDS}
        self.problem = ""
        self._selector: tuple[float, Mapping[str, Any] | None] = (-1e9, None)
        self._done = threading.Event()
        self._done.set()  # not leading: nothing is restored until ``run``

    def run(self, done: threading.Event) -> list[threading.Thread]:
        """Start the watches (both configurations and driftguard's namespace) and the periodic check; they
        end when ``done`` is set, after which nothing is restored (``finish`` is the last word)."""
        self._done = done
        self._missing.clear()
        threads = [threading.Thread(target=self._watch, args=(rt, done), name=f"perimeter-{rt.plural}", daemon=True)
                   for rt in (*KINDS, NAMESPACES)]
        threads.append(threading.Thread(target=self._tick, args=(done,), name="perimeter", daemon=True))
        for thread in threads:
            thread.start()
        return threads

    def finish(self) -> None:
        """The term ends (``done`` is set): once every check under way is over, take the configurations
        away if driftguard is being uninstalled; this leader will not be there to see it later."""
        for rt in KINDS:
            self.check(rt)

    def _watch(self, rt: ResourceType, done: threading.Event) -> None:
        def failed(error: Exception) -> None:
            log.warning("watching %s %s: %s", rt.kind, name, error)

        name = self.namespace if rt is NAMESPACES else self.name
        for _event in self.cluster.follow(rt, field_selector=f"metadata.name={name}", stop=done,
                                         timeout=self.watch_timeout, on_error=failed):
            if done.is_set():
                return
            for kind in KINDS if rt is NAMESPACES else (rt,):
                self.check(kind)

    def _tick(self, done: threading.Event) -> None:
        while not done.wait(self.interval):
            for rt in KINDS:
                self.check(rt)

    def check(self, rt: ResourceType) -> str:
        """One check of ``rt``'s configuration: "" (in place, or nothing to restore from, or left alone),
        "created", "replaced" or "retracted" (uninstalling). Never raises: a failure is logged and the next
        event or tick tries again."""
        with self._locks[rt.kind]:
            try:
                return self._check(rt)
            except (ResourceError, RegistrationError) as e:
                self._note(f"{rt.kind} {self.name}: cannot check or restore: {e}")
                return ""

    def _check(self, rt: ResourceType) -> str:
        uninstall = uninstalling(self.namespace, self.cluster.get(NAMESPACES, "", self.namespace))
        configmap = None if uninstall else self.cluster.get(CONFIGMAPS, self.namespace, REGISTRATION_CONFIGMAP)
        live = self.cluster.get(rt, "", self.name)
        stopping = self._done.is_set()
        if live is not None:
            self._missing.pop(rt.kind, None)
        registered = registration_from(configmap, self.name).get(rt.kind) if configmap else None
        gone = ""
        if live is None and registered is not None and not uninstall and not stopping:
            gone = self._backend_gone(registered)
        since = self._missing.setdefault(rt.kind, time.monotonic()) if live is None else 0.0
        settled = time.monotonic() - since >= self.settle
        action = decide(uninstall=uninstall, registration=configmap, live=live is not None, stopping=stopping,
                        backend_gone=bool(gone), settled=settled)
        if action == "retract" and live is not None:
            return self._retract(rt, live, uninstall)
        if action == "wait":
            self._recheck(rt, since + self.settle - time.monotonic())
            return ""
        if action == "leave" or configmap is None:
            if configmap is None and not uninstall:
                self._note(f"no ConfigMap {self.namespace}/{REGISTRATION_CONFIGMAP}: the webhook configurations "
                           f"cannot be restored; run `driftguard certs install` (or local up) to write it")
            elif (configmap or {}).get("metadata", {}).get("deletionTimestamp"):
                self._note(f"ConfigMap {self.namespace}/{REGISTRATION_CONFIGMAP} is being deleted: the webhook "
                           f"configurations are not restored from it")
            elif gone:
                self._note(f"{rt.kind} {self.name} is missing and {gone}: not re-created (it would fail closed "
                           f"on a webhook that is not there; driftguard is being uninstalled)")
            return ""
        registered = registration_from(configmap, self.name).get(rt.kind)
        if registered is None:
            return ""
        self.problem = ""
        digest = hashlib.sha256(json.dumps(registered, sort_keys=True).encode()).hexdigest()
        if live is None:
            created = self.cluster.create(rt, _fresh(registered))
            self._remember(rt, created, digest)
            self._restore_noted(rt, created, "missing", f"{rt.kind} {self.name} was deleted; re-created from "
                                f"ConfigMap {self.namespace}/{REGISTRATION_CONFIGMAP}")
            return "created"
        metadata = live.get("metadata") or {}
        if self._verified.get(rt.kind) == (str(metadata.get("uid")), int(metadata.get("generation") or 0), digest):
            return ""
        candidate = _over(live, registered)
        normalized = self.cluster.replace(rt, candidate, dry_run=True)
        changes = differences(live.get("webhooks") or [], normalized.get("webhooks") or [])
        if not changes:
            self._remember(rt, live, digest)
            return ""
        written = self.cluster.replace(rt, candidate)
        self._remember(rt, written, digest)
        self._restore_noted(rt, written, "altered", f"{rt.kind} {self.name} was altered ({'; '.join(changes)}); "
                            f"restored from ConfigMap {self.namespace}/{REGISTRATION_CONFIGMAP}")
        return "replaced"

    def _backend_gone(self, registered: Mapping[str, Any]) -> str:
        for namespace, name in services_of(registered):
            service = self.cluster.get(SERVICES, namespace, name)
            if service is None or (service.get("metadata") or {}).get("deletionTimestamp"):
                return f"Service {namespace}/{name} it calls is gone"
        return ""

    def _recheck(self, rt: ResourceType, delay: float) -> None:
        if rt.kind in self._rechecks:
            return
        self._rechecks.add(rt.kind)

        def again() -> None:
            self._rechecks.discard(rt.kind)
            if not self._done.is_set():
                self.check(rt)

        timer = threading.Timer(max(0.0, delay), again)
        timer.daemon = True
        timer.name = f"perimeter-settle-{rt.plural}"
        timer.start()

    def _retract(self, rt: ResourceType, live: Mapping[str, Any], why: str) -> str:
        uid = str((live.get("metadata") or {}).get("uid") or "")
        if not self.cluster.delete(rt, "", self.name, uid=uid):
            return ""
        self._verified.pop(rt.kind, None)
        self._note(f"{why}: driftguard is being uninstalled; {rt.kind} {self.name} deleted, not restored "
                   f"(it would fail closed on a webhook that is going away)")
        return "retracted"

    def uncovered(self, namespace: str, labels: Callable[[str], Mapping[str, str] | None]) -> str:
        """Why objects in ``namespace`` are not covered by the webhook ("" when they are, or when the
        registration cannot be read: then there is no webhook to speak of). ``labels`` reads the
        namespace's labels when the selector needs more than its name."""
        selector = self._coverage()
        if selector is None:
            return ""
        known = {NAME_LABEL: namespace}
        if needs_labels(selector):
            known = {**(labels(namespace) or {}), **known}
        if selects(selector, known):
            return ""
        return (f"namespace {namespace} is not covered by driftguard's webhook (the namespaceSelector of "
                f"ValidatingWebhookConfiguration {self.name} excludes it; kube-system and {self.namespace} always "
                f"are), so nothing would stop changes there; driftguard manages nothing in it. Move the objects "
                f"(or spec.destination.namespace) to another namespace")

    def _coverage(self) -> Mapping[str, Any] | None:
        at, selector = self._selector
        if time.monotonic() - at < self.interval:
            return selector
        selector = None
        try:
            configmap = self.cluster.get(CONFIGMAPS, self.namespace, REGISTRATION_CONFIGMAP)
            registered = registration_from(configmap, self.name) if configmap else {}
            validating = (registered.get(VALIDATING_WEBHOOKS.kind)
                          or self.cluster.get(VALIDATING_WEBHOOKS, "", self.name))
            selector = validate_selector(validating) if validating else None
        except (ResourceError, RegistrationError) as e:
            log.warning("cannot read which namespaces the webhook covers: %s", e)
        self._selector = (time.monotonic(), selector)
        return selector

    def _remember(self, rt: ResourceType, obj: Mapping[str, Any], digest: str) -> None:
        metadata = obj.get("metadata") or {}
        self._verified[rt.kind] = (str(metadata.get("uid")), int(metadata.get("generation") or 0), digest)

    def _restore_noted(self, rt: ResourceType, obj: Mapping[str, Any], cause: str, message: str) -> None:
        log.warning("%s", message)
        self.restored(rt.kind, cause)
        self.report({**obj, "apiVersion": rt.api_version, "kind": rt.kind}, "WebhookConfigurationRestored", message)

    def _note(self, problem: str) -> None:
        if problem != self.problem:
            log.warning("%s", problem)
            self.problem = problem


def _fresh(registered: Mapping[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in (registered.get("metadata") or {}).items() if k in ("name", "labels", "annotations")}
    return {**registered, "metadata": metadata}


def _over(live: Mapping[str, Any], registered: Mapping[str, Any]) -> dict[str, Any]:
    """The live object with the registration's webhooks and labels (a PUT carrying live's resourceVersion)."""
    metadata = {k: v for k, v in (live.get("metadata") or {}).items() if k != "managedFields"}
    labels = {**(metadata.get("labels") or {}), **((registered.get("metadata") or {}).get("labels") or {})}
    return {"apiVersion": registered["apiVersion"], "kind": registered["kind"],
            "metadata": {**metadata, "labels": labels}, "webhooks": registered["webhooks"]}
