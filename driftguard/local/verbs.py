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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

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

HISTORY_COLUMNS = ("ID", "REVISION", "AUTHOR", "COMMITTED", "STARTED", "FINISHED", "RESULT", "INITIATOR", "MESSAGE")


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
            revision, desired = _desired(args, app, cluster)
            changed, stale = diffs(cluster, desired, app)
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
        if d.error:
            raise ValueError(d.error)
        try:
            rt = cluster.discovery.resolve(d.api_version, d.ref.kind)
        except UnknownKind:
            live = None  # its CRD is not installed yet: the sync creates both
        else:
            live = cluster.get(rt, d.ref.namespace, d.ref.name)
        text = appdiff.object_diff(d.ref, d.declared, live)
        if text:
            out.append(text)
    try:
        inventory = Inventory.from_list((app.get("status") or {}).get("inventory"))
    except (KeyError, ValueError, TypeError):
        inventory = Inventory()
    declared: set[ObjectRef] = {d.ref for d in desired}
    return out, [appdiff.pruned_diff(ref) for ref in sorted(inventory.refs() - declared)]
