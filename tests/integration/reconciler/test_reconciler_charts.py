"""Charts from OCI registries and from Helm repositories that need a login, against real servers on loopback:
the CNCF distribution registry (``tools/registry``) over TLS with htpasswd auth, charts pushed by the real
``helm push``; and a Helm repository served over TLS with Basic auth. Each chart is synced to the real API
server and checked object by object, followed when a new version is pushed, and refused — with a condition
naming what to fix, nothing applied or pruned — when the login is wrong or would travel unencrypted.
"""

from __future__ import annotations

import functools
import http.server
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.oci_registry import OCIRegistry
from support.reconciler_harness import Harness, Repo, login_leaks, render_tools, wait_for
from support.tls_server import LoopbackTLS, basic_login, serving_context

from certs import CertificateAuthority

pytestmark = pytest.mark.integration

USER = "chart-reader"
PASSWORD = "pw-" + secrets.token_hex(12)
WRONG = "wrong-" + secrets.token_hex(12)

TEMPLATE = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {{{{ .Release.Name }}}}-web}}\n"
            "data: {{version: {{{{ .Chart.Version | quote }}}}, from: {origin}}}\n")
EXTRA = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-extra}\ndata: {kept: 'yes'}\n"


@pytest.fixture
def registry(tmp_path: Path, ca: CertificateAuthority) -> Iterator[OCIRegistry]:
    with OCIRegistry(tmp_path / "registry", ca=ca, users={USER: PASSWORD}) as served:
        served.login(USER)
        yield served


def chart_app(harness: Harness, name: str, repo_url: str, chart: str, target: str, *, secret: str = "",
              release: str = "shop") -> None:
    source: dict[str, Any] = {"repoURL": repo_url, "chart": chart, "targetRevision": target,
                              "helm": {"releaseName": release}}
    if secret:
        source["secretRef"] = {"name": secret}
    harness.make_app(name, repo_url, path="", source=source, refreshInterval="1s")


def data(harness: Harness, name: str) -> dict[str, str]:
    return dict((harness.cm(name) or {}).get("data") or {})


def leaks(text: str) -> list[str]:
    return login_leaks(text, USER, PASSWORD, WRONG)


def test_a_chart_from_an_oci_registry_is_pulled_by_digest_synced_and_followed(
    registry: OCIRegistry, harness: Harness, ca: CertificateAuthority,
) -> None:
    first = registry.push("web", "1.0.0", TEMPLATE.format(origin="oci") + EXTRA)
    harness.put_secret("registry-creds", {"url": f"oci://{registry.host}/charts", "username": USER,
                                           "password": PASSWORD, "ca.crt": ca.cert_pem.decode()})
    chart_app(harness, "svc", f"oci://{registry.host}/charts", "web", "^1.0", secret="registry-creds")
    # Argo CD's scheme-less form, an exact version, the same Secret
    chart_app(harness, "pinned", f"{registry.host}/charts", "web", "1.0.0", secret="registry-creds",
              release="pinned")
    harness.start()

    status = harness.wait_synced("svc", first.split(":", 1)[1][:40], timeout=60)
    assert status["sync"]["renderedBy"] == "helm v4.3.2" and status["sync"]["message"] == "chart web 1.0.0"
    assert data(harness, "shop-web") == {"version": "1.0.0", "from": "oci"}
    assert data(harness, "shop-extra") == {"kept": "yes"}
    harness.wait_synced("pinned", first.split(":", 1)[1][:40], timeout=30)
    assert data(harness, "pinned-web") == {"version": "1.0.0", "from": "oci"}

    newer = registry.push("web", "1.1.0", TEMPLATE.format(origin="newer"))  # and without the extra object
    wait_for(lambda: data(harness, "shop-web").get("version") == "1.1.0", timeout=60,
             what="the highest version matching ^1.0, by polling the registry's tags")
    harness.wait_synced("svc", newer.split(":", 1)[1][:40], timeout=30)
    wait_for(lambda: harness.cm("shop-extra") is None, timeout=30, what="what 1.1.0 no longer renders is pruned")
    assert data(harness, "pinned-web")["version"] == "1.0.0", "an exact version stays"

    registry.push("web", "2.0.0", TEMPLATE.format(origin="too-new"))  # outside ^1.0
    time.sleep(3)
    assert data(harness, "shop-web") == {"version": "1.1.0", "from": "newer"}


