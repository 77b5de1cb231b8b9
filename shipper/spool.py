"""The spool: an append-only segmented log of batches, and its policy.

Policy lives here; the bytes are in :mod:`shipper.segment`.

* **Append** (the collector's :class:`~podlog.protocols.RecordSink`): a batch
  becomes one frame with its records and its file marks.  With ``fsync:
  batch`` the frame is on stable storage before ``append`` returns; with
  ``fsync: interval`` at most ``fsync_interval_seconds`` later.  At the size
  cap, or when the disk is full (``ENOSPC``), ``append`` raises
  :class:`~podlog.errors.SpoolFullError` and writes nothing: the collector
  pauses its tailers and the log files are the buffer.
* **Read and ack** (the shipper): batches come out in sequence order;
  :meth:`Spool.ack` releases every batch up to a sequence number, removes
  segments that hold only released batches, and records the acknowledged
  sequence in ``acked`` so a restart does not send them again.
* **Open** (recovery): every segment is scanned.  A torn tail (a crash during
  a write) is cut at the last valid frame; damage in the middle of a segment
  skips only the frames it destroyed, counted and named by sequence number in
  the log.  The spool never needs deleting to recover.
* **Lock**: an open spool holds an exclusive ``flock`` on ``lock`` in its
  directory (released on close, or by the kernel when the process dies), so a
  second process, or a second spool in this one, fails at once with
  :class:`SpoolLockedError` naming the directory and the holder's PID.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import os
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from podlog.errors import ConfigError, SpoolFullError
from podlog.files import fsync_directory, write_atomically
from podlog.protocols import Batch, FileMark
from shipper.config import SpoolConfig
from shipper.events import events
from shipper.messages import DEFAULT_MESSAGE_BYTES, StoredMessages
from shipper.records import EncodedRecords
from shipper.segment import (
    HEADER_SIZE,
    SegmentWriter,
    decode_marks,
    decode_records,
    encode_frame,
    encode_payload,
    is_disk_full,
    read_range,
    scan_segment,
    segment_name,
    segment_seq,
)

__all__ = ["Spool", "SpoolBatch", "SpoolLockedError", "merge_marks"]

ACK_FILE = "acked"
LOCK_FILE = "lock"


class SpoolLockedError(ConfigError):
    """Another spool (another agent, most likely) holds the spool directory."""


def lock_directory(directory: Path) -> int:
    """Take the exclusive lock of a spool directory; returns the fd that holds it.

    The lock file records the holder's PID, for the error the next opener gets.
    """
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise SpoolLockedError(
            f"spool directory {directory} is in use by {who} (lock file {path}); "
            "two agents must not share one podlog.state_dir"
        ) from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """One spooled batch as the shipper reads it."""

    seq: int
    """Sequence number; batches are acknowledged in this order."""
    records: EncodedRecords | StoredMessages
    """The records, in the order the collector appended them (kept encoded: schema 2
    messages, or schema 1 runs in a spool written before)."""
    marks: Mapping[str, FileMark]
    """File positions this batch completes."""
    time_ns: int
    """When the batch was appended (UTC epoch ns)."""


@dataclass(slots=True)
class _Entry:
    seq: int
    segment: int
    offset: int
    size: int
    count: int
    marks: dict[str, FileMark]
    time_ns: int


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    size: int
    last_seq: int
    entries: int = 0


@dataclass(slots=True)
class _Recovery:
    pending: list[_Entry] = field(default_factory=list)
    segments: list[_Segment] = field(default_factory=list)
    last_seq: int = 0


def _checked_records(frame: memoryview, size: int) -> EncodedRecords | StoredMessages | None:
    """The records of a frame read back for sending, or None when it no longer checks out.

    The payload checksum was verified when the spool was opened (or the frame
    was written by this process), so only the structure is checked here:
    checksumming every byte again would cost as much as sending it.
    """
    if len(frame) != size:
        return None
    try:
        return decode_records(frame[HEADER_SIZE:])
    except (ValueError, TypeError, orjson.JSONDecodeError):
        return None


def merge_marks(batches: Iterable[SpoolBatch]) -> dict[str, FileMark]:
    """The marks after ``batches`` in order: a later mark of a file replaces an earlier one."""
    merged: dict[str, FileMark] = {}
    for batch in batches:
        merged.update(batch.marks)
    return merged


class Spool:
    """Durable, size-capped buffer of batches between the collector and a transport."""

    def __init__(
        self, config: SpoolConfig, directory: Path, *, message_max_bytes: int = DEFAULT_MESSAGE_BYTES,
    ) -> None:
        self.config = config
        self.message_max_bytes = message_max_bytes
        """Largest schema 2 message the spool builds: the transport's message size limit."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self.directory)
        self._segment_limit = min(config.segment_bytes, max(4096, config.max_bytes // 4))
        try:
            self._acked_seq = self._read_ack_state()
            recovery = self._recover()
        except BaseException:
            self._unlock()
            raise
        self._pending: collections.deque[_Entry] = collections.deque(recovery.pending)
        self._segments: dict[int, _Segment] = {s.first_seq: s for s in recovery.segments}
        self._next_seq = max(recovery.last_seq, self._acked_seq) + 1
        self._bytes = sum(s.size for s in self._segments.values())
        self._records = sum(e.count for e in self._pending)
        self._writer: SegmentWriter | None = None
        self._last_fsync = time.monotonic()
        self._lock = asyncio.Lock()
        self._data = asyncio.Event()
        self._full = False
        self._closed = False
        self._sync_task: asyncio.Task[None] | None = None
        if self._pending:
            self._data.set()
        events.spool_opened(
            self,
            directory=str(self.directory),
            segments=len(self._segments),
            acked_seq=self._acked_seq,
            max_bytes=self.config.max_bytes,
        )

    # -- what the gauges and the shipper read ------------------------------

    @property
    def disk_bytes(self) -> int:
        """Bytes of segment files on disk (what the cap limits)."""
        return self._bytes

    @property
    def records(self) -> int:
        """Records not yet acknowledged."""
        return self._records

    @property
    def batches(self) -> int:
        """Batches not yet acknowledged."""
        return len(self._pending)

    @property
    def oldest_time_ns(self) -> int | None:
        """Append time of the oldest unacknowledged batch, or None when empty."""
        return self._pending[0].time_ns if self._pending else None

    @property
    def acked_seq(self) -> int:
        """Sequence number of the last acknowledged batch."""
        return self._acked_seq

    @property
    def last_seq(self) -> int:
        """Sequence number of the last appended batch."""
        return self._next_seq - 1

    def held_marks(self) -> dict[str, FileMark]:
        """The file marks of every batch not acknowledged yet: their records are held here."""
        marks: dict[str, FileMark] = {}
        for entry in self._pending:
            marks.update(entry.marks)
        return marks

    def is_full(self) -> bool:
        """True while the last append was refused for lack of space."""
        return self._full

    # -- append: the collector's RecordSink --------------------------------

    async def append(self, batch: Batch) -> None:
        """Store ``batch`` durably per the fsync policy.

        Raises :class:`SpoolFullError` at the size cap or on a full disk,
        having written nothing.
        """
        if not batch.records and not batch.marks:
            return
        if self._closed:
            raise RuntimeError("append to a closed spool")
        payload = encode_payload(batch.records, batch.marks, schema=self.config.schema,
                                 max_message_bytes=self.message_max_bytes)
        async with self._lock:
            seq = self._next_seq
            time_ns = time.time_ns()
            frame = encode_frame(seq, time_ns, payload)
            if self._pending and self._bytes + len(frame) > self.config.max_bytes:
                events.spool_full(
                    bytes_used=self._bytes, max_bytes=self.config.max_bytes, first=not self._full
                )
                self._full = True
                raise SpoolFullError(
                    f"spool holds {self._bytes} bytes of {self.config.max_bytes} "
                    "(shipper.spool.max_bytes)"
                )
            try:
                segment, offset = await asyncio.to_thread(self._write, seq, frame)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                events.spool_disk_full(
                    path=str(self.directory), error=exc.strerror or str(exc), first=not self._full
                )
                self._full = True
                raise SpoolFullError(f"disk full under {self.directory}: {exc.strerror}") from exc
            self._next_seq = seq + 1
            marks = dict(batch.marks)
            self._pending.append(
                _Entry(seq, segment.first_seq, offset, len(frame), len(batch.records), marks, time_ns)
            )
            self._records += len(batch.records)
            self._bytes += len(frame)
            segment.size += len(frame)
            segment.last_seq = seq
            segment.entries += 1
            if self._full:
                self._full = False
                events.spool_drained(bytes_used=self._bytes)
            events.spool_appended(len(batch.records), len(frame))
            self._data.set()
            if self.config.fsync == "interval" and self._sync_task is None:
                self._sync_task = asyncio.create_task(self._sync_later(), name="spool-fsync")

    async def _sync_later(self) -> None:
        """With fsync: interval, make what was appended durable within the interval."""
        try:
            await asyncio.sleep(self.config.fsync_interval_seconds)
            async with self._lock:
                writer = self._writer
                if writer is not None and writer.dirty:
                    await asyncio.to_thread(self._fsync, writer)
                    self._last_fsync = time.monotonic()
        except OSError as exc:
            events.spool_fsync_failed(path=str(self.directory), error=str(exc))
        finally:
            self._sync_task = None

    def _write(self, seq: int, frame: bytes) -> tuple[_Segment, int]:
        """Write one frame (worker thread): roll the segment if needed, then fsync per policy."""
        writer = self._writer
        if writer is None or writer.size >= self._segment_limit:
            writer = self._roll(seq)
        offset = writer.append(frame)
        writer.last_seq = seq
        now = time.monotonic()
        if self.config.fsync == "batch" or now - self._last_fsync >= self.config.fsync_interval_seconds:
            self._fsync(writer)
            self._last_fsync = now
        return self._segments[writer.first_seq], offset

    def _roll(self, first_seq: int) -> SegmentWriter:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        path = self.directory / segment_name(first_seq)
        writer = SegmentWriter(path, first_seq)
        try:
            fsync_directory(self.directory)
        except OSError:
            writer.close()
            path.unlink(missing_ok=True)
            raise
        self._writer = writer
        self._segments[first_seq] = _Segment(first_seq, path, writer.size, first_seq - 1)
        self._bytes += writer.size
        return writer

    def _fsync(self, writer: SegmentWriter) -> None:
        started = time.perf_counter()
        writer.fsync()
        events.spool_fsynced(time.perf_counter() - started)

    # -- read and ack: the shipper -----------------------------------------

    async def wait(self, after_seq: int) -> None:
        """Return once a batch with sequence number above ``after_seq`` exists."""
        while self.last_seq <= after_seq or not self._pending:
            self._data.clear()
            await self._data.wait()

    def has_pending(self, after_seq: int) -> bool:
        """True when a batch above ``after_seq`` waits to be sent."""
        return bool(self._pending) and self._pending[-1].seq > after_seq

    async def read(self, after_seq: int, *, max_records: int, max_bytes: int) -> list[SpoolBatch]:
        """Batches after ``after_seq`` in order, up to the limits (at least one if any)."""
        chosen: list[_Entry] = []
        records = 0
        nbytes = 0
        for entry in self._pending:
            if entry.seq <= after_seq:
                continue
            if chosen and (records + entry.count > max_records or nbytes + entry.size > max_bytes):
                break
            chosen.append(entry)
            records += entry.count
            nbytes += entry.size
        if not chosen:
            return []
        return await asyncio.to_thread(self._load, chosen)

    def _load(self, entries: list[_Entry]) -> list[SpoolBatch]:
        """Map the payloads of ``entries`` (worker thread), one mapping per run of a segment."""
        out: list[SpoolBatch] = []
        start = 0
        while start < len(entries):
            end = start + 1
            while end < len(entries) and entries[end].segment == entries[start].segment:
                end += 1
            run = entries[start:end]
            segment = self._segments.get(run[0].segment)
            first, last = run[0], run[-1]
            data = memoryview(b"")
            if segment is not None:
                data = read_range(segment.path, first.offset, last.offset + last.size)
            for entry in run:
                out.append(self._decode(entry, data, entry.offset - first.offset, segment))
            start = end
        return out

    def _decode(self, entry: _Entry, data: memoryview, at: int, segment: _Segment | None) -> SpoolBatch:
        frame = data[at : at + entry.size]
        records = _checked_records(frame, entry.size)
        if records is None:
            # Damaged after the spool was opened: skip the records, keep the marks.
            events.spool_damage_found(
                kind="corrupted",
                path=str(segment.path if segment else self.directory),
                start=entry.offset,
                end=entry.offset + entry.size,
                lost_batches=1,
                lost_seqs=str(entry.seq),
            )
            records = EncodedRecords([], [])
        return SpoolBatch(entry.seq, records, entry.marks, entry.time_ns)

    async def ack(self, upto_seq: int) -> None:
        """Release every batch up to and including ``upto_seq``; free whole segments."""
        if upto_seq <= self._acked_seq:
            return
        async with self._lock:
            while self._pending and self._pending[0].seq <= upto_seq:
                self._records -= self._pending.popleft().count
            self._acked_seq = upto_seq
            doomed: list[_Segment] = []
            for segment in list(self._segments.values()):
                if segment.last_seq > upto_seq:
                    break
                active = self._writer is not None and self._writer.first_seq == segment.first_seq
                if active and segment.size < self._segment_limit // 4:
                    continue
                doomed.append(segment)
                del self._segments[segment.first_seq]
                self._bytes -= segment.size
            await asyncio.to_thread(self._release, doomed, upto_seq)
            if self._full and self._bytes < self.config.max_bytes:
                self._full = False
                events.spool_drained(bytes_used=self._bytes)

    def _release(self, doomed: list[_Segment], acked_seq: int) -> None:
        for segment in doomed:
            if self._writer is not None and self._writer.first_seq == segment.first_seq:
                self._writer.close()
                self._writer = None
            segment.path.unlink(missing_ok=True)
            events.segment_removed(path=str(segment.path), last_seq=segment.last_seq)
        self._write_ack_state(acked_seq, durable=False)

    async def close(self) -> None:
        """fsync the active segment and the acknowledged position; safe to call twice."""
        if self._closed:
            return
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        async with self._lock:
            self._closed = True
            await asyncio.to_thread(self._close_files)

    def _close_files(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._write_ack_state(self._acked_seq, durable=True)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        """Release the directory lock (the lock file stays; its PID is overwritten by the next holder)."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    # -- acknowledged position ---------------------------------------------

    def _ack_path(self) -> Path:
        return self.directory / ACK_FILE

    def _read_ack_state(self) -> int:
        path = self._ack_path()
        try:
            doc = orjson.loads(path.read_bytes())
            seq = int(doc["acked_seq"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            events.spool_state_unreadable(path=str(path), error=str(exc))
            return 0
        if doc.get("crc") != zlib.crc32(str(seq).encode()) or doc.get("version") != 1:
            events.spool_state_unreadable(path=str(path), error="checksum or version mismatch")
            return 0
        return seq

    def _write_ack_state(self, seq: int, *, durable: bool) -> None:
        """Persist the acknowledged position.

        A failure (a full disk) is counted and logged, never raised: the
        position in memory is right, the next ack writes it again, and a crash
        before then only resends batches that are already delivered.
        """
        path = self._ack_path()
        tmp = path.with_name(ACK_FILE + ".tmp")
        doc = orjson.dumps({"version": 1, "acked_seq": seq, "crc": zlib.crc32(str(seq).encode())})
        try:
            write_atomically(path, tmp, doc, durable=durable)
        except OSError as exc:
            events.spool_state_write_failed(path=str(path), error=str(exc))

    # -- recovery ----------------------------------------------------------

    def _recover(self) -> _Recovery:
        found = sorted(
            (seq, path)
            for path in self.directory.iterdir()
            if (seq := segment_seq(path)) is not None and path.is_file()
        )
        result = _Recovery(last_seq=self._acked_seq)
        for index, (first_seq, path) in enumerate(found):
            is_last = index == len(found) - 1
            data = path.read_bytes()
            scan = scan_segment(data)
            prev_seq = max(result.last_seq, first_seq - 1)
            frames = iter(scan.frames)
            next_frame = next(frames, None)
            # Walk frames and damage in file order to name what each damage destroyed.
            for damage in scan.damage:
                while next_frame is not None and next_frame.offset < damage.start:
                    prev_seq = max(prev_seq, next_frame.seq)
                    next_frame = next(frames, None)
                at_tail = damage.end >= scan.size
                if at_tail:
                    # A torn tail is an append that never returned: its records
                    # are read again from the log files, whose checkpoints never
                    # moved past them.
                    lost_from = max(prev_seq, self._acked_seq) + 1
                    events.spool_damage_found(
                        kind="torn_tail" if is_last else "corrupted",
                        path=str(path),
                        start=damage.start,
                        end=damage.end,
                        lost_batches=1,
                        lost_seqs=f">={lost_from}",
                    )
                else:
                    after = next_frame.seq if next_frame is not None else prev_seq + 2
                    lost_from = max(prev_seq, self._acked_seq) + 1
                    lost_to = after - 1
                    count = max(0, lost_to - lost_from + 1)
                    events.spool_damage_found(
                        kind="corrupted",
                        path=str(path),
                        start=damage.start,
                        end=damage.end,
                        lost_batches=count,
                        lost_seqs=f"{lost_from}-{lost_to}" if count else "",
                    )
            if scan.valid_end < scan.size:
                with path.open("r+b") as handle:
                    handle.truncate(scan.valid_end)
                    handle.flush()
                    os.fsync(handle.fileno())
            live = [f for f in scan.frames if f.seq > self._acked_seq]
            if scan.frames:
                result.last_seq = max(result.last_seq, max(f.seq for f in scan.frames))
            if not live:
                path.unlink()
                continue
            segment = _Segment(first_seq, path, scan.valid_end, max(f.seq for f in scan.frames))
            segment.entries = len(live)
            result.segments.append(segment)
            for frame in live:
                result.pending.append(
                    _Entry(
                        seq=frame.seq,
                        segment=first_seq,
                        offset=frame.offset,
                        size=frame.size,
                        count=int(frame.meta.get("n", 0)),
                        marks=decode_marks(frame.meta),
                        time_ns=frame.time_ns,
                    )
                )
        result.pending.sort(key=lambda e: e.seq)
        with contextlib.suppress(OSError):
            fsync_directory(self.directory)
        return result
