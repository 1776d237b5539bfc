"""A few thousand inputs of ``bench/fuzz_webhook.py`` on every run (the full 100,000 is a benchmark)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

FUZZER = Path(__file__).parents[3] / "bench" / "fuzz_webhook.py"


def _fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_webhook", FUZZER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [11, 12])
def test_random_reviews_never_crash_and_never_let_a_declared_change_through(seed: int) -> None:
    tally = _fuzzer().run(1500, seed, verbose=False)
    assert not {key: n for key, n in tally.items() if key.startswith("CRASH")}
    assert tally["ALLOWED A CHANGE TO A DECLARED FIELD"] == 0
    assert tally["oracle-required denials, denied"] > 100  # the oracle is exercised, not vacuous
    assert tally["bad request (400)"] > 0 and tally["decided: warn"] > 0
