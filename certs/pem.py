"""Writing PEM files: private material is born 0600.

Keys are created with ``os.open(..., 0o600)`` on a fresh temporary name in the target directory and
renamed into place, so a key is never readable by others for an instant, an existing file with wider
permissions is replaced rather than reused, and a crash never leaves a half-written key behind.
This module refuses to chmod after the fact.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable by the owner only (keys, kubeconfigs with tokens)."""
    return _write_atomically(path, data, PRIVATE_MODE)


def write_public(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` world-readable (certificates, public keys)."""
    return _write_atomically(path, data, PUBLIC_MODE)


def _write_atomically(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
