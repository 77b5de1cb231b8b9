"""One open log file: read, split, decode, join, merge, and build records.

A :class:`Tailer` owns the descriptor of one file (one inode) from open to
close.  It reads with ``pread`` from its own offset, so the path may be
renamed, re-pointed or deleted meanwhile: the descriptor still reaches the
data, and a rotated file is read to its end before it is closed.

Offsets: ``read_offset`` is how far the file was read; :meth:`Tailer.mark`
is how far it was *consumed*: the first byte not yet part of an emitted
record (a pending fragment, an open multi-line event, or a line without its
newline yet).  Reading resumes there after a restart, so nothing pending is
ever skipped; records re-read get the same ``event.id``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import orjson

from collector.decode import LineDecoder
from collector.events import EVENTS
from collector.fingerprint import head_fingerprint
from collector.multiline import Multiline, make_rule
from collector.parsers.entry import SECOND_NS, Entry, timestamp_ns
from collector.partial import PartialJoiner
from podlog.protocols import FileMark
from podlog.record import Record, RecordBuilder, podlog_fields

__all__ = ["PATH_PODLOG", "Tailer", "TailerSettings"]

PATH_PODLOG = podlog_fields("path")
"""The ``podlog`` map of records as the tailer builds them (the enricher replaces it)."""

_DOCKER, _CRI, _CRI_TEXT = 0, 1, 2
"""Kinds of lines the fast path takes: Docker JSON, CRI bytes, CRI text of an ASCII chunk."""


class TailerSettings:
    """The slice of configuration and identity a tailer needs (shared by all tailers)."""

    __slots__ = (
        "chunk_bytes",
        "cluster",
        "max_line_bytes",
        "multiline_flush_seconds",
        "multiline_max_lines",
        "node",
    )

    def __init__(
        self, *, cluster: str, node: str, chunk_bytes: int, max_line_bytes: int,
        multiline_flush_seconds: float, multiline_max_lines: int,
    ) -> None:
        self.cluster = cluster
        self.node = node
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.multiline_flush_seconds = multiline_flush_seconds
        self.multiline_max_lines = multiline_max_lines


class Tailer:
    """Reads one file (one inode) from an offset to its end, over and over."""

    def __init__(
        self, *, settings: TailerSettings, path: str, real_path: str, fd: int, dev: int, ino: int,
        identity: str, head: str, generation: int, offset: int, kubernetes: Mapping[str, Any],
        fmt: str | None = None,
    ) -> None:
        self.settings = settings
        self.path = path
        """The path as discovered (``log.file.path``)."""
        self.real_path = real_path
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.identity = identity
        self.head = head
        self.generation = generation
        self.read_offset = offset
        self.size_seen = offset
        self.kubernetes: Mapping[str, Any] = kubernetes
        """The ``kubernetes`` map of the records built next (shared by them, read-only)."""
        self.podlog: Mapping[str, Any] = PATH_PODLOG
        """The ``podlog`` map of the records built next (shared by them, read-only)."""
        self.decoder = LineDecoder(path, fmt)
        self.joiner = PartialJoiner(settings.max_line_bytes)
        self.multiline: Multiline | None = None
        self.multiline_name = "none"
        self._leftover = b""
        self._skip_from: int | None = None
        """Offset of an over-long line whose rest is being skipped."""
        self.at_eof = False
        self.drained_once = False
        """Set the first time the file is read to its end; successors wait for it."""
        self.rotated_at: float | None = None
        """Monotonic time the path stopped naming this file (renamed, re-pointed, deleted)."""
        self.closed = False
        self.predecessor: Tailer | None = None
        """A rotated file at the same path that must be read to its end first."""
        self.last_mark: int = -1
        self._check_head_next = True
        """Compare the head before the next read: nothing was read since open or the end."""
        self._eof_mtime = -1
        """Modification time when the end was last reached: unchanged means nothing to check."""
        self._builder: RecordBuilder | None = None

    # -- configuration that can change per batch ---------------------------------

    def set_multiline(self, name: str) -> list[Record]:
        """Switch the multiline rule; returns the records of events it closed."""
        if name == self.multiline_name:
            return []
        flushed = self.multiline.flush() if self.multiline is not None else []
        try:
            rule = make_rule(name)
        except ValueError as exc:
            EVENTS.line_rejected("invalid_multiline_rule", self.path, 1, str(exc))
            rule = None
        self.multiline_name = name
        self.multiline = None if rule is None else Multiline(
            rule,
            flush_seconds=self.settings.multiline_flush_seconds,
            max_lines=self.settings.multiline_max_lines,
            max_bytes=self.settings.max_line_bytes,
        )
        return self._records(flushed)

    # -- reading -----------------------------------------------------------------

    def read(self, budget: int) -> list[Record]:
        """Records completed by reading up to ``budget`` bytes; never raises OSError."""
        if self.closed:
            return []
        predecessor = self.predecessor
        if predecessor is not None:
            if not (predecessor.drained_once or predecessor.closed):
                return []
            self.predecessor = None
        out: list[Record] = []
        if self._check_head_next and self.read_offset > 0:
            # First read, or resuming after idling at the end: a truncate-and-rewrite
            # meanwhile shows in the head, even when the file grew past our offset again.
            out.extend(self._check_head())
        self._check_head_next = False
        total = 0
        chunk = self.settings.chunk_bytes
        fd = self.fd
        self.at_eof = False
        while total < budget:
            try:
                data = os.pread(fd, min(chunk, budget - total), self.read_offset)
            except OSError as exc:
                EVENTS.file_failed(self.path, exc, "read")
                self.at_eof = True
                self.drained_once = True  # unreadable: successors must not wait on it
                break
            if not data:
                self.at_eof = True
                self._check_head_next = True
                self.drained_once = True
                out.extend(self._check_truncation())
                break
            self.read_offset += len(data)
            total += len(data)
            out.extend(self._consume(data))
        if self.read_offset > self.size_seen:
            self.size_seen = self.read_offset
        return out

    def _check_truncation(self) -> list[Record]:
        """At EOF: if the file shrank below our offset, it was truncated in place."""
        try:
            st = os.fstat(self.fd)
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fstat")
            return []
        self._eof_mtime = st.st_mtime_ns
        if st.st_size >= self.read_offset:
            return []
        return self.restart_truncated(st.st_size)

    def _check_head(self) -> list[Record]:
        try:
            st = os.fstat(self.fd)
            size = st.st_size
            if size == self.read_offset and st.st_mtime_ns == self._eof_mtime:
                return []  # untouched since we reached the end
            self._eof_mtime = st.st_mtime_ns
            head = head_fingerprint(self.fd)
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fingerprint")
            return []
        if head is None or head == self.head:
            return []
        return self.restart_truncated(size)

    def restart_truncated(self, new_size: int) -> list[Record]:
        """The file was truncated (copytruncate): emit what is pending, restart at 0."""
        lost = self.size_seen - self.read_offset
        EVENTS.file_truncated(self.path, self.identity, self.read_offset, new_size)
        EVENTS.bytes_lost("truncated", self.path, lost, self.identity)
        out = self.finish()
        self.generation += 1
        self.read_offset = 0
        self.size_seen = new_size
        self._leftover = b""
        self._skip_from = None
        self.at_eof = False
        try:
            self.head = head_fingerprint(self.fd, final=True) or self.head
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fingerprint")
        return out

    def _consume(self, data: bytes) -> list[Record]:
        max_line = self.settings.max_line_bytes
        base = self.read_offset - len(data)  # offset of data[0]
        if self._skip_from is not None:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            EVENTS.line_truncated(self.path, base + newline - self._skip_from - max_line,
                                  self._skip_from)
            self._skip_from = None
            data = data[newline + 1 :]
            base += newline + 1
        if self._leftover:
            base -= len(self._leftover)
            data = self._leftover + data
            self._leftover = b""
        last = data.rfind(b"\n")
        long_lines: dict[int, int] = {}
        if last < 0:
            if len(data) <= max_line:
                self._leftover = data
                return []
            # A line longer than the limit with no end yet: cut it, skip the rest.
            self._skip_from = base
            long_lines[base] = len(data)
            lines = [data[:max_line]]
            offsets = [base]
        else:
            if last + 1 < len(data):
                self._leftover = data[last + 1 :]
                if len(self._leftover) > max_line:
                    self._skip_from = base + last + 1
            chunk = data[:last]
            fast = self._skip_from is None and self.multiline is None and not self.joiner.has_pending()
            if (
                fast and self.decoder.format == "cri" and chunk.isascii() and b"\x00" not in chunk
            ):
                # CRI text without NULs or UTF-8 to check: decode the chunk once, not each
                # line (ASCII: a line's characters are its bytes, so offsets hold).
                text = chunk.decode("ascii").split("\n")
                if last <= max_line or max(map(len, text)) <= max_line:
                    EVENTS.lines_read(len(text), len(data))
                    return self._fast(text, base, _CRI_TEXT)
            lines = chunk.split(b"\n")
            if self._skip_from is None and (last <= max_line or max(map(len, lines)) <= max_line):
                EVENTS.lines_read(len(lines), len(data))
                if fast:
                    fmt = self.decoder.detect(lines)
                    if fmt == "docker" or fmt == "cri":
                        return self._fast(lines, base, _DOCKER if fmt == "docker" else _CRI)
                return self._slow(lines, _line_offsets(lines, base))
            offsets = _line_offsets(lines, base)
            if self._skip_from is not None:
                lines.append(self._leftover[:max_line])
                offsets.append(self._skip_from)
                long_lines[self._skip_from] = len(self._leftover)
                self._leftover = b""
            for i, line in enumerate(lines):
                if len(line) > max_line:
                    long_lines[offsets[i]] = len(line)
                    lines[i] = line[:max_line]
        EVENTS.lines_read(len(lines), len(data))
        return self._slow(lines, offsets, long_lines)

    def _slow(self, lines: list[bytes], offsets: list[int],
              long_lines: dict[int, int] | None = None) -> list[Record]:
        """Every line through the decoder and all stages (the general path)."""
        entries = self.decoder.decode(lines, offsets)
        if long_lines:
            entries = self._mark_truncated(entries, long_lines)
        return self._records(self._stages(entries))

    def _fast(self, lines: list[bytes] | list[str], base: int, kind: int) -> list[Record]:
        """Whole, well-formed lines (the first at offset ``base``) straight to records.

        ``kind`` is ``_DOCKER`` or ``_CRI`` (lines as read), or ``_CRI_TEXT``
        (CRI lines of an ASCII chunk, decoded). A line that is anything else (a
        fragment, bad JSON, invalid UTF-8, an odd timestamp) goes through
        :meth:`_slow`, which decodes, counts and joins as usual, as do the lines
        after it until no fragment is pending.
        """
        out: list[Record] = []
        start, count, offset = 0, len(lines), base
        while start < count:
            start, offset = self._fast_run(lines, start, offset, kind, out)
            while start < count:
                line = lines[start]
                raw = line.encode("ascii") if isinstance(line, str) else line
                out.extend(self._slow([raw], [offset]))
                offset += len(line) + 1
                start += 1
                if not self.joiner.has_pending():
                    break
        return out

    def _fast_run(
        self, lines: list[Any], start: int, offset: int, kind: int, out: list[Record],
    ) -> tuple[int, int]:
        """Append records for whole lines from ``start`` (at ``offset``) in one loop.

        Returns the index and offset of the first line it cannot take.
        """
        build = self.builder().build
        second_ns = SECOND_NS
        loads = orjson.loads
        append = out.append
        index = start
        for index in range(start, len(lines)):
            line = lines[index]
            try:
                if kind == _DOCKER:
                    doc = loads(line)
                    log = doc["log"]
                    time_text = doc["time"]
                    stream = doc["stream"]
                    if log[-1:] != "\n" or (stream != "stdout" and stream != "stderr"):
                        break
                    message = log[:-1]
                elif kind == _CRI_TEXT:
                    time_text, stream, tag, message = line.split(" ", 3)
                    if tag != "F" or (stream != "stdout" and stream != "stderr"):
                        break
                else:
                    time_raw, stream_raw, tag, message_raw = line.split(b" ", 3)
                    if tag != b"F":
                        break
                    if stream_raw == b"stdout":
                        stream = "stdout"
                    elif stream_raw == b"stderr":
                        stream = "stderr"
                    else:
                        break
                    time_text = time_raw.decode("ascii")
                    message = message_raw.decode()
                    if "\x00" in message:
                        break
                # "...:ss.fffffffffZ" (nine digits) in a known second here, the rest in the call.
                base_ns = second_ns.get(time_text[:19])
                if (
                    base_ns is not None and len(time_text) == 30 and time_text[29] == "Z"
                    and time_text[19] == "." and (fraction := time_text[20:29]).isdigit()
                ):
                    time_ns = base_ns + int(fraction)
                else:
                    time_ns = timestamp_ns(time_text)
            except (ValueError, KeyError, TypeError, IndexError, OverflowError):
                break  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
            append(build(offset, time_text, time_ns, message, stream))
            offset += len(line) + 1
        else:
            return len(lines), offset
        return index, offset

    def _mark_truncated(self, entries: list[Entry], long_lines: dict[int, int]) -> list[Entry]:
        max_line = self.settings.max_line_bytes
        out = []
        for entry in entries:
            size = long_lines.get(entry.offset)
            if size is not None:
                entry = entry._replace(truncated=True)
                if entry.offset != self._skip_from:
                    EVENTS.line_truncated(self.path, size - max_line, entry.offset)
            out.append(entry)
        return out

    def _stages(self, entries: list[Entry]) -> list[Entry]:
        entries = self.joiner.feed(entries)
        cut = self.joiner.take_cut()
        if cut:
            EVENTS.line_truncated(self.path, cut, -1)
        if self.multiline is not None:
            entries = self.multiline.feed(entries)
        return entries

    def _records(self, entries: list[Entry]) -> list[Record]:
        if not entries:
            return []
        build = self.builder().build
        return [
            build(e.offset, e.time, e.time_ns, e.message, e.stream, e.truncated)
            for e in entries
        ]

    def builder(self) -> RecordBuilder:
        """The record builder of the current generation, path and ``kubernetes`` map."""
        builder = self._builder
        if (
            builder is None or builder.generation != self.generation
            or builder.path is not self.path or builder.kubernetes is not self.kubernetes
            or builder.podlog is not self.podlog
        ):
            settings = self.settings
            builder = self._builder = RecordBuilder(
                cluster=settings.cluster, node=settings.node, identity=self.identity,
                generation=self.generation, path=self.path, kubernetes=self.kubernetes,
                podlog=self.podlog,
            )
        return builder

    def adopt(self, record: Record) -> None:
        """Build the next records with the ``kubernetes`` and ``podlog`` maps of ``record``.

        The pipeline hands over an enriched record, so that later records are
        built with the enricher's maps already and it need not replace them.
        """
        self.kubernetes = record["kubernetes"]
        self.podlog = record["podlog"]

    # -- timers, marks and the end ---------------------------------------------

    def flush_due(self, now: float) -> list[Record]:
        """Multi-line events idle past the flush timeout."""
        if self.multiline is None or not self.multiline.has_open():
            return []
        return self._records(self.multiline.flush_due(now))

    def skip_to(self, offset: int) -> int:
        """Start at the first line beginning at or before ``offset``, before any read.

        Used for a file whose earlier lines are deliberately not collected
        (its pod was excluded meanwhile); returns the new read offset.
        """
        start = max(0, offset - 65536)
        try:
            tail = os.pread(self.fd, offset - start, start)
        except OSError:
            return self.read_offset
        cut = tail.rfind(b"\n")
        if cut >= 0 and start + cut + 1 > self.read_offset:
            self.read_offset = self.size_seen = self.last_mark = start + cut + 1
        return self.read_offset

    def mark(self) -> FileMark:
        """Position after everything emitted so far: where reading resumes."""
        offset = self.read_offset - len(self._leftover)
        if self._skip_from is not None:
            offset = self._skip_from
        pending = self.joiner.pending_offset()
        if pending is not None and pending < offset:
            offset = pending
        if self.multiline is not None:
            pending = self.multiline.pending_offset()
            if pending is not None and pending < offset:
                offset = pending
        return FileMark(self.real_path, self.identity, self.generation, offset)

    def finish(self) -> list[Record]:
        """Everything pending as records: the file will not continue (rotated, truncated)."""
        entries: list[Entry] = []
        if self._leftover:
            offset = self.read_offset - len(self._leftover)
            entries.extend(self.decoder.decode([self._leftover], [offset]))
            self._leftover = b""
        entries = self.joiner.feed(entries)
        entries.extend(self.joiner.flush())
        if self.multiline is not None:
            entries = self.multiline.feed(entries)
            entries.extend(self.multiline.flush())
        return self._records(entries)

    def flush_events(self) -> list[Record]:
        """Close open multi-line events (at shutdown); fragments stay pending."""
        if self.multiline is None:
            return []
        return self._records(self.multiline.flush())

    def is_deleted(self) -> bool:
        """True when no name links to the file any more (only descriptors reach it)."""
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return False

    def should_close(self, now: float, rotate_wait: float) -> bool:
        """True when the file was rotated away, read to its end, and rotate_wait passed."""
        return (
            self.rotated_at is not None
            and self.at_eof
            and now - self.rotated_at >= rotate_wait
        )

    def close(self) -> None:
        """Release the descriptor; idempotent."""
        if not self.closed:
            self.closed = True
            try:
                os.close(self.fd)
            except OSError as exc:
                EVENTS.file_failed(self.path, exc, "close")


def _line_offsets(lines: list[bytes], base: int) -> list[int]:
    """The offset of each line when the first starts at ``base`` (newlines between)."""
    offsets: list[int] = []
    append = offsets.append
    for line in lines:
        append(base)
        base += len(line) + 1
    return offsets


def monotonic() -> float:
    """The clock tailers use for rotate_wait and multiline timeouts."""
    return time.monotonic()
