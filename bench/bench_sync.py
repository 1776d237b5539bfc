"""What an on-demand sync costs at the reconciler: ``POST /sync`` with the caller's own token against the web
UI's delegated form (its ServiceAccount token naming the user: the same TokenReview and SubjectAccessReview,
asked about the named user), for a manual Application of 20 ConfigMaps already in sync (each sync compares
and applies nothing new). A real control plane (or ``--kubeconfig``), ``driftguard reconcile`` as a process.

    .venv/bin/python bench/bench_sync.py [--syncs 20]
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from reconciler_bench import Repo, bulk, create_namespace, environment, make_app, parser, reconciler, summary, wait

from driftguard.local.controlplane import serviceaccount_token
from reconciler.delegation import AUDIENCE, GROUPS_HEADER, USER_HEADER

NS = "bench-sync"
UI_SA = "bench-ui"


def post(url: str, token: str, headers: dict[str, str]) -> tuple[float, dict[str, object]]:
    request = urllib.request.Request(url, method="POST", data=json.dumps({"wait": 60}).encode(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=90) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        raise SystemExit(f"POST /sync answered {error.code}: {error.read()[:300]!r}") from None
    return time.perf_counter() - started, body


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--syncs", type=int, default=20)
    args = p.parse_args()
    with environment(args) as (kubeconfig, admin, scratch):
        create_namespace(admin, NS)
        repo = Repo.create(scratch / "repo")
        bulk(repo, 20, per_file=20)
        repo.commit("20 ConfigMaps")
        make_app(admin, NS, "manual", repo, NS, syncPolicy={})
        user_token = serviceaccount_token(admin, NS, "bench-user", bound=False)
        ui_token = serviceaccount_token(admin, NS, UI_SA, bound=False, audiences=[AUDIENCE])  # as ui.yaml projects
        admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings", body={
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "bench-user"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "bench-user", "namespace": NS}]})
        user = f"system:serviceaccount:{NS}:bench-user"
        named = {USER_HEADER: user, GROUPS_HEADER: "system:serviceaccounts,system:authenticated"}
        with reconciler(kubeconfig, NS, scratch, "--ui-service-account", f"{NS}/{UI_SA}") as running:
            url = f"{running.url}/sync/{NS}/manual"
            wait(lambda: _known(url, user_token), 60, "the reconciler to know the Application")
            post(url, user_token, {})  # the first sync creates the ConfigMaps; then every one is a no-op
            figures: dict[str, list[float]] = {"own token": [], "delegated by the UI": []}
            for _ in range(args.syncs):  # interleaved, so both see the same load
                seconds, body = post(url, user_token, {})
                assert body["initiator"] == user, body
                figures["own token"].append(seconds)
                seconds, body = post(url, ui_token, named)
                assert body["initiator"] == f"{user} via {UI_SA}", body
                figures["delegated by the UI"].append(seconds)
        for name, samples in figures.items():
            print(f"POST /sync, {name}: {summary(samples)}")


def _known(url: str, token: str) -> bool:
    request = urllib.request.Request(url, method="POST", data=b'{"dryRun": true, "wait": 30}', headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return False


if __name__ == "__main__":
    main()
