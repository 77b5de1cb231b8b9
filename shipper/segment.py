"""Spool segments: the bytes on disk (framing, checksums, scanning, appending).

A segment is a file named after the sequence number of its first frame,
``<seq:020d>.seg``, holding frames back to back::

    offset  size  field
    0       4     magic  b"PLSF"
    4       4     payload length (big endian)
    8       8     sequence number of the batch (grows by one per batch, across segments)
    16      8     append time, UTC epoch ns
    24      4     CRC-32 of the payload
    28      4     CRC-32 of bytes 4..28 (so a damaged length is never trusted)
    32      n     payload

The payload is ``u32 meta length | meta JSON | body``; the meta holds the
record count and the batch's file marks, so opening a spool reads the marks
without decoding any record.  The body is the batch's schema 2 messages
(``podlog.wire``) back to back, exactly the values that go to Kafka, with
each one's key, retention class, rows and length in the meta (``"s": 2``);
or, in spools written before schema 2 (or with ``shipper.spool.schema: 1``),
the records' JSON, grouped in runs (see :mod:`shipper.records`).

:func:`scan_segment` reads a segment and returns its valid frames and its
damaged byte ranges: after a bad frame it searches forward for the next magic
whose header and payload checksums both hold.  What the spool does with the
result (cut a torn tail, skip and count the damage) is policy, in ``spool.py``.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from podlog.payload import parse_payloads
from podlog.protocols import FileMark
from podlog.record import Record, SharedMap
from podlog.wire import payload_policy
from shipper.messages import DEFAULT_MESSAGE_BYTES, StoredMessage, StoredMessages, build_messages
from shipper.records import EncodedRecords, Run

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Damage",
    "FrameInfo",
    "ScanResult",
    "SegmentWriter",
    "decode_marks",
    "decode_payload",
    "decode_records",
    "encode_frame",
    "encode_payload",
    "is_disk_full",
    "read_range",
    "scan_segment",
    "segment_name",
    "segment_seq",
]

MAGIC = b"PLSF"
_HEADER = struct.Struct(">4sIQQII")
HEADER_SIZE = _HEADER.size
_META_LEN = struct.Struct(">I")
MAX_PAYLOAD = 1 << 30
"""A length above this is damage, not a batch."""

SUFFIX = ".seg"


class FrameInfo(NamedTuple):
    """A valid frame found in a segment."""

    seq: int
    """Batch sequence number."""
    time_ns: int
    """When the batch was appended (UTC epoch ns)."""
    offset: int
    """Offset of the frame header in the segment."""
    size: int
    """Frame size: header plus payload."""
    meta: dict[str, Any]
    """The decoded meta: ``n`` (record count) and ``m`` (marks)."""


class Damage(NamedTuple):
    """A byte range of a segment that holds no valid frame."""

    start: int
    end: int


@dataclass(slots=True)
class ScanResult:
    """What :func:`scan_segment` found in one segment."""

    frames: list[FrameInfo]
    damage: list[Damage]
    valid_end: int
    """Offset just past the last valid frame (0 when there is none)."""
    size: int
    """Size of the data scanned."""


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first frame has sequence ``first_seq``."""
    return f"{first_seq:020d}{SUFFIX}"


def segment_seq(path: Path) -> int | None:
    """The first sequence number encoded in a segment's name, or None if not a segment."""
    if path.suffix != SUFFIX or not path.stem.isdigit():
        return None
    return int(path.stem)


def _marks_meta(marks: Mapping[str, FileMark]) -> dict[str, list[Any]]:
    return {
        key: [mark.path, mark.identity, mark.generation, mark.offset,
              *([[list(pair) for pair in mark.streams], mark.past] if mark.streams else [])]
        for key, mark in marks.items()
    }


def encode_payload(
    records: Sequence[Record], marks: Mapping[str, FileMark], *, schema: int = 2,
    max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
) -> bytes:
    """The payload of one batch: meta (count, marks, and where each message or record is), then
    the body: schema 2 messages of at most ``max_message_bytes`` each, or (``schema=1``) records."""
    if schema == 1:
        return _encode_records_payload(records, marks)
    messages = build_messages(records, max_message_bytes)
    meta = orjson.dumps({
        "n": len(records),
        "m": _marks_meta(marks),
        "s": 2,
        "v": [[m.key, m.retention, m.rows, len(m.value)] for m in messages],
    })
    return _META_LEN.pack(len(meta)) + meta + b"".join(m.value for m in messages)


