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

``registration_from``, ``differences``, ``validate_selector`` and ``selects`` are the pure parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from driftguard.kube.resources import (
    CONFIGMAPS,
    MUTATING_WEBHOOKS,
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


def needs_labels(selector: Mapping[str, Any]) -> bool:
    """Whether deciding takes a namespace's labels, not only its name."""
    keys = set(selector.get("matchLabels") or {}) | {e.get("key") for e in selector.get("matchExpressions") or []}
    return bool(keys - {NAME_LABEL})


class Perimeter:
    """Watches both webhook configurations named ``name`` and restores them from the registration."""

    def __init__(self, cluster: Cluster, namespace: str, *, name: str, report: Report, restored: Restored,
                 interval: float = 10.0, watch_timeout: float = 30.0) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.report, self.restored = report, restored
        self.interval, self.watch_timeout = interval, watch_timeout
        self._verified: dict[str, tuple[str, int, str]] = {}  # kind -> (uid, generation, registration digest)
        self._locks = {rt.kind: threading.Lock() for rt in KINDS}
        self.problem = ""
        self._selector: tuple[float, Mapping[str, Any] | None] = (-1e9, None)

    def run(self, done: threading.Event) -> list[threading.Thread]:
        """Start the watches and the periodic check; they end when ``done`` is set."""
        threads = [threading.Thread(target=self._watch, args=(rt, done), name=f"perimeter-{rt.plural}", daemon=True)
                   for rt in KINDS]
        threads.append(threading.Thread(target=self._tick, args=(done,), name="perimeter", daemon=True))
        for thread in threads:
            thread.start()
        return threads

    def _watch(self, rt: ResourceType, done: threading.Event) -> None:
        def failed(error: Exception) -> None:
            log.warning("watching %s %s: %s", rt.kind, self.name, error)

        for _event in self.cluster.follow(rt, field_selector=f"metadata.name={self.name}", stop=done,
                                         timeout=self.watch_timeout, on_error=failed):
            if done.is_set():
                return
            self.check(rt)

    def _tick(self, done: threading.Event) -> None:
        while not done.wait(self.interval):
            for rt in KINDS:
                self.check(rt)

    def check(self, rt: ResourceType) -> str:
        """One check of ``rt``'s configuration: "" (in place, or nothing to restore from), "created" or
        "replaced". Never raises: a failure is logged and the next event or tick tries again."""
        with self._locks[rt.kind]:
            try:
                return self._check(rt)
            except (ResourceError, RegistrationError) as e:
                self._note(f"{rt.kind} {self.name}: cannot check or restore: {e}")
                return ""

    def _check(self, rt: ResourceType) -> str:
        configmap = self.cluster.get(CONFIGMAPS, self.namespace, REGISTRATION_CONFIGMAP)
        if configmap is None:
            self._note(f"no ConfigMap {self.namespace}/{REGISTRATION_CONFIGMAP}: the webhook configurations "
                       f"cannot be restored; run `driftguard certs install` (or local up) to write it")
            return ""
        registered = registration_from(configmap, self.name).get(rt.kind)
        if registered is None:
            return ""
        self.problem = ""
        digest = hashlib.sha256(json.dumps(registered, sort_keys=True).encode()).hexdigest()
        live = self.cluster.get(rt, "", self.name)
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
