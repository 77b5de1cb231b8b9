"""Files replaced whole: a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically"]


def fsync_directory(directory: Path) -> None:
    """fsync a directory so that created, renamed or removed names are durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, tmp_path: Path, data: bytes, *, durable: bool = True) -> None:
    """``data`` as the file ``path``: written to ``tmp_path`` and renamed over ``path``; with
    ``durable``, the file fsynced before the rename and the directory after it.

    Raises ``OSError``, having removed ``tmp_path``.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        tmp_path.replace(path)
        if durable:
            fsync_directory(directory)
    except OSError:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
