"""Small files a node replaces whole (the head watermark, the task stamp, the quarantine
marker): written under a temporary name, then renamed over the old one. And files for the
node's user only (an enrollment request or answer carried by hand): mode 0600."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

from schemas.errors import ErrorCode, GuantongError

__all__ = ["file_error", "replace_file", "temporary_name", "write_private"]


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the new one, never half of one. The temporary name is this
    process's and thread's own: a server and a command beside it (``guantong put``) both
    replace ``head.json``, and with one shared name either could rename the other's half
    written file into place, or find its own gone. On ``OSError`` (a full or read-only
    disk) the temporary file is removed and the error raised: each caller's write is best
    effort in its own way."""
    tmp = temporary_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable and writable by this user only (0600, whatever
    the umask, and also over a file that was readable by others), as ``node.toml`` and the
    key are: for files that hold a secret. An ``OSError`` is :func:`file_error`'s code."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # the mode given applies to a new file only
            out.write(data)
    except OSError as exc:
        raise file_error(exc, str(path)) from exc


def temporary_name(path: Path) -> Path:
    """Where :func:`replace_file` writes ``path``'s next content before the rename."""
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def file_error(exc: OSError, what: str | None = None) -> GuantongError:
    """A file that could not be written or read, as an error with a stable code: a full
    disk is ``storage_full``, a read-only or forbidden one ``storage_read_only``, anything
    else (a missing folder) ``not_found``; the message names the file."""
    name = what or (str(exc.filename) if exc.filename else "a file")
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GuantongError(ErrorCode.STORAGE_FULL, f"no space left to write {name}")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return GuantongError(ErrorCode.STORAGE_READ_ONLY, f"cannot write {name}: {reason}")
    return GuantongError(ErrorCode.NOT_FOUND, f"cannot use {name}: {reason}")
