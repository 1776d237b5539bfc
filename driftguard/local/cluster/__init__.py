"""A real single-node Kubernetes cluster on this machine (``driftguard cluster up|down``): the
in-cluster test tier's ground, and the way to try ``make deploy`` without kind. See ``node``."""

from driftguard.local.cluster.node import Cluster, ClusterError

__all__ = ["Cluster", "ClusterError"]
