"""The controller's settings (how often, how many, how long), one frozen value built once at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    namespace: str = "driftguard-system"  # where Applications live; "" for every namespace
    cache_dir: Path = Path.home() / ".cache" / "driftguard" / "git"
    resync_interval: float = 60.0
    max_backoff: float = 60.0
    workers: int = 2
    apply_concurrency: int = 4
    heal_workers: int = 2
    watch_timeout: float = 30.0
    fight_limit: int = 5
    fight_window: float = 60.0
    stop_timeout: float = 30.0  # how long a lost term's threads may take to stop before the process exits
