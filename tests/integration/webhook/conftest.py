"""Webhook integration tests share ``webhook_harness`` (``--import-mode=importlib`` does not put test
directories on ``sys.path``); fixtures for a running webhook live there and are re-exported here."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from webhook_harness import webhook_factory  # noqa: E402

__all__ = ["webhook_factory"]
