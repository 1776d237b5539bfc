"""The UI's actions and sign-in modes over HTTP, against the real parts: a real API server, a real in-process
reconciler, ``driftguard ui`` as a process (gunicorn, TLS) reading as its ServiceAccount ``driftguard-ui``.

* Sync: the UI asks the reconciler with its own ServiceAccount token for the audience driftguard-reconciler
  (``--reconciler-token-file``, as the projected volume in manifests/ui.yaml), naming the signed-in user; a
  user RBAC lets ``sync`` syncs (recorded "… via driftguard-ui"), one it does not is refused with the rule
  to grant (by the UI, and by the reconciler when asked directly), the same header from a caller that is
  not the UI's ServiceAccount is refused by the reconciler, and so is the UI's plain API-server token with
  it (and the reconciler's token is refused by the API server).
* Proxy sign-in: with ``--client-ca-file``, a caller presenting a client certificate from that CA and
  X-Remote-User/X-Remote-Group is that user (and may sync with that user's RBAC); the same headers with
  no certificate, or one from another CA, reach nothing.
* Sync reaching a standby (the Service reaches every replica): passed on to the leader with the user's name,
  and decided by that user's RBAC on both (the standby asks before passing it on, the leader afresh).
* Sync's token file missing at start-up: one warning naming the flag, the path and the fix; the UI serves,
  and Sync answers that it is not configured. A token that is there is never logged.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support.reconciler_harness import ROOT, Harness, Repo, apply_admin, configmap, wait_for

from certs.authority import CertificateAuthority
from driftguard.kube import Kube, KubeError
from driftguard.local.controlplane import serviceaccount_token
from driftguard.local.controlplane.identities import write_token_kubeconfig
from driftguard.local.controlplane.processes import free_port
from reconciler.delegation import AUDIENCE, GROUPS_HEADER, USER_HEADER

pytestmark = pytest.mark.integration
UI_NS, UI_SA = "driftguard-system", "driftguard-ui"
UI_ACCOUNT = f"{UI_NS}/{UI_SA}"
LOGIN_USER, LOGIN_GROUP = "alice@example.org", "app-team"


class UI:
    """``driftguard ui`` as a process; ``session()`` a browser-like HTTP client trusting its CA."""

    def __init__(self, url: str, ca: Path, process: subprocess.Popen[bytes], login_token: str, log: Path) -> None:
        self.url, self.ca, self.process, self.login_token, self.log = url, ca, process, login_token, log

    def session(self, cert: tuple[str, str] | None = None) -> requests.Session:
        http = requests.Session()
        http.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise win over verify
        http.verify = str(self.ca)
        if cert is not None:
            http.cert = cert
        return http

    def sign_in(self, token: str) -> requests.Session:
        http = self.session()
        page = http.get(f"{self.url}/login", timeout=10)
        answer = http.post(f"{self.url}/login", data={"token": token, "csrf_token": csrf(page.text)}, timeout=10)
        assert answer.status_code == 200 and "Sign out" in answer.text, answer.text[:500]
        return http


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def flash(html: str) -> str:
    found = re.search(r'<p class="flash (\w+)" role="status">(.*?)</p>', html, re.S)
    assert found, "no message on the page"
    return f"{found.group(1)}: {found.group(2)}".replace("&#39;", "'").replace("&#34;", '"').replace("&amp;", "&")


@pytest.fixture(scope="module")
def ui_kubeconfig(admin: Kube, reconciler_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The UI's own identity: ServiceAccount driftguard-ui with manifests/rbac-ui.yaml (read-only, no Secrets)."""
    for document in yaml.safe_load_all((ROOT / "manifests" / "rbac-ui.yaml").read_text()):
        if document:
            apply_admin(admin, document)
    ca = tmp_path_factory.mktemp("ui-sa") / "ca.crt"
    ca.write_text(Path(admin._api.configuration.ssl_ca_cert).read_text())
    token = serviceaccount_token(admin, UI_NS, UI_SA)
    return write_token_kubeconfig(ca.parent / "ui.kubeconfig", admin.server, ca, UI_SA, token)


