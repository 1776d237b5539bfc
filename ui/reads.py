"""The UI's reads: through ``driftguard.kube`` as its own read-only ServiceAccount, filtered per user.

Every object shown passes ``Reader.can(identity, get ...)`` (a SubjectAccessReview for the user, see
``ui.access``); the UI's own wide read access is never what decides what a user sees. Audit records
come from the webhook's audit file through ``webhook.auditcli.read`` — the code ``driftguard audit`` uses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from driftguard.core import contract
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import PODS, Cluster, ResourceError, ResourceType
from reconciler.crd import APPLICATIONS
from reconciler.delegation import AUDIENCE, delegation_headers
from ui.access import (
    APPLICATIONS_GROUP,
    REFRESH_VERB,
    SYNC_VERB,
    AccessCache,
    Identity,
    Question,
    access_review,
    allowed,
    reviewed_identity,
    token_review,
)
from ui.settings import RECONCILER_TOKEN_PATH
from webhook.auditcli import read as read_audit
from webhook.auditcli import read_trail
from webhook.records import AuditRecord

log = logging.getLogger(__name__)
REPLICASETS: Final = ResourceType("apps", "v1", "ReplicaSet", "replicasets", namespaced=True)
JOBS: Final = ResourceType("batch", "v1", "Job", "jobs", namespaced=True)
OWNED: Final = (REPLICASETS, PODS, JOBS)
AUDIT_LIMIT: Final = 5000  # newest records kept in memory for the pages
SYNC_WAIT: Final = 20.0  # seconds the reconciler is asked to wait for a sync before answering "still running"
STANDBY_TRIES: Final = 3  # a standby replica's answer is asked again, on a new connection, this many times in all
TRAIL_SECONDS: Final = 2.0  # the durable trail is re-read at most this often (pages poll every 2 s)


class ReadError(Exception):
    """The API server could not answer a read (shown on the page, never a crash)."""


class Reader:
    def __init__(self, kube: Kube, *, audit_file: Path | None = None, audit_namespace: str = "",
                 access_ttl: float = 10.0, reconciler_url: str = "", refresh_token: str = "",
                 reconciler_token_file: Path | None = None) -> None:
        self.kube = kube
        self.cluster = Cluster(kube)
        self.audit_file = audit_file
        self.access = AccessCache(self._review, ttl=access_ttl)
        self.reconciler_url = reconciler_url.rstrip("/")
        self.refresh_token = refresh_token
        self.reconciler_token_file = reconciler_token_file  # Sync's token (audience driftguard-reconciler)
        self._audit: list[AuditRecord] = []
        self._audit_at = (0, 0)  # (inode, offset) already read
        self._audit_lock = threading.Lock()
        self.audit_namespace = audit_namespace
        self._trail_read = -TRAIL_SECONDS

    # ------------------------------------------------------------ identities and access
    def authenticate(self, token: str) -> Identity | None:
        """The user a Kubernetes bearer token belongs to (TokenReview), None when it is not valid."""
        try:
            answer = self.kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=token_review(token))
        except KubeError as error:
            log.warning("TokenReview failed: %s", error.message)
            return None
        return reviewed_identity(answer)

    def _review(self, identity: Identity, question: Question) -> bool:
        try:
            answer = self.kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                       body=access_review(identity, question))
        except KubeError as error:
            log.warning("SubjectAccessReview failed: %s", error.message)
            return False
        return allowed(answer)

    def can(self, identity: Identity, verb: str, group: str, resource: str, namespace: str = "",  # noqa: PLR0917
            name: str = "") -> bool:
        return self.access.can(identity, Question(verb, group, resource, namespace, name))

    def can_get_app(self, identity: Identity, namespace: str) -> bool:
        return self.can(identity, "get", APPLICATIONS_GROUP, "applications", namespace)

    def resource(self, api_version: str, kind: str) -> ResourceType | None:
        try:
            return self.cluster.discovery.resolve(api_version, kind)
        except ResourceError:
            return None

    def can_get_object(self, identity: Identity, api_version: str, kind: str, namespace: str) -> bool:
        rt = self.resource(api_version, kind)
        return rt is not None and self.can(identity, "get", rt.group, rt.plural, namespace if rt.namespaced else "")

    # ------------------------------------------------------------ Applications
    def applications(self, identity: Identity) -> list[dict[str, Any]]:
        """Every Application in a namespace where the user may ``get`` Applications."""
        try:
            items, _ = self.cluster.list(APPLICATIONS)
        except ResourceError as error:
            raise ReadError(f"cannot list Applications: {error}") from error
        visible: dict[str, bool] = {}
        out = []
        for app in items:
            namespace = str((app.get("metadata") or {}).get("namespace") or "")
            if namespace not in visible:
                visible[namespace] = self.can_get_app(identity, namespace)
            if visible[namespace]:
                out.append(app)
        return out

    def application(self, identity: Identity, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.can_get_app(identity, namespace):
            return None
        try:
            return self.cluster.get(APPLICATIONS, namespace, name)
        except ResourceError as error:
            raise ReadError(f"cannot read Application {namespace}/{name}: {error}") from error

    def live_objects(self, identity: Identity, app: Mapping[str, Any],
                     refs: Iterable[tuple[str, str, str, str, str]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The inventory's live objects the user may get: one labelled list per (kind, namespace), not a GET each."""
        key = f"{(app.get('metadata') or {}).get('namespace')}/{(app.get('metadata') or {}).get('name')}"
        wanted: dict[tuple[str, str, str], set[str]] = {}
        for api_version, kind, namespace, name, _group in refs:
            wanted.setdefault((api_version, kind, namespace), set()).add(name)
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (api_version, kind, namespace), names in wanted.items():
            rt = self.resource(api_version, kind)
            if rt is None or not self.can(identity, "get", rt.group, rt.plural, namespace if rt.namespaced else ""):
                continue
            try:
                items, _ = self.cluster.list(rt, namespace, label_selector=f"{contract.LABEL_MANAGED}=true")
            except ResourceError as error:
                log.warning("cannot list %s in %s: %s", kind, namespace or "the cluster", error)
                continue
            for obj in items:
                meta = obj.get("metadata") or {}
                if meta.get("name") in names and contract.annotations_of(obj).get(contract.ANN_APPLICATION) == key:
                    out[(kind, namespace, str(meta.get("name")))] = obj
        return out

    def owned_objects(self, identity: Identity, namespaces: Iterable[str]) -> list[dict[str, Any]]:
        """ReplicaSets, Pods and Jobs in these namespaces that the user may get (matched to owners by uid)."""
        out: list[dict[str, Any]] = []
        for namespace in sorted(set(namespaces)):
            if not namespace:
                continue
            for rt in OWNED:
                if not self.can(identity, "get", rt.group, rt.plural, namespace):
                    continue
                try:
                    items, _ = self.cluster.list(rt, namespace)
                except ResourceError:
                    continue
                out.extend(o for o in items if (o.get("metadata") or {}).get("ownerReferences"))
        return out

    def object(self, identity: Identity, api_version: str, kind: str, namespace: str,
               name: str) -> dict[str, Any] | None:
        rt = self.resource(api_version, kind)
        if rt is None or not self.can(identity, "get", rt.group, rt.plural, namespace if rt.namespaced else ""):
            return None
        try:
            return self.cluster.get(rt, namespace, name)
        except ResourceError as error:
            raise ReadError(f"cannot read {kind} {namespace}/{name}: {error}") from error

    # ------------------------------------------------------------ audit
    def audit_records(self) -> list[AuditRecord]:
        """Every audit record, oldest first: the audit file's (read incrementally: only what was appended) or,
        without one, the cluster's durable audit trail and the audit Events not folded into it yet."""
        if self.audit_file is None:
            return self._trail() if self.audit_namespace else []
        with self._audit_lock:
            try:
                stat = self.audit_file.stat()
            except FileNotFoundError:
                return list(self._audit)
            inode, offset = self._audit_at
            if stat.st_ino != inode or stat.st_size < offset:
                self._audit, offset = [], 0
            if stat.st_size > offset:
                with self.audit_file.open("rb") as stream:
                    stream.seek(offset)
                    data = stream.read()
                complete = data[: data.rfind(b"\n") + 1]  # a line being written stays for the next read
                lines = complete.decode("utf-8", errors="replace").splitlines()
                self._audit.extend(read_audit(lines))
                self._audit = self._audit[-AUDIT_LIMIT:]
                self._audit_at = (stat.st_ino, offset + len(complete))
            return list(self._audit)

    def _trail(self) -> list[AuditRecord]:
        with self._audit_lock:
            if time.monotonic() - self._trail_read >= TRAIL_SECONDS:
                try:
                    found = read_trail(self.kube, self.audit_namespace, warn=log.warning)
                except KubeError as error:
                    log.warning("cannot read the audit trail in %s: %s", self.audit_namespace, error.message)
                else:
                    self._audit = sorted((f.record for f in found), key=lambda r: r.time)[-AUDIT_LIMIT:]
                    self._trail_read = time.monotonic()
            return list(self._audit)

    def visible_audit(self, identity: Identity, records: Iterable[AuditRecord]) -> list[AuditRecord]:
        """The records about objects the user may get (a record about a Secret shows no value: none is kept)."""
        out = []
        for record in records:
            if self.can_get_object(identity, record.api_version, record.kind, record.namespace):
                out.append(record)
        return out

    # ------------------------------------------------------------ actions
    def refresh(self, identity: Identity, namespace: str, name: str) -> tuple[bool, str]:
        """Ask the reconciler to fetch git for one Application now, if the user's RBAC allows verb refresh."""
        if not self.can(identity, REFRESH_VERB, APPLICATIONS_GROUP, "applications", namespace, name):
            return False, (f"{identity.user} may not refresh Application {namespace}/{name}: RBAC grants no verb "
                           f"'{REFRESH_VERB}' on applications.{APPLICATIONS_GROUP} in namespace {namespace}")
        if not self.reconciler_url or not self.refresh_token:
            return False, "refresh is not configured: the UI has no --reconciler-url and --refresh-token-file"
        try:
            self._post(f"/refresh/{namespace}/{name}", b"", {"Authorization": f"Bearer {self.refresh_token}"}, 10.0)
        except ReconcilerAnswer as answer:
            return False, f"the reconciler refused the refresh ({answer.status}): {answer.message}"
        except (OSError, ValueError) as error:
            return False, f"the reconciler did not answer the refresh: {error}"
        return True, f"refresh of {namespace}/{name} requested at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC"

    def may_sync(self, identity: Identity, namespace: str, name: str) -> bool:
        return self.can(identity, SYNC_VERB, APPLICATIONS_GROUP, "applications", namespace, name)

    def sync(self, identity: Identity, namespace: str, name: str, *, prune: bool = False) -> tuple[bool, str]:
        """Ask the reconciler to sync one Application now, for the signed-in user: the UI's own ServiceAccount
        token for the reconciler's audience (``--reconciler-token-file``) names the user
        (``reconciler.delegation``), and the reconciler asks RBAC about that user again."""
        key = f"{namespace}/{name}"
        if not self.may_sync(identity, namespace, name):
            return False, (f"{identity.user} may not sync Application {key}: grant them verb '{SYNC_VERB}' on "
                           f"applications.{APPLICATIONS_GROUP} in namespace {namespace} (a Role rule {{apiGroups: "
                           f"[{APPLICATIONS_GROUP}], resources: [applications], verbs: [{SYNC_VERB}]}})")
        if not self.reconciler_url:
            return False, "sync is not configured: the UI has no --reconciler-url"
        token, problem = reconciler_token(self.reconciler_token_file)
        if problem:
            return False, problem
        try:
            named = delegation_headers(identity.user, identity.groups)
        except ValueError as error:
            return False, f"cannot ask for a sync as {identity.user}: {error}"
        body = json.dumps({"prune": prune, "dryRun": False, "wait": SYNC_WAIT}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **named}
        try:
            for attempt in range(1, STANDBY_TRIES + 1):
                try:
                    result = self._post(f"/sync/{namespace}/{name}", body, headers, SYNC_WAIT + 15)
                    break
                except ReconcilerAnswer as answer:
                    standby = answer.status == HTTPStatus.SERVICE_UNAVAILABLE and "leader" in answer.body
                    if not standby or attempt == STANDBY_TRIES:
                        raise
                    time.sleep(1.0)  # a new connection: through the Service it may reach the leader
        except ReconcilerAnswer as answer:
            return False, _refusal(key, answer)
        except TimeoutError:
            return False, (f"the reconciler did not answer the sync of {key} within {SYNC_WAIT + 15:.0f}s; it may "
                           "still run: the History table shows it when it does")
        except (OSError, ValueError) as error:
            return False, f"the reconciler did not answer the sync of {key}: {error}"
        return _synced(key, result)

    def _post(self, path: str, body: bytes, headers: Mapping[str, str], timeout: float) -> dict[str, Any]:
        """POST to the reconciler; its JSON answer (``ReconcilerAnswer`` for a status other than 2xx)."""
        if not self.reconciler_url.startswith(("http://", "https://")):
            raise ValueError(f"--reconciler-url {self.reconciler_url!r} is not an http(s) URL")
        request = urllib.request.Request(  # noqa: S310 - an http(s) URL, checked above
            f"{self.reconciler_url}{path}", method="POST", data=body, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the configured URL
                found = json.loads(answer.read() or b"{}")
                status = answer.status
        except urllib.error.HTTPError as error:
            raw = error.read()[:2000]
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = {}
            text = detail.get("error") if isinstance(detail, dict) else None
            raise ReconcilerAnswer(error.code, str(text or raw[:200].decode(errors="replace")),
                                   detail if isinstance(detail, dict) else {}) from None
        out = found if isinstance(found, dict) else {}
        out.setdefault("_status", status)
        return out


class ReconcilerAnswer(Exception):
    """The reconciler answered with an error status."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.status, self.message, self.body = status, message, body


def _refusal(key: str, answer: ReconcilerAnswer) -> str:
    if answer.status == HTTPStatus.CONFLICT:
        return f"not synced: {answer.message}; try again when it has run (the History table shows it)"
    if answer.status == HTTPStatus.SERVICE_UNAVAILABLE:
        return f"not synced: the reconciler could not run it now: {answer.message}"
    return f"the reconciler refused the sync of {key} ({answer.status}): {answer.message}"


def _synced(key: str, result: Mapping[str, Any]) -> tuple[bool, str]:
    if result.get("_status") == HTTPStatus.ACCEPTED:
        return True, (f"sync of {key} started by {result.get('initiator')}; still running after {SYNC_WAIT:.0f}s: "
                      "the History table shows it when it ends")
    revision = str(result.get("revision") or "?")[:7]
    outcome = str(result.get("result") or "?")
    summary = result.get("summary") or "nothing to do"
    text = f"synced {key} at {revision} by {result.get('initiator')}: {outcome} ({summary})"
    if result.get("problem"):
        text += f": {result['problem']}"
    pending = result.get("pendingPrune") or []
    if pending:
        text += f"; {len(pending)} object(s) no longer in git kept (a sync with prune deletes them)"
    return outcome == "Succeeded", text


def reconciler_token(path: Path | None) -> tuple[str, str]:
    """``(token, "")``: the UI's token for the reconciler's audience, read afresh from ``path`` (the kubelet
    rotates it); ``("", why not)`` when there is none to send."""
    if path is None:
        return "", "sync is not configured: the UI has no --reconciler-token-file"
    token, unreadable = _read_token(path)
    if unreadable:
        return "", (f"sync is not configured: cannot read the UI's token for the reconciler "
                    f"(--reconciler-token-file {path}: {unreadable}); mount a projected "
                    f"serviceAccountToken with audience: {AUDIENCE} there (manifests/ui.yaml)")
    if not token:
        return "", f"sync is not configured: --reconciler-token-file {path} is empty"
    return token, ""


def sync_token_problem(reconciler_url: str, path: Path | None) -> str:
    """The one warning the UI logs at start-up when Sync is on (``--reconciler-url``) but its token file is
    missing, unreadable or empty; "" when there is nothing to say. Never the token: the UI serves anyway,
    and Sync answers ``reconciler_token``'s message until the file is there."""
    if not reconciler_url:
        return ""
    if path is None:
        wrong = "--reconciler-token-file is unset"
    else:
        token, unreadable = _read_token(path)
        if token:
            return ""
        wrong = f"--reconciler-token-file {path} " + (f"cannot be read ({unreadable})" if unreadable else "is empty")
    return (f"Sync will not work: {wrong}. Mount the projected volume from manifests/ui.yaml (a "
            f"serviceAccountToken with audience: {AUDIENCE}, at {RECONCILER_TOKEN_PATH}) or pass "
            "--reconciler-token-file a file holding that token; the UI serves on, and Sync answers that it is "
            "not configured until the file is there")


def _read_token(path: Path) -> tuple[str, str]:
    """``(the file's token, "")``, ``("", "")`` for an empty file, ``("", why it cannot be read)``."""
    try:
        return path.read_text().strip(), ""
    except OSError as error:
        return "", str(error.strerror or error)
