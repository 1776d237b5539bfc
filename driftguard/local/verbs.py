"""The on-demand verbs on one Application: ``driftguard history``, ``driftguard diff`` and ``driftguard sync``.

``history`` prints ``status.history``. ``diff`` renders git (or, with ``--local DIR``, a checkout, as
``driftguard render --local`` does) and shows, per object, a unified diff of the fields git declares against
the live object — exit 0 no difference, 1 differences, 2 error, like ``kubectl diff`` (whose diff of a change
to a managed object the webhook denies by design). ``sync`` asks the reconciler to sync now (see
``reconciler.server``: the caller's own Kubernetes token, and RBAC's answer for verb ``sync``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from driftguard.core.inventory import Inventory
from driftguard.core.manifests import ManifestError
from driftguard.core.names import NAMESPACE
from driftguard.core.objects import ObjectRef
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster, ResourceError, UnknownKind
from driftguard.local import rendercmd
from driftguard.local.controlplane.binaries import BinariesUnavailable, resolve_render_tools
from reconciler import appdiff
from reconciler import desired as desired_set
from reconciler.application import parse_application
from reconciler.apply import Applier
from reconciler.crd import APPLICATIONS
from reconciler.desired import Desired
from reconciler.gitsource import GitSource
from reconciler.reconcile import Reconciler, Stop
from reconciler.renderer import Renderer, RenderError, RenderTools
from reconciler.revision import Revision

DEFAULT_SERVER = "http://127.0.0.1:8081"
HISTORY_COLUMNS = ("ID", "REVISION", "AUTHOR", "COMMITTED", "STARTED", "FINISHED", "RESULT", "INITIATOR", "MESSAGE")

STANDBY_TRIES: Final = 3  # a standby's 503 is asked again (after a pause) this many times in all
STANDBY_PAUSE: Final = 2.0


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = subparsers.add_parser("history", help="print an Application's sync history (status.history)")
    _app_arguments(history)
    history.add_argument("--json", action="store_true", help="print status.history as JSON")
    history.set_defaults(func=_history)

    diff = subparsers.add_parser(
        "diff", help="git (or a local checkout) against the cluster, per object: a unified diff of declared fields",
        description="Render the Application's source (or --local DIR) and diff each object's declared fields "
                    "against the live object. Exit 0: no difference; 1: differences; 2: error (as kubectl diff).")
    _app_arguments(diff)
    diff.add_argument("--local", type=Path, default=None, metavar="DIR",
                      help="a checkout of the repository, rendered instead of git (the Application's path in it)")
    diff.add_argument("--path", default=None, help="with --local: the path in it (default: the Application's)")
    for tool in ("kustomize", "helm", "jsonnet"):
        diff.add_argument(f"--{tool}", default=None, help=f"the {tool} binary (default: make tools' build)")
    diff.set_defaults(func=_diff)

    sync = subparsers.add_parser(
        "sync", help="sync an Application now (also one without syncPolicy.automated), as you",
        description="Ask the reconciler to sync the Application now. It authenticates your Kubernetes token and "
                    "asks RBAC whether you may (verb \"sync\" on applications.driftguard.io). Exit 0: synced; "
                    "1: the sync failed; 2: refused or an error.")
    _app_arguments(sync)
    sync.add_argument("--prune", action="store_true", help="delete what the Application applied and git no "
                      "longer declares")
    sync.add_argument("--dry-run", action="store_true", help="say what the sync would do; change nothing")
    sync.add_argument("--server", default=os.environ.get("DRIFTGUARD_RECONCILER_URL") or DEFAULT_SERVER,
                      help="the reconciler's HTTP address (default $DRIFTGUARD_RECONCILER_URL, else "
                           f"{DEFAULT_SERVER}: kubectl port-forward -n {NAMESPACE} svc/driftguard-reconciler 8081:80)")
    sync.add_argument("--token", default=os.environ.get("DRIFTGUARD_TOKEN") or None,
                      help="your Kubernetes bearer token (default $DRIFTGUARD_TOKEN, else the kubeconfig user's "
                           "token or tokenFile)")
    sync.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the result (default 120)")
    sync.set_defaults(func=_sync)


def _app_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("application", metavar="APP", help="the Application's name")
    parser.add_argument("-n", "--namespace", default=NAMESPACE, help=f"its namespace (default {NAMESPACE})")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None,
                        help="kubeconfig file (default $KUBECONFIG; none: in-cluster ServiceAccount)")
    parser.add_argument("--context", default=None)


def read_application(args: argparse.Namespace) -> dict[str, Any]:
    """The Application, or ``LookupError`` saying it does not exist."""
    with Kube(args.kubeconfig, context=args.context) as kube:
        app = Cluster(kube).get(APPLICATIONS, args.namespace, args.application)
    if app is None:
        raise LookupError(f"no Application {args.namespace}/{args.application} "
                          "(name it as `kubectl get applications -A` lists it; -n for its namespace)")
    return app


def _history(args: argparse.Namespace) -> int:
    try:
        app = read_application(args)
    except (KubeError, ResourceError, LookupError) as e:
        print(f"driftguard history: {e}", file=sys.stderr)
        return 1
    entries = list((app.get("status") or {}).get("history") or [])
    if args.json:
        json.dump(entries, sys.stdout, indent=2)
        print()
        return 0
    print_history(entries, sys.stdout, f"{args.namespace}/{args.application}")
    return 0


def history_rows(entries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per entry, newest first."""
    rows: list[tuple[str, ...]] = []
    for h in sorted(entries, key=lambda e: int(e.get("id") or 0), reverse=True):
        rows.append((str(h.get("id", "")), str(h.get("revision") or "-")[:7], str(h.get("author") or "-"),
                     str(h.get("commitTime") or "-"), str(h.get("startedAt") or "-"), str(h.get("finishedAt") or "-"),
                     str(h.get("result") or "-"), str(h.get("initiator") or "-"),
                     " ".join(str(h.get("message") or "").split())[:80]))
    return rows


