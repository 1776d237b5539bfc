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
from collections.abc import Sequence
from typing import Any, TextIO

from driftguard.core.names import NAMESPACE
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.crd import APPLICATIONS

HISTORY_COLUMNS = ("ID", "REVISION", "AUTHOR", "COMMITTED", "STARTED", "FINISHED", "RESULT", "INITIATOR", "MESSAGE")


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = subparsers.add_parser("history", help="print an Application's sync history (status.history)")
    _app_arguments(history)
    history.add_argument("--json", action="store_true", help="print status.history as JSON")
    history.set_defaults(func=_history)


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
