"""``driftguard local demo``: the user's story, step by step, against a running local stack.

Each step does one thing a person would do — a git commit, a ``kubectl`` command from the laptop —
then waits (bounded) for the outcome, checks it, and prints what happened, what kubectl printed and
how long it took. The end-to-end test runs this same code and asserts every step's outcome, so the
demo cannot drift from what driftguard really does.

It uses the version-matched ``kubectl`` built with the control plane and the ``git`` command line
(GitPython stays confined to the reconciler).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from driftguard.core.names import NAMESPACE
from driftguard.local.controlplane.processes import State

APP: Final = "my-service"
NS: Final = "production"
PATH_IN_REPO: Final = "services/my-service/production"
AUTHOR: Final = ("Alice Example", "alice@example.org")
STEP_TIMEOUT: Final = 30.0


class DemoError(RuntimeError):
    """A step's outcome was not what driftguard promises."""


@dataclass
class Step:
    title: str
    ok: bool = False
    seconds: float = 0.0
    output: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Kubectl:
    binary: str
    kubeconfig: str

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, "--kubeconfig", self.kubeconfig, *args],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
        )
        if check and result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get(self, *args: str) -> dict[str, Any] | None:
        result = self.run("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise DemoError(f"kubectl get {' '.join(args)} failed: {result.stderr.strip()}")
        value: dict[str, Any] = json.loads(result.stdout)
        return value


class Demo:
    def __init__(self, directory: Path, out: TextIO, *, step_timeout: float = STEP_TIMEOUT) -> None:
        """``step_timeout``: how long each step may take to show its outcome (tests on a loaded machine
        give more; the timings printed are the real ones either way)."""
        self.step_timeout = step_timeout
        state = State.load(directory)
        if state is None or "reconciler" not in state.info:
            raise DemoError(f"{directory}: driftguard local is not up; run `driftguard local up --dir {directory}`")
        info = state.info
        kubectl = info.get("kubectl") or ""
        if not kubectl or not Path(kubectl).exists():
            raise DemoError("no version-matched kubectl was built; run `make controlplane`")
        self.directory = directory
        self.out = out
        self.admin = Kubectl(kubectl, info["admin_kubeconfig"])
        self.laptop = Kubectl(kubectl, info["laptop_kubeconfig"])
        self.reconciler = info["reconciler"]
        self.refresh_token_file = info.get("refresh_token_file", "")
        self.repo = directory / "demo-repo"
        self.steps: list[Step] = []

    # ------------------------------------------------------------------ the story

    def run(self) -> list[Step]:
        story: list[tuple[str, Callable[[Step], None]]] = [
            ("a git repository declares my-service (Namespace, Deployment, Service, ConfigMap)", self.create_repo),
            ("an Application points driftguard at it; the reconciler syncs from git", self.create_application),
            ("laptop: kubectl scale --replicas=9 is denied", self.laptop_scale_denied),
            ("laptop: an undeclared edit (an annotation git does not set) is allowed", self.undeclared_edit_allowed),
            ("git commit: replicas 3 -> 5; the cluster follows", self.commit_changes_replicas),
            ("git rm the ConfigMap; the reconciler prunes it", self.commit_prunes_configmap),
            ("enforcement: warn; a laptop edit is admitted with a warning and reverted", self.warn_and_self_heal),
            ("git revert the replicas commit; the cluster rolls back", self.git_revert_rolls_back),
            ("driftguard audit shows who tried what", self.audit_shows_attempts),
        ]
        for number, (title, action) in enumerate(story, 1):
            step = Step(f"{number}. {title}")
            self.out.write(f"\n== {step.title}\n")
            started = time.monotonic()
            try:
                action(step)
                step.ok = True
            finally:
                step.seconds = time.monotonic() - started
                self.steps.append(step)
                if step.output:
                    self.out.write("".join(f"   | {line}\n" for line in step.output.rstrip().splitlines()))
                self.out.write(f"   {'ok' if step.ok else 'FAILED'} ({step.seconds:.2f}s)\n")
                self.out.flush()
        return self.steps

    def create_repo(self, step: Step) -> None:
        if self.repo.exists():
            subprocess.run(["rm", "-rf", str(self.repo)], check=True)
        base = self.repo / PATH_IN_REPO
        base.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        for name, text in sample_manifests(replicas=3).items():
            (base / name).write_text(text)
        self._commit("my-service: initial production manifests")
        step.output = self._git("log", "--stat", "--format=%h %s (%an <%ae>)", "-1")

    def create_application(self, step: Step) -> None:
        self.admin.run("apply", "-f", "-", stdin=json.dumps(application(self.repo.as_uri())))
        head = self._git("rev-parse", "HEAD").strip()
        waited = self._until(lambda: self._synced(head), "the Application to be Synced at HEAD")
        deploy = self._deployment()
        step.facts.update(sync_seconds=waited, replicas=deploy["spec"]["replicas"])
        step.output = (f"synced {head[:7]} in {waited:.2f}s\n"
                       + self.admin.run("get", "deployment,service,configmap", "-n", NS).stdout)

    def laptop_scale_denied(self, step: Step) -> None:
        result = self.laptop.run("scale", f"deployment/{APP}", "-n", NS, "--replicas=9", check=False)
        step.output = f"$ kubectl scale deployment/{APP} -n {NS} --replicas=9\n{result.stderr}"
        if result.returncode == 0 or "declared in git (3)" not in result.stderr:
            raise DemoError(f"expected a denial naming git's value, got: {result.stdout}{result.stderr}")
        if self._deployment()["spec"]["replicas"] != 3:
            raise DemoError("replicas changed although the request was denied")

    def undeclared_edit_allowed(self, step: Step) -> None:
        result = self.laptop.run("annotate", f"deployment/{APP}", "-n", NS, "oncall=bob", "--overwrite")
        step.output = f"$ kubectl annotate deployment/{APP} -n {NS} oncall=bob\n{result.stdout}{result.stderr}"

    def commit_changes_replicas(self, step: Step) -> None:
        (self.repo / PATH_IN_REPO / "deployment.yaml").write_text(sample_manifests(replicas=5)["deployment.yaml"])
        sha = self._commit("my-service: scale to 5 for the launch")
        self._refresh()
        waited = self._until(lambda: self._deployment()["spec"]["replicas"] == 5, "replicas to become 5")
        step.facts.update(commit=sha, seconds=waited)
        step.output = f"commit {sha[:7]} pushed; replicas 5 in the cluster after {waited:.2f}s"

    def commit_prunes_configmap(self, step: Step) -> None:
        self._git("rm", "-q", f"{PATH_IN_REPO}/configmap.yaml")
        sha = self._commit("my-service: drop the unused ConfigMap")
        self._refresh()
        waited = self._until(lambda: self.admin.get("configmap", f"{APP}-config", "-n", NS) is None,
                             "the ConfigMap to be pruned")
        step.output = f"commit {sha[:7]}; ConfigMap {NS}/{APP}-config deleted after {waited:.2f}s"

    def warn_and_self_heal(self, step: Step) -> None:
        self._set_enforcement("warn")
        result = self.laptop.run("set", "image", f"deployment/{APP}", "-n", NS, "app=nginx:1.27-debug")
        step.output = (f"$ kubectl set image deployment/{APP} -n {NS} app=nginx:1.27-debug\n"
                       f"{result.stderr}{result.stdout}")
        if "Warning:" not in result.stderr or "declared in git" not in result.stderr:
            raise DemoError(f"expected an admission warning, got: {result.stderr}")
        waited = self._until(lambda: self._image() == "nginx:1.27", "self-heal to restore git's image")
        step.facts.update(revert_seconds=waited)
        step.output += f"self-heal restored image nginx:1.27 after {waited:.2f}s"
        self._set_enforcement("deny")

    def git_revert_rolls_back(self, step: Step) -> None:
        replicas_commit = self.steps[4].facts["commit"]
        self._git("revert", "--no-edit", replicas_commit)
        self._refresh()
        waited = self._until(lambda: self._deployment()["spec"]["replicas"] == 3, "replicas to return to 3")
        step.output = f"git revert {replicas_commit[:7]}; replicas back to 3 after {waited:.2f}s"

    def audit_shows_attempts(self, step: Step) -> None:
        table = subprocess.run(
            [sys.executable, "-m", "driftguard.cli", "audit", "--dir", str(self.directory), "--user", "laptop"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        step.output = f"$ driftguard audit --dir {self.directory} --user laptop\n{table}"
        if "deny" not in table or "warn" not in table:
            raise DemoError("the audit trail lacks the denied scale or the warned edit")

    # ------------------------------------------------------------------ helpers

    def _git(self, *args: str) -> str:
        env_author = ["-c", f"user.name={AUTHOR[0]}", "-c", f"user.email={AUTHOR[1]}"]
        result = subprocess.run(["git", *env_author, *args], cwd=self.repo, capture_output=True, text=True,
                                check=False, timeout=30)
        if result.returncode != 0:
            raise DemoError(f"git {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def _commit(self, message: str) -> str:
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    def _refresh(self) -> None:
        """Tell the reconciler about the push, as a git host's webhook would."""
        if not self.reconciler.startswith("http://127.0.0.1:"):
            raise DemoError(f"unexpected reconciler address {self.reconciler!r}")
        token = Path(self.refresh_token_file).read_text().strip() if self.refresh_token_file else ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"{self.reconciler}/refresh", method="POST", data=b"",  # noqa: S310
                                         headers=headers)
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - loopback http, checked above
            pass

    def _synced(self, revision: str) -> bool:
        app = self.admin.get("application", APP, "-n", NAMESPACE) or {}
        sync = (app.get("status") or {}).get("sync") or {}
        return sync.get("status") == "Synced" and sync.get("revision") == revision

    def _deployment(self) -> dict[str, Any]:
        deploy = self.admin.get("deployment", APP, "-n", NS)
        if deploy is None:
            raise DemoError(f"Deployment {NS}/{APP} does not exist")
        return deploy

    def _image(self) -> str:
        return str(self._deployment()["spec"]["template"]["spec"]["containers"][0]["image"])

    def _set_enforcement(self, mode: str) -> None:
        self.admin.run("patch", "application", APP, "-n", NAMESPACE, "--type", "merge",
                       "-p", json.dumps({"spec": {"enforcement": mode}}))
        self._refresh()
        self._until(lambda: self._deployment()["metadata"]["annotations"].get("driftguard.io/enforcement") == mode,
                    f"objects to be stamped enforcement={mode}")

    def _until(self, condition: Callable[[], bool], what: str) -> float:
        started, timeout = time.monotonic(), self.step_timeout
        while time.monotonic() - started < timeout:
            if condition():
                return time.monotonic() - started
            time.sleep(0.05)
        raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def application(repo_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": PATH_IN_REPO},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            "enforcement": "deny",
            "refreshInterval": "2s",
        },
    }


def sample_manifests(replicas: int) -> dict[str, str]:
    return {
        "namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n",
        "deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {APP}
  namespace: {NS}
  labels: {{app.kubernetes.io/name: {APP}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app.kubernetes.io/name: {APP}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {APP}}}
    spec:
      containers:
        - name: app
          image: nginx:1.27
          ports: [{{containerPort: 8080, name: http}}]
          envFrom: [{{configMapRef: {{name: {APP}-config}}}}]
          resources:
            requests: {{cpu: 100m, memory: 64Mi}}
            limits: {{cpu: "1", memory: 128Mi}}
""",
        "service.yaml": f"""\
apiVersion: v1
kind: Service
metadata:
  name: {APP}
  namespace: {NS}
spec:
  selector: {{app.kubernetes.io/name: {APP}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
""",
        "configmap.yaml": f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {APP}-config
  namespace: {NS}
data:
  LOG_LEVEL: info
""",
    }


def print_next_steps(directory: Path, out: TextIO) -> None:
    state = State.load(directory)
    info = state.info if state else {}
    kubectl = info.get("kubectl", "kubectl")
    out.write(
        "\nThe stack is still running. Try it by hand:\n"
        f"  export KUBECONFIG={info.get('laptop_kubeconfig')}\n"
        f"  {kubectl} -n {NS} scale deployment/{APP} --replicas=7      # denied\n"
        f"  cd {directory / 'demo-repo'} && $EDITOR {PATH_IN_REPO}/deployment.yaml && git commit -am change\n"
        f"  driftguard status --kubeconfig {info.get('admin_kubeconfig')} -A\n"
        f"  driftguard audit --dir {directory}\n"
        "Stop it: make demo-down\n"
    )
