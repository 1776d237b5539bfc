"""Fixtures for a running webhook live in ``support.webhook_harness`` and ``support.guarded``; re-exported here."""

from __future__ import annotations

from support.guarded import guarded
from support.webhook_harness import webhook_factory

__all__ = ["guarded", "webhook_factory"]
