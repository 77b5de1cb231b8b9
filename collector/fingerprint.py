"""File identity: ``"<dev>:<inode>:<head fingerprint>"``.

(device, inode) names the file while it exists; the fingerprint of its first
line (at most :data:`HEAD_BYTES`) tells a reused inode from the file that had
it before.  The first line is stable once written, so the identity does not
change as the file grows, and a tiny file is identified as soon as it has one
complete line: no "wait for 1 KiB" rule.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["HEAD_BYTES", "head_fingerprint", "make_identity"]

HEAD_BYTES = 256
"""Bytes of the head that the fingerprint covers at most."""


def head_fingerprint(fd: int, *, final: bool = False) -> str | None:
    """Fingerprint of the file's first line (or first :data:`HEAD_BYTES` bytes).

    None while the file has neither a complete first line nor HEAD_BYTES bytes,
    unless ``final`` (the file will not grow: fingerprint what is there).
    Raises ``OSError`` when the file cannot be read.
    """
    head = os.pread(fd, HEAD_BYTES, 0)
    newline = head.find(b"\n")
    if newline >= 0:
        head = head[: newline + 1]
    elif len(head) < HEAD_BYTES and not final:
        return None
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def make_identity(dev: int, ino: int, fingerprint: str) -> str:
    """The identity string used in checkpoints, marks and ``log.file.identity``."""
    return f"{dev}:{ino}:{fingerprint}"
