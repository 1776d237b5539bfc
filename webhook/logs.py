"""The webhook's logging setup: the shared formatters (``driftguard.logs``) for gunicorn's loggers too.

Context fields are passed as ``extra={CTX: {...}}`` (request uid, user, operation, kind, namespace,
name); see ``driftguard.logs`` for what reaches a line and what never does.
"""

from __future__ import annotations

from typing import Any

from driftguard.logs import CTX, JsonFormatter, TextFormatter, configure

__all__ = ["CTX", "JsonFormatter", "TextFormatter", "configure", "dict_config"]


def dict_config(fmt: str, level: str) -> dict[str, Any]:
    """The same setup as ``configure``, as a ``logging.config.dictConfig`` dict (what gunicorn's
    ``logconfig_dict`` takes), except that lines reach stderr through ``BackgroundHandler``."""
    formatter = f"driftguard.logs.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"
    # written by a thread of its own: the serving loop answers reviews and logs denials on one thread, which
    # must never wait for a stalled stderr pipe
    handler = {"class": "driftguard.logs.BackgroundHandler", "formatter": "driftguard"}
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