def test_an_oci_chart_takes_value_files_from_a_ref_source_in_git(
    registry: OCIRegistry, harness: Harness, ca: CertificateAuthority, repo: Repo,
) -> None:
    digest = registry.push("web", "1.0.0", "apiVersion: v1\nkind: ConfigMap\n"
                                           "metadata: {name: {{ .Release.Name }}-web}\n"
                                           "data: {color: {{ .Values.color | quote }}}\n")
    harness.put_secret("registry-creds", {"url": f"oci://{registry.host}", "username": USER,
                                           "password": PASSWORD, "ca.crt": ca.cert_pem.decode()})
    repo.write("envs/prod.yaml", "color: purple\n")
    values = repo.commit("prod values")
    harness.admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{harness.namespace}/applications", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "svc", "namespace": harness.namespace},
        "spec": {"project": "default", "destination": {"namespace": harness.namespace}, "refreshInterval": "1s",
                 "syncPolicy": {"automated": {"prune": True}}, "sources": [
                     {"repoURL": f"oci://{registry.host}/charts", "chart": "web", "targetRevision": "1.0.0",
                      "secretRef": {"name": "registry-creds"},
                      "helm": {"releaseName": "shop", "valueFiles": ["$values/envs/prod.yaml"]}},
                     {"repoURL": repo.url, "targetRevision": "main", "ref": "values"}]}})
    harness.start()
    status = harness.wait_synced("svc", digest.split(":", 1)[1][:40], timeout=60)
    assert status["sync"]["refs"] == {"values": values}
    assert data(harness, "shop-web") == {"color": "purple"}
    repo.write("envs/prod.yaml", "color: teal\n")
    repo.commit("teal")
    wait_for(lambda: data(harness, "shop-web").get("color") == "teal", timeout=60,
             what="a commit to the values repository alone re-renders the chart")


def test_a_chart_dependency_in_a_private_registry_is_fetched_with_the_secret_that_names_it(
    registry: OCIRegistry, harness: Harness, ca: CertificateAuthority, repo: Repo,
) -> None:
    registry.push("lib", "0.2.0", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-lib}\n"
                                  "data: {from: registry}\n")
    repo.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
                                   f"- name: lib\n  version: 0.2.0\n  repository: oci://{registry.host}/charts\n")
    repo.write("chart/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\n"
                                          "metadata: {name: {{ .Release.Name }}-own}\ndata: {from: git}\n")
    sha = repo.commit("a chart whose dependency is in a private registry")
    creds = {"username": USER, "password": PASSWORD, "ca.crt": ca.cert_pem.decode()}
    harness.put_secret("repos", {**creds, "url": repo.url})  # serves the git repository only
    harness.make_app("svc", repo, path="chart", refreshInterval="1s",
                     source={"helm": {"releaseName": "shop"}, "secretRef": {"name": "repos"}})
    harness.start()
    failed = harness.wait_condition("svc", "RenderReady", "False", "RenderFailed", timeout=60)
    assert "basic credential not found" in failed["message"], failed["message"]  # TLS trusted, no login sent
    assert harness.cm("shop-own") is None, "the login is not sent where the Secret does not say it serves"

    harness.put_secret("repos", {**creds, "url": f"{repo.url}, oci://{registry.host}/charts"})
    repo.write("chart/values.yaml", "retry: 1\n")
    sha = repo.commit("retry once the Secret names the registry")
    harness.wait_synced("svc", sha, timeout=60)
    assert data(harness, "shop-lib") == {"from": "registry"} and data(harness, "shop-own") == {"from": "git"}


