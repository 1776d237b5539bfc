"""The image carries every package the console script imports (a package missing from the Dockerfile's build
stage makes `driftguard` fail to start in every pod; the cluster tier found it once, the hard way)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_every_package_is_copied_into_the_build_stage() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    wanted = {p.rstrip("*") for p in packages}
    build_stage = (ROOT / "Dockerfile").read_text().split("\nFROM ", 2)[1]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", build_stage, flags=re.M))
    assert wanted - copied == set(), f"add COPY lines to the Dockerfile's build stage for {sorted(wanted - copied)}"
    assert all((ROOT / p).is_dir() for p in wanted)
