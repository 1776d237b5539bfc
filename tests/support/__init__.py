"""Helpers shared by tests: builders for pure-core tests, fakes, and harnesses for real processes.

``tests/`` is on pytest's ``pythonpath`` (pyproject.toml), so tests import ``support.<module>``; no
conftest edits ``sys.path``.
"""
