"""One file's decode stages: split lines, decode, join, merge, and build records.

A :class:`Tailer` reads through its :class:`~collector.filestate.FileState`
(which owns the file's identity, generation and offsets) and turns the bytes
into records: :class:`~collector.reader.LineSplitter` (no formats) ->
:class:`~collector.decode.LineDecoder` (the file's format) ->
:class:`~collector.partial.PartialJoiner` (bytes) -> multiline -> records.

Offsets: ``file.read_offset`` is how far the file was read; :meth:`Tailer.mark`
is how far it was *consumed*: the first byte not yet part of an emitted
record (a pending fragment, an open multi-line event, or a line without its
newline yet).  Reading resumes there after a restart, so nothing pending is
ever skipped; records re-read get the same ``event.id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from collector.decode import LineDecoder
from collector.events import EVENTS
from collector.filestate import FileState, State
from collector.multiline import Multiline, make_rule
from collector.parsers.cri import decode_cri_batch, decode_cri_text_batch
from collector.parsers.docker import decode_docker_batch
from collector.parsers.entry import Columns, Entry
from collector.partial import Carried, PartialJoiner
from collector.reader import Lines, LineSplitter, line_offsets
from podlog.protocols import FileMark
from podlog.record import Record, RecordBuilder, podlog_fields

__all__ = ["PATH_PODLOG", "STREAMS", "Tailer", "TailerSettings"]

STREAMS = ("stdout", "stderr")
"""The streams of a container's log file."""

PATH_PODLOG = podlog_fields("path")
"""The ``podlog`` map of records as the tailer builds them (the enricher replaces it)."""

_DOCKER, _CRI, _CRI_TEXT = 0, 1, 2
"""Kinds of lines the fast path takes: Docker JSON, CRI bytes, CRI text of an ASCII chunk."""

_BATCH_DECODERS: dict[int, Callable[[Any, int, int, Columns], tuple[int, int]]] = {
    _DOCKER: decode_docker_batch,
    _CRI: decode_cri_batch,
    _CRI_TEXT: decode_cri_text_batch,
}
"""The format's batch decoder for each kind of line the fast path takes."""

FRAGMENT_WAIT_SECONDS = 5.0
"""How long a rotated file ending in an open partial line waits for the next file of its
container to open (kubelet creates it empty; it opens at its first complete line)."""

