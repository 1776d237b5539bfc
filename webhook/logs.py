"""Structured logging: one JSON object per line, context fields passed as ``extra={"ctx": {...}}``.

Callers put request context (uid, user, operation, kind, namespace, name) in ``ctx``; this module
never looks inside objects, so nothing but what a caller chose (never a key, token or Secret value)
reaches a log line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Final

CTX: Final = "ctx"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, CTX, None) or {})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = getattr(record, CTX, None) or {}
        return text + "".join(f" {k}={json.dumps(v, default=str)}" for k, v in ctx.items())


def configure(fmt: str, level: str) -> None:
    """Route every logger (ours, gunicorn's, the kubernetes client's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def dict_config(fmt: str, level: str) -> dict[str, Any]:
    """The same setup as a ``logging.config.dictConfig`` dict (what gunicorn's ``logconfig_dict`` takes)."""
    formatter = f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"
    handler = {"class": "logging.StreamHandler", "formatter": "driftguard", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"driftguard": {"()": formatter}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