def test_a_wrong_registry_login_is_a_clear_condition_and_nothing_is_applied_or_pruned(
    registry: OCIRegistry, harness: Harness, ca: CertificateAuthority, caplog: pytest.LogCaptureFixture,
) -> None:
    first = registry.push("web", "1.0.0", TEMPLATE.format(origin="oci") + EXTRA)
    creds = {"url": f"oci://{registry.host}/charts", "username": USER, "password": PASSWORD,
             "ca.crt": ca.cert_pem.decode()}
    harness.put_secret("registry-creds", creds)
    chart_app(harness, "svc", f"oci://{registry.host}/charts", "web", "1.*", secret="registry-creds")
    chart_app(harness, "anonymous", f"oci://{registry.host}/charts", "web", "1.0.0", release="anonymous")
    harness.put_secret("ca-only", {"ca.crt": ca.cert_pem.decode()})
    harness.patch_app("anonymous", {"spec": {"source": {"secretRef": {"name": "ca-only"}}}})
    harness.start()
    harness.wait_synced("svc", first.split(":", 1)[1][:40], timeout=60)

    required = harness.wait_condition("anonymous", "SourceReady", "False", "AuthenticationRequired")
    assert "asks for a login" in required["message"] and "spec.source.secretRef" in required["message"]
    assert harness.cm("anonymous-web") is None

    harness.put_secret("registry-creds", {**creds, "password": WRONG})
    registry.push("web", "1.1.0", TEMPLATE.format(origin="newer"))  # would change shop-web and prune shop-extra
    harness.refresh("svc")
    failed = harness.wait_condition("svc", "SourceReady", "False", "AuthenticationFailed", timeout=30)
    assert f"oci://{registry.host}/charts/web" in failed["message"]
    assert "refused the login of the repository Secret" in failed["message"]
    assert "nothing applied or pruned" in failed["message"]
    time.sleep(2)
    assert data(harness, "shop-web") == {"version": "1.0.0", "from": "oci"}, "nothing applied"
    assert data(harness, "shop-extra") == {"kept": "yes"}, "nothing pruned"
    status = json.dumps(harness.app("svc"))
    events = json.dumps(harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/events")["items"])
    assert leaks(status) == [] and leaks(events) == [] and leaks(caplog.text) == []

    harness.put_secret("registry-creds", {**creds, "url": f"oci://{registry.host}/other-team"})
    harness.refresh("svc")
    refused = harness.wait_condition("svc", "SourceReady", "False", "CredentialsRefused", timeout=30)
    assert "is not under the URLs" in refused["message"]

    harness.put_secret("registry-creds", creds)  # fixed: the newer version is synced
    harness.refresh("svc")
    wait_for(lambda: data(harness, "shop-web").get("version") == "1.1.0", timeout=60, what="synced once fixed")


def test_a_registry_with_a_token_service_is_read_with_a_login_or_with_a_token_alone(
    tmp_path: Path, harness: Harness, ca: CertificateAuthority,
) -> None:
    with OCIRegistry(tmp_path / "token-registry", ca=ca, users={USER: PASSWORD}, token_auth=True) as served:
        served.login(USER)
        digest = served.push("web", "1.0.0", TEMPLATE.format(origin="token"))
        other = served.push("tok", "1.0.0", TEMPLATE.format(origin="token"))  # pulled with the token alone
        assert served.tokens is not None
        token = served.tokens.issue(USER, ["repository:charts/tok:pull"], 3600)
        base = {"url": f"oci://{served.host}/charts", "ca.crt": ca.cert_pem.decode()}
        harness.put_secret("login", {**base, "username": USER, "password": PASSWORD})
        harness.put_secret("token", {**base, "token": token})
        harness.put_secret("wrong", {**base, "username": USER, "password": WRONG})
        chart_app(harness, "with-login", f"oci://{served.host}/charts", "web", "1.0.0", secret="login",
                  release="with-login")
        chart_app(harness, "with-token", f"oci://{served.host}/charts", "tok", "1.0.0", secret="token",
                  release="with-token")
        chart_app(harness, "with-wrong", f"oci://{served.host}/charts", "web", "1.0.0", secret="wrong",
                  release="with-wrong")
        harness.start()
        harness.wait_synced("with-login", digest.split(":", 1)[1][:40], timeout=60)
        harness.wait_synced("with-token", other.split(":", 1)[1][:40], timeout=60)
        for name in ("with-login", "with-token"):
            assert data(harness, f"{name}-web") == {"version": "1.0.0", "from": "token"}, name
        failed = harness.wait_condition("with-wrong", "SourceReady", "False", "AuthenticationFailed", timeout=30)
        assert "token service refused the login" in failed["message"]
        assert harness.cm("with-wrong-web") is None
        granted = [scope for scope, ok in served.tokens.requests if ok]
        assert "repository:charts/web:pull" in granted, "helm and the reconciler went through the token service"
        assert any(not ok for _, ok in served.tokens.requests), "the wrong login was asked and refused"


def test_a_plain_http_registry_is_used_only_on_loopback_with_the_flag_and_never_with_a_login(
    tmp_path: Path, harness: Harness,
) -> None:
    with OCIRegistry(tmp_path / "plain", ca=None) as plain:
        digest = plain.push("web", "0.3.0", TEMPLATE.format(origin="plain"))
        chart_app(harness, "svc", f"oci://{plain.host}/charts", "web", "0.3.0")
        harness.start()
        refused = harness.wait_condition("svc", "SourceReady", "False", "FetchFailed", timeout=30)
        assert "--oci-plain-http-loopback" in refused["message"], refused["message"]
        assert harness.cm("shop-web") is None
        for service in harness.services:
            service.stop()

        harness.put_secret("login", {"url": f"oci://{plain.host}/charts", "username": USER, "password": PASSWORD})
        chart_app(harness, "with-login", f"oci://{plain.host}/charts", "web", "0.3.0", secret="login",
                  release="with-login")
        harness.start(oci_plain_http_loopback=True)
        harness.wait_synced("svc", digest.split(":", 1)[1][:40], timeout=60)
        assert data(harness, "shop-web") == {"version": "0.3.0", "from": "plain"}
        never = harness.wait_condition("with-login", "SourceReady", "False", "CredentialsRefused", timeout=30)
        assert "never sent a login" in never["message"]
        assert harness.cm("with-login-web") is None


# ---------------------------------------------------------------- a Helm repository behind Basic auth

class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if basic_login(self.headers.get("Authorization")) != (USER, PASSWORD):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


class PrivateChartRepository:
    """A Helm repository over TLS on 127.0.0.1 that answers only Basic auth with USER/PASSWORD."""

    def __init__(self, tmp_path: Path, ca: CertificateAuthority) -> None:
        self.helm, self.tmp = str(render_tools()["helm"]), tmp_path
        self.served = tmp_path / "served"
        self.served.mkdir(parents=True)
        (self.served / "charts").mkdir()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
            _AuthHandler, directory=str(self.served)))
        self.https = LoopbackTLS(server, serving_context(ca, "chart-repo-test", tmp_path), name="chart-repository")
        self.url = f"{self.https.base_url}/charts"

    def publish(self, version: str) -> str:
        source = self.tmp / f"lib-{version}" / "lib"
        (source / "templates").mkdir(parents=True)
        (source / "Chart.yaml").write_text(f"apiVersion: v2\nname: lib\nversion: {version}\n")
        (source / "templates" / "cm.yaml").write_text(TEMPLATE.format(origin="private").replace("-web", "-lib"))
        env = {"HOME": str(self.tmp), "PATH": "/usr/bin:/bin"}
        for argv in ([self.helm, "package", str(source), "--destination", str(self.served / "charts")],
                     [self.helm, "repo", "index", str(self.served / "charts"), "--url", self.url]):
            subprocess.run(argv, check=True, capture_output=True, env=env, timeout=60)
        index = yaml.safe_load((self.served / "charts" / "index.yaml").read_text())
        return next(e["digest"] for e in index["entries"]["lib"] if e["version"] == version)

    def close(self) -> None:
        self.https.stop()