TruncationHandler = Callable[["Tailer", int, "str | None"], "list[Record]"]
"""Called when a tailer finds its file truncated in place: (tailer, new size, head now)."""
FirstLineHandler = Callable[["Tailer", str], None]
"""Called when a generation that began empty after a truncation has a whole first line:
(tailer, its head)."""


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
    """Reads one file through its FileState and builds its records, over and over."""

    def __init__(
        self, *, settings: TailerSettings, file: FileState, kubernetes: Mapping[str, Any],
        fmt: str | None = None, record_identity: str | None = None,
        record_generation: int | None = None,
    ) -> None:
        self.settings = settings
        self.file = file
        self.kubernetes: Mapping[str, Any] = kubernetes
        """The ``kubernetes`` map of the records built next (shared by them, read-only)."""
        self.podlog: Mapping[str, Any] = PATH_PODLOG
        """The ``podlog`` map of the records built next (shared by them, read-only)."""
        self.source: str | None = None
        """``log.source`` of a node file (``file``, see :mod:`collector.hostfiles`); None: a container's."""
        self.default_multiline: str | None = None
        """The multiline rule of a node file's glob (``host_files_multiline``); None: the collector's."""
        self.record_identity = record_identity
        """For a drain: the identity its records carry (the file it continues)."""
        self.record_generation = record_generation
        self.splitter = LineSplitter(settings.max_line_bytes)
        self.decoder = LineDecoder(file.path, fmt)
        self.joiner = PartialJoiner(settings.max_line_bytes)
        self.multiline: Multiline | None = None
        self.multiline_name = "none"
        self.on_truncated: TruncationHandler | None = None
        self.on_first_line: FirstLineHandler | None = None
        """Called when a generation that began empty after a truncation has its first whole
        line, before it is read: generations copied away unseen meanwhile are found first."""
        self.successor: Tailer | None = None
        """The next file of the same container (a rotation): open fragments continue there."""
        self.carried_marks: dict[str, FileMark] = {}
        """Final marks of earlier files whose open fragment this file continues: they are
        emitted with the record that completes it, never before."""
        self.last_mark: int = -1
        self._read_any = False
        """True once a read returned bytes (a file read again from its start must not be)."""
        self._check_head_next = True
        """Compare the head before the next read: nothing was read since open or the end."""
        self._builder: RecordBuilder | None = None
        self._orphan_since: float | None = None
        self._resume: dict[str, int] | None = None
        """Per-stream offsets below which lines were emitted before a restart (skipped)."""
        self._resume_past = (0, 0)
        """(offset, bytes past it already emitted) of the mark this file resumed at."""

    # -- what the file state owns, read-only here ------------------------------

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def identity(self) -> str:
        return self.file.identity

    @property
    def read_offset(self) -> int:
        return self.file.read_offset

    @property
    def generation(self) -> int:
        return self.file.generation

    @property
    def closed(self) -> bool:
        return self.file.closed

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
        file = self.file
        if file.closed or file.is_blocked() or not file.copy_done():
            return []
        out: list[Record] = []
        if self._check_head_next and file.head is not None and not file.source.compressed:
            # First read, or resuming after idling at the end: a truncate-and-rewrite
            # meanwhile shows in the head, even when the file grew past our offset again.
            out.extend(self._check_head())
            if file.state is State.TRUNCATED and not file.copy_done():
                return out
        self._check_head_next = False
        if file.head is None and file.generation > 0 and self.on_first_line is not None:
            first = file.head_now()
            if first is not None:
                self.on_first_line(self, first)
                file.confirm_head()
                if not file.copy_done():
                    return out
        total = 0
        chunk = self.settings.chunk_bytes
        source = file.source
        verify = not source.compressed
        file.at_eof = False
        while total < budget:
            try:
                data = source.pread(min(chunk, budget - total), file.read_offset)
            except OSError as exc:
                EVENTS.file_failed(self.path, exc, "read")
                file.at_eof = True
                file.eof_count += 1  # unreadable: successors must not wait on it
                break
            if not data:
                file.at_eof = True
                file.eof_count += 1
                self._check_head_next = True
                if not source.compressed:
                    out.extend(self._check_truncation())
                break
            if verify and not file.head_unchanged():
                # Truncated and written again past our offset since the last read (copytruncate
                # while reading paused): these bytes belong to the next generation.
                out.extend(self._check_head())
                break
            file.read_offset += len(data)
            total += len(data)
            self._read_any = True
            out.extend(self._consume(data))
        if file.read_offset > file.size_seen:
            file.size_seen = file.read_offset
        file.holds_fragment = self.joiner.has_pending() and self.successor is not None
        if file.head is None:
            file.confirm_head()
        return out

    def _check_truncation(self) -> list[Record]:
        """At EOF: if the file shrank below our offset, or below the size it was seen at, it
        was truncated in place (a generation not read yet is truncated too)."""
        file = self.file
        try:
            st = file.source.fstat()
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fstat")
            return []
        if st.st_size >= file.read_offset and st.st_size >= file.size_seen:
            file.eof_mtime = st.st_mtime_ns
            return []
        # The handler sees the mtime the ended generation was last seen whole at.
        out = self._truncated(st.st_size, file.head_now())
        file.eof_mtime = st.st_mtime_ns
        return out

    def _check_head(self) -> list[Record]:
        file = self.file
        if file.head is None:
            return []  # too short to tell when last seen: nothing to compare with
        try:
            st = file.source.fstat()
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fstat")
            return []
        if st.st_size == file.read_offset and st.st_mtime_ns == file.eof_mtime:
            return []  # untouched since we reached the end
        head = file.head_now()
        # Empty now, though its first line was fingerprinted: truncated, even before a byte was read
        # (unless there is no whole first line to compare yet, a long one still being written).
        if (head is None and st.st_size >= file.read_offset and st.st_size > 0) or (
            head is not None and head == file.head
        ):
            file.eof_mtime = st.st_mtime_ns
            return []
        out = self._truncated(st.st_size, head)
        file.eof_mtime = st.st_mtime_ns
        return out

    def truncated_now(self) -> list[Record]:
        """A stat pass saw the file below the read offset: truncated in place, if it still is."""
        return self._check_truncation()

    def _truncated(self, size: int, head: str | None) -> list[Record]:
        if self.on_truncated is not None:
            return self.on_truncated(self, size, head)
        return self.restart_truncated(size, head, None)

    def restart_truncated(self, new_size: int, head: str | None, copy: FileState | None) -> list[Record]:
        """The file was truncated in place: end this generation, start the next.

        With ``copy`` (a drain of the copy copytruncate left, starting at
        this file's mark), what is pending here is dropped: the drain reads
        it again, whole.  Without one, it is emitted as it is.
        """
        if copy is not None:
            self.joiner.take_open()
            if self.multiline is not None:
                self.multiline.flush()
            out: list[Record] = []
        else:
            out = self.finish()
        self.splitter.reset()
        # Where each stream resumed belongs to the generation that ends: kept, it would
        # skip the next generation's first lines as if emitted already.
        self._resume = None
        self.file.truncate(new_size, head, copy)
        self._check_head_next = False
        return out

    def _consume(self, data: bytes) -> list[Record]:
        splitter = self.splitter
        lines, ended_skip = splitter.feed(data, self.file.read_offset)
        if ended_skip is not None:
            EVENTS.line_truncated(self.path, splitter.skipped_tail, ended_skip)
        if lines is None:
            return []
        return self._decode(lines)

    def _decode(self, lines: Lines) -> list[Record]:
        """Records for complete lines: whole chunks on the fast path when they can."""
        resume = self._resume
        if resume is None:
            return self._decode_lines(lines)
        out = self._decode_lines(lines)
        if lines.start + len(lines.chunk) >= max(resume.values()):
            self._resume = None  # every stream is past its resume offset
        return out

    def _decode_lines(self, lines: Lines) -> list[Record]:
        chunk = lines.chunk
        if lines.long_lines is None:
            fast = self.multiline is None and not self.joiner.has_pending() and self._resume is None
            if fast and self.decoder.format == "cri" and chunk.isascii() and b"\x00" not in chunk:
                # CRI text without NULs or UTF-8 to check: decode the chunk once, not each
                # line (ASCII: a line's characters are its bytes, so offsets hold).
                text = chunk.decode("ascii").split("\n")
                EVENTS.lines_read(len(text), len(chunk) + 1)
                return self._fast(text, lines.start, _CRI_TEXT)
            split, _ = lines.lines, None
            raw = split if split is not None else chunk.split(b"\n")
            EVENTS.lines_read(len(raw), len(chunk) + 1)
            if fast:
                fmt = self.decoder.detect(raw)
                if fmt == "docker" or fmt == "cri":
                    return self._fast(raw, lines.start, _DOCKER if fmt == "docker" else _CRI)
            return self._slow(raw, line_offsets(raw, lines.start))
        split_lines, offsets = lines.split()
        EVENTS.lines_read(len(split_lines), len(chunk) + 1)
        return self._slow(split_lines, offsets, lines.long_lines)

    def _slow(self, lines: list[bytes], offsets: list[int],
              long_lines: dict[int, int] | None = None) -> list[Record]:
        """Every line through the decoder and all stages (the general path)."""
        entries = self.decoder.decode(lines, offsets, self.joiner.pending_streams() or None)
        resume = self._resume
        if resume is not None:
            kept = [e for e in entries if e.offset >= resume.get(e.stream, 0)]
            if len(kept) < len(entries):
                for entry in entries:
                    if entry.offset < resume.get(entry.stream, 0):
                        # The end of a line an earlier file handed over, emitted joined before.
                        self.joiner.drop_carried(entry.stream)
            entries = kept
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
        """Append records for whole lines from ``start`` (at ``offset``), decoded as a batch.

        Returns the index and offset of the first line the format's batch
        decoder could not take.
        """
        columns = Columns()
        index, offset = _BATCH_DECODERS[kind](lines, start, offset, columns)
        if columns.offsets:
            build = self.builder().build
            out.extend(map(build, columns.offsets, columns.times, columns.times_ns, columns.messages,
                           columns.streams))
        return index, offset

    def _mark_truncated(self, entries: list[Entry], long_lines: dict[int, int]) -> list[Entry]:
        max_line = self.settings.max_line_bytes
        skipping = self.splitter.skip_from
        out = []
        for entry in entries:
            size = long_lines.get(entry.offset)
            if size is not None:
                entry = entry._replace(truncated=True)
                if entry.offset != skipping:  # a line still being skipped is counted at its end
                    EVENTS.line_truncated(self.path, size - max_line, entry.offset)
            out.append(entry)
        return out

    def _stages(self, entries: list[Entry]) -> list[Entry]:
        joiner = self.joiner
        entries = joiner.feed(entries)
        cut = joiner.take_cut()
        if cut:
            EVENTS.line_truncated(self.path, cut, -1)
        if joiner.errors:
            for code, count in joiner.take_errors().items():
                EVENTS.line_rejected(code, self.path, count, "joined line")
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
            builder is None
            or (builder.generation != self.generation and self.record_generation is None)
            or builder.path is not self.path or builder.kubernetes is not self.kubernetes
            or builder.podlog is not self.podlog
        ):
            settings = self.settings
            identity = self.record_identity or self.identity
            generation = self.generation if self.record_generation is None else self.record_generation
            builder = self._builder = RecordBuilder(
                cluster=settings.cluster, node=settings.node, identity=identity,
                generation=generation, path=self.path, kubernetes=self.kubernetes,
                podlog=self.podlog, source=self.source,
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
        file = self.file
        start = max(0, offset - 65536)
        try:
            tail = file.source.pread(offset - start, start)
        except OSError:
            return file.read_offset
        cut = tail.rfind(b"\n")
        if cut >= 0 and start + cut + 1 > file.read_offset:
            file.read_offset = file.size_seen = self.last_mark = start + cut + 1
        return file.read_offset

    def mark(self) -> FileMark:
        """Position after everything emitted so far: where reading resumes.

        While one stream's partial line is open, the other stream's lines go
        on being emitted: the mark then also says where each stream resumes,
        so that after a restart no emitted line (or half of one) comes again.
        """
        file = self.file
        consumed = offset = self.splitter.pending_offset(file.read_offset)
        starts = self.joiner.pending_starts()
        for start in starts.values():
            offset = min(offset, start)
        event = self.multiline.pending_offset() if self.multiline is not None else None
        if event is not None:
            offset = min(offset, event)
        streams: tuple[tuple[str, int], ...] = ()
        past = 0
        resume = self._resume
        if event is None and ((starts and offset < consumed) or resume is not None):
            # Still skipping after a restart: a stream's lines up to its resume offset were
            # emitted by an earlier run, whatever this one has read of them so far.
            streams = tuple(
                (stream, starts[stream] if stream in starts else max(consumed, (resume or {}).get(stream, 0)))
                for stream in STREAMS
            )
            past = max(0, consumed - offset - self.joiner.pending_held())
            if resume is not None and self._resume_past[0] == offset:
                past = max(past, self._resume_past[1])
        return FileMark(file.real_path, file.identity, file.generation, offset, streams, past)

    def resume_streams(self, streams: Mapping[str, int], past: int = 0) -> None:
        """Resume at the mark with these per-stream offsets (:meth:`mark`): lines of a stream
        that start before its offset were emitted before the restart and are skipped."""
        self._resume = dict(streams) if streams else None
        self._resume_past = (self.file.read_offset, past)

    def take_over(self, fragments: dict[str, Carried]) -> None:
        """Lines the previous file of the container left open continue here.

        Resumed after a restart past this file's start, before reading any of
        it: the ends of those lines may lie before the resume offsets, shipped
        joined before the restart while the previous file's own mark was not
        acknowledged yet.  The file is read again from its start (what was
        emitted is skipped as usual), so such an end is seen, and the open
        line it ended is dropped instead of joining the next line.
        """
        self.joiner.carry(fragments)
        file = self.file
        start = file.read_offset
        if not fragments or start == 0 or self._read_any:
            return
        self._resume = {stream: max(offset, start) for stream, offset in (self._resume or {}).items()}
        for stream in STREAMS:
            self._resume.setdefault(stream, start)
        file.read_offset = 0

    def resuming(self) -> dict[str, int]:
        """Per-stream offsets still skipped since :meth:`resume_streams` (empty once past them)."""
        return dict(self._resume or {})

    def take_carried_marks(self) -> dict[str, FileMark]:
        """Marks of earlier files once no fragment they handed over is still open here."""
        if not self.carried_marks or self.joiner.holds_carried():
            return {}
        marks, self.carried_marks = self.carried_marks, {}
        return marks

    def finish(self) -> list[Record]:
        """Everything pending as records: the file will not continue (rotated, truncated).

        An open fragment continues in the successor, when the file has one
        (a rotation of the same container): it is handed over, not emitted.
        """
        splitter = self.splitter
        entries: list[Entry] = []
        if splitter.leftover:
            offset = self.file.read_offset - len(splitter.leftover)
            entries.extend(self.decoder.decode([splitter.leftover], [offset], self.joiner.pending_streams()))
            splitter.leftover = b""
        entries = self.joiner.feed(entries)
        successor = self.successor
        if successor is not None and not successor.closed and self.joiner.has_pending():
            successor.take_over(self.joiner.take_open())
            mark = self.file_end_mark()
            successor.carried_marks.update(self.carried_marks)
            successor.carried_marks[mark.identity] = mark
            self.carried_marks = {}
        else:
            entries.extend(self.joiner.flush(self.file.read_offset))
        if self.multiline is not None:
            entries = self.multiline.feed(entries)
            entries.extend(self.multiline.flush())
        return self._records(entries)

    def may_close(self, now: float, rotate_wait: float) -> bool:
        """True when the file is read to its end and will not grow: time to :meth:`finish`.

        A file ending in an open partial line and with no successor yet waits
        up to :data:`FRAGMENT_WAIT_SECONDS` for one, so the line's end in the
        next file joins it instead of the two halves shipping as two records.
        """
        if not self.file.should_close(now, rotate_wait):
            # Rotated, read to its end and in a line the next file continues: once the runtime
            # writes there, it writes here no more.  Waiting out rotate_wait would hold every
            # newer file of the container back (they wait for this line's end).
            successor = self.successor
            if not (successor is not None and self.file.draining and self.file.at_eof
                    and self.joiner.has_pending() and successor.file.size_seen > 0):
                return False
        if self.successor is not None or not self.joiner.has_pending():
            return True
        if self._orphan_since is None:
            self._orphan_since = now
        return now - self._orphan_since >= FRAGMENT_WAIT_SECONDS

    def file_end_mark(self) -> FileMark:
        """The mark of this file read to its very end."""
        file = self.file
        return FileMark(file.real_path, file.identity, file.generation, file.read_offset)

    def handed_over(self) -> bool:
        """True when an open fragment of this file now waits in its successor."""
        successor = self.successor
        return successor is not None and self.identity in successor.carried_marks

    def close(self) -> None:
        """Release the file (outside a tracker: tests, benchmarks); idempotent."""
        self.file.close("closed")

    def flush_events(self) -> list[Record]:
        """Close open multi-line events (at shutdown); fragments stay pending."""
        if self.multiline is None:
            return []
        return self._records(self.multiline.flush())


def monotonic() -> float:
    """The clock tailers use for rotate_wait and multiline timeouts."""
    return time.monotonic()
