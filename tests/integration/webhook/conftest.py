"""Fixtures for a running webhook live in ``support.webhook_harness`` and are re-exported here."""

from __future__ import annotations

from support.webhook_harness import webhook_factory

__all__ = ["webhook_factory"]
