"""driftguard deployed into a real cluster (tests/cluster) the way a user does it: ``make deploy``,
kubectl with a kubeconfig, the ``driftguard`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
