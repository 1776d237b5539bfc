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

from certs.authority import CertificateAuthority
from certs.cli import Actions
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
