"""The Flask app factory: the HTTP edge around the pure policy. Flask is imported nowhere else.

Two error channels, mapped here and only here (kopf / controller-runtime style):

* a broken *webhook request* — wrong content type, not JSON, not an ``admission.k8s.io/v1``
  AdmissionReview, no request uid — is answered HTTP 400 with a plain message, and a body over
  ``--max-body-bytes`` HTTP 413 naming the cap and the setting, so the API server applies the webhook's
  failurePolicy (Fail);
* a failure *while deciding* — an exception in the policy — is answered 200 with ``allowed: false``,
  code 500, and logged with the request uid (fail closed).

Every answer echoes the request's uid, apiVersion and kind. Recording an audit record happens after
the decision and cannot change it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from flask import Flask, Response
from werkzeug.wsgi import get_content_length, get_input_stream

from driftguard.core import jsontext
from driftguard.core.marks import MarkKey, Marks
from webhook import applications, identity, policy, reviews
from webhook.audit import Recorder
from webhook.certcheck import CertificateSource, CertificateStatus
from webhook.kubeio import ClusterAccess, no_cluster_parent
from webhook.logs import CTX
from webhook.metrics import Metrics
from webhook.settings import Settings

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Kind = Literal["validate", "mutate"]
JSON: Final = "application/json"
TEXT: Final = "text/plain; charset=utf-8"
REVIEWS: Final[dict[str, Kind]] = {"/validate": "validate", "/mutate": "mutate"}
Answer = tuple[str, str, bytes]
EXTENSION: Final = "driftguard"
DIRECT: Final = "driftguard.direct"  # webhook.worker's loop answers plain reviews through this extension
CHUNK: Final = 64 * 1024
TOO_LARGE: Final = "413 Payload Too Large"


class _TooLarge(reviews.BadReview):
    """The body is over ``--max-body-bytes`` (HTTP 413)."""


@dataclass
class Webhook:
    """What the routes share; reachable in tests as ``app.extensions["driftguard"]``."""

    settings: Settings
    metrics: Metrics
    recorder: Recorder
    cluster: ClusterAccess | None
    clock: Callable[[], dt.datetime]
    marks: Marks = policy.UNKEYED
    _counters: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _histograms: dict[str, Any] = field(default_factory=dict, repr=False)

    def answer(self, kind: Kind, body: bytes, content_type: str) -> Answer:
        """(HTTP status line, content type, body) for one review."""
        answer = self.begin(kind, body, content_type)
        return answer() if callable(answer) else answer

    def direct(self, path: str, content_type: str, body: bytes) -> Answer | Callable[[], Answer]:
        """The worker loop's entry for ``POST /validate`` and ``/mutate`` (``DIRECT``): ``begin`` by path."""
        return self.begin(REVIEWS[path], body, content_type)

    def begin(self, kind: Kind, body: bytes, content_type: str) -> Answer | Callable[[], Answer]:
        """The answer, or — when deciding needs an API read (a scale's parent, an Application's Project) —
        the rest of the work as a function, for a thread: the caller's event loop must not wait on it."""
        started = time.perf_counter()
        try:
            review = _accept(body, content_type, self.settings.max_body_bytes)
        except reviews.BadReview as error:
            self._count(kind, "bad-request")
            log.warning("rejected webhook request", extra={CTX: {"webhook": kind, "error": str(error)}})
            return TOO_LARGE if isinstance(error, _TooLarge) else "400 BAD REQUEST", TEXT, f"{error}\n".encode()
        if kind == "validate" and self._reads(review["request"]):
            return lambda: self._finish(kind, review, started)
        return self._finish(kind, review, started)

    def _reads(self, admission: reviews.Request) -> bool:
        return policy.needs_parent(admission, self.settings) or (
            self.cluster is not None and applications.needs_project(admission))

    def _count(self, kind: Kind, result: str) -> None:
        counter = self._counters.get((kind, result))
        if counter is None:  # prometheus_client's labels() costs a lock and a dict build per call: once
            counter = self._counters[kind, result] = self.metrics.decisions.labels(kind, result)
        counter.inc()

    def _finish(self, kind: Kind, review: reviews.Review, started: float) -> Answer:
        answer, result = self._decide(kind, review)
        elapsed = time.perf_counter() - started
        self._count(kind, result)
        histogram = self._histograms.get(kind)
        if histogram is None:
            histogram = self._histograms[kind] = self.metrics.latency.labels(kind)
        histogram.observe(elapsed)
        level = logging.DEBUG if result == "allow" else logging.INFO
        if log.isEnabledFor(level):  # the context dict is not built for lines nobody writes (allowed reviews)
            log.log(level, "admission", extra={CTX: {**_context(review["request"]), "webhook": kind,
                                                     "result": result, "ms": round(elapsed * 1000, 3)}})
        return "200 OK", JSON, jsontext.dumps(answer)

    def _decide(self, kind: Kind, review: reviews.Review) -> tuple[reviews.ReviewResponse, str]:
        admission = review["request"]
        try:
            if kind == "mutate":
                verdict = policy.mutate(admission, self.settings, self.clock(), marks=self.marks)
            else:
                verdict = policy.validate(admission, self.settings, self.clock(), self._parent(admission),
                                          marks=self.marks, project=self._project(admission))
        except Exception:
            log.exception("policy failed; denying", extra={CTX: {**_context(admission), "webhook": kind}})
            message = f"driftguard {kind} webhook failed on request {admission['uid']}; denied (see webhook logs)"
            return reviews.errored(review, 500, message), "error"
        if verdict.record is not None:
            self.recorder.record(verdict.record)
        return _respond(review, verdict), verdict.outcome

    def _project(self, admission: reviews.Request) -> applications.ProjectRead | None:
        if self.cluster is None or not applications.needs_project(admission) or identity.trusted(
                admission, self.settings, self.marks.key, self.clock()):
            return None
        name = applications.project_name(admission.get("object"))
        return self.cluster.read_project(self.settings.project_namespace, name)

    def _parent(self, admission: reviews.Request) -> policy.Parent | None:
        if not policy.needs_parent(admission, self.settings):
            return None
        parent = self.cluster.read_parent(admission) if self.cluster else no_cluster_parent(admission)
        self.metrics.parent_reads.labels(
            "error" if parent.error else "missing" if parent.obj is None else "found").inc()
        return parent


