"""``driftguard certs install`` (the webhook's TLS Secret and caBundle, the mark-key and refresh-token
Secrets, written into a cluster) and ``driftguard doctor`` (what in the cluster can act around driftguard).

It sits with the installer, not in ``certs/``, because it reads the manifests and talks to the API
server; ``certs/`` only mints keys and certificates.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from certs.authority import CertificateAuthority
from certs.cli import Actions
from driftguard.core.names import NAMESPACE
from driftguard.install import argocd
from driftguard.install.base import install_in_cluster
from driftguard.install.doctor import examine
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import ResourceError


def add_certs_install(actions: Actions) -> None:
    install = actions.add_parser(
        "install", help="create the webhook's TLS Secret in the cluster and inject the caBundle into its webhooks")
    install.add_argument("--dir", type=Path, required=True,
                         help="where the CA is kept (reused when present: re-running rotates only the serving cert)")
    install.add_argument("--kubeconfig", default=None, help="kubeconfig (default $KUBECONFIG, else in-cluster)")
    install.set_defaults(func=run_install)


def run_install(args: argparse.Namespace) -> int:
    ca, reused = CertificateAuthority.load_or_generate(args.dir)
    print(f"{'reused' if reused else 'created'} CA {args.dir / 'ca.crt'} (keep {args.dir / 'ca.key'} secret)")
    try:
        with Kube(args.kubeconfig or os.environ.get("KUBECONFIG") or None) as kube:
            install_in_cluster(kube, ca, progress=print)
    except (KubeError, ResourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def add_doctor(subparsers: Actions) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="report who can act around admission and whether the webhook registration is sound "
                       "(exit 1 on findings)")
    doctor.add_argument("--kubeconfig", default=None,
                        help="an admin's kubeconfig (default $KUBECONFIG, else in-cluster)")
    doctor.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    try:
        with Kube(args.kubeconfig or os.environ.get("KUBECONFIG") or None) as kube:
            report = examine(kube)
    except (KubeError, ResourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.render())
    return 1 if report.findings else 0


def add_import(subparsers: Actions) -> None:
    parser = subparsers.add_parser("import", help="convert another tool's objects into driftguard's")
    sources = parser.add_subparsers(dest="source", required=True)
    argo = sources.add_parser(
        "argocd", help="Argo CD Applications and AppProjects (files, or read from a cluster) as driftguard "
                       "Applications and Projects on stdout; what did not carry over on stderr (exit 1 when an "
                       "object could not be converted)")
    argo.add_argument("files", nargs="*", type=Path, help="YAML/JSON files or directories ('-': stdin)")
    argo.add_argument("--from-cluster", action="store_true",
                      help="read applications.argoproj.io and appprojects.argoproj.io from the cluster instead")
    argo.add_argument("--kubeconfig", default=None, help="with --from-cluster (default $KUBECONFIG)")
    argo.add_argument("--argocd-namespace", default=argocd.ARGO_NAMESPACE,
                      help="Argo CD's namespace: its objects move to --namespace (default %(default)s)")
    argo.add_argument("-A", "--all-namespaces", action="store_true",
                      help="with --from-cluster: Applications in any namespace too (they keep their namespace)")
    argo.add_argument("--namespace", default=NAMESPACE, help="driftguard's namespace (default %(default)s)")
    argo.add_argument("-o", "--output", type=Path, default=None, help="write the objects here, not to stdout")
    argo.set_defaults(func=run_import_argocd)


def run_import_argocd(args: argparse.Namespace) -> int:
    try:
        objects = _argo_from_cluster(args) if args.from_cluster else _argo_from_files(args.files)
        schemas = argocd.Schemas.load()
    except (OSError, ValueError, yaml.YAMLError, KubeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not objects:
        print("error: no Argo CD Application or AppProject found", file=sys.stderr)
        return 2
    results = argocd.convert(objects, schemas, namespace=args.namespace, argocd_namespace=args.argocd_namespace)
    text = argocd.render(results)
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    for line in argocd.report(results):
        print(line, file=sys.stderr)
    return 1 if any(r.obj is None for r in results) else 0


def _argo_from_files(paths: list[Path]) -> list[dict[str, Any]]:
    if not paths:
        raise ValueError("name files or directories of Argo CD manifests, '-' for stdin, or use --from-cluster")
    texts: list[tuple[str, str]] = []
    for path in paths:
        if str(path) == "-":
            texts.append(("stdin", sys.stdin.read()))
        elif path.is_dir():
            texts += [(str(p), p.read_text()) for p in sorted(path.rglob("*"))
                      if p.suffix in (".yaml", ".yml", ".json") and p.is_file()]
        else:
            texts.append((str(path), path.read_text()))
    objects: list[dict[str, Any]] = []
    for where, text in texts:
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            raise ValueError(f"{where}: not YAML: {error}") from None
        for document in documents:
            if isinstance(document, dict) and document.get("kind") == "List":
                objects += [i for i in document.get("items") or [] if isinstance(i, dict)]
            elif isinstance(document, dict):
                objects.append(document)
    return [o for o in objects if str(o.get("apiVersion", "")).startswith(argocd.ARGO_GROUP + "/")]


def _argo_from_cluster(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = f"/apis/{argocd.ARGO_GROUP}/v1alpha1"
    found: list[dict[str, Any]] = []
    with Kube(args.kubeconfig or os.environ.get("KUBECONFIG") or None) as kube:
        for plural, kind, everywhere in (("appprojects", "AppProject", False),
                                         ("applications", "Application", args.all_namespaces)):
            path = f"{base}/{plural}" if everywhere else f"{base}/namespaces/{args.argocd_namespace}/{plural}"
            try:
                items = kube.request("GET", path)["items"]
            except KubeError as error:
                if error.status == 404:
                    raise ValueError(f"this cluster serves no {plural}.{argocd.ARGO_GROUP}: is Argo CD installed?"
                                     ) from None
                raise
            found += [{"apiVersion": f"{argocd.ARGO_GROUP}/v1alpha1", "kind": kind, **item} for item in items]
    return found
