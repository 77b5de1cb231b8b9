"""The spool: append, read, ack, caps, disk-full and recovery after crashes."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from podlog.errors import SpoolFullError
from podlog.metrics import sample
from podlog.protocols import Batch
from shipper.config import SpoolConfig
from shipper.segment import HEADER_SIZE, SegmentWriter
from shipper.spool import Spool, merge_marks
from tests.unit.shipper.helpers import batch, crash, lines


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


async def _fill(spool: Spool, batches: int, per_batch: int = 3, stream: str = "c") -> None:
    for i in range(batches):
        await spool.append(batch(stream, i * per_batch, per_batch))


async def test_appended_batches_read_back_in_order_with_their_marks(tmp_path: Path) -> None:
    """Batches come out in append order with the records and marks that went in."""
    spool = Spool(SpoolConfig(), tmp_path)
    sent = [batch("c", i * 3, 3) for i in range(4)]
    for b in sent:
        await spool.append(b)
    got = await spool.read(0, max_records=1000, max_bytes=1 << 20)
    assert [b.seq for b in got] == [1, 2, 3, 4]
    assert lines([r for b in got for r in b.records]) == lines([r for b in sent for r in b.records])
    assert [dict(b.marks) for b in got] == [dict(b.marks) for b in sent]
    assert merge_marks(got)["p:c:x"].offset == 12
    assert spool.records == 12
    await spool.close()


async def test_read_respects_limits_but_returns_at_least_one_batch(tmp_path: Path) -> None:
    """A read stops at max_records, yet a single oversized batch still comes out."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 5, per_batch=4)
    assert [b.seq for b in await spool.read(0, max_records=8, max_bytes=1 << 20)] == [1, 2]
    assert [b.seq for b in await spool.read(2, max_records=1, max_bytes=1)] == [3]
    await spool.close()


async def test_reopen_keeps_unacked_batches_and_forgets_acked_ones(tmp_path: Path) -> None:
    """After ack(2) and a restart, only batches 3.. are pending and sequence numbers go on."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 5)
    await spool.ack(2)
    await spool.close()
    again = Spool(SpoolConfig(), tmp_path)
    got = await again.read(again.acked_seq, max_records=1000, max_bytes=1 << 20)
    assert [b.seq for b in got] == [3, 4, 5]
    assert again.records == 9
    await again.append(batch("c", 100, 1))
    assert again.last_seq == 6
    await again.close()


async def test_held_marks_after_a_crash_are_those_of_the_unacknowledged_batches(tmp_path: Path) -> None:
    """Reopened after a kill, the spool names how far each file's records are held in it."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 3)
    await _fill(spool, 2, stream="d")
    await spool.ack(1)
    crash(spool)
    again = Spool(SpoolConfig(), tmp_path)
    held = again.held_marks()
    assert {k: m.offset for k, m in held.items()} == {"p:c:x": 9, "p:d:x": 6}
    await again.ack(again.last_seq)
    assert again.held_marks() == {}
    await again.close()


