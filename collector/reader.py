"""Bytes from a log file, and whole lines from those bytes: nothing here knows a format.

A :class:`Source` is where a file generation's bytes come from: the open
descriptor of a plain file (:class:`FdSource`, read with ``pread`` so renames
and deletes do not matter), or the decompressed stream of a rotated ``.gz``
generation (:class:`GzipSource`), read from a checkpoint offset after its
decompressed head matched.  A :class:`LineSplitter` turns the chunks read
from a source into complete lines with their offsets, holds an unterminated
last line, and cuts lines longer than the limit.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import BinaryIO, Protocol

__all__ = ["FdSource", "GzipSource", "LineSplitter", "Lines", "Source"]


class Source(Protocol):
    """Where a file's bytes are read from."""

    compressed: bool
    """True for a decompressed stream: its content never changes."""

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; ``b""`` at the end. Raises ``OSError``."""

    def fstat(self) -> os.stat_result:
        """The file's status now. Raises ``OSError``."""

    def close(self) -> None:
        """Release the descriptor; idempotent."""


class FdSource:
    """A plain file by its descriptor."""

    compressed = False

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._closed = False

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def fstat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)


class GzipSource:
    """The decompressed content of a ``.gz`` file, read forward from any offset.

    Reading at an offset behind the current position starts decompressing
    again from the beginning; the collector reads forward only.  A damaged
    stream ends the content where it breaks (``OSError`` for the caller).
    """

    compressed = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._file: gzip.GzipFile | None = None
        self._raw: BinaryIO | None = None
        self._pos = 0

    def _open(self) -> gzip.GzipFile:
        self._close_stream()
        self._raw = os.fdopen(os.dup(self._fd), "rb")
        self._raw.seek(0)
        self._file = gzip.GzipFile(fileobj=self._raw, mode="rb")
        self._pos = 0
        return self._file

    def _close_stream(self) -> None:
        if self._file is not None:
            self._file.close()  # does not close the file object it was given
            self._file = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def pread(self, size: int, offset: int) -> bytes:
        packed = self._file
        if packed is None or offset < self._pos:
            packed = self._open()
        try:
            while self._pos < offset:
                skipped = packed.read(min(1 << 20, offset - self._pos))
                if not skipped:
                    return b""
                self._pos += len(skipped)
            data = packed.read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise OSError(f"damaged gzip stream in {self.path}: {exc}") from exc
        self._pos += len(data)
        return data

    def fstat(self) -> os.stat_result:
        return os.fstat(self._fd)

    def close(self) -> None:
        self._close_stream()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Lines:
    """Complete lines split from a chunk, without their newlines."""

    __slots__ = ("chunk", "last", "lines", "long_lines", "offsets", "start")

    def __init__(
        self, chunk: bytes, start: int, lines: list[bytes] | None,
        offsets: list[int] | None, long_lines: dict[int, int] | None,
    ) -> None:
        self.chunk = chunk
        """The complete lines as read, newlines between them, none after the last."""
        self.start = start
        """Offset of ``chunk[0]`` in the file."""
        self.lines = lines
        """Split lines, when splitting was needed (over-long lines cut); else None."""
        self.offsets = offsets
        self.long_lines = long_lines
        """Offset -> original length of every line that was cut to the limit."""
        self.last = start + len(chunk)

    def split(self) -> tuple[list[bytes], list[int]]:
        """Lines and their offsets."""
        if self.lines is not None and self.offsets is not None:
            return self.lines, self.offsets
        lines = self.chunk.split(b"\n")
        return lines, line_offsets(lines, self.start)


class LineSplitter:
    """Chunks in, whole lines out; holds the unterminated rest, cuts over-long lines.

    A line longer than ``max_line`` is cut to ``max_line`` bytes; when its end
    has not been read yet, the rest is skipped as it arrives (``skip_from``).
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.leftover = b""
        self.skip_from: int | None = None
        """Offset of an over-long line whose rest is being skipped."""
        self.skipped_tail = 0
        """Bytes cut from the end of the over-long line that finished last."""

    def reset(self) -> None:
        """Forget everything held (the file restarts: truncated, or a new source)."""
        self.leftover = b""
        self.skip_from = None

    def pending_offset(self, read_offset: int) -> int:
        """The first byte not yet handed out as part of a line."""
        if self.skip_from is not None:
            return self.skip_from
        return read_offset - len(self.leftover)

    def feed(self, data: bytes, end: int) -> tuple[Lines | None, int | None]:
        """Lines completed by ``data``, which ends at offset ``end``.

        Returns the lines (None when none completed) and, when an over-long
        line's skipped rest ended here, its offset (the caller counts it).
        """
        max_line = self.max_line
        base = end - len(data)
        ended_skip: int | None = None
        if self.skip_from is not None:
            newline = data.find(b"\n")
            if newline < 0:
                return None, None
            self.skipped_tail = base + newline - self.skip_from - max_line
            ended_skip = self.skip_from
            self.skip_from = None
            data = data[newline + 1 :]
            base += newline + 1
        if self.leftover:
            base -= len(self.leftover)
            data = self.leftover + data
            self.leftover = b""
        last = data.rfind(b"\n")
        if last < 0:
            if len(data) <= max_line:
                self.leftover = data
                return None, ended_skip
            # A line longer than the limit with no end yet: cut it, skip the rest.
            self.skip_from = base
            return Lines(data[:max_line], base, [data[:max_line]], [base], {base: len(data)}), ended_skip
        rest_start = base + last + 1
        if last + 1 < len(data):
            self.leftover = data[last + 1 :]
        chunk = data[:last]
        if last <= max_line:
            held = self._cut_leftover(rest_start)
            if held is None:
                return Lines(chunk, base, None, None, None), ended_skip
            lines, offsets = chunk.split(b"\n"), None
        else:
            lines = chunk.split(b"\n")
            held = self._cut_leftover(rest_start)
            if held is None and max(map(len, lines)) <= max_line:
                return Lines(chunk, base, lines, line_offsets(lines, base), None), ended_skip
        offsets = line_offsets(lines, base)
        long_lines: dict[int, int] = {}
        for i, line in enumerate(lines):
            if len(line) > max_line:
                long_lines[offsets[i]] = len(line)
                lines[i] = line[:max_line]
        if held is not None:
            lines.append(held[:max_line])
            offsets.append(rest_start)
            long_lines[rest_start] = len(held)
        return Lines(chunk, base, lines, offsets, long_lines), ended_skip

    def _cut_leftover(self, start: int) -> bytes | None:
        """An unterminated rest already over the limit: hand it out cut, skip what follows."""
        if len(self.leftover) <= self.max_line:
            return None
        held, self.leftover = self.leftover, b""
        self.skip_from = start
        return held


def line_offsets(lines: list[bytes], base: int) -> list[int]:
    """The offset of each line when the first starts at ``base`` (newlines between)."""
    offsets: list[int] = []
    append = offsets.append
    for line in lines:
        append(base)
        base += len(line) + 1
    return offsets