def _encode_records_payload(records: Sequence[Record], marks: Mapping[str, FileMark]) -> bytes:
    """Schema 1: one JSON array of each record's own encoding, grouped in runs by stream (see
    :mod:`shipper.records`), so a reader can take the runs apart by length without decoding."""
    encoded = EncodedRecords.from_records(schema1_records(records))
    meta = orjson.dumps(
        {
            "n": len(encoded),
            "m": _marks_meta(marks),
            "g": encoded.groups,
            "u": [[run.group, len(run.lengths)] for run in encoded.runs],
            "l": [length for run in encoded.runs for length in run.lengths],
        }
    )
    body = b"[" + b",".join(run.data for run in encoded.runs) + b"]"
    return _META_LEN.pack(len(meta)) + meta + body


def schema1_records(records: Sequence[Record]) -> Sequence[Record]:
    """``records`` as schema 1 has them: payloads parsed by the agent (readers of schema 1 do not
    parse), without the parser and limits the collector leaves for a schema 2 reader."""
    if isinstance(records, EncodedRecords):
        return records
    for podlog, run in groupby(records, lambda record: record.get("podlog")):
        if not isinstance(podlog, dict) or "parser" not in podlog:
            continue
        chunk = list(run)
        parse_payloads(chunk, *payload_policy(podlog))
        bare = SharedMap({k: v for k, v in podlog.items() if k not in ("parser", "payload_limits")})
        for record in chunk:
            record["podlog"] = bare
    return records


def _split_payload(payload: bytes | memoryview) -> tuple[bytes | memoryview, bytes | memoryview]:
    (meta_len,) = _META_LEN.unpack_from(payload, 0)
    start = _META_LEN.size
    if start + meta_len > len(payload):
        raise ValueError("meta length past the end of the payload")
    return payload[start : start + meta_len], payload[start + meta_len :]


def decode_payload(payload: bytes | memoryview) -> tuple[dict[str, Any], list[Record]]:
    """Meta and decoded records of a payload from :func:`encode_payload`."""
    meta, _ = _split_payload(payload)
    return orjson.loads(meta), decode_records(payload).records()


def decode_records(payload: bytes | memoryview) -> EncodedRecords | StoredMessages:
    """The records of a payload, as messages or runs (nothing is decoded but the meta).

    Raises ``ValueError`` or ``TypeError`` when the meta and the body disagree.
    """
    meta_bytes, body = _split_payload(payload)
    meta = orjson.loads(meta_bytes)
    if meta.get("s") == 2:
        return _stored_messages(meta, body)
    lengths = meta.get("l")
    groups = meta.get("g")
    runs_meta = meta.get("u")
    if not isinstance(lengths, list) or not isinstance(groups, list) or not isinstance(runs_meta, list):
        raise TypeError("spool batch meta lacks record lengths, groups or runs")
    view = memoryview(body)
    runs: list[Run] = []
    at = 1
    used = 0
    for group, count in runs_meta:
        run_lengths = lengths[used : used + count]
        used += count
        size = sum(run_lengths) + count - 1
        runs.append(Run(view[at : at + size], int(group), run_lengths))
        at += size + 1
    if used != len(lengths) or len(view) < 2 or (at if runs else 2) != len(view):
        raise ValueError("record lengths do not add up to the record bytes")
    source = view.obj
    mapped = (source,) if isinstance(source, mmap.mmap) else ()
    return EncodedRecords(runs, [(str(k), str(r)) for k, r in groups], mapped=mapped)


def _stored_messages(meta: Mapping[str, Any], body: bytes | memoryview) -> StoredMessages:
    listed = meta.get("v")
    if not isinstance(listed, list):
        raise TypeError("spool batch meta lacks its messages")
    view = memoryview(body)
    messages: list[StoredMessage] = []
    at = 0
    for key, retention, rows, length in listed:
        messages.append(StoredMessage(str(key), str(retention), int(rows), view[at : at + int(length)]))
        at += int(length)
    if at != len(view):
        raise ValueError("message lengths do not add up to the body")
    source = view.obj
    return StoredMessages(messages, mapped=(source,) if isinstance(source, mmap.mmap) else ())


def decode_marks(meta: Mapping[str, Any]) -> dict[str, FileMark]:
    """File marks from a decoded meta."""
    return {
        key: FileMark(path=str(v[0]), identity=str(v[1]), generation=int(v[2]), offset=int(v[3]),
                      streams=tuple((str(s), int(o)) for s, o in v[4]) if len(v) > 4 else (),
                      past=int(v[5]) if len(v) > 5 else 0)
        for key, v in (meta.get("m") or {}).items()
    }