async def test_ack_without_close_is_still_remembered(tmp_path: Path) -> None:
    """A crash after ack (no close) does not resend what was acknowledged."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 3)
    await spool.ack(3)
    crash(spool)  # no close(): the process dies, then the directory is opened again
    again = Spool(SpoolConfig(), tmp_path)
    assert again.records == 0
    assert await again.read(again.acked_seq, max_records=10, max_bytes=1 << 20) == []


async def test_acked_segments_are_removed_and_bytes_shrink(tmp_path: Path) -> None:
    """Segments holding only acknowledged batches are deleted, freeing their bytes."""
    spool = Spool(SpoolConfig(max_bytes=1 << 20, segment_bytes=4096), tmp_path)
    await _fill(spool, 150, per_batch=5)
    assert len(_segments(tmp_path)) > 3
    before = spool.disk_bytes
    await spool.ack(spool.last_seq)
    assert spool.disk_bytes < before // 4
    assert len(_segments(tmp_path)) <= 1
    assert spool.records == 0
    await spool.close()


async def test_full_spool_refuses_appends_until_acked(tmp_path: Path) -> None:
    """At the cap append raises SpoolFullError (counted), and works again after an ack."""
    spool = Spool(SpoolConfig(max_bytes=8192, segment_bytes=4096), tmp_path)
    before = sample("podlog_shipper_spool_full_total", {"reason": "cap"})
    with pytest.raises(SpoolFullError) as caught:
        await _fill(spool, 100, per_batch=5)
    assert caught.value.retriable
    assert spool.is_full()
    assert sample("podlog_shipper_spool_full_total", {"reason": "cap"}) == before + 1
    held = spool.last_seq
    await spool.ack(held)
    assert not spool.is_full()
    await spool.append(batch("c", 10_000, 5))
    assert spool.last_seq == held + 1
    await spool.close()


async def test_disk_full_pauses_appends_and_recovers_without_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC from the file layer raises SpoolFullError, leaves no partial frame, and later appends succeed."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 2)
    real_write = SegmentWriter._write_all
    state = {"fail": 2}

    def failing_write(self: SegmentWriter, data: bytes) -> None:
        if state["fail"] > 0:
            state["fail"] -= 1
            real_write(self, data[: len(data) // 2])  # a partial write, then the error
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(SegmentWriter, "_write_all", failing_write)
    before = sample("podlog_shipper_spool_full_total", {"reason": "disk_full"})
    for _ in range(2):
        with pytest.raises(SpoolFullError):
            await spool.append(batch("c", 6, 3))
    assert sample("podlog_shipper_spool_full_total", {"reason": "disk_full"}) == before + 2
    assert spool.is_full()
    await spool.append(batch("c", 6, 3))
    assert not spool.is_full()
    await spool.close()
    again = Spool(SpoolConfig(), tmp_path)
    got = await again.read(0, max_records=1000, max_bytes=1 << 20)
    assert [b.seq for b in got] == [1, 2, 3]
    assert [r["log"]["offset"] for b in got for r in b.records] == list(range(9))


async def test_disk_full_while_recording_an_ack_is_counted_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC writing the acknowledged position never fails the ack; the next ack writes it."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 3)
    real_open = os.open

    def full_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if str(path).endswith(".tmp") and flags & os.O_WRONLY:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    before = sample("podlog_shipper_spool_state_write_errors_total")
    monkeypatch.setattr(os, "open", full_open)
    await spool.ack(2)
    assert sample("podlog_shipper_spool_state_write_errors_total") == before + 1
    assert spool.acked_seq == 2
    monkeypatch.setattr(os, "open", real_open)
    await spool.ack(3)
    crash(spool)
    again = Spool(SpoolConfig(), tmp_path)
    assert again.acked_seq == 3
    await again.close()


async def test_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    """A frame cut short by a crash is removed on open; earlier batches survive and appends go on."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 3)
    await spool.close()
    (segment,) = _segments(tmp_path)
    size = segment.stat().st_size
    with segment.open("ab") as handle:
        handle.write(b"PLSF\x00\x00\x10\x00partial frame")
    before = sample("podlog_shipper_spool_corrupted_bytes_total", {"kind": "torn_tail"})
    with capture_logs() as logs:
        again = Spool(SpoolConfig(), tmp_path)
    assert segment.stat().st_size == size
    assert [e["event"] for e in logs if e["event"] == "spool_tail_truncated"] == [
        "spool_tail_truncated"
    ]
    assert sample("podlog_shipper_spool_corrupted_bytes_total", {"kind": "torn_tail"}) == before + 21
    got = await again.read(0, max_records=1000, max_bytes=1 << 20)
    assert [b.seq for b in got] == [1, 2, 3]
    await again.append(batch("c", 9, 1))
    assert again.last_seq == 4
    await again.close()


