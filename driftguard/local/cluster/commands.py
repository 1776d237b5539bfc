"""``driftguard cluster up|down``: a real single-node cluster on this machine (root, Linux).

``up`` returns once the node is Ready and prints how to use it; ``down`` takes everything back and
leaves the host as ``up`` found it. Both are idempotent. See ``driftguard.local.cluster.node``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from driftguard.kube import KubeError
from driftguard.local.cluster import image
from driftguard.local.cluster.host import HostError
from driftguard.local.cluster.image import ImageError
from driftguard.local.cluster.node import Cluster, ClusterError
from driftguard.local.controlplane import BinariesUnavailable
from driftguard.local.controlplane.processes import ProcessFailed, is_running

DEFAULT_DIR = Path(".cluster")


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = subparsers.add_parser("cluster", help="a real single-node Kubernetes cluster on this machine (root)")
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    up_parser = actions.add_parser("up", help="start it (building what is missing); return when the node is Ready")
    up_parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="run directory (default .cluster)")
    up_parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step")
    up_parser.set_defaults(func=lambda args: up(args.dir, args.timeout))
    image_parser = actions.add_parser("image", help="build the Dockerfile (buildah) and load the image into the node")
    image_parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="run directory (default .cluster)")
    image_parser.add_argument("--base", default=None,
                              help="BASE_IMAGE for the Dockerfile (default: a Python 3.11 base built here from "
                                   "Debian packages, since no registry is reachable)")
    image_parser.set_defaults(func=lambda args: load_image(args.dir, args.base))
    down_parser = actions.add_parser("down", help="stop it and restore the host")
    down_parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="run directory (default .cluster)")
    down_parser.set_defaults(func=lambda args: down(args.dir))


def up(directory: Path, timeout: float = 300.0) -> int:
    if sys.platform != "linux" or os.geteuid() != 0:
        _say("error: `driftguard cluster up` needs root on Linux (it runs kubelet, containerd and iptables)")
        return 1
    cluster = Cluster(directory, progress=_say)
    state = cluster.state()
    if state and state.processes and all(is_running(p) for p in state.processes):
        _say(f"already up in {cluster.directory}")
        _usage(cluster)
        return 0
    try:
        cluster.up(timeout)
    except (ClusterError, HostError, BinariesUnavailable, ProcessFailed, KubeError, OSError) as error:
        _say(f"error: {error}")
        return 1
    _usage(cluster)
    return 0


def load_image(directory: Path, base: str | None = None) -> int:
    cluster = Cluster(directory, progress=_say)
    try:
        archive = image.build(cluster.directory / "images" / "driftguard.tar", base=base, progress=_say)
        cluster.import_image(archive)
    except (ImageError, HostError, OSError) as error:
        _say(f"error: {error}")
        return 1
    _say(f"{image.IMAGE} loaded into the node's containerd (the manifests' image, imagePullPolicy IfNotPresent)")
    return 0


def down(directory: Path) -> int:
    cluster = Cluster(directory, progress=_say)
    try:
        was_running = cluster.down()
    except (ClusterError, HostError, OSError) as error:
        _say(f"error: {error}")
        return 1
    _say("cluster down; host restored" if was_running else f"nothing running in {cluster.directory}")
    return 0


def _usage(cluster: Cluster) -> None:
    _say(f"  admin:  export KUBECONFIG={cluster.admin_kubeconfig}")
    _say(f"  laptop: export KUBECONFIG={cluster.laptop_kubeconfig}   (cluster-admin; only admission stops it)")
    _say(f"  state:  {cluster.directory / 'state.json'}")
    state = cluster.state()
    kubectl = state.info.get("kubectl") if state else None
    if kubectl:
        _say(f"  kubectl: export PATH={Path(kubectl).parent}:$PATH")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