def test_a_helm_repository_behind_basic_auth_is_read_with_the_repository_secret(
    tmp_path: Path, harness: Harness, ca: CertificateAuthority,
) -> None:
    served = PrivateChartRepository(tmp_path / "private", ca)
    try:
        digest = served.publish("0.1.0")
        chart_app(harness, "svc", served.url, "lib", "0.1.x")
        harness.start()
        required = harness.wait_condition("svc", "SourceReady", "False", "", timeout=30)
        assert required["reason"] in ("FetchFailed", "AuthenticationRequired"), required  # no CA, then no login
        harness.put_secret("ca-only", {"ca.crt": ca.cert_pem.decode()})
        harness.patch_app("svc", {"spec": {"source": {"secretRef": {"name": "ca-only"}}}})
        required = harness.wait_condition("svc", "SourceReady", "False", "AuthenticationRequired", timeout=30)
        assert "asks for a login" in required["message"]

        harness.put_secret("repo-creds", {"url": served.url, "username": USER, "password": PASSWORD,
                                           "ca.crt": ca.cert_pem.decode()})
        harness.patch_app("svc", {"spec": {"source": {"secretRef": {"name": "repo-creds"}}}})
        harness.wait_synced("svc", digest[:40], timeout=60)
        assert data(harness, "shop-lib") == {"version": "0.1.0", "from": "private"}

        harness.put_secret("repo-creds", {"url": served.url, "username": USER, "password": WRONG,
                                           "ca.crt": ca.cert_pem.decode()})
        served.publish("0.1.1")
        harness.refresh("svc")
        failed = harness.wait_condition("svc", "SourceReady", "False", "AuthenticationFailed", timeout=30)
        assert "refused the login of the repository Secret" in failed["message"]
        assert "nothing applied or pruned" in failed["message"]
        assert data(harness, "shop-lib")["version"] == "0.1.0"
        assert leaks(json.dumps(harness.app("svc"))) == []
    finally:
        served.close()


def test_a_chart_dependency_in_a_private_helm_repository_is_fetched_with_the_secret_that_names_it(
    tmp_path: Path, harness: Harness, ca: CertificateAuthority, repo: Repo,
) -> None:
    served = PrivateChartRepository(tmp_path / "private", ca)
    try:
        served.publish("0.1.0")
        repo.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
                                       f"- name: lib\n  version: 0.1.0\n  repository: {served.url}\n")
        sha = repo.commit("a chart whose dependency is in a private Helm repository")
        harness.put_secret("repos", {"username": USER, "password": PASSWORD, "ca.crt": ca.cert_pem.decode(),
                                      "url": f"{repo.url}\n{served.url}"})
        harness.make_app("svc", repo, path="chart", source={"helm": {"releaseName": "shop"},
                                                            "secretRef": {"name": "repos"}})
        harness.start()
        harness.wait_synced("svc", sha, timeout=60)
        assert data(harness, "shop-lib") == {"version": "0.1.0", "from": "private"}
    finally:
        served.close()