def print_history(entries: Sequence[dict[str, Any]], out: TextIO, name: str) -> None:
    if not entries:
        print(f"Application {name} has no sync history yet.", file=out)
        return
    table = [HISTORY_COLUMNS, *history_rows(entries)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HISTORY_COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


# ---------------------------------------------------------------- diff

def _diff(args: argparse.Namespace) -> int:
    try:
        with Kube(args.kubeconfig, context=args.context) as kube:
            cluster = Cluster(kube)
            app = cluster.get(APPLICATIONS, args.namespace, args.application)
            if app is None:
                raise LookupError(f"no Application {args.namespace}/{args.application} "
                                  "(name it as `kubectl get applications -A` lists it; -n for its namespace)")
            revision, rendered = _desired(args, app, cluster)
            changed, stale = diffs(cluster, rendered, app)
            desired = [d for d in rendered if not d.hook]
    except Stop as e:
        print(f"driftguard diff: {e.problem.message}", file=sys.stderr)
        return 2
    except (KubeError, ResourceError, LookupError, ManifestError, RenderError, ValueError, OSError,
            BinariesUnavailable) as e:
        print(f"driftguard diff: {e}", file=sys.stderr)
        return 2
    for text in changed + stale:
        sys.stdout.write(text)
    source = f"--local {args.local}" if args.local else f"git {revision.sha}"
    print(f"# {len(changed)} of {len(desired)} declared objects differ from the cluster, {len(stale)} applied "
          f"object(s) no longer declared ({source})", file=sys.stderr)
    return 1 if changed or stale else 0


def _desired(args: argparse.Namespace, app: dict[str, Any], cluster: Cluster) -> tuple[Revision, list[Desired]]:
    spec = parse_application(app)
    if args.local is not None:
        manifests, _ = rendercmd.render_checkout(_render_args(args), app)
        revision = Revision("local", "you", "", f"checkout {args.local}")
        return revision, desired_set.build(manifests, app=spec, revision=revision, scope=_scope(cluster))
    with tempfile.TemporaryDirectory(prefix="driftguard-diff-") as cache:
        reconciler = Reconciler(cluster, GitSource(Path(cache)), Applier(cluster), renderer=_renderer(args),
                                allow_local=True)  # the caller reads their own files: nobody else's cache
        return reconciler.render_desired(spec)


def _render_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(local=args.local, path=args.path, application=None, kustomize=args.kustomize,
                              helm=args.helm, jsonnet=args.jsonnet)


def _renderer(args: argparse.Namespace) -> Renderer:
    given = {tool: getattr(args, tool) for tool in ("kustomize", "helm", "jsonnet") if getattr(args, tool)}
    try:
        built = {k: str(v) for k, v in resolve_render_tools().items()}
    except BinariesUnavailable:
        built = {}  # a plain directory needs no tool; kustomize/helm/jsonnet are then looked up on PATH
    return Renderer(RenderTools({**{t: t for t in ("kustomize", "helm", "jsonnet")}, **built, **given}))


def _scope(cluster: Cluster) -> Any:
    def scope(api_version: str, kind: str) -> bool | None:
        try:
            return cluster.discovery.resolve(api_version, kind).namespaced
        except UnknownKind:
            return None
    return scope


def diffs(cluster: Cluster, desired: list[Desired], app: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The unified diff of every object that differs (declared fields only), and of every object the
    Application applied that git no longer declares."""
    out = []
    for d in sorted(desired, key=lambda d: d.ref):
        if d.hook:
            continue  # a hook is run by a sync, never compared: it is not a managed object
        if d.error:
            raise ValueError(d.error)
        try:
            rt = cluster.discovery.resolve(d.api_version, d.ref.kind)
        except UnknownKind:
            live = None  # its CRD is not installed yet: the sync creates both
        else:
            live = cluster.get(rt, d.ref.namespace, d.ref.name)
        text = appdiff.object_diff(d.ref, d.declared, live, d.ignore, identity=d.obj)
        if text:
            out.append(text)
    try:
        inventory = Inventory.from_list((app.get("status") or {}).get("inventory"))
    except (KeyError, ValueError, TypeError):
        inventory = Inventory()
    declared: set[ObjectRef] = {d.ref for d in desired if not d.hook}
    return out, [appdiff.pruned_diff(ref) for ref in sorted(inventory.refs() - declared)]


# ---------------------------------------------------------------- sync

def _sync(args: argparse.Namespace) -> int:
    try:
        token = args.token or kubeconfig_token(args.kubeconfig, args.context)
        for attempt in range(1, STANDBY_TRIES + 1):
            status, body = post_sync(args.server, args.namespace, args.application, token, prune=args.prune,
                                     dry_run=args.dry_run, wait=min(args.timeout, 600.0))
            if not standby(status, body) or attempt == STANDBY_TRIES:
                break
            time.sleep(STANDBY_PAUSE)  # a new connection: through the Service it may reach the leader; or failover
    except (ValueError, OSError) as e:
        print(f"driftguard sync: {e}", file=sys.stderr)
        return 2
    if status == 202:
        print(f"driftguard sync: {args.namespace}/{args.application} is still syncing after {args.timeout:.0f}s; "
              f"see `driftguard history {args.application} -n {args.namespace}`", file=sys.stderr)
        return 1
    if status != 200:
        print(f"driftguard sync: {body.get('error') or body} (HTTP {status})", file=sys.stderr)
        return 2
    print_sync(body, sys.stdout)
    return 0 if body.get("result") == "Succeeded" else 1


def standby(status: int, body: dict[str, Any]) -> bool:
    """A reconciler replica that is not the leader answered (503 naming the Lease's holder, maybe none)."""
    return status == HTTPStatus.SERVICE_UNAVAILABLE and "leader" in body


def print_sync(body: dict[str, Any], out: TextIO) -> None:
    verb = "would sync" if body.get("dryRun") else "synced"
    result = "dry run" if body.get("dryRun") else str(body.get("result"))
    revision = str(body.get("revision") or "?")[:7]
    print(f"Application {body.get('application')} {verb} at {revision} by {body.get('initiator')}: {result}", file=out)
    if body.get("problem"):
        print(f"  {body['problem']}", file=out)
    for change in body.get("changes") or []:
        print(f"  {change}", file=out)
    for ref in body.get("pendingPrune") or []:
        if body.get("dryRun") and body.get("prune"):
            print(f"  {ref} would be deleted: no longer in git", file=out)
        else:
            print(f"  {ref}: no longer in git, kept (use --prune to delete it)", file=out)
    print(f"  {body.get('summary') or 'nothing to do'}", file=out)


def post_sync(server: str, namespace: str, name: str, token: str, *, prune: bool, dry_run: bool,
              wait: float) -> tuple[int, dict[str, Any]]:
    """POST /sync/<namespace>/<name> to the reconciler: (HTTP status, decoded body)."""
    url = f"{server.rstrip('/')}/sync/{urllib.parse.quote(namespace)}/{urllib.parse.quote(name)}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--server {server!r} must be an http:// or https:// URL")
    data = json.dumps({"prune": prune, "dryRun": dry_run, "wait": wait}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={  # noqa: S310 - http(s) only, above
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=wait + 30) as response:  # noqa: S310
            return response.status, _json(response.read())
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read())
    except urllib.error.URLError as e:
        raise OSError(f"cannot reach the reconciler at {server}: {e.reason} (port-forward it: kubectl port-forward "
                      f"-n {NAMESPACE} svc/driftguard-reconciler 8081:80, or pass --server)") from e


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw[:200].decode(errors="replace")}
    return body if isinstance(body, dict) else {"error": str(body)}


def kubeconfig_token(kubeconfig: str | None, context: str | None) -> str:
    """The bearer token of the kubeconfig's (current) context's user: its ``token``, or ``tokenFile``'s
    content. A client certificate or an exec plugin carries none the reconciler could check: ``ValueError``
    naming the fix."""
    path = Path(kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read the kubeconfig {path}: {e}; pass --token") from e
    name = context or config.get("current-context")
    ctx = next((c.get("context") or {} for c in config.get("contexts") or [] if c.get("name") == name), {})
    user = next((u.get("user") or {} for u in config.get("users") or [] if u.get("name") == ctx.get("user")), {})
    if user.get("token"):
        return str(user["token"])
    if user.get("tokenFile"):
        return Path(str(user["tokenFile"])).read_text().strip()
    raise ValueError(f"the kubeconfig {path} (context {name}) authenticates without a bearer token (a client "
                     "certificate or an exec plugin): pass --token or $DRIFTGUARD_TOKEN, e.g. "
                     "`kubectl create token <your ServiceAccount>` or your identity provider's token")
