"""Shared test configuration: unit tests first, integration tests (real API server) last.

Everything under ``tests/integration/`` carries the ``integration`` marker even if a module forgets
it, so ``-m "not integration"`` reliably means "no cluster needed".
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)
