"""The HTTP edge through Flask's test client: 400 for broken webhook requests, fail closed on crashes."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.admission import LIVE_UID, NOW, SETTINGS, edited, live, review, scale_review

from driftguard.core.marks import MarkKey, unseal
from webhook import policy
from webhook.app import EXTENSION, create_app
from webhook.logs import JsonFormatter
from webhook.reviews import Request
from webhook.settings import Settings


class FakeCluster:
    """The webhook's cluster access: the parent it reads for a subresource, and the audit Events it writes
    (the app gives its cluster access to the audit recorder as the Event sink)."""

    def __init__(self, parent: policy.Parent) -> None:
        self.parent = parent
        self.reads: list[str] = []
        self.events: list[dict[str, Any]] = []

    def read_parent(self, request: Request) -> policy.Parent:
        self.reads.append(request.get("name", ""))
        return self.parent

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.events.append(body)

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise AssertionError(f"one denial, one Event: no patch of {name}")


MakeApp = Callable[..., Flask]


@pytest.fixture
def make_app() -> Iterator[MakeApp]:
    """``create_app`` whose audit recorders are closed at teardown: an app with cluster access starts the
    recorder's writer thread on its first record, which must not outlive the test (it would flush, and log,
    into whatever runs next)."""
    apps: list[Flask] = []

    def make(settings: Settings = SETTINGS, cluster: Any = None) -> Flask:
        app = create_app(settings, cluster=cluster, clock=lambda: NOW)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions[EXTENSION].recorder.close()


@pytest.fixture
def client(make_app: MakeApp) -> FlaskClient:
    return make_app().test_client()


def post(client: FlaskClient, body: Any, path: str = "/validate", content_type: str = "application/json") -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, data=data, content_type=content_type)


def _valid() -> dict[str, Any]:
    old = live()
    return dict(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9)))


def _copy() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(_valid()))
    return body


def _without(key: str) -> dict[str, Any]:
    body = _copy()
    del body["request"][key]
    return body


def _with(key: str, value: Any) -> dict[str, Any]:
    body = _copy()
    body["request"][key] = value
    return body


@pytest.mark.parametrize(("body", "content_type", "problem"), [
    pytest.param(_valid(), "text/plain", "Content-Type must be application/json", id="wrong content type"),
    pytest.param(_valid(), "", "Content-Type must be application/json", id="no content type"),
    pytest.param(b"{not json", "application/json", "body is not JSON", id="malformed JSON"),
    pytest.param(b"\xff\xfe", "application/json", "body is not JSON", id="not UTF-8"),
    pytest.param([1, 2], "application/json", "not a JSON object", id="a JSON list"),
    pytest.param({**_valid(), "apiVersion": "admission.k8s.io/v1beta1"}, "application/json",
                 "apiVersion 'admission.k8s.io/v1beta1' is not one of admission.k8s.io/v1", id="old apiVersion"),
    pytest.param({**_valid(), "kind": "Pod"}, "application/json", "is not AdmissionReview", id="wrong kind"),
    pytest.param({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "application/json",
                 "has no request", id="no request"),
    pytest.param(_without("uid"), "application/json", "request has no uid", id="no uid"),
    pytest.param(_with("uid", ""), "application/json", "request has no uid", id="empty uid"),
    pytest.param(_with("operation", "PATCH"), "application/json", "operation 'PATCH' is unknown",
                 id="unknown operation"),
    pytest.param(_without("oldObject"), "application/json", "UPDATE without oldObject", id="UPDATE without old"),
    pytest.param(_with("object", "text"), "application/json", "object is not an object", id="object not a map"),
    pytest.param(_with("userInfo", {"username": "x", "groups": "admins"}), "application/json",
                 "userInfo.groups is malformed", id="groups not a list"),
    pytest.param(_with("kind", {"kind": "Deployment"}), "application/json", "kind must have string group",
                 id="kind incomplete"),
    pytest.param(_with("dryRun", "yes"), "application/json", "dryRun is not a boolean", id="dryRun not bool"),
    pytest.param(_with("oldObject", {"metadata": ["a"]}), "application/json",
                 "oldObject has metadata that is not an object", id="metadata not a map"),
    pytest.param(_with("object", {"metadata": {"labels": {"a": 1}}}), "application/json",
                 "object has metadata.labels that is not a map of strings", id="label value not a string"),
    pytest.param(_with("object", {"metadata": {"annotations": "x"}}), "application/json",
                 "object has metadata.annotations that is not a map of strings", id="annotations not a map"),
])
@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_broken_webhook_requests_get_400_plain_text(client: FlaskClient, body: Any, content_type: str,
                                                   problem: str, path: str) -> None:
    response = post(client, body, path, content_type)
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert problem in response.get_data(as_text=True)


@pytest.mark.parametrize(("content_type", "chunked"), [
    ("application/json", False), ("text/plain", False), ("application/json", True)],
    ids=["content-length", "wrong-type-too", "chunked"])
@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_an_oversized_body_is_413_naming_the_cap_and_its_setting(
        make_app: MakeApp, content_type: str, chunked: bool, path: str) -> None:
    cap = len(json.dumps(_valid())) + 16  # the plain review fits, and is answered
    app = make_app(Settings(max_body_bytes=cap))
    body = _valid()
    body["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * 32
    data = json.dumps(body).encode()
    if chunked:  # no Content-Length, a stream that ends (gunicorn's chunked body): read to one byte over the cap
        response = app.test_client().post(path, input_stream=io.BytesIO(data), content_type=content_type,
                                          headers={"Transfer-Encoding": "chunked"},
                                          environ_overrides={"wsgi.input_terminated": True})
    else:
        response = app.test_client().post(path, data=data, content_type=content_type)
    assert (response.status_code, response.mimetype) == (413, "text/plain")
    assert response.get_data(as_text=True) == (
        f"the AdmissionReview is over {cap} bytes, the most this webhook accepts (--max-body-bytes, "
        "DRIFTGUARD_MAX_BODY_BYTES): raise it to admit larger objects\n")
    assert post(app.test_client(), _valid(), path).status_code == 200  # under the cap: answered


def test_a_body_under_the_default_cap_passes(client: FlaskClient) -> None:
    body = _valid()
    body["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * 2_000_000
    assert post(client, body).status_code == 200


def test_a_denial_echoes_the_review_and_carries_the_message(client: FlaskClient) -> None:
    response = post(client, _valid())
    assert response.status_code == 200
    document = response.get_json()
    assert document["apiVersion"] == "admission.k8s.io/v1" and document["kind"] == "AdmissionReview"
    answer = document["response"]
    assert answer["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403 and answer["status"]["reason"] == "Forbidden"
    assert answer["status"]["message"].startswith("spec.replicas of Deployment production/my-service is declared")


def test_an_allowed_review_is_minimal(client: FlaskClient) -> None:
    old = live()
    response = post(client, review("UPDATE", old=old, new=edited(old, "metadata", "labels", "x", "y")))
    assert response.get_json()["response"] == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


def test_warn_mode_answers_with_warnings_and_the_mutation_with_a_patch(tmp_path: Path, make_app: MakeApp) -> None:
    key_file = tmp_path / "mark-key"
    key_file.write_text(MarkKey.generate().to_text() + "\n")
    client = make_app(dataclasses.replace(SETTINGS, mark_key_file=key_file)).test_client()
    old = live(enforcement="warn")
    body = review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))
    validated = post(client, body).get_json()["response"]
    assert validated["allowed"] is True and "spec.replicas" in validated["warnings"][1]
    mutated = post(client, body, "/mutate").get_json()["response"]
    assert mutated["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(mutated["patch"]))
    assert patch[0]["path"] == "/metadata/annotations/driftguard.io~1drift"
    assert unseal(MarkKey.from_text(key_file.read_text()), LIVE_UID, patch[0]["value"]) is not None, "sealed"


def test_an_unreadable_mark_key_file_names_the_file_and_shows_no_key(tmp_path: Path, make_app: MakeApp) -> None:
    key_file = tmp_path / "mark-key"
    key_file.write_text("zz" * 40)
    with pytest.raises(ValueError, match=f"--mark-key-file {key_file}: mark key: not hex") as raised:
        make_app(dataclasses.replace(SETTINGS, mark_key_file=key_file))
    assert "zz" not in str(raised.value)


def test_a_crash_in_the_policy_fails_closed_and_is_logged_with_the_uid(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _valid()
    monkeypatch.setattr("driftguard.core.contract.decode_declared", lambda text: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="webhook.app"):
        response = post(client, body)
    assert response.status_code == 200
    answer = response.get_json()["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 500
    assert answer["uid"] == body["request"]["uid"]
    assert "failed on request 705ab4f5-6393-11e8-b7cc-42010a800002" in answer["status"]["message"]
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.exc_info is not None
    assert getattr(logged, "ctx")["uid"] == body["request"]["uid"]  # noqa: B009


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_any_exception_is_contained(client: FlaskClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    def explode(*args: Any, **kwargs: Any) -> policy.Verdict:
        raise RuntimeError("boom")

    monkeypatch.setattr(policy, "validate", explode)
    monkeypatch.setattr(policy, "mutate", explode)
    answer = post(client, _valid(), path).get_json()["response"]
    assert (answer["allowed"], answer["status"]["code"]) == (False, 500)


def test_log_lines_carry_request_context_and_never_object_contents(caplog: pytest.LogCaptureFixture,
                                                                  make_app: MakeApp) -> None:
    secret = live({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "production"},
                   "data": {"password": "czNjcjN0"}})
    body = review("UPDATE", old=secret, new=edited(secret, "data", "password", "aHVudGVyMg=="))
    with caplog.at_level(logging.DEBUG):
        assert post(make_app().test_client(), body).get_json()["response"]["allowed"] is False
    lines = [JsonFormatter().format(r) for r in caplog.records]
    admission = [json.loads(line) for line in lines if '"admission"' in line]
    assert admission and {"uid", "user", "operation", "kind", "namespace", "name"} <= admission[0].keys()
    assert admission[0]["namespace"] == "production" and admission[0]["result"] == "deny"
    assert not any("czNjcjN0" in line or "aHVudGVyMg" in line for line in lines)


def test_scale_reads_the_parent_through_the_cluster_adapter(make_app: MakeApp) -> None:
    cluster = FakeCluster(policy.Parent(live()))
    app = make_app(cluster=cluster)
    answer = post(app.test_client(), scale_review(9)).get_json()["response"]
    assert answer["allowed"] is False and "spec.replicas" in answer["status"]["message"]
    assert cluster.reads == ["my-service"]
    app.extensions[EXTENSION].recorder.close()  # the denial's audit Event, written through the same access
    assert [e["reason"] for e in cluster.events] == ["DriftguardDenied"]


def test_scale_by_the_reconciler_reads_nothing(make_app: MakeApp) -> None:
    cluster = FakeCluster(policy.Parent(live()))
    body = scale_review(9, user=SETTINGS.reconciler_users[0])
    assert post(make_app(cluster=cluster).test_client(), body).get_json()["response"]["allowed"] is True
    assert cluster.reads == []


def test_scale_without_cluster_access_fails_closed(make_app: MakeApp) -> None:
    answer = post(make_app(cluster=None).test_client(), scale_review(9)).get_json()["response"]
    assert answer["allowed"] is False
    assert "no cluster access configured" in answer["status"]["message"]


def test_probes_and_metrics(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    post(client, _valid())
    post(client, b"nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'driftguard_webhook_decisions_total{result="deny",webhook="validate"} 1.0' in text
    assert 'driftguard_webhook_decisions_total{result="bad-request",webhook="validate"} 1.0' in text
    assert 'driftguard_webhook_request_seconds_count{webhook="validate"} 1.0' in text
    assert 'driftguard_audit_records_total{decision="deny",dry_run="false"} 1.0' in text
