"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against
``driftguard local up`` with the demo's real Application: what each page shows, live, and to whom.

Chromium is required under ``CI=true`` (``.ci/run`` installs it); elsewhere the tests say how to
install it. Screenshots of the main pages are written to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftguard.kube import Kube
from driftguard.local.demo import APP, NS, PATH_IN_REPO, Demo, Step

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("DRIFTGUARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
APP_NS = "driftguard-system"
APP_KEY = f"{APP_NS}/{APP}"
SECRET_VALUE = "hunter2-do-not-show"  # the value no page may contain
LIVE = 15.0  # seconds a live page may take to show a change (it polls every 2 s)


def _need_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    message = (f"the browser tests need Chromium at {CHROMIUM}: `apt-get install -y chromium` (Debian/Ubuntu), "
               "or point DRIFTGUARD_CHROMIUM at a Chromium binary")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def driftguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftguard.cli", *args], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL, check=False)


class Stack:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.info: dict[str, Any] = json.loads((directory / "state.json").read_text())["info"]
        self.demo = Demo(directory, io.StringIO(), step_timeout=120.0)  # generous: the machine may be loaded
        self.admin = Kube(self.info["admin_kubeconfig"])

    def token_for(self, name: str, rules: list[dict[str, Any]]) -> str:
        """A ServiceAccount in default with a Role in the Applications' namespace granting ``rules``."""
        self.admin.request("POST", "/api/v1/namespaces/default/serviceaccounts",
                           body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
        if rules:
            self.admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{APP_NS}/roles", body={
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
                "rules": rules})
            self.admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{APP_NS}/rolebindings", body={
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]})
        answer = self.admin.request("POST", f"/api/v1/namespaces/default/serviceaccounts/{name}/token", body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
        return str(answer["status"]["token"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _need_chromium()
    if os.environ.get("DRIFTGUARD_TEST_KUBECONFIG"):
        pytest.skip("local mode starts its own control plane; not exercised against an external cluster")
    directory = tmp_path_factory.mktemp("ui") / "local"
    up = driftguard("local", "up", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stderr
        assert "web UI:" in up.stdout and "login token" in up.stdout
        running = Stack(directory)
        assert (directory / "ui-login-token").stat().st_mode & 0o777 == 0o600
        running.demo.create_repo(Step("repo"))
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-service-db", "namespace": NS},
                  "stringData": {"password": SECRET_VALUE}}
        (running.demo.repo / PATH_IN_REPO / "secret.yaml").write_text(json.dumps(secret))
        running.demo._commit("my-service: a database password")
        running.demo.create_application(Step("app"))
        yield running
        running.admin.close()
    finally:
        driftguard("local", "down", "--dir", str(directory))
        shutil.rmtree(directory / "etcd", ignore_errors=True)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def signed_in(browser: Any, stack: Stack, token: str | None = None) -> Any:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(stack.info["ui"] + "/")
    assert "/login" in page.url  # every page needs a sign-in
    page.fill("#token", token or stack.info["ui_login_token"])
    page.click("button[type=submit]")
    page.wait_for_selector("main")
    return page


def until(condition: Callable[[], bool], what: str, timeout: float = LIVE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), type="png", full_page=False)


def test_sign_in_is_required_and_a_wrong_token_is_refused(browser: Any, stack: Stack) -> None:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(stack.info["ui"] + "/audit")
    assert "/login" in page.url
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    assert "did not sign in" in page.inner_text("main")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["driftguard_ui"]["secure"] and cookies["driftguard_ui"]["httpOnly"]
    assert cookies["driftguard_ui"]["sameSite"] == "Strict"
    # a POST without the session's CSRF token is refused
    answer = page.request.post(stack.info["ui"] + f"/applications/{APP_KEY}/refresh", form={"csrf_token": "x"})
    assert answer.status in (302, 303, 401, 403) or "/login" in answer.url
    context.close()


def test_applications_page_lists_the_application_with_its_status(browser: Any, stack: Stack) -> None:
    page = signed_in(browser, stack)
    row = page.locator(f"tr[data-app='{APP_KEY}']")
    until(lambda: row.locator(".sync").inner_text().strip() == "Synced", "the row to say Synced")
    assert "synced" in row.locator(".sync .badge").get_attribute("class")
    head = stack.demo._git("rev-parse", "--short=7", "HEAD").strip()
    assert head in row.inner_text() and "alice@example.org" in row.inner_text()
    page.fill("input[name=q]", "no-such-app")
    page.click("form.filters button")
    assert page.locator(f"tr[data-app='{APP_KEY}']").count() == 0
    page.goto(stack.info["ui"] + "/?status=Synced")
    assert page.locator(f"tr[data-app='{APP_KEY}']").count() == 1
    shot(page, "applications")
    page.context.close()


def test_a_denied_scale_appears_on_the_application_and_audit_pages_without_a_reload(browser: Any,
                                                                                     stack: Stack) -> None:
    page = signed_in(browser, stack)
    page.goto(stack.info["ui"] + f"/applications/{APP_KEY}")
    audit = signed_in(browser, stack)
    audit.goto(stack.info["ui"] + "/audit?decision=deny")
    for each in (page, audit):
        each.evaluate("window.notReloaded = true")
    result = stack.demo.laptop.run("scale", f"deployment/{APP}", "-n", NS, "--replicas=11", check=False)
    assert result.returncode != 0 and "declared in git" in result.stderr
    for each in (page, audit):
        until(lambda each=each: "3 → 11" in each.locator("table.audit").inner_text(),
              "the denied scale to appear in the audit table")
        assert each.evaluate("window.notReloaded === true"), "the page was reloaded"
        assert "laptop" in each.locator("table.audit").inner_text()
    shot(page, "application")
    shot(audit, "audit")
    page.context.close()
    audit.context.close()


def test_a_warn_mode_drift_shows_who_made_it_then_self_heal_clears_it(browser: Any, stack: Stack) -> None:
    page = signed_in(browser, stack)
    page.goto(stack.info["ui"] + f"/applications/{APP_KEY}")
    page.evaluate("window.notReloaded = true")
    stack.demo._set_enforcement("warn")
    try:
        result = stack.demo.laptop.run("set", "image", f"deployment/{APP}", "-n", NS, "app=nginx:1.27-warned")
        assert "Warning:" in result.stderr
        drift = page.locator("table.drift")
        until(lambda: "containers[name=app].image" in drift.inner_text() and "laptop" in drift.inner_text(),
              "the drift row naming the laptop user")
        until(lambda: stack.demo._image() == "nginx:1.27", "self-heal to restore git's image", timeout=60)
        until(lambda: "Unresolved" not in drift.inner_text() and "containers" not in
              page.locator("table.tree").inner_text(), "the drift to leave the resource tree")
        assert page.evaluate("window.notReloaded === true")
    finally:
        stack.demo._set_enforcement("deny")
    page.context.close()


def test_refresh_is_checked_against_the_users_rbac(browser: Any, stack: Stack) -> None:
    page = signed_in(browser, stack)  # the laptop user: cluster-admin
    page.goto(stack.info["ui"] + f"/applications/{APP_KEY}")
    page.click("#refresh")
    assert f"refresh of {APP_KEY} requested" in page.inner_text(".flash")
    page.context.close()
    viewer = stack.token_for("ui-viewer", [{"apiGroups": ["driftguard.io"], "resources": ["applications"],
                                            "verbs": ["get", "list"]}])
    page = signed_in(browser, stack, viewer)
    assert page.locator(f"tr[data-app='{APP_KEY}']").count() == 1  # may get it, so sees it
    page.goto(stack.info["ui"] + f"/applications/{APP_KEY}")
    page.click("#refresh")
    message = page.inner_text(".flash")
    assert "may not refresh" in message and "system:serviceaccount:default:ui-viewer" in message
    page.context.close()


def test_a_user_without_get_in_the_namespace_does_not_see_its_applications(browser: Any, stack: Stack) -> None:
    outsider = stack.token_for("ui-outsider", [])
    page = signed_in(browser, stack, outsider)
    assert "system:serviceaccount:default:ui-outsider" in page.inner_text("header")
    assert page.locator(f"tr[data-app='{APP_KEY}']").count() == 0
    assert APP not in page.inner_text("main")
    page.goto(stack.info["ui"] + f"/applications/{APP_KEY}")
    assert "may not get" in page.inner_text("main")
    page.goto(stack.info["ui"] + "/audit")
    assert "production/my-service" not in page.inner_text("main")
    page.context.close()


def test_no_page_contains_a_secret_value(browser: Any, stack: Stack) -> None:
    edit = stack.demo.laptop.run("patch", "secret", "my-service-db", "-n", NS, "-p",
                                 json.dumps({"stringData": {"password": SECRET_VALUE + "-changed"}}), check=False)
    assert edit.returncode != 0  # denied: git declares the data
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    page = signed_in(browser, stack)
    pages = ["/", f"/applications/{APP_KEY}", "/audit",
             f"/applications/{APP_KEY}/object?v=v1&kind=Secret&ns={NS}&obj=my-service-db",
             f"/applications/{APP_KEY}/object?v=apps/v1&kind=Deployment&ns={NS}&obj={APP}"]
    until(lambda: "Secret production/my-service-db" in (page.goto(stack.info["ui"] + "/audit") and
                                                       page.content()), "the denied Secret edit to be audited")
    for path in pages:
        page.goto(stack.info["ui"] + path)
        html = page.content()
        assert SECRET_VALUE not in html and encoded not in html, path
    page.goto(stack.info["ui"] + pages[-1])
    assert "declared" in page.content()  # the object page: git's manifest beside the live object
    shot(page, "object")
    page.context.close()


def test_sync_button_syncs_a_manual_application_for_the_signed_in_user(browser: Any, stack: Stack) -> None:
    """A non-automated Application: Sync, clicked by the laptop user (signed in by the login token, so the UI
    has no Kubernetes token of theirs), runs through the reconciler as "laptop via driftguard-ui"; a user
    without the RBAC verb sync sees the button disabled and why."""
    name = "manual-service"
    (stack.demo.repo / "manual").mkdir(exist_ok=True)
    (stack.demo.repo / "manual" / "settings.yaml").write_text(json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "manual-settings", "namespace": NS},
        "data": {"mode": "manual"}}))
    stack.demo._commit("manual-service: settings applied on demand")
    stack.admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{APP_NS}/applications", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
        "spec": {"project": "default", "source": {"repoURL": stack.demo.repo.as_uri(), "targetRevision": "main",
                                                  "path": "manual"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
                 "refreshInterval": "2s"}})
    app_path = f"/apis/driftguard.io/v1alpha1/namespaces/{APP_NS}/applications/{name}"
    until(lambda: ((stack.admin.request("GET", app_path).get("status") or {}).get("sync") or {}).get("status")
          == "OutOfSync", "the manual Application to be compared (OutOfSync: nothing applied yet)", timeout=60)

    page = signed_in(browser, stack)  # the laptop user: cluster-admin
    page.goto(stack.info["ui"] + f"/applications/{APP_NS}/{name}")
    assert page.locator("#sync").is_enabled()
    page.click("#sync")
    message = page.inner_text(".flash")
    assert f"synced {APP_NS}/{name} at " in message and "by laptop via driftguard-ui: Succeeded" in message, message
    until(lambda: "laptop via driftguard-ui" in page.locator("table.history").inner_text(),
          "the sync in the History table")
    until(lambda: "Synced" in page.locator("h1").inner_text(), "the Application to say Synced")
    shot(page, "sync")
    page.goto(stack.info["ui"] + f"/applications/{APP_KEY}")  # the automated one: no button, and why
    assert page.locator("#sync").count() == 0 and "synced by themselves" in page.inner_text("#sync-note")
    page.context.close()

    looker = stack.token_for("ui-looker", [{"apiGroups": ["driftguard.io"], "resources": ["applications"],
                                            "verbs": ["get", "list"]}])
    page = signed_in(browser, stack, looker)
    page.goto(stack.info["ui"] + f"/applications/{APP_NS}/{name}")
    assert page.locator("#sync").is_disabled()
    assert "needs RBAC verb sync" in page.inner_text("#sync-note")
    page.context.close()