@pytest.fixture(scope="module")
def ui_reconciler_token(admin: Kube, ui_kubeconfig: Path) -> Path:
    """What manifests/ui.yaml projects for the UI's Sync: its ServiceAccount's token for the reconciler only."""
    token = serviceaccount_token(admin, UI_NS, UI_SA, audiences=[AUDIENCE])
    path = ui_kubeconfig.parent / "reconciler-token"
    path.write_text(token + "\n")
    return path


@pytest.fixture
def start_ui(ui_kubeconfig: Path, ui_reconciler_token: Path, tmp_path: Path) -> Iterator[Callable[..., UI]]:
    started: list[UI] = []

    def start(reconciler_url: str, *extra: str) -> UI:
        directory = tmp_path / f"ui-{len(started)}"
        ca, _ = CertificateAuthority.load_or_generate(directory, "test-ui-ca")
        ca.issue_serving("driftguard-ui", ["localhost"], ["127.0.0.1"]).write(directory / "tls.crt",
                                                                              directory / "tls.key")
        token = "login-" + directory.name + "-not-a-kubernetes-token"
        (directory / "login").write_text(token + "\n")
        port = free_port()
        argv = [sys.executable, "-m", "driftguard.cli", "ui", "--kubeconfig", str(ui_kubeconfig),
                "--port", str(port), "--cert-file", str(directory / "tls.crt"),
                "--key-file", str(directory / "tls.key"), "--reconciler-url", reconciler_url,
                "--reconciler-token-file", str(ui_reconciler_token),
                "--login-token-file", str(directory / "login"), "--login-user", LOGIN_USER,
                "--login-groups", LOGIN_GROUP, "--access-cache-seconds", "0.5", "--log-format", "text", *extra]
        with (directory / "ui.log").open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        ui = UI(f"https://127.0.0.1:{port}", directory / "ca.crt", process, token, directory / "ui.log")
        started.append(ui)
        context = ssl.create_default_context(cafile=str(ui.ca))

        def ready() -> bool:
            assert process.poll() is None, (directory / "ui.log").read_text()
            try:
                with urllib.request.urlopen(f"{ui.url}/readyz", timeout=2, context=context) as answer:
                    return bool(answer.status == 200)
            except (OSError, urllib.error.URLError):
                return False
        wait_for(ready, 60, 0.2, what="the UI to answer /readyz")
        return ui

    yield start
    for ui in started:
        ui.process.terminate()
        try:
            ui.process.wait(15)
        except subprocess.TimeoutExpired:
            ui.process.kill()
            ui.process.wait(5)


def grant(admin: Kube, namespace: str, name: str, verbs: list[str], subject: dict[str, str]) -> None:
    """A Role on applications.driftguard.io with ``verbs``, bound to ``subject``."""
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    admin.request("POST", f"{base}/roles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
        "rules": [{"apiGroups": ["driftguard.io"], "resources": ["applications"], "verbs": verbs}]})
    admin.request("POST", f"{base}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject} if subject["kind"] != "ServiceAccount"
                     else subject]})


def manual_app(harness: Harness, repo: Repo, admin: Kube, group: str) -> str:
    """Application ``manual`` (one ConfigMap, no ``automated``) in the test's namespace, which ``group`` may
    sync; the namespace."""
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    repo.commit("alpha")
    harness.make_app("manual", repo, automated=False)
    grant(admin, harness.namespace, group, ["get", "list", "sync"], {"kind": "Group", "name": group})
    return harness.namespace


