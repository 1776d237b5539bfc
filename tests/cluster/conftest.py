"""The real-cluster tier: one single-node Kubernetes cluster (``driftguard cluster up``) per session.

It needs root on Linux and the host packages .ci/run installs (containerd, runc, CNI plugins,
iptables, …). Without them the tier is skipped with the reason — except with ``CI=true``, where being
unable to start the cluster is a failure: CI must never pass by skipping the tier.

The session snapshots the host before ``up`` and after ``down`` and fails (at teardown) on any
difference, so every run of the tier also proves that ``cluster down`` restores the host.

Binaries and render tools are resolved (and built, the first time) after collection, outside any
test's timeout.

Modules run in name order, except those in ``LAST``: ``make undeploy`` removes the kustomize deployment
the other modules share, and the Helm chart is then installed into the emptied cluster and uninstalled.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.host_snapshot import HostSnapshot
from support.real_cluster import Deployed, eventually, webhook_answers

from driftguard.kube import Kube
from driftguard.local.cluster import Cluster, ClusterError, image
from driftguard.local.cluster.host import HostError
from driftguard.local.cluster.image import ImageError
from driftguard.local.cluster.node import exclusive
from driftguard.local.controlplane.binaries import BinariesUnavailable, resolve_node_binaries, resolve_render_tools

HERE = Path(__file__).parent
_PREPARED = pytest.StashKey[Exception | None]()
_IMAGE = pytest.StashKey[Path]()
IMAGE_ARCHIVE = image.storage_dir().parent / "images" / "driftguard.tar"
REPO = Path(__file__).resolve().parents[2]  # the checkout whose Makefile `make deploy` runs
LAST = ("test_undeploy.py", "test_helm_chart.py")
NEEDED = ("containerd", "runc", "ctr", "iptables", "ip6tables", "ip", "nft", "conntrack")


def _unavailable() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [tool for tool in NEEDED if shutil.which(tool, path=path) is None]
    if missing:
        return f"missing host tools {missing} (apt-get install them as .ci/run does)"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the real-cluster tier cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.cluster)
    items.sort(key=lambda item: LAST.index(item.path.name) + 1 if HERE in item.path.parents and item.path.name in LAST
               else 0)  # stable: everything else keeps its order
    if not any(HERE in item.path.parents for item in items) or _unavailable():
        return
    try:
        resolve_node_binaries(progress=sys.__stderr__ or sys.stderr)
        resolve_render_tools(progress=sys.__stderr__ or sys.stderr)  # helm, for test_helm_chart.py
        config.stash[_IMAGE] = image.build(IMAGE_ARCHIVE, progress=_say)
    except (BinariesUnavailable, ImageError, HostError) as error:
        config.stash[_PREPARED] = error


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _unavailable()
    if reason:
        _skip_or_fail(reason)
    prepared = request.config.stash.get(_PREPARED, None)
    if prepared is not None:
        _skip_or_fail(str(prepared))
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), progress=_say)
    with exclusive():  # no other cluster starts or stops between the snapshot and `up`
        before = HostSnapshot.take()
        try:
            cluster.up()
        except (ClusterError, HostError) as error:
            _skip_or_fail(f"cluster up failed: {error}")
    try:
        cluster.import_image(request.config.stash[_IMAGE])
    except BaseException:
        cluster.down()
        raise
    try:
        yield cluster
    finally:
        with exclusive():
            cluster.down()
            after = HostSnapshot.take()
        changes = before.diff(after)
        if changes:
            pytest.fail(f"`cluster down` did not restore the host: {changes}", pytrace=False)


def _say(line: str) -> None:
    print(line, file=sys.__stderr__ or sys.stderr, flush=True)


@pytest.fixture(scope="session")
def deployed(real_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """`make deploy` against the cluster: kubectl apply -k manifests/, driftguard certs install, rollouts."""
    deployed = Deployed.on(real_cluster, tmp_path_factory.mktemp("deploy") / "cluster-ca", REPO)
    result = deployed.make("deploy")
    assert result.returncode == 0, f"make deploy failed:\n{result.stdout}\n{result.stderr}"
    eventually(lambda: webhook_answers(deployed), "the webhook answering through its Service")
    return deployed


@pytest.fixture(scope="session")
def cluster_admin(real_cluster: Cluster) -> Iterator[Kube]:
    with real_cluster.admin() as kube:
        yield kube
