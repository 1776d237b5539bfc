"""The web UI's Flask app: sign-in, CSRF, the four pages and the Refresh action.

Sign-in (``/login``): a Kubernetes bearer token (checked with a TokenReview) or, in local mode, the
login token ``driftguard local up`` printed (standing for ``--login-user``). The session is Flask's
signed cookie (Secure, HttpOnly, SameSite=Strict) holding only the identity and a CSRF token; every
POST carries that token. Behind an authenticating proxy (``--proxy-user-header``, only with
``--client-ca-file``) the proxy's headers are the identity. Pages poll themselves (``ui/static/ui.js``,
``X-Fragment: 1`` asks for the ``<main>`` only), so they change within two seconds without a reload.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final

from flask import Flask, Response, abort, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from driftguard.core import contract
from driftguard.core.objects import ObjectRef
from driftguard.kube import Kube
from reconciler import appdiff
from reconciler.health import assess
from ui import views
from ui.access import Identity, proxy_identity, same_secret
from ui.reads import Reader, ReadError
from ui.settings import Settings
from webhook.auditcli import parse_since, select
from webhook.records import DECISIONS, AuditRecord

log = logging.getLogger(__name__)
EXTENSION: Final = "driftguard-ui"
CSRF_FIELD: Final = "csrf_token"
AUDIT_ROWS: Final = 500
POLL_MS: Final = 2000
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings, *, session_key: bytes, reader: Reader | None = None,
               login_token: str | None = None, now: Callable[[], dt.datetime] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=session_key,
        SESSION_COOKIE_NAME="driftguard_ui",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    if reader is None:
        kube = Kube(settings.kubeconfig) if settings.kubeconfig else Kube()
        refresh = settings.refresh_token_file.read_text().strip() if settings.refresh_token_file else ""
        reader = Reader(kube, audit_file=settings.audit_file, audit_namespace=settings.audit_namespace,
                        access_ttl=settings.access_cache_seconds,
                        reconciler_url=settings.reconciler_url, refresh_token=refresh,
                        reconciler_token_file=settings.reconciler_token_file)
    if login_token is None and settings.login_token_file is not None:
        login_token = settings.login_token_file.read_text().strip()
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    state = _State(settings, reader, login_token or "", clock)
    app.jinja_env.globals["badge"] = views.badge  # imported macros see globals, not the context
    app.extensions[EXTENSION] = state
    _routes(app, state)
    return app


class _State:
    def __init__(self, settings: Settings, reader: Reader, login_token: str, clock: Callable[[], dt.datetime]) -> None:
        self.settings, self.reader, self.login_token, self.clock = settings, reader, login_token, clock

    def identity(self) -> Identity | None:
        s = self.settings
        if s.proxy_user_header:
            return proxy_identity(dict(request.headers), s.proxy_user_header, s.proxy_groups_header)
        found = Identity.from_session(session.get("identity"))
        if found is not None:
            return found
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self.sign_in(header[len("Bearer "):].strip())
        return None

    def sign_in(self, token: str) -> Identity | None:
        if self.login_token and same_secret(token, self.login_token):
            return Identity(self.settings.login_user, tuple(self.settings.login_groups), "login token")
        if not token or len(token) > 16384:
            return None
        return self.reader.authenticate(token)

    def denials(self, records: list[AuditRecord]) -> dict[str, int]:
        since = self.clock() - dt.timedelta(hours=24)
        counts: dict[str, int] = {}
        for record in records:
            if record.decision == "deny" and record.application and record.timestamp >= since:
                counts[record.application] = counts.get(record.application, 0) + 1
        return counts


def _routes(app: Flask, state: _State) -> None:  # noqa: PLR0915 - one place lists every route
    reader = state.reader

    @app.after_request
    def headers(response: Response) -> Response:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.before_request
    def authenticate() -> ResponseReturnValue | None:
        if request.endpoint in ("login", "static", "readyz"):
            return None
        identity = state.identity()
        if identity is None:
            if request.headers.get("X-Fragment"):
                return Response("signed out", status=401)
            return redirect(url_for("login", next=request.full_path if request.method == "GET" else "/"))
        g.identity = identity
        if request.method == "POST":
            _check_csrf()
        return None

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"identity": g.get("identity"), "csrf_token": _csrf_token(), "badge": views.badge,
                "poll_ms": POLL_MS}

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        return Response("ok\n", mimetype="text/plain")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ResponseReturnValue:
        error = ""
        if request.method == "POST":
            _check_csrf()
            identity = state.sign_in(str(request.form.get("token") or "").strip())
            if identity is not None:
                session.clear()
                session.permanent = True
                session["identity"] = identity.to_session()
                session[CSRF_FIELD] = secrets.token_urlsafe(32)
                target = str(request.args.get("next") or "/")
                return redirect(target if target.startswith("/") and not target.startswith("//") else "/")
            error = "That token did not sign in: give the login token `driftguard local up` printed or a " \
                    "Kubernetes bearer token (kubectl create token ...)."
        local = bool(state.login_token)
        return render_template("login.html", error=error, local=local), 401 if error else 200

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def applications() -> ResponseReturnValue:
        identity: Identity = g.identity
        now = state.clock()
        try:
            apps = reader.applications(identity)
        except ReadError as error:
            return _page("applications.html", error=str(error), rows=[], all_rows=[], filters={}, facets={})
        counts = state.denials(reader.audit_records())
        all_rows = [views.app_row(a, denials=counts.get(_key(a), 0), now=now) for a in apps]
        filters = {k: str(request.args.get(k) or "") for k in ("project", "namespace", "status", "q")}
        rows = views.filter_rows(all_rows, project=filters["project"], namespace=filters["namespace"],
                                 status=filters["status"], search=filters["q"])
        facets = {"project": sorted({r.project for r in all_rows}),
                  "namespace": sorted({r.namespace for r in all_rows}),
                  "status": [*views.SYNC_WORDS, *views.HEALTH_WORDS[:-1]]}
        return _page("applications.html", rows=rows, all_rows=all_rows, filters=filters, facets=facets, error="")

    @app.get("/applications/<namespace>/<name>")
    def application(namespace: str, name: str) -> ResponseReturnValue:
        identity: Identity = g.identity
        now = state.clock()
        try:
            app_obj = reader.application(identity, namespace, name)
        except ReadError as error:
            return _page("error.html", error=str(error)), 502
        if app_obj is None:
            return _page("error.html", error=f"Application {namespace}/{name} does not exist or you may not get "
                                             f"Applications in namespace {namespace}."), 404
        refs = views.inventory_refs(app_obj)
        live = reader.live_objects(identity, app_obj, refs)
        owned = reader.owned_objects(identity, {r[2] for r in refs})
        nodes = views.flatten(views.tree(app_obj, live, owned, _assess))
        key = f"{namespace}/{name}"
        records = [r for r in reader.audit_records() if r.application == key]
        audit = list(reversed(reader.visible_audit(identity, records)))[:AUDIT_ROWS]
        grants = [row for row in (views.grant_row(o, now) for o in live.values()) if row is not None]
        row = views.app_row(app_obj, denials=state.denials(records).get(key, 0), now=now)
        may_sync = not row.automated and reader.may_sync(identity, namespace, name)
        return _page("application.html", app=row, may_sync=may_sync, obj=app_obj, nodes=nodes,
                     conditions=views.conditions(app_obj, now),
                     history=views.history(app_obj, now), drift=views.drift_rows(app_obj, now), audit=audit,
                     grants=grants, spec=app_obj.get("spec") or {})

    @app.get("/applications/<namespace>/<name>/object")
    def object_page(namespace: str, name: str) -> ResponseReturnValue:
        identity: Identity = g.identity
        api_version, kind = str(request.args.get("v") or ""), str(request.args.get("kind") or "")
        obj_ns, obj_name = str(request.args.get("ns") or ""), str(request.args.get("obj") or "")
        if reader.application(identity, namespace, name) is None:
            abort(404)
        try:
            live = reader.object(identity, api_version, kind, obj_ns, obj_name)
        except ReadError as error:
            return _page("error.html", error=str(error)), 502
        label = f"{kind} {obj_ns}/{obj_name}" if obj_ns else f"{kind} {obj_name}"
        if live is None:
            return _page("error.html", error=f"{label} is not in the cluster, or you may not get it."), 404
        try:
            stamp = contract.read_stamp(live)
        except contract.ContractError as error:
            return _page("error.html", error=f"{label}: {error}"), 200
        secret = views.is_secret(live)
        declared = stamp.declared if stamp is not None else {}
        shown = views.redact(live)
        paths = views.declared_paths(declared)
        git_lines = views.yaml_lines(_git_view(declared, secret), paths)
        live_lines = views.yaml_lines(shown, paths)
        group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""
        ref = ObjectRef(group=group, kind=kind, namespace=obj_ns, name=obj_name)
        diff = "" if secret else appdiff.object_diff(ref, declared, live)
        link = views.repo_link(stamp.source.repo, stamp.source.commit, stamp.source.path) if stamp else None
        return _page("object.html", label=label, app_key=f"{namespace}/{name}", app_ns=namespace, app_name=name,
                     stamp=stamp, git_lines=git_lines, live_lines=live_lines, diff=diff, link=link, secret=secret)

    @app.get("/audit")
    def audit() -> ResponseReturnValue:
        identity: Identity = g.identity
        filters = {k: str(request.args.get(k) or "") for k in ("user", "object", "decision", "since", "until")}
        error = ""
        try:
            since = parse_since(filters["since"], state.clock()) if filters["since"] else None
            until = parse_since(filters["until"], state.clock()) if filters["until"] else None
        except ValueError as problem:
            since = until = None
            error = str(problem).replace("--since", "since")
        decision = filters["decision"] if filters["decision"] in DECISIONS else None
        chosen = select(reader.audit_records(), user=filters["user"] or None, obj=filters["object"] or None,
                        decision=decision, since=since)
        rows = [r for r in chosen if until is None or r.timestamp <= until]
        rows = list(reversed(reader.visible_audit(identity, rows)))[:AUDIT_ROWS]
        return _page("audit.html", rows=rows, filters=filters, decisions=DECISIONS, error=error)

    @app.post("/applications/<namespace>/<name>/refresh")
    def refresh(namespace: str, name: str) -> ResponseReturnValue:
        identity: Identity = g.identity
        done, message = reader.refresh(identity, namespace, name)
        flash(message, "ok" if done else "refused")
        log.info("refresh of %s/%s by %s: %s", namespace, name, identity.user, "done" if done else "refused")
        return redirect(url_for("application", namespace=namespace, name=name)), 303

    @app.post("/applications/<namespace>/<name>/sync")
    def sync(namespace: str, name: str) -> ResponseReturnValue:
        identity: Identity = g.identity
        prune = request.form.get("prune") == "on"
        done, message = reader.sync(identity, namespace, name, prune=prune)
        flash(message, "ok" if done else "refused")
        log.info("sync of %s/%s by %s (prune %s): %s", namespace, name, identity.user, prune,
                 "done" if done else "not done")
        return redirect(url_for("application", namespace=namespace, name=name)), 303


def _page(template: str, **context: Any) -> str:
    fragment = bool(request.headers.get("X-Fragment"))
    return render_template(template, fragment=fragment, **context)


def _csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def _check_csrf() -> None:
    expected = session.get(CSRF_FIELD)
    given = str(request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or "")
    if not isinstance(expected, str) or not same_secret(given, expected):
        abort(Response("CSRF token missing or wrong: reload the page and try again\n", status=403,
                       mimetype="text/plain"))


def _key(app: Mapping[str, Any]) -> str:
    meta = app.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _assess(obj: Mapping[str, Any]) -> tuple[str, str]:
    health, message = assess(obj)
    return str(health.value if hasattr(health, "value") else health), message


def _git_view(declared: Mapping[str, Any], secret: bool) -> Any:
    if not secret:
        return json.loads(json.dumps(declared, default=str))
    return {k: ({kk: views.REDACTED for kk in v} if k in ("data", "stringData") and isinstance(v, Mapping) else v)
            for k, v in declared.items()}