def post_sync(url: str, token: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST", data=json.dumps({"wait": 30}).encode(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def initiators(harness: Harness, name: str) -> list[str]:
    return [str(h.get("initiator")) for h in harness.status(name).get("history") or []]


def test_sync_from_the_ui_runs_for_the_users_own_rbac_and_a_forged_delegation_is_refused(
        harness: Harness, repo: Repo, start_ui: Callable[..., UI], admin: Kube, ui_reconciler_token: Path) -> None:
    ns = harness.namespace
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    repo.write("auto/b.yaml", configmap("beta", {"k": "1"}))
    sha = repo.commit("alpha, beta")
    harness.make_app("manual", repo, automated=False)
    harness.make_app("auto", repo, "auto")
    service = harness.start(ui_service_account=UI_ACCOUNT)
    harness.wait_condition("manual", "Ready", "False", "OutOfSync")
    grant(admin, ns, "app-team", ["get", "list", "sync"], {"kind": "Group", "name": LOGIN_GROUP})
    grant(admin, ns, "viewer", ["get", "list"], {"kind": "ServiceAccount", "name": "bob", "namespace": ns})
    bob_token = serviceaccount_token(admin, ns, "bob", bound=False)
    bob = f"system:serviceaccount:{ns}:bob"
    ui = start_ui(service.url)
    page_url = f"{ui.url}/applications/{ns}/manual"

    # alice (local mode's login token: no Kubernetes token to forward) may sync: the button is enabled
    alice = ui.sign_in(ui.login_token)
    page = alice.get(page_url, timeout=10).text
    assert '<button type="submit" id="sync">' in page
    assert alice.post(f"{page_url}/sync", data={"csrf_token": "wrong"}, timeout=10).status_code == 403  # CSRF
    assert initiators(harness, "manual") == []
    answer = alice.post(f"{page_url}/sync", data={"csrf_token": csrf(page)}, timeout=60)
    assert answer.status_code == 200
    assert flash(answer.text) == (f"ok: synced {ns}/manual at {sha[:7]} by {LOGIN_USER} via driftguard-ui: Succeeded "
                                  "(1 created)")
    wait_for(lambda: initiators(harness, "manual") == [f"{LOGIN_USER} via driftguard-ui"], 30,
             what="the sync in status.history as alice via the UI")

    # an automated Application has no Sync button: it says git syncs it, Refresh fetches now
    auto = alice.get(f"{ui.url}/applications/{ns}/auto", timeout=10).text
    assert 'id="sync"' not in auto and "Automated: git's changes are synced by themselves" in auto

    # bob may only look: the button is disabled with the reason, and a POST anyway is refused by the UI
    viewer = ui.sign_in(bob_token)
    page = viewer.get(page_url, timeout=10).text
    assert 'id="sync" disabled' in page and "that needs RBAC verb <code>sync</code>" in page
    refused = viewer.post(f"{page_url}/sync", data={"csrf_token": csrf(page)}, timeout=30)
    assert flash(refused.text) == (f"refused: {bob} may not sync Application {ns}/manual: grant them verb 'sync' on "
                                   f"applications.driftguard.io in namespace {ns} (a Role rule {{apiGroups: "
                                   "[driftguard.io], resources: [applications], verbs: [sync]})")

    # the reconciler decides again: the UI's own token naming bob is refused for bob, naming the rule
    ui_token = ui_reconciler_token.read_text().strip()
    sync_url = f"{service.url}/sync/{ns}/manual"
    status, body = post_sync(sync_url, ui_token, {USER_HEADER: bob, GROUPS_HEADER: "system:authenticated"})
    assert status == 403 and body["error"].startswith(
        f"{bob} via driftguard-ui may not sync Application {ns}/manual: grant {bob} verb \"sync\"")
    # a forged delegation: bob's own token naming alice is refused outright, whatever alice may do
    status, body = post_sync(sync_url, bob_token, {USER_HEADER: LOGIN_USER, GROUPS_HEADER: LOGIN_GROUP})
    assert status == 403 and f"{bob} sent {USER_HEADER}, which only the web UI's ServiceAccount {UI_ACCOUNT}" \
        in body["error"]
    # the UI's token naming alice is her sync, as the reconciler records it
    status, body = post_sync(sync_url, ui_token, {USER_HEADER: LOGIN_USER, GROUPS_HEADER: LOGIN_GROUP})
    assert status == 200 and body["initiator"] == f"{LOGIN_USER} via driftguard-ui"
    assert initiators(harness, "manual") == [f"{LOGIN_USER} via driftguard-ui"] * 2
    # the UI's plain API-server token (what it reads with) naming alice is refused, saying which token to use
    plain = serviceaccount_token(admin, UI_NS, UI_SA)
    status, body = post_sync(sync_url, plain, {USER_HEADER: LOGIN_USER, GROUPS_HEADER: LOGIN_GROUP})
    assert status == 401 and f"needs a ServiceAccount token for audience {AUDIENCE}" in body["error"] \
        and "--reconciler-token-file" in body["error"], body
    # and the reconciler's token, taken from the wire, is worth nothing against the API server
    with pytest.raises(KubeError) as stolen:
        admin.with_token(ui_token).request("GET", f"/api/v1/namespaces/{ns}/configmaps")
    assert stolen.value.status == 401
    assert initiators(harness, "manual") == [f"{LOGIN_USER} via driftguard-ui"] * 2
    logged = ui.log.read_text()
    assert "Sync will not work" not in logged and ui_token not in logged


def test_the_uis_sync_reaching_a_standby_is_passed_on_to_the_leader_for_the_users_own_rbac(
        harness: Harness, repo: Repo, start_ui: Callable[..., UI], admin: Kube, ui_reconciler_token: Path) -> None:
    """In a cluster the UI's --reconciler-url is the Service, which reaches standbys too. A standby passes the
    UI's delegated sync (its token for the audience driftguard-reconciler, naming the user) on to the leader with
    the names; RBAC is asked about the named user, by the standby before it passes the sync on and by the leader
    afresh: alice's Sync from the UI runs on the leader as "alice via driftguard-ui" (without the names passed on,
    the leader would refuse the UI's token, which is not for its own audience), and the same request naming bob,
    who may not sync, is refused naming him."""
    ns = manual_app(harness, repo, admin, LOGIN_GROUP)
    bob = "bob@example.org"  # a user with no grant at all
    with harness.leader_and_standby(ui_service_account=UI_ACCOUNT) as (_, standby):
        ui = start_ui(standby.url)
        alice = ui.sign_in(ui.login_token)
        page_url = f"{ui.url}/applications/{ns}/manual"
        answer = alice.post(f"{page_url}/sync", data={"csrf_token": csrf(alice.get(page_url, timeout=10).text)},
                            timeout=60)
        assert flash(answer.text).startswith(f"ok: synced {ns}/manual at ") \
            and f"by {LOGIN_USER} via driftguard-ui: Succeeded" in flash(answer.text), flash(answer.text)
        assert initiators(harness, "manual") == [f"{LOGIN_USER} via driftguard-ui"]
        assert harness.cm("alpha") is not None and not standby.controller.states  # the standby ran nothing

        sync_url = f"{standby.url}/sync/{ns}/manual"
        ui_token = ui_reconciler_token.read_text().strip()
        status, body = post_sync(sync_url, ui_token, {USER_HEADER: bob, GROUPS_HEADER: "system:authenticated"})
        assert status == 403 and body["error"].startswith(
            f"{bob} via driftguard-ui may not sync Application {ns}/manual: grant {bob} verb \"sync\""), body
        status, body = post_sync(sync_url, ui_token, {USER_HEADER: LOGIN_USER, GROUPS_HEADER: LOGIN_GROUP})
        assert status == 200 and body["initiator"] == f"{LOGIN_USER} via driftguard-ui", body
        assert initiators(harness, "manual") == [f"{LOGIN_USER} via driftguard-ui"] * 2


def test_a_missing_sync_token_is_one_warning_at_start_up_and_the_ui_serves_on(
        harness: Harness, repo: Repo, start_ui: Callable[..., UI], admin: Kube, tmp_path: Path) -> None:
    ns = manual_app(harness, repo, admin, LOGIN_GROUP)
    missing = tmp_path / "not-mounted" / "token"
    ui = start_ui("http://127.0.0.1:9", "--reconciler-token-file", str(missing))  # serving: /readyz answered

    warnings = [line for line in ui.log.read_text().splitlines() if "Sync will not work" in line]
    assert len(warnings) == 1, warnings
    assert "WARNING" in warnings[0] and (
        f"--reconciler-token-file {missing} cannot be read (No such file or directory). Mount the projected "
        "volume from manifests/ui.yaml (a serviceAccountToken with audience: driftguard-reconciler") in warnings[0]
    alice = ui.sign_in(ui.login_token)
    page_url = f"{ui.url}/applications/{ns}/manual"
    page = alice.get(page_url, timeout=10).text
    answer = alice.post(f"{page_url}/sync", data={"csrf_token": csrf(page)}, timeout=30)
    assert answer.status_code == 200
    assert flash(answer.text).startswith("refused: sync is not configured: cannot read the UI's token for the "
                                         f"reconciler (--reconciler-token-file {missing}: No such file")
    assert len([line for line in ui.log.read_text().splitlines() if "Sync will not work" in line]) == 1


def test_proxy_sign_in_needs_the_proxys_client_certificate(
        harness: Harness, repo: Repo, start_ui: Callable[..., UI], admin: Kube, tmp_path: Path) -> None:
    ns = manual_app(harness, repo, admin, "proxied-team")
    service = harness.start(ui_service_account=UI_ACCOUNT)
    proxy_ca = CertificateAuthority.generate("test-front-proxy-ca")
    proxy_ca.credential.write(tmp_path / "proxy-ca.crt", tmp_path / "proxy-ca.key")
    proxy_ca.issue_client("front-proxy").write(tmp_path / "proxy.crt", tmp_path / "proxy.key")
    CertificateAuthority.generate("someone-else").issue_client("front-proxy").write(
        tmp_path / "stranger.crt", tmp_path / "stranger.key")
    ui = start_ui(service.url, "--client-ca-file", str(tmp_path / "proxy-ca.crt"),
                  "--proxy-user-header", "X-Remote-User", "--proxy-groups-header", "X-Remote-Group")
    asserted = {"X-Remote-User": "carol", "X-Remote-Group": "proxied-team,system:authenticated"}

    proxy = ui.session(cert=(str(tmp_path / "proxy.crt"), str(tmp_path / "proxy.key")))
    page = proxy.get(f"{ui.url}/", headers=asserted, timeout=10)
    assert page.status_code == 200 and '<span title="proxied-team, system:authenticated">carol</span>' in page.text
    assert f"data-app='{ns}/manual'" in page.text or f'data-app="{ns}/manual"' in page.text
    # carol has no Kubernetes token the UI could forward; her Sync goes by the UI's ServiceAccount, for her
    app_page = proxy.get(f"{ui.url}/applications/{ns}/manual", headers=asserted, timeout=10).text
    synced = proxy.post(f"{ui.url}/applications/{ns}/manual/sync", headers=asserted,
                        data={"csrf_token": csrf(app_page)}, timeout=60)
    assert flash(synced.text).startswith(f"ok: synced {ns}/manual at ") and "by carol via driftguard-ui" in synced.text
    # through the proxy, no user header is nobody: the sign-in form
    nobody = proxy.get(f"{ui.url}/", timeout=10, allow_redirects=False)
    assert nobody.status_code == 302 and "/login" in nobody.headers["Location"]

    # the same headers without the proxy's certificate, or with another CA's, reach nothing
    for cert in (None, (str(tmp_path / "stranger.crt"), str(tmp_path / "stranger.key"))):
        try:
            answer = ui.session(cert=cert).get(f"{ui.url}/", headers=asserted, timeout=10, allow_redirects=False)
        except requests.exceptions.RequestException:
            continue  # the handshake failed
        assert answer.status_code in (401, 403) and "carol" not in answer.text, (cert, answer.status_code)
    assert initiators(harness, "manual") == ["carol via driftguard-ui"]