def encode_frame(seq: int, time_ns: int, payload: bytes) -> bytes:
    """One frame: header with both checksums, then ``payload``."""
    payload_crc = zlib.crc32(payload)
    head = struct.pack(">IQQI", len(payload), seq, time_ns, payload_crc)
    return MAGIC + head + struct.pack(">I", zlib.crc32(head)) + payload


def _frame_at(data: bytes, offset: int) -> FrameInfo | None:
    """The valid frame starting at ``offset``, or None."""
    if offset + HEADER_SIZE > len(data):
        return None
    magic, length, seq, time_ns, payload_crc, header_crc = _HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        return None
    if zlib.crc32(data[offset + 4 : offset + 28]) != header_crc:
        return None
    end = offset + HEADER_SIZE + length
    if length > MAX_PAYLOAD or end > len(data):
        return None
    payload = memoryview(data)[offset + HEADER_SIZE : end]
    if zlib.crc32(payload) != payload_crc:
        return None
    try:
        meta_bytes, _ = _split_payload(payload)
        meta = orjson.loads(meta_bytes)
    except (ValueError, struct.error):
        return None
    if not isinstance(meta, dict):
        return None
    return FrameInfo(seq, time_ns, offset, HEADER_SIZE + length, meta)


def scan_segment(data: bytes) -> ScanResult:
    """Every valid frame in ``data`` and every damaged range between or after them."""
    frames: list[FrameInfo] = []
    damage: list[Damage] = []
    offset = 0
    valid_end = 0
    size = len(data)
    while offset < size:
        frame = _frame_at(data, offset)
        if frame is not None:
            frames.append(frame)
            offset += frame.size
            valid_end = offset
            continue
        # Damage: search for the next frame that fully checks out.
        probe = offset + 1
        found: FrameInfo | None = None
        while True:
            probe = data.find(MAGIC, probe)
            if probe < 0:
                break
            found = _frame_at(data, probe)
            if found is not None:
                break
            probe += 1
        if found is None:
            damage.append(Damage(offset, size))
            break
        damage.append(Damage(offset, probe))
        offset = probe
    return ScanResult(frames=frames, damage=damage, valid_end=valid_end, size=size)


_MAP_FLAGS = mmap.MAP_SHARED


def read_range(path: Path, start: int, end: int) -> memoryview:
    """Bytes ``start..end`` of a segment, mapped rather than copied (shorter if the file is).

    Frames are only ever appended, and a file is cut only when the spool
    opens (or back to its size before a failed append), never below a frame
    that is being read, so the mapping stays valid while the view lives.  The
    pages are the page cache's own: sending copies them once, into the batch.
    """
    with path.open("rb") as handle:
        end = min(end, os.fstat(handle.fileno()).st_size)
        if end <= start:
            return memoryview(b"")
        base = start - start % mmap.ALLOCATIONGRANULARITY
        try:
            mapped = mmap.mmap(handle.fileno(), end - base, flags=_MAP_FLAGS, prot=mmap.PROT_READ, offset=base)
        except OSError:
            handle.seek(start)
            return memoryview(handle.read(end - start))
    return memoryview(mapped)[start - base :]


def is_disk_full(error: OSError) -> bool:
    """True for the errors that mean "no space left" (full disk or quota)."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


class SegmentWriter:
    """Appends frames to one segment file; a failed write leaves no partial frame."""

    def __init__(self, path: Path, first_seq: int) -> None:
        self.path = path
        self.first_seq = first_seq
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self.size = os.fstat(self._fd).st_size
        self.last_seq = first_seq - 1
        self.dirty = False

    def append(self, frame: bytes) -> int:
        """Write ``frame`` at the end; returns its offset.

        On any ``OSError`` (``ENOSPC`` included) the file is cut back to its
        previous size before the error propagates, so no torn frame remains.
        """
        offset = self.size
        try:
            self._write_all(frame)
        except OSError:
            # If even this fails, the scan on the next open cuts what is left.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, offset)
            raise
        self.size = offset + len(frame)
        self.dirty = True
        return offset

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def fsync(self) -> None:
        """Make every appended frame durable."""
        if self.dirty:
            os.fsync(self._fd)
            self.dirty = False

    def close(self) -> None:
        """fsync and close; safe to call twice."""
        if self._fd >= 0:
            try:
                self.fsync()
            finally:
                os.close(self._fd)
                self._fd = -1



