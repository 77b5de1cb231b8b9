"""File heads: what tells two files apart, and what is never read as text."""

from __future__ import annotations

import json

from collector.fingerprint import HEAD_BYTES, compression_of, fingerprint_head


def _docker(log: str, time: str) -> bytes:
    return json.dumps({"log": log, "stream": "stdout", "time": time}, ensure_ascii=False).encode() + b"\n"


def test_files_starting_with_the_same_long_continuation_have_different_heads() -> None:
    """dockerd's rotation can start two containers' files with the same 16 KiB of text; only the
    time at the end of the JSON line differs, and the fingerprint covers it."""
    piece = "日本語のログ" * 900 + "\n"  # 16 KiB of UTF-8, as dockerd cuts
    a = _docker(piece, "2026-12-04T21:55:37.569238961Z")
    b = _docker(piece, "2026-12-04T21:55:37.569238962Z")
    assert a[:4096] == b[:4096]
    assert fingerprint_head(a) is not None
    assert fingerprint_head(a) != fingerprint_head(b)


def test_a_head_is_taken_only_once_the_first_line_is_complete() -> None:
    """A partial first line has no fingerprint yet unless the file will not grow (final)."""
    line = b"2026-12-04T21:55:37.569238961Z stdout F hello\n"
    assert fingerprint_head(line[:-10]) is None
    assert fingerprint_head(line[:-10], final=True) is not None
    assert fingerprint_head(line + b"more") == fingerprint_head(line)
    assert fingerprint_head(b"x" * HEAD_BYTES) is not None  # no newline in HEAD_BYTES: that much


def test_compressed_and_binary_heads_are_recognised() -> None:
    assert compression_of(b"\x1f\x8b\x08\x00") == "gzip"
    assert compression_of(b"\x7fELF\x02") == "binary"
    assert compression_of(b"2026-12-04T21:55:37Z stdout F x") is None
