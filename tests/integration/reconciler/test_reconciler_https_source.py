"""An https git source with a token, end to end against a real smart-HTTP git server over TLS.

The server (``git_https_server``) is ``git http-backend`` behind Basic auth, with a certificate from
a CA that only the Application's Secret (``ca.crt``) makes the reconciler trust. The right token syncs;
a wrong token stops the cycle with a condition naming the repository and an authentication failure,
applies and prunes nothing, and leaks the token nowhere (status, Events, the reconciler's log); the
stamped repository URL carries no credentials; without the CA the fetch fails on verification.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.git_https_server import GitHTTPSServer
from support.reconciler_harness import Harness, Repo, configmap, login_leaks, wait_for

from certs import CertificateAuthority
from driftguard.core.contract import read_stamp

pytestmark = pytest.mark.integration

TOKEN = "tok-" + secrets.token_hex(16)
WRONG = "tok-" + secrets.token_hex(16)
USER = "driftguard-bot"


@pytest.fixture
def git_server(repo: Repo, ca: CertificateAuthority, tmp_path: Path) -> Iterator[GitHTTPSServer]:
    with GitHTTPSServer(repo.path, token=TOKEN, ca=ca, scratch=tmp_path / "git-tls") as server:
        yield server


def https_app(harness: Harness, server: GitHTTPSServer, secret: str) -> None:
    harness.make_app("svc", server.url, source={"repoURL": server.url, "targetRevision": "main", "path": "app",
                                                "secretRef": {"name": secret}})


def leaks(text: str) -> list[str]:
    return login_leaks(text, USER, TOKEN, WRONG)


def events_text(harness: Harness) -> str:
    items = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/events")["items"]
    return json.dumps(items)


def test_token_syncs_and_a_wrong_token_fails_clearly_and_safely(
    git_server: GitHTTPSServer, harness: Harness, repo: Repo, ca: CertificateAuthority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    repo.write("app/b.yaml", configmap("beta", {"size": "3"}))
    first = repo.commit("first")
    harness.put_secret("repo-creds", {"url": git_server.url, "username": USER, "token": TOKEN,
                                       "ca.crt": ca.cert_pem.decode()})
    https_app(harness, git_server, "repo-creds")
    harness.start()

    harness.wait_synced("svc", first, timeout=15)

    alpha = harness.cm("alpha")
    assert alpha is not None and alpha["data"] == {"color": "blue"} and harness.cm("beta") is not None
    stamp = read_stamp(alpha)
    assert stamp is not None and stamp.source.repo == git_server.url  # no user:token@ in the stamp
    assert git_server.requests, "the sync did not go through the https server"
    assert all(r.authorised for r in git_server.requests), git_server.requests
    assert any(r.path.endswith("/git-upload-pack") and r.status == 200 for r in git_server.requests)

    # The token is rotated wrongly; git meanwhile changes alpha and drops beta (a prune candidate).
    harness.put_secret("repo-creds", {"url": git_server.url, "username": USER, "token": WRONG,
                                       "ca.crt": ca.cert_pem.decode()})
    repo.write("app/a.yaml", configmap("alpha", {"color": "green"}))
    repo.remove("app/b.yaml")
    second = repo.commit("alpha green, beta gone")
    seen = len(git_server.requests)
    harness.refresh("svc")

    failed = harness.wait_condition("svc", "SourceReady", "False", "FetchFailed", timeout=15)
    assert git_server.url in failed["message"]
    assert "authentication failed" in failed["message"]
    assert "nothing applied or pruned" in failed["message"]
    assert any(not r.authorised and r.status == 401 for r in git_server.requests[seen:]), "server never refused"
    assert harness.cm("alpha")["data"] == {"color": "blue"}  # type: ignore[index]
    assert harness.cm("beta") is not None, "pruned on a failed fetch"
    status = harness.status("svc")
    assert status["sync"]["revision"] == first
    assert status["inventoryCount"] == 2

    assert leaks(json.dumps(status)) == []
    assert leaks(events_text(harness)) == []
    assert "authentication failed" in caplog.text, "the reconciler's log was not captured"
    assert leaks(caplog.text) == [], "a token reached the reconciler's log"
    assert "@127.0.0.1" not in json.dumps(status) + events_text(harness)

    # Put the right token back: the pending commit is applied and beta pruned, over the same server.
    harness.put_secret("repo-creds", {"url": git_server.url, "username": USER, "token": TOKEN,
                                       "ca.crt": ca.cert_pem.decode()})
    harness.refresh("svc")
    harness.wait_synced("svc", second, timeout=15)
    assert harness.cm("alpha")["data"] == {"color": "green"}  # type: ignore[index]
    wait_for(lambda: harness.cm("beta") is None, what="beta pruned once the token is right")
    assert leaks(caplog.text) == []


def test_without_the_ca_the_certificate_is_refused_and_the_token_never_sent(
    git_server: GitHTTPSServer, harness: Harness, repo: Repo, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    repo.commit("first")
    harness.put_secret("repo-creds", {"url": git_server.url, "username": USER, "token": TOKEN})  # no ca.crt
    https_app(harness, git_server, "repo-creds")
    harness.start()

    failed = harness.wait_condition("svc", "SourceReady", "False", "FetchFailed", timeout=15)

    assert git_server.url in failed["message"]
    assert "certificate" in failed["message"]
    assert git_server.requests == [], "an HTTP request (and so the token) got past an untrusted certificate"
    assert harness.cm("alpha") is None
    status: dict[str, Any] = harness.status("svc")
    assert leaks(json.dumps(status) + events_text(harness) + caplog.text) == []


def test_credentials_in_the_repo_url_never_reach_stamps_status_events_or_logs(
    git_server: GitHTTPSServer, harness: Harness, repo: Repo, ca: CertificateAuthority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    sha = repo.commit("first")
    harness.put_secret("repo-ca", {"ca.crt": ca.cert_pem.decode()})  # the CA only; the token is in the URL
    url = git_server.url.replace("https://", f"https://{USER}:{TOKEN}@")
    harness.make_app("svc", url, source={"repoURL": url, "targetRevision": "main", "path": "app",
                                         "secretRef": {"name": "repo-ca"}})
    harness.start()

    status = harness.wait_synced("svc", sha, timeout=15)

    assert any(r.authorised and r.status == 200 for r in git_server.requests), "not fetched with the URL's token"
    stamp = read_stamp(harness.cm("alpha"))
    assert stamp is not None and stamp.source.repo == git_server.url
    assert leaks(json.dumps(status) + json.dumps(harness.cm("alpha")) + events_text(harness) + caplog.text) == []
