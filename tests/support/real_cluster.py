"""driftguard deployed into a real cluster (tests/cluster) the way a user does it: ``make deploy``,
kubectl with a kubeconfig, the ``driftguard`` CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftguard.local.cluster import Cluster


@dataclass
class Deployed:
    """driftguard installed by `make deploy`, as a user would."""

    cluster: Cluster
    kubectl: Path
    ca_dir: Path
    repo: Path

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.cluster.admin_kubeconfig),
                "PATH": f"{self.kubectl.parent}:{os.environ.get('PATH', '')}"}

    def make(self, target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "--no-print-directory", target, f"LOCAL_DIR={self.ca_dir.parent}",
                               f"VENV={Path(sys.executable).parent.parent}"],
                              cwd=self.repo, env=self.env(), capture_output=True, text=True, timeout=600, check=False)

    def kubectl_run(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None,
                    check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.kubectl), *args], env=self.env(kubeconfig), input=stdin,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def driftguard(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "driftguard.cli", *args], env=self.env(), input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)


AUTHOR = ("Alice Example", "alice@example.org")


def eventually(check: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout:.0f}s: {what}")
        time.sleep(0.5)



def secret_for(info: Mapping[str, str], name: str, namespace: str = "driftguard-system") -> dict[str, Any]:
    """The Application's repository Secret for the cluster's git server: login and its CA."""
    values = {"username": info["git_username"], "password": info["git_password"],
              "ca.crt": Path(info["git_ca_file"]).read_text(), "url": info["git_url"]}  # the URLs its login serves
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}}


class Repo:
    """A working copy on the host whose commits land in a bare repository the git server serves."""

    def __init__(self, work: Path, bare: Path, path: str) -> None:
        self.work, self.bare, self.path = work, bare, path
        work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, capture_output=True)
        self.git("remote", "add", "origin", str(bare))

    def git(self, *args: str) -> str:
        author = ["-c", f"user.name={AUTHOR[0]}", "-c", f"user.email={AUTHOR[1]}"]
        result = subprocess.run(["git", *author, *args], cwd=self.work, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
        return result.stdout

    def write(self, files: dict[str, str]) -> None:
        base = self.work / self.path
        base.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (base / name).write_text(text)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD").strip()


def webhook_answers(deployed: Deployed) -> bool:
    """Rolled out is not reachable: kube-proxy programs the Service's ClusterIP a moment after the pods are
    Ready (connection refused until then). A server-side dry-run create of an Application is judged by
    the webhook (allowed or denied), which only an answering webhook can do."""
    probe = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
             "metadata": {"name": "probe", "namespace": "driftguard-system"},
             "spec": {"project": "default", "source": {"repoURL": "https://127.0.0.1:1/probe.git", "path": "."},
                      "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}}}
    result = deployed.kubectl_run("create", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(probe),
                                  check=False)
    return "failed calling webhook" not in result.stderr
