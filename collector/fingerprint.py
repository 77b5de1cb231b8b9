"""File identity: ``"<dev>:<inode>:<head fingerprint>"``, and what a file's head says.

(device, inode) names the file while it exists; the fingerprint of its whole
first line (at most :data:`HEAD_BYTES`) confirms it, so a reused inode is told from
the file that had it before.  A fingerprint is taken only once the file has
a complete first line or :data:`HEAD_BYTES` bytes: the head of an append-only
file is then stable, so the identity does not change as the file grows.

A file whose first bytes are a compression format's magic number is never
read as text (:func:`compression_of`); a rotated ``.gz`` generation is only
read decompressed, after its decompressed head matched a checkpoint.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib

__all__ = [
    "HEAD_BYTES",
    "compression_of",
    "fingerprint_head",
    "gzip_head_fingerprint",
    "head_fingerprint",
    "make_identity",
]

HEAD_BYTES = 65536
"""Bytes of the head that the fingerprint covers at most: the whole first line of any
runtime's file (both cut lines at 16 KiB).  Docker's JSON puts the time last, and a
rotation can start a file with the continuation of a long line, whose first few hundred
bytes are the same in every container that logs the same text: only the whole line
tells two such files apart."""

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x7fELF", "binary"),
)


def compression_of(head: bytes) -> str | None:
    """``gzip``, ``zstd``, ``xz``, ``bzip2``, ``lz4`` or ``binary`` when ``head`` starts so, else None."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def fingerprint_head(head: bytes, *, final: bool = False) -> str | None:
    """Fingerprint of ``head`` (a file's first bytes): its first line, or HEAD_BYTES bytes.

    None while there is neither a complete first line nor HEAD_BYTES bytes,
    unless ``final`` (the file will not grow: fingerprint what is there).
    """
    head = head[:HEAD_BYTES]
    newline = head.find(b"\n")
    if newline >= 0:
        head = head[: newline + 1]
    elif len(head) < HEAD_BYTES and not final:
        return None
    if not head:
        return None
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def head_fingerprint(fd: int, *, final: bool = False) -> str | None:
    """:func:`fingerprint_head` of the file open as ``fd``; raises ``OSError``."""
    return fingerprint_head(os.pread(fd, HEAD_BYTES, 0), final=final)


def gzip_head_fingerprint(path: str) -> str | None:
    """:func:`fingerprint_head` of a gzip file's decompressed content, or None if unreadable."""
    try:
        with gzip.open(path, "rb") as packed:
            head = packed.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    return fingerprint_head(head, final=True)


def make_identity(dev: int, ino: int, fingerprint: str) -> str:
    """The identity string used in checkpoints, marks and ``log.file.identity``."""
    return f"{dev}:{ino}:{fingerprint}"