async def test_corruption_mid_segment_skips_only_damaged_batches_and_names_them(
    tmp_path: Path,
) -> None:
    """A damaged frame in the middle is skipped, counted and named by sequence number."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 5)
    entries = list(spool._pending)
    await spool.close()
    (segment,) = _segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[entries[2].offset + HEADER_SIZE + 20] ^= 0xFF  # inside batch 3's payload
    segment.write_bytes(bytes(data))
    before = sample("podlog_shipper_spool_corrupted_batches_total", {"kind": "corrupted"})
    with capture_logs() as logs:
        again = Spool(SpoolConfig(), tmp_path)
    skipped = [e for e in logs if e["event"] == "spool_batches_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["lost_seqs"] == "3-3"
    assert skipped[0]["path"] == str(segment)
    assert sample("podlog_shipper_spool_corrupted_batches_total", {"kind": "corrupted"}) == before + 1
    got = await again.read(0, max_records=1000, max_bytes=1 << 20)
    assert [b.seq for b in got] == [1, 2, 4, 5]
    await again.close()


async def test_marks_only_batches_are_spooled_so_checkpoints_advance(tmp_path: Path) -> None:
    """A batch with marks but no records (all lines rejected) still flows through the spool."""
    spool = Spool(SpoolConfig(), tmp_path)
    marks_only = Batch([], batch("c", 0, 4).marks)
    await spool.append(marks_only)
    await spool.append(Batch([], {}))  # nothing at all: ignored
    got = await spool.read(0, max_records=10, max_bytes=1 << 20)
    assert [(b.seq, len(b.records), b.marks["p:c:x"].offset) for b in got] == [(1, 0, 4)]
    await spool.close()


async def test_interval_fsync_mode_keeps_data_across_reopen(tmp_path: Path) -> None:
    """With fsync: interval, appended batches are still read back after close and reopen."""
    config = SpoolConfig(fsync="interval", fsync_interval_seconds=60)
    spool = Spool(config, tmp_path)
    await _fill(spool, 4)
    await spool.close()
    again = Spool(config, tmp_path)
    assert again.records == 12
    await again.close()


async def test_wait_returns_once_data_arrives(tmp_path: Path) -> None:
    """wait() blocks while empty and returns when a batch is appended."""
    spool = Spool(SpoolConfig(), tmp_path)
    waiter = asyncio.create_task(spool.wait(0))
    await asyncio.sleep(0)
    assert not waiter.done()
    await spool.append(batch("c", 0, 1))
    await asyncio.wait_for(waiter, 5)
    await spool.close()


async def test_gauges_follow_the_spool(tmp_path: Path) -> None:
    """The spool gauges report bytes, records and a positive oldest age while not empty."""
    spool = Spool(SpoolConfig(), tmp_path)
    await _fill(spool, 2)
    assert sample("podlog_shipper_spool_records") == 6
    assert sample("podlog_shipper_spool_bytes") == spool.disk_bytes > 0
    assert sample("podlog_shipper_spool_oldest_unacked_age_seconds") >= 0
    await spool.ack(2)
    assert sample("podlog_shipper_spool_records") == 0
    assert sample("podlog_shipper_spool_oldest_unacked_age_seconds") == 0
    await spool.close()


async def test_interval_fsync_happens_without_further_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fsync: interval, the last append is fsynced within the interval even if none follows."""
    synced = asyncio.Event()
    real_fsync = SegmentWriter.fsync

    def fsync(self: SegmentWriter) -> None:
        real_fsync(self)
        synced.set()

    monkeypatch.setattr(SegmentWriter, "fsync", fsync)
    spool = Spool(SpoolConfig(fsync="interval", fsync_interval_seconds=0.05), tmp_path)
    await spool.append(batch("c", 0, 1))
    await asyncio.wait_for(synced.wait(), 5)
    assert spool._writer is not None and not spool._writer.dirty
    await spool.close()
