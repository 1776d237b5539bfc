"""The reconciler's small HTTP surface (stdlib only): probes, metrics and the push endpoint.

* ``GET /healthz`` — 200 while the process serves requests;
* ``GET /readyz`` — 200 while the controller runs (leader or standby: a standby forwards pushes);
* ``GET /metrics`` — Prometheus text;
* ``POST /refresh`` — full sync of every Application now; ``POST /refresh/<namespace>/<name>`` — one
  (404 when unknown). Pushes need ``Authorization: Bearer <token>`` with the configured refresh token;
  with none configured the endpoint is disabled (403), never open.
  Any body (a git host's webhook payload) is read and ignored.
* ``POST /sync/<namespace>/<name>`` — an on-demand sync (``driftguard sync``), body ``{"prune": bool,
  "dryRun": bool}``. Kubernetes RBAC decides who may: the request carries the caller's own Kubernetes
  bearer token, which the API server authenticates (TokenReview), and the caller must be allowed the verb
  ``sync`` on ``applications.driftguard.io`` — that Application, in its namespace (SubjectAccessReview). The
  refresh token grants nothing here. 200 with the result when it finished within ``wait`` seconds (default
  60), 202 when still running; 401 unauthenticated, 403 not allowed (naming the rule to grant), 404 unknown
  Application, 409 another sync is waiting. A standby passes the sync on to the leader's Pod (its IP and
  ``http`` port, read from the API server; once, marked ``X-Driftguard-Forwarded-By``) and answers what it
  answered; when it cannot, 503 (``leader``: the Lease's holder, named in the message with how to reach it).
  The web UI's ServiceAccount (``--ui-service-account``, only it) may instead name the user it signed in
  (``X-Driftguard-User``/``X-Driftguard-Groups``), with its token for the audience ``driftguard-reconciler``
  (401 for any other): RBAC is then asked about that user, and the sync recorded as ``alice via
  driftguard-ui`` (``reconciler.delegation``).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from driftguard.core.changes import Action, Change
from driftguard.kube import KubeError
from driftguard.kube.resources import ResourceError
from reconciler.application import GROUP, AppKey
from reconciler.controller import Busy, Controller, NotLeader
from reconciler.delegation import (
    GROUPS_HEADER,
    SYNC_VERB,
    USER_HEADER,
    Caller,
    Refused,
    audience_refusal,
    caller_of,
    review_audiences,
)
from reconciler.record import Operation

log = logging.getLogger(__name__)

MAX_BODY: Final = 1 << 20
DEFAULT_WAIT: Final = 60.0
MAX_WAIT: Final = 600.0
FORWARDED_HEADER: Final = "X-Driftguard-Forwarded-By"  # a standby passed this sync on: never pass it on again


class Unauthorized(Exception):
    """The caller's token is missing, or the API server does not authenticate it."""


class Forbidden(Exception):
    """RBAC does not allow the caller to sync the Application."""


def authorize_sync(kube: Any, token: str, key: AppKey, headers: Mapping[str, Sequence[str]] | None = None,
                   ui_account: str = "") -> Caller:
    """Who the sync presenting ``token`` is for (see ``reconciler.delegation``: the caller, or the user the
    UI's ServiceAccount ``ui_account`` names in ``headers``), when RBAC allows that user to sync ``key``
    (``Unauthorized`` / ``Forbidden`` / ``Refused`` otherwise; ``KubeError`` when the API server cannot answer)."""
    if not token:
        raise Unauthorized("a Kubernetes bearer token is required (Authorization: Bearer <token>)")
    named = headers or {}
    status = _token_review(kube, token, review_audiences(named))  # delegated: the reconciler's audience only
    if (refusal := audience_refusal(status, named)) is not None:
        plain = _token_review(kube, token, [])  # whose token it is, for the answer: a stranger's is told so
        if plain.get("authenticated") and (plain.get("user") or {}).get("username"):
            caller_of(plain["user"], named, ui_account)  # Refused unless it is the UI's (API-server) token
        raise refusal
    user = status.get("user") or {}
    if not status.get("authenticated") or not user.get("username"):
        raise Unauthorized("the API server does not authenticate this token" +
                           (f": {status['error']}" if status.get("error") else ""))
    caller = caller_of(user, named, ui_account)
    spec: dict[str, Any] = {**caller.review_spec(),
                            "resourceAttributes": {"group": GROUP, "resource": "applications", "verb": SYNC_VERB,
                                                   "namespace": key.namespace, "name": key.name}}
    decision = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
    if not (decision.get("status") or {}).get("allowed"):
        whom = f"{caller.user} " if caller.via else ""  # delegated: say whose RBAC was asked
        raise Forbidden(f"{caller.initiator} may not sync Application {key}: grant {whom}verb "
                        f"\"{SYNC_VERB}\" on applications.{GROUP} in namespace {key.namespace} (a Role or ClusterRole "
                        f"rule {{apiGroups: [{GROUP}], resources: [applications], verbs: [{SYNC_VERB}]}})")
    return caller


