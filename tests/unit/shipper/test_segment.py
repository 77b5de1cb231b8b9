"""Segment framing: checksummed frames, and scans that survive damage."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podlog.protocols import FileMark
from shipper.records import EncodedRecords, join_batch
from shipper.segment import (
    HEADER_SIZE,
    decode_marks,
    decode_payload,
    decode_records,
    encode_frame,
    encode_payload,
    read_range,
    scan_segment,
)
from tests.unit.shipper.helpers import record


def _frames(count: int, start_seq: int = 1) -> list[bytes]:
    return [
        encode_frame(
            start_seq + i,
            1000 + i,
            encode_payload([record("c", i)], {"k": FileMark("/f", "k", 0, i + 1)}, schema=1),
        )
        for i in range(count)
    ]


def test_payload_round_trips_records_and_marks() -> None:
    """A payload decodes to the same records and marks it was built from."""
    records = [record("c", 1), record("c", 2, "ünïcode \"quoted\" \n")]
    marks = {"k": FileMark("/f", "k", 3, 99),
             "j": FileMark("/g", "j", 0, 40, (("stdout", 120), ("stderr", 40)), 60)}  # held at a fragment
    meta, decoded = decode_payload(encode_payload(records, marks, schema=1))
    assert decoded == records
    assert meta["n"] == 2
    assert decode_marks(meta) == marks


def test_scan_finds_every_frame_of_an_intact_segment() -> None:
    """An undamaged segment scans to all its frames in order and no damage."""
    data = b"".join(_frames(5))
    scan = scan_segment(data)
    assert [f.seq for f in scan.frames] == [1, 2, 3, 4, 5]
    assert scan.damage == []
    assert scan.valid_end == len(data)


def test_scan_reports_a_torn_tail_after_the_last_valid_frame() -> None:
    """A frame cut short at the end is damage from the last valid frame to the end."""
    frames = _frames(3)
    data = frames[0] + frames[1] + frames[2][: len(frames[2]) // 2]
    scan = scan_segment(data)
    assert [f.seq for f in scan.frames] == [1, 2]
    assert scan.valid_end == len(frames[0]) + len(frames[1])
    assert [(d.start, d.end) for d in scan.damage] == [(scan.valid_end, len(data))]


def test_scan_skips_a_corrupted_frame_and_keeps_the_ones_after_it() -> None:
    """A flipped payload byte loses only that frame; the scan resynchronises on the next."""
    frames = _frames(4)
    damaged = bytearray(frames[1])
    damaged[HEADER_SIZE + 10] ^= 0xFF
    data = frames[0] + bytes(damaged) + frames[2] + frames[3]
    scan = scan_segment(data)
    assert [f.seq for f in scan.frames] == [1, 3, 4]
    assert [(d.start, d.end) for d in scan.damage] == [
        (len(frames[0]), len(frames[0]) + len(frames[1]))
    ]


def test_scan_never_trusts_a_damaged_length() -> None:
    """A corrupted length field is caught by the header checksum, not followed."""
    frames = _frames(3)
    damaged = bytearray(frames[0])
    damaged[5] ^= 0x40  # inside the length field
    scan = scan_segment(bytes(damaged) + frames[1] + frames[2])
    assert [f.seq for f in scan.frames] == [2, 3]


def test_frame_checksums_cover_header_and_payload() -> None:
    """Both CRCs in the header match what they cover."""
    frame = _frames(1)[0]
    assert int.from_bytes(frame[24:28], "big") == zlib.crc32(frame[HEADER_SIZE:])
    assert int.from_bytes(frame[28:32], "big") == zlib.crc32(frame[4:28])


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=6),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4),
    cut=st.floats(0, 1),
)
def test_any_damage_keeps_every_untouched_frame(
    count: int, flips: list[tuple[float, int]], cut: float
) -> None:
    """Whatever bytes are flipped or cut, every frame left intact is still found, in order."""
    frames = _frames(count)
    data = bytearray(b"".join(frames))
    touched: set[int] = set()
    for where, mask in flips:
        position = int(where * len(data))
        data[position] ^= mask
        touched.add(position)
    end = max(1, int(cut * len(data)))
    del data[end:]
    bounds = []
    offset = 0
    for frame in frames:
        bounds.append((offset, offset + len(frame)))
        offset += len(frame)
    intact = [
        i + 1
        for i, (start, stop) in enumerate(bounds)
        if stop <= end and not any(start <= t < stop for t in touched)
    ]
    scan = scan_segment(bytes(data))
    found = [f.seq for f in scan.frames]
    assert set(intact) <= set(found)
    assert found == sorted(found)


def _rss_file_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_dropped_pages_leave_the_resident_set_and_stay_readable(tmp_path: Path) -> None:
    """After a send is framed its mapped spool pages are given back; a retry still reads them."""
    records = [record("c", i, "x" * 900 + str(i)) for i in range(8192)]
    payload = encode_payload(records, {"k": FileMark("/f", "k", 0, 1)}, schema=1)
    path = tmp_path / "segment"
    path.write_bytes(b"\0" * HEADER_SIZE + payload)
    encoded = decode_records(read_range(path, 0, HEADER_SIZE + len(payload))[HEADER_SIZE:])
    before = _rss_file_kib()
    joined = join_batch([run.data for run in encoded.runs])  # what framing a send reads
    touched = _rss_file_kib()
    encoded.drop_resident_pages()
    dropped = _rss_file_kib()
    size_kib = len(payload) // 1024
    assert touched - before > size_kib // 2, (before, touched)
    assert touched - dropped > size_kib // 2, (touched, dropped)
    assert join_batch([run.data for run in encoded.runs]) == joined
    assert orjson.loads(joined)["records"] == records


def test_a_send_of_several_batches_drops_the_pages_of_every_segment(tmp_path: Path) -> None:
    """Batches from two segments, concatenated into one send, give back both segments' pages."""
    parts = []
    for name in ("one", "two"):
        records = [record(name, i, "x" * 900 + str(i)) for i in range(4096)]
        payload = encode_payload(records, {"k": FileMark("/f", "k", 0, 1)}, schema=1)
        path = tmp_path / name
        path.write_bytes(b"\0" * HEADER_SIZE + payload)
        parts.append(decode_records(read_range(path, 0, HEADER_SIZE + len(payload))[HEADER_SIZE:]))
    send = EncodedRecords.concat(parts)
    assert len(send.mapped) == 2
    before = _rss_file_kib()
    joined = join_batch([run.data for run in send.runs])
    touched = _rss_file_kib()
    send.drop_resident_pages()
    dropped = _rss_file_kib()
    assert touched - dropped > (len(joined) // 1024) * 3 // 4, (before, touched, dropped)


def test_dropping_pages_of_unmapped_runs_does_nothing() -> None:
    """Runs built in memory (not read from a segment) are left alone."""
    encoded = EncodedRecords.from_records([record("c", 1), record("c", 2)])
    encoded.drop_resident_pages()
    assert list(encoded) == [record("c", 1), record("c", 2)]
