"""driftguard deployed into a real cluster (tests/cluster) the way a user does it: ``make deploy``,
kubectl with a kubeconfig, the ``driftguard`` CLI — and the objects the tier's modules put in git (a
Deployment of the pause image, a Job of the driftguard image, an Application on the cluster's git server),
written once here so that every module declares them alike."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftguard.local.cluster import Cluster, image
from driftguard.local.cluster.node import PAUSE_IMAGE

SYSTEM = "driftguard-system"
WEBHOOK_PODS = "app.kubernetes.io/name=driftguard-webhook"


@dataclass
class Deployed:
    """driftguard installed by `make deploy`, as a user would."""

    cluster: Cluster
    kubectl: Path
    ca_dir: Path
    repo: Path

    @classmethod
    def on(cls, cluster: Cluster, ca_dir: Path, repo: Path) -> Deployed:
        """A handle on the running cluster with the kubectl it built; ``make`` runs in ``repo``."""
        state = cluster.state()
        assert state is not None, "no cluster state: is the cluster up?"
        return cls(cluster, Path(state.info["kubectl"]), ca_dir, repo)

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

    def laptop(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl as the ``laptop`` user (cluster-admin by RBAC: only admission stops it), never raising."""
        return self.kubectl_run(*args, kubeconfig=self.cluster.laptop_kubeconfig, stdin=stdin, check=False)

    def driftguard(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "driftguard.cli", *args], env=self.env(), input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)

    def get(self, *args: str) -> dict[str, Any] | None:
        """``kubectl get <args> -o json`` as the admin; None when NotFound (any other failure fails the test)."""
        result = self.kubectl_run("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        value: dict[str, Any] = json.loads(result.stdout)
        return value

    def must(self, *args: str) -> dict[str, Any]:
        value = self.get(*args)
        assert value is not None, f"{args} not found"
        return value

    def gone(self, *args: str) -> bool:
        result = self.kubectl_run("get", *args, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    def application_status(self, name: str) -> dict[str, Any]:
        return (self.get("application", name, "-n", SYSTEM) or {}).get("status") or {}

    def synced(self, name: str, revision: str) -> dict[str, Any] | None:
        """The Application's status once it is Synced at ``revision`` (for ``eventually``), else None."""
        status = self.application_status(name)
        sync = status.get("sync") or {}
        return status if sync.get("status") == "Synced" and sync.get("revision") == revision else None

    def apply_application(self, name: str, *, repo: str, path: str, namespace: str, enforcement: str = "deny") -> str:
        """An Application on the cluster's https git server (``<repo>.git``), self-healing and pruning, polled
        every 2 s, with its repository Secret ``<repo>-repo`` (login and CA); returns the repository's URL."""
        state = self.cluster.state()
        assert state is not None, "no cluster state"
        info = state.info
        url = f"{info['git_url']}/{repo}.git"
        application = {
            "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": SYSTEM},
            "spec": {
                "project": "default",
                "source": {"repoURL": url, "targetRevision": "main", "path": path,
                           "secretRef": {"name": f"{repo}-repo"}},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
                "enforcement": enforcement,
                "refreshInterval": "2s",
            },
        }
        self.kubectl_run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            secret_for(info, f"{repo}-repo"), application]}))
        return url

    def audit_records(self, *filters: str) -> list[dict[str, Any]]:
        """``driftguard audit --json`` over the webhook pods' logs, with the given filters (``--user``, …)."""
        logs = self.kubectl_run("logs", "-n", SYSTEM, "-l", WEBHOOK_PODS, "--tail=-1", "--prefix=false").stdout
        audit = self.driftguard("audit", "-", *filters, "--json", stdin=logs)
        assert audit.returncode == 0, audit.stderr
        return [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]

    def denials_of_controllers(self) -> list[dict[str, Any]]:
        """Audit records (deny or warn) whose user is a control-plane identity (``system:…``)."""
        return [r for r in self.audit_records() if str(r.get("user", "")).startswith("system:")]


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



def secret_for(info: Mapping[str, str], name: str, namespace: str = SYSTEM) -> dict[str, Any]:
    """The Application's repository Secret for the cluster's git server: login and its CA."""
    values = {"username": info["git_username"], "password": info["git_password"],
              "ca.crt": Path(info["git_ca_file"]).read_text(), "url": info["git_url"]}  # the URLs its login serves
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}}


def pause_deployment(name: str, namespace: str | None = None, *, replicas: int | None = 1,
                     labels: Mapping[str, str] | None = None, container: str = "web", cpu: str = "10m") -> str:
    """A Deployment of the node's pause image (imported, never pulled) as git declares it: its selector and
    pod labels (also the Deployment's own when given), no namespace when None (a Kustomize base), and no
    replicas when None (git leaves them to the cluster)."""
    selector = ", ".join(f"{key}: {value}" for key, value in (labels or {"app": name}).items())
    own_labels = f"  labels: {{{selector}}}\n" if labels else ""
    in_namespace = f"  namespace: {namespace}\n" if namespace else ""
    spec_replicas = f"  replicas: {replicas}\n" if replicas is not None else ""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
{in_namespace}{own_labels}spec:
{spec_replicas}  selector:
    matchLabels: {{{selector}}}
  template:
    metadata:
      labels: {{{selector}}}
    spec:
      containers:
        - name: {container}
          image: {PAUSE_IMAGE}
          imagePullPolicy: Never
          resources:
            requests: {{cpu: {cpu}, memory: 16Mi}}
            limits: {{memory: 32Mi}}
"""


def help_job(namespace: str, *, name: str = "", generate_name: str = "", container: str = "run",
             annotations: Mapping[str, str] | None = None) -> str:
    """A Job that runs the driftguard image's ``--help`` once (it succeeds, quickly, with no network)."""
    metadata = f"name: {name}" if name else f"generateName: {generate_name}"
    annotated = "".join(f"    {key}: {value}\n" for key, value in (annotations or {}).items())
    annotated = f"  annotations:\n{annotated}" if annotated else ""
    return f"""\
apiVersion: batch/v1
kind: Job
metadata:
  {metadata}
  namespace: {namespace}
{annotated}spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: {container}
          image: {image.IMAGE}
          imagePullPolicy: Never
          args: ["--help"]
          resources:
            requests: {{cpu: 10m, memory: 32Mi}}
            limits: {{memory: 128Mi}}
"""


class WriteStream:
    """Writes through the webhook, back to back, on a thread of its own while a test disrupts something
    (``write(n)`` makes the n-th and returns kubectl's result); records each result and its failures."""

    def __init__(self, write: Callable[[int], subprocess.CompletedProcess[str]]) -> None:
        self.write = write
        self.results: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            result = self.write(count)
            self.results.append((result.returncode, result.stderr.strip()))

    def __enter__(self) -> WriteStream:
        self._thread.start()
        try:
            eventually(lambda: len(self.results) >= 3, "the write stream running")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def more(self, what: str) -> None:
        """Wait for three more writes after what the test just did."""
        seen = len(self.results)
        eventually(lambda: len(self.results) >= seen + 3, f"writes after {what}")

    def failures(self) -> list[str]:
        return [err for code, err in self.results if code != 0]


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
             "metadata": {"name": "probe", "namespace": SYSTEM},
             "spec": {"project": "default", "source": {"repoURL": "https://127.0.0.1:1/probe.git", "path": "."},
                      "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}}}
    result = deployed.kubectl_run("create", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(probe),
                                  check=False)
    return "failed calling webhook" not in result.stderr
