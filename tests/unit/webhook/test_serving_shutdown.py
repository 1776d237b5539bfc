"""A worker that exits (SIGTERM in a rolling update) first writes what its audit queue holds."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from support.admission import NOW, SETTINGS, edited, live, review

from webhook import audit, policy, serve
from webhook.app import create_app
from webhook.metrics import Metrics


class Events:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.created.append(body)

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise AssertionError("one record, one create")


def test_worker_exit_flushes_pending_event_series() -> None:
    events = Events()
    recorder = audit.Recorder(Metrics(), events=events, flush_seconds=3600)  # no flush before exit
    app = create_app(SETTINGS, recorder=recorder, clock=lambda: NOW)
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"],
                              SETTINGS, NOW)
    assert verdict.record is not None
    recorder.record(dataclasses.replace(verdict.record))
    assert events.created == []
    serve._worker_exit(None, SimpleNamespace(wsgi=app))
    assert len(events.created) == 1 and events.created[0]["reason"] == "DriftguardDenied"


def test_worker_exit_without_an_app_does_nothing() -> None:
    serve._worker_exit(None, SimpleNamespace())


def test_gunicorn_runs_it_for_every_worker() -> None:
    options = serve.gunicorn_options(SETTINGS, lambda *args: None)  # type: ignore[arg-type]
    assert options["proc_name"] == "driftguard-webhook"
    assert serve.WEBHOOK_HOOKS["worker_exit"] is serve._worker_exit  # WebhookServer sets them on gunicorn