def _token_review(kube: Any, token: str, audiences: list[str]) -> dict[str, Any]:
    """The TokenReview's status for ``token`` (for ``audiences``; none: the API server's own)."""
    spec: dict[str, Any] = {"token": token, **({"audiences": audiences} if audiences else {})}
    review = kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
    return dict(review.get("status") or {})


class _Handler(BaseHTTPRequestHandler):
    server: ReconcilerServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        controller = self.server.controller
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif self.path == "/readyz":
            ready = controller.running.is_set()
            self._send(200 if ready else 503, {"ready": ready, "leader": controller.leading and ready})
        elif self.path == "/metrics":
            body = generate_latest(controller.metrics.registry)
            self._raw(200, body, CONTENT_TYPE_LATEST)
        else:
            self._send(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if parts and parts[0] == "sync" and len(parts) == 3:
            self._sync(AppKey(parts[1], parts[2]), body)
            return
        if not parts or parts[0] != "refresh" or len(parts) not in (1, 3):
            self._send(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        if not self.server.refresh_token:
            self._send(403, {"error": "POST /refresh is disabled: no refresh token is configured "
                                      "(--refresh-token / DRIFTGUARD_REFRESH_TOKEN)"})
            return
        if not self._authorised():
            self._send(401, {"error": "a valid bearer token is required"})
            return
        key = AppKey(parts[1], parts[2]) if len(parts) == 3 else None
        try:
            refreshed = self.server.controller.refresh(key)
        except ResourceError as e:
            self._send(503, {"error": str(e)})
            return
        if key is not None and not refreshed:
            self._send(404, {"error": f"no Application {key}"})
            return
        self._send(202, {"refreshed": [str(k) for k in refreshed]})

    def _sync(self, key: AppKey, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            prune, dry_run = body.get("prune", False), body.get("dryRun", False)
            wait = body.get("wait", DEFAULT_WAIT)
            if not isinstance(prune, bool) or not isinstance(dry_run, bool):
                raise ValueError("prune and dryRun must be true or false")
            if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT:
                raise ValueError(f"wait must be a number of seconds from 0 to {MAX_WAIT:.0f}")
        except ValueError as e:
            self._send(400, {"error": f"POST /sync: {e}"})
            return
        given = self.headers.get("Authorization", "")
        token = given[len("Bearer "):].strip() if given.startswith("Bearer ") else ""
        named = {h.lower(): self.headers.get_all(h) or [] for h in (USER_HEADER, GROUPS_HEADER)}
        try:
            caller = authorize_sync(self.server.controller.cluster.kube, token, key, named, self.server.ui_account)
            user = caller.initiator
            operation = self.server.controller.sync(key, Operation(user, prune=prune, dry_run=dry_run), float(wait))
        except Unauthorized as e:
            self._send(401, {"error": str(e)})
            return
        except (Forbidden, Refused) as e:
            log.warning("refused a sync of %s: %s", key, e)
            self._send(e.status if isinstance(e, Refused) else 403, {"error": str(e)})
            return
        except Busy as e:
            self._send(409, {"error": str(e)})
            return
        except NotLeader as e:
            if not self._forward(key, raw, e):
                self._send(503, {"error": str(e), "leader": e.leader})
            return
        except (KubeError, ResourceError) as e:
            self._send(503, {"error": f"cannot authorise the sync: {e}"})
            return
        if operation is None:
            self._send(404, {"error": f"no Application {key} (or this reconciler does not watch its namespace)"})
            return
        if operation.report is None and operation.done.is_set():
            self._send(409, {"error": f"Application {key} began to be deleted before the sync ran; not synced"})
            return
        if operation.report is None:
            self._send(202, {"application": str(key), "initiator": user, "state": "Running"})
            return
        self._send(200, sync_result(key, operation))

    def _forward(self, key: AppKey, raw: bytes, standby: NotLeader) -> bool:
        """A standby passes a sync on to the leader's Pod, once (never a forwarded one again); the leader
        authenticates and authorises it afresh. False when it cannot: no leader, or its Pod not found."""
        locate = self.server.locate_leader
        if locate is None or not standby.leader or self.headers.get(FORWARDED_HEADER):
            return False
        url = locate(standby.leader)
        if url is None:
            return False
        headers = {h: v for h in ("Authorization", "Content-Type", USER_HEADER, GROUPS_HEADER)
                   if (v := self.headers.get(h)) is not None}
        request = urllib.request.Request(  # noqa: S310 - http://<the leader Pod's IP>:<its http port>
            f"{url}/sync/{key.namespace}/{key.name}", data=raw, method="POST",
            headers={**headers, FORWARDED_HEADER: standby.replica})
        wait = float(json.loads(raw or b"{}").get("wait", DEFAULT_WAIT))
        try:
            with urllib.request.urlopen(request, timeout=wait + 30) as answer:  # noqa: S310
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except OSError as error:
            log.warning("could not pass the sync of %s on to the leader %s at %s: %s", key, standby.leader, url, error)
            return False
        self._raw(status, body, "application/json")
        return True

    def _authorised(self) -> bool:
        token = self.server.refresh_token
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._raw(status, json.dumps(body).encode() + b"\n", "application/json")

    def _raw(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


def sync_result(key: AppKey, operation: Operation) -> dict[str, Any]:
    """What an on-demand sync did (or, dry run, would do), as ``POST /sync`` answers it."""
    report = operation.report
    assert report is not None
    return {
        "application": str(key), "initiator": operation.initiator, "dryRun": operation.dry_run,
        "prune": operation.prune, "result": "Failed" if report.failed else "Succeeded",
        "revision": report.revision.sha if report.revision else "",
        "summary": report.changes.summary(),
        "changes": [_dry(c) if operation.dry_run else str(c) for c in report.changes.changes
                    if c.action is not Action.UNCHANGED][:200],
        "pendingPrune": [str(r) for r in report.pending_prune][:200],
        "problem": report.problem.message if report.problem else "",
    }


_DRY: Final = (("missing (automated sync is off)", "would be created"),
                ("out of sync with git (automated sync is off)", "would be configured"))


def _dry(change: Change) -> str:
    """A dry run's change as what the sync would do (the compare ran with applying off)."""
    message = change.message
    for said, meant in _DRY:
        if message == said:
            return f"{change.ref} {meant}"
    if message.startswith("drifted from git: ") and message.endswith(" (selfHeal is off)"):
        return f"{change.ref} would be reverted: {message[len('drifted from git: '):-len(' (selfHeal is off)')]}"
    return str(change)


class ReconcilerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], controller: Controller, refresh_token: str = "",
                 ui_account: str = "", locate_leader: Callable[[str], str | None] | None = None) -> None:
        """``locate_leader(holder)``: the base URL of the Lease holder's own server (a standby passes a sync on to
        it), None when it cannot be found."""
        super().__init__(address, _Handler)
        self.locate_leader = locate_leader
        self.controller = controller
        self.refresh_token = refresh_token
        self.ui_account = ui_account  # NAMESPACE/NAME of the UI's ServiceAccount, trusted to name its user

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