def create_app(
    settings: Settings,
    *,
    cluster: ClusterAccess | None = None,
    recorder: Recorder | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    certificate: CertificateSource | None = None,
) -> Flask:
    """The webhook app. ``cluster`` defaults to ``ClusterAccess.from_settings`` (may be None).

    ``certificate`` (the server's ``CertificateReloader``) makes ``/readyz`` answer 503 while the
    serving certificate is expired or not yet valid, and feeds the expiry gauge; ``/healthz`` stays 200
    (a restart would not help).
    """
    metrics = Metrics()
    if cluster is None:
        cluster = ClusterAccess.from_settings(settings)
    if recorder is None:
        events = cluster if settings.audit_events else None
        recorder = Recorder(metrics, file=settings.audit_file, events=events,
                            queue_size=settings.audit_queue_size, flush_seconds=settings.event_flush_seconds)
    webhook = Webhook(settings, metrics, recorder, cluster, clock or (lambda: dt.datetime.now(dt.UTC)),
                      load_marks(settings))

    app = Flask(__name__)
    app.extensions[EXTENSION] = webhook
    app.extensions[DIRECT] = webhook.direct
    app.wsgi_app = _reviews_first(webhook, app.wsgi_app)  # type: ignore[method-assign,assignment]

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    def certificate_status() -> CertificateStatus | None:
        if certificate is None:
            return None
        status = certificate.status()
        metrics.certificate_expiry.labels(status.cert_file).set(status.validity.not_after.timestamp())
        return status

    certificate_status()

    @app.get("/readyz")
    def readyz() -> Response:
        status = certificate_status()
        if status is not None and not status.usable:
            return Response(f"{status.message}\n", status=503, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        certificate_status()
        data, content_type = metrics.exposition()
        return Response(data, content_type=content_type)

    return app


def load_marks(settings: Settings) -> Marks:
    """The key of ``--mark-key-file`` (ValueError naming the file when unreadable; never its content)."""
    ttl = dt.timedelta(seconds=settings.break_glass_ttl)
    if settings.mark_key_file is None:
        log.warning("no --mark-key-file: break-glass is refused and drift marks are not written")
        return Marks.unkeyed(ttl)
    try:
        return Marks(MarkKey.from_text(settings.mark_key_file.read_text()), ttl)
    except (OSError, ValueError) as e:
        raise ValueError(f"--mark-key-file {settings.mark_key_file}: {e}") from None


def _reviews_first(webhook: Webhook, flask_app: WSGIApp) -> WSGIApp:
    """``POST /validate`` and ``/mutate`` answered straight from the WSGI environ; the rest through Flask.

    Every API write to a managed object pays for this path: Flask's request context, routing and
    ``Response`` object cost ~100 µs per review that the answer (status, type, bytes) does not need.
    Anything else (probes, metrics, a GET of /validate) goes through the Flask app unchanged. An
    exception here is answered 500 (the API server's failurePolicy applies: fail closed).
    """
    def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        kind = REVIEWS.get(environ.get("PATH_INFO", ""))
        if kind is None:
            return flask_app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            status, content_type, body = "405 METHOD NOT ALLOWED", TEXT, b"POST an AdmissionReview\n"
        else:
            try:
                status, content_type, body = webhook.answer(
                    kind, _body(environ, webhook.settings.max_body_bytes), environ.get("CONTENT_TYPE", ""))
            except Exception:
                log.exception("webhook request failed", extra={CTX: {"webhook": kind}})
                status, content_type, body = "500 INTERNAL SERVER ERROR", TEXT, b"internal error\n"
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return wsgi_app


def _body(environ: dict[str, Any], cap: int) -> bytes:
    """Up to ``cap + 1`` bytes of the body (one more than allowed tells "too large" without reading it all).

    Reads exactly Content-Length bytes when given (``read(n)`` on the WSGI stream allocates ``n``), else
    chunks until the cap (chunked transfer encoding). The length and stream come from werkzeug's own
    functions on the environ — what ``request.content_length`` / ``request.stream`` return — without
    building the request's header view on every review (~15 µs).
    """
    length = get_content_length(environ)
    stream = get_input_stream(environ)
    if length is not None:
        return b"\0" * (cap + 1) if length > cap else stream.read(length)
    chunks, total = [], 0
    while total <= cap:
        chunk = stream.read(min(CHUNK, cap + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _accept(body: bytes, content_type: str, cap: int) -> reviews.Review:
    if len(body) > cap:
        raise _TooLarge(f"the AdmissionReview is over {cap} bytes, the most this webhook accepts "
                        f"(--max-body-bytes, DRIFTGUARD_MAX_BODY_BYTES): raise it to admit larger objects")
    if content_type.split(";", maxsplit=1)[0].strip().lower() != JSON:
        raise reviews.BadReview(f"Content-Type must be {JSON}, not {content_type or 'missing'!r}")
    return reviews.parse_review(body)


def _respond(review: reviews.Review, verdict: policy.Verdict) -> reviews.ReviewResponse:
    if not verdict.allowed:
        return reviews.denied(review, verdict.message, warnings=verdict.warnings)
    if verdict.patch:
        return reviews.patched(review, verdict.patch, verdict.warnings)
    return reviews.allowed(review, verdict.warnings)


def _context(admission: reviews.Request) -> dict[str, Any]:
    """The fields on every admission log line; never the objects themselves."""
    return {
        "uid": admission["uid"],
        "user": admission["userInfo"].get("username", ""),
        "operation": admission["operation"],
        "kind": admission["kind"]["kind"],
        "namespace": admission.get("namespace", ""),
        "name": admission.get("name", ""),
        "subresource": admission.get("subResource", ""),
        "dry_run": bool(admission.get("dryRun", False)),
    }
