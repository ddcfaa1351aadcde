"""Small files a node replaces whole (the head watermark, the task stamp, the quarantine
marker): written under a temporary name, then renamed over the old one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path, data: bytes, tmp: Path) -> None:
    """Write ``data`` to ``tmp``, then rename it over ``path``: a reader sees the old file
    or the new one, never half of one. On ``OSError`` (a full or read-only disk) the
    temporary file is removed and the error raised: each caller's write is best effort in
    its own way."""
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
