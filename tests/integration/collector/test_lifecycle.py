"""The file-lifecycle cases that used to lose or duplicate lines, each as kubelet does it."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.tracker import FileTracker
from podlog.metrics import sample
from podlog.protocols import FileMark
from tests.integration.collector.harness import AckingSink, delivered, lines, running, write_cri, write_docker
from tests.unit.collector.helpers import HEX64, wait_until

UID = "5f0c1b1e-8a2b-4c1e-9d0f-1234567890ab"
POD_DIR = f"shop_web-1_{UID}"


def _pods(tmp_path: Path, container: str = "app") -> Path:
    directory = tmp_path / "pods" / POD_DIR / container
    directory.mkdir(parents=True)
    return directory


def _link(tmp_path: Path, target: Path, container: str = "app", cid: str = HEX64) -> Path:
    """The /var/log/containers symlink kubelet makes for a container's live file."""
    logs = tmp_path / "containers"
    logs.mkdir(exist_ok=True)
    link = logs / f"web-1_shop_{container}-{cid}.log"
    link.symlink_to(target)
    return link


def _gzip_away(path: Path) -> Path:
    """kubelet's compressLog: write <f>.gz, remove <f>."""
    packed = path.with_name(path.name + ".gz")
    with path.open("rb") as plain, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(plain, out)
    path.unlink()
    return packed


def _lost(reason: str) -> float:
    return sample("podlog_collector_lost_bytes_total", {"reason": reason})


async def test_lines_rotated_and_compressed_while_down_are_read_from_the_gz(tmp_path: Path) -> None:
    """Appended after the checkpoint, renamed, gzip'ed and the plain file removed while down: read from .gz."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 50))
    _link(tmp_path, live)
    lost = _lost("deleted_before_read")
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 50)
    write_cri(live, lines("a", 50, 150))
    rotated = directory / "0.log.20261127-004500"
    live.rename(rotated)
    _gzip_away(rotated)
    write_cri(live, lines("b", 0, 20))
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 120)
    assert messages == lines("a", 50, 150) + lines("b", 0, 20)
    assert _lost("deleted_before_read") == lost


async def test_gz_that_reuses_the_old_inode_is_never_read_as_text(tmp_path: Path) -> None:
    """The rotation's .gz takes the freed inode of the old log: podlog reads it decompressed, once."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 30))
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 30)
    write_cri(live, lines("a", 30, 60))
    rotated = directory / "0.log.20261127-004500"
    live.rename(rotated)
    old_ino = rotated.stat().st_ino
    data = rotated.read_bytes()
    rotated.unlink()
    packed = rotated.with_name(rotated.name + ".gz")
    packed.write_bytes(gzip.compress(data))  # ext4 tends to hand back the inode just freed
    reused = packed.stat().st_ino == old_ino
    write_cri(live, lines("b", 0, 10))
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 40)
    assert messages == lines("a", 30, 60) + lines("b", 0, 10), f"inode reused: {reused}"
    assert all(m.isprintable() for m in messages)


async def test_copytruncate_rereads_new_content_once_and_loses_nothing(tmp_path: Path) -> None:
    """Lines written just before the truncate come from the copy; the first line after it is read once."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 20))
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 20)
        write_cri(live, lines("a", 20, 30))  # not read yet when the copy is taken
        shutil.copyfile(live, directory / "0.log.1")
        with live.open("r+b") as handle:
            handle.truncate(0)
        write_cri(live, lines("b", 0, 1))
        await delivered(sink, 31)
        write_cri(live, lines("b", 1, 40))
        messages = await delivered(sink, 70)
        await wait_until(lambda: len(sink.records) == 70)
    assert messages == lines("a", 0, 30) + lines("b", 0, 40)
    assert len({r["event"]["id"] for r in sink.records}) == 70


async def test_cri_fragments_cut_inside_a_character_join_to_the_character(tmp_path: Path) -> None:
    """containerd cuts at 16 KiB bytes: the two halves of a UTF-8 character join to it, no U+FFFD."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    text = ("é" * 9000).encode()
    cut = 16384 + 1  # inside the two-byte character
    stamp = b"2026-11-27T00:00:00.000000001Z"
    live.write_bytes(stamp + b" stdout P " + text[:cut] + b"\n" + stamp + b" stdout F " + text[cut:] + b"\n")
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        messages = await delivered(sink, 1)
    assert messages == ["é" * 9000]


async def test_partial_line_across_a_rotation_is_one_record(tmp_path: Path) -> None:
    """A P fragment ending one file and its F starting the next file give one line, read once."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    stamp = "2026-11-27T00:00:00.000000001Z"
    include = [str(tmp_path / "pods" / "*" / "*" / "*.log")]
    live.write_bytes(f"{stamp} stdout F first\n{stamp} stdout P hel".encode() + b"\n")
    async with running(tmp_path, include=include) as (_, sink):
        await delivered(sink, 1)
        live.rename(directory / "0.log.20261127-004500")
        live.write_bytes(f"{stamp} stdout F lo\n{stamp} stdout F after\n".encode())
        messages = await delivered(sink, 3)
        await wait_until(lambda: len(sink.records) >= 3)
    assert messages == ["first", "hello", "after"]


async def test_one_key_per_container_whichever_path_found_the_file(tmp_path: Path) -> None:
    """Found by its /var/log/containers link, or through /var/log/pods after the link went: one pod uid."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 10))
    link = _link(tmp_path, live)
    include = [str(tmp_path / "containers" / "*.log")]
    async with running(tmp_path, AckingSink(ack=False), include=include) as (_, sink):
        await delivered(sink, 10)
    # The container exits while podlog is down; kubelet removes its link.
    write_cri(live, lines("a", 10, 20))
    link.unlink()
    async with running(tmp_path, include=include) as (_, sink2):
        messages = await delivered(sink2, 20)
    assert messages == lines("a", 0, 20)
    uids = {r["kubernetes"]["pod"].get("uid") for r in sink.records + sink2.records}
    assert uids == {UID}


async def test_container_exited_and_rotated_while_down_is_read_to_its_end(tmp_path: Path) -> None:
    """The last file of a container that exited and rotated while podlog was down is read to its end."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 10))
    link = _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 10)
    write_cri(live, lines("a", 10, 70))
    live.rename(directory / "0.log.20261127-004500")
    link.unlink()
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 60)
    assert messages == lines("a", 10, 70)


async def test_loss_is_counted_to_the_byte_when_every_generation_is_gone(tmp_path: Path) -> None:
    """Seen but unread (sink full), then all generations deleted while down: exactly those bytes count."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 10))
    _link(tmp_path, live)
    lost = _lost("deleted_before_read")
    sink = AckingSink(refuse=1_000_000)
    async with running(tmp_path, sink) as (collector, _):
        size = live.stat().st_size
        await wait_until(lambda: any(t.file.size_seen == size for t in collector.tracker.tailers.values()))
    live.unlink()
    async with running(tmp_path):
        pass
    assert _lost("deleted_before_read") == lost + size


class HoldingSink(AckingSink):
    """Accepts batches without acknowledging them, like a spool whose transport is down."""

    def __init__(self, held: dict[str, FileMark] | None = None) -> None:
        super().__init__(ack=False)
        self.held = held or {}

    def held_marks(self) -> dict[str, FileMark]:
        return dict(self.held)


async def test_records_still_in_the_spool_after_a_crash_are_not_counted_lost(tmp_path: Path) -> None:
    """Killed before the checkpoints said what the spool holds, then the file deleted while down:
    what the spool still holds is not lost, only the bytes beyond it."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 10))
    _link(tmp_path, live)
    lost = _lost("deleted_before_read")
    first = HoldingSink()
    async with running(tmp_path, first) as (collector, _):
        await delivered(first, 10)
        await wait_until(lambda: collector.spooled)
    size = live.stat().st_size
    # As after a SIGKILL between the spool's appends and the next checkpoint write: the
    # spool holds the first seven lines, the checkpoint file says nothing of them.
    mark = next(m for b in first.batches for m in b.marks.values())
    seven = len(b"".join(live.read_bytes().splitlines(keepends=True)[:7]))
    held = {mark.identity: FileMark(mark.path, mark.identity, mark.generation, seven)}
    state = tmp_path / "state" / "checkpoints" / "checkpoints.json"
    doc = orjson.loads(state.read_bytes())
    for entry in doc["files"]:
        entry["spooled"] = 0
    state.write_bytes(orjson.dumps(doc))
    unread = size - seven
    live.unlink()
    async with running(tmp_path, HoldingSink(held)):
        pass
    assert _lost("deleted_before_read") == lost + unread


async def test_compressed_and_odd_files_matched_by_a_glob_are_counted_skips(tmp_path: Path) -> None:
    """A .gz, a FIFO, a directory and a symlink loop under the glob: skipped and counted; others read."""
    logs = tmp_path / "containers"
    logs.mkdir()
    good = logs / f"web-1_shop_app-{HEX64}.log"
    write_cri(good, lines("a", 0, 5))
    (logs / "packed.log").write_bytes(gzip.compress(b"x\n" * 100))
    os.mkfifo(logs / "pipe.log")
    (logs / "dir.log").mkdir()
    (logs / "loop.log").symlink_to(logs / "loop2.log")
    (logs / "loop2.log").symlink_to(logs / "loop.log")
    before = {r: sample("podlog_collector_files_skipped_total", {"reason": r})
              for r in ("compressed", "not_regular", "symlink_loop")}
    async with running(tmp_path) as (_, sink):
        messages = await delivered(sink, 5)
        await wait_until(lambda: all(
            sample("podlog_collector_files_skipped_total", {"reason": r}) > before[r] for r in before))
    assert messages == lines("a", 0, 5)


async def test_container_started_and_exited_while_down_is_read_before_its_restart(tmp_path: Path) -> None:
    """A container podlog never saw (0.log written and exited while down, link moved to 1.log): both read, in order."""
    other = _pods(tmp_path)
    write_cri(other / "0.log", lines("a", 0, 5))
    _link(tmp_path, other / "0.log")
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 5)
    side = _pods(tmp_path, "side")
    write_cri(side / "0.log", lines("s", 0, 10))
    write_cri(side / "1.log", lines("s", 10, 20))
    _link(tmp_path, side / "1.log", container="side", cid="f" * 64)
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 20)
        await wait_until(lambda: len(sink2.records) >= 20)
    assert messages == lines("s", 0, 20)


def _cri(i: int, stream: str, tag: str, message: bytes) -> bytes:
    return b"2026-11-27T00:00:00.%09dZ %s %s %s\n" % (i, stream.encode(), tag.encode(), message)


async def test_a_restart_at_an_open_fragment_emits_no_half_of_the_other_streams_joined_line(
    tmp_path: Path,
) -> None:
    """stdout and stderr both split into P..F, interleaved as runtimes write them; stopped while the
    stderr line is open: after the restart the stdout line is not shipped again as its second half,
    and the stderr line comes out whole once its end is written."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    live.write_bytes(_cri(1, "stdout", "P", b"out first half|") + _cri(2, "stderr", "P", b"err first half|")
                     + _cri(3, "stdout", "F", b"out second half") + _cri(4, "stdout", "F", b"b-0"))
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        assert await delivered(sink, 2) == ["out first half|out second half", "b-0"]
    with live.open("ab") as handle:
        handle.write(_cri(5, "stderr", "F", b"err second half") + _cri(6, "stdout", "F", b"b-1"))
    async with running(tmp_path) as (_, again):
        messages = await delivered(again, 2)
    assert sorted(messages) == ["b-1", "err first half|err second half"]


async def test_a_fragment_at_a_rotation_waits_for_the_new_file_to_open(tmp_path: Path) -> None:
    """kubelet creates the new 0.log empty; the rotated file ends in a P fragment whose F is the
    new file's first line: one record, its UTF-8 character cut at the boundary whole again."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    message = "m0 " + "é" * 9
    raw = message.encode()
    live.write_bytes(_cri(1, "stdout", "P", raw[:6]))
    _link(tmp_path, live)
    async with running(tmp_path, rotate_wait_seconds=0.2) as (collector, sink):
        await wait_until(lambda: any(t.read_offset > 0 for t in collector.tracker.tailers.values()))
        live.rename(directory / "0.log.20261127-000000")
        live.touch()
        rotated = next(t for t in collector.tracker.tailers.values())
        await wait_until(lambda: rotated.file.state.value == "rotated")
        since = rotated.file.state_since
        assert since is not None
        # Past rotate_wait, read to its end: it would have closed (and flushed its half) here.
        await wait_until(lambda: time.monotonic() - since > 1.0 and rotated.file.at_eof)
        assert not rotated.closed
        with live.open("ab") as handle:
            handle.write(_cri(2, "stdout", "F", raw[6:]))
        messages = await delivered(sink, 1)
    assert messages == [message]


async def test_a_generation_born_and_rotated_between_two_stat_passes_is_read_in_its_place(tmp_path: Path) -> None:
    """A busy container fills a whole file between two passes: renamed and gzip'ed before any pass
    saw it under 0.log.  It is found beside the next file and read, in order, before it."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 5))
    _link(tmp_path, live)
    async with running(tmp_path, scan_interval_seconds=0.3, use_inotify=False) as (_, sink):
        await delivered(sink, 5)
        live.rename(directory / "0.log.20261127-000001")
        write_cri(live, lines("b", 0, 5))
        between = directory / "0.log.20261127-000002"
        live.rename(between)
        _gzip_away(between)
        write_cri(live, lines("c", 0, 5))
        messages = await delivered(sink, 15)
    assert messages == lines("a", 0, 5) + lines("b", 0, 5) + lines("c", 0, 5)


async def test_copytruncate_while_down_with_nothing_written_after_is_read_from_the_copy(tmp_path: Path) -> None:
    """Unacknowledged lines, then copytruncate while podlog is down and the file left empty: they are
    read from the copy at start, not only once the container writes again."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 3))
    _link(tmp_path, live)
    async with running(tmp_path, AckingSink(ack=False)) as (collector, sink):
        await delivered(sink, 3)
        await wait_until(lambda: bool(collector.checkpoints.entries))
    shutil.copyfile(live, directory / "0.log.1")
    with live.open("r+b") as handle:
        handle.truncate(0)
    async with running(tmp_path) as (_, again):
        assert await delivered(again, 3) == lines("a", 0, 3)
        write_cri(live, lines("b", 0, 1))
        assert await delivered(again, 4) == [*lines("a", 0, 3), "b-0"]


async def test_copytruncate_while_reading_is_paused_and_the_file_regrown_is_seen(tmp_path: Path) -> None:
    """Reading paused mid-file (the sink refuses), copytruncate, the writer goes on past the read
    offset: the rest of the old content comes from the copy, the new content whole, nothing mixed."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    pad = " " + "x" * 80
    write_cri(live, [f"a-{i}{pad}" for i in range(60)])
    _link(tmp_path, live)
    sink = AckingSink(refuse=10**9)
    async with running(tmp_path, sink, batch_max_records=8, read_budget_bytes=512) as (collector, _):
        await wait_until(lambda: any(0 < t.read_offset < live.stat().st_size
                                     for t in collector.tracker.tailers.values()))
        shutil.copyfile(live, directory / "0.log.1")
        with live.open("r+b") as handle:
            handle.truncate(0)
        write_cri(live, [f"b-{i}{pad}" for i in range(40)])
        sink.refuse = 0
        messages = await delivered(sink, 100)
    assert sorted(messages) == sorted([f"a-{i}{pad}" for i in range(60)] + [f"b-{i}{pad}" for i in range(40)])


async def test_an_inode_freed_by_a_generation_read_but_not_acknowledged_is_no_stale_file(tmp_path: Path) -> None:
    """A rotated generation read to its end waits for its acks; it is gzip'ed and its inode handed
    to another container's new file: that is no file found again, its lines are not read twice."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 10))
    _link(tmp_path, live)
    other_dir = tmp_path / "pods" / f"shop_api-1_{UID[:-1]}c" / "app"
    other_dir.mkdir(parents=True)
    async with running(tmp_path, AckingSink(ack=False)) as (collector, sink):
        await delivered(sink, 10)
        rotated = directory / "0.log.20261127-000001"
        first_ino = live.stat().st_ino
        live.rename(rotated)
        write_cri(live, lines("b", 0, 5))
        await delivered(sink, 15)
        entries = collector.checkpoints.entries
        old = next(e for e in entries.values() if e.ino == first_ino)
        await wait_until(lambda: old.final_offset is not None)  # closed, read to its end, not acknowledged
        _gzip_away(rotated)
        # The kernel hands the freed inode to the next new file: that file's inode is given to the entry.
        born = tmp_path / "new-file"
        write_cri(born, lines("c", 0, 5))
        old.ino = born.stat().st_ino
        born.rename(other_dir / "0.log")
        _link(tmp_path, other_dir / "0.log", cid="c" * 64)
        await delivered(sink, 20)
        await wait_until(lambda: len(sink.records) >= 20)
    messages = sink.messages()
    assert sorted(messages) == sorted(lines("a", 0, 10) + lines("b", 0, 5) + lines("c", 0, 5))


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("before", ["recover", "order_recovered"])
async def test_a_file_rotated_between_the_start_scan_and_its_open_is_read_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool, before: str,
) -> None:
    """The start scan names the checkpointed live file; it is renamed (and gzip'ed) and a new file
    takes its path before the checkpoints are checked against the scan (``recover``), or after
    that, before the file is opened (``order_recovered``): no truncation, nothing counted lost,
    what it still owed read once from the rotated generation in its own generation (the
    event.ids a run before it gave), then the new file."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 50))
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 50)
    write_cri(live, lines("a", 50, 150))
    step = getattr(FileTracker, before)

    def rotate_first(tracker: FileTracker, *args: Any) -> None:
        rotated = directory / "0.log.20261127-004500"
        live.rename(rotated)
        if compressed:
            _gzip_away(rotated)
        write_cri(live, lines("b", 0, 20))
        step(tracker, *args)

    monkeypatch.setattr(FileTracker, before, rotate_first)
    lost = {reason: _lost(reason) for reason in ("deleted_before_read", "truncated_before_read")}
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 120)
        await wait_until(lambda: len(sink2.records) >= 120)
    assert messages == lines("a", 50, 150) + lines("b", 0, 20)
    assert {record["log"]["generation"] for record in sink2.records[:100]} == {0}
    assert {reason: _lost(reason) for reason in lost} == lost


async def test_docker_files_of_two_restarts_found_at_start_are_read_in_restart_order(tmp_path: Path) -> None:
    """Docker's own paths carry no restart count: it comes from the /var/log/pods link, and the
    exited container's file is read before its successor's at start."""
    pods = _pods(tmp_path)
    docker = tmp_path / "docker"
    files = []
    for restart, cid in ((0, "e" * 64), (1, "d" * 64)):  # the second container id sorts first
        (docker / cid).mkdir(parents=True)
        target = docker / cid / f"{cid}-json.log"
        write_docker(target, lines(f"r{restart}", 0, 10))
        (pods / f"{restart}.log").symlink_to(target)
        _link(tmp_path, pods / f"{restart}.log", cid=cid)
        files.append(target)
    async with running(tmp_path) as (_, sink):
        messages = await delivered(sink, 20)
        await wait_until(lambda: len(sink.records) >= 20)
    assert messages == lines("r0", 0, 10) + lines("r1", 0, 10)


async def test_a_fragment_ending_a_rotated_file_joins_as_soon_as_the_new_file_has_its_end(tmp_path: Path) -> None:
    """The runtime writes the rest of a split line into the new file: the rotated file is done
    then, and the joined line (and the new file's lines behind it) come without rotate_wait."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    live.write_bytes(_cri(1, "stdout", "F", b"a-0") + _cri(2, "stdout", "P", b"hel"))
    _link(tmp_path, live)
    async with running(tmp_path, rotate_wait_seconds=60.0) as (_, sink):
        await delivered(sink, 1)
        live.rename(directory / "0.log.20261127-000000")
        live.write_bytes(_cri(3, "stdout", "F", b"lo") + _cri(4, "stdout", "F", b"b-0"))
        messages = await delivered(sink, 3, timeout=4.0)
    assert messages == ["a-0", "hello", "b-0"]


async def test_a_copy_drain_stopped_before_its_first_ack_skips_what_the_other_stream_emitted(
    tmp_path: Path,
) -> None:
    """copytruncate while stdout holds an open fragment and stderr went on past it: the drain of the
    copy starts at the fragment.  Stopped before anything it read was accepted, the restart still
    skips the stderr lines emitted before: never the second half of one as a line of its own."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    live.write_bytes(
        _cri(1, "stdout", "P", b"s1-") + _cri(2, "stderr", "P", b"e1-") + _cri(3, "stderr", "F", b"tail")
        + _cri(4, "stderr", "F", b"e2")
    )
    _link(tmp_path, live)
    copy = directory / "0.log.1"
    sink = AckingSink()
    async with running(tmp_path, sink) as (collector, _):
        assert await delivered(sink, 2) == ["e1-tail", "e2"]
        sink.refuse = 10**9  # the spool is full from here on
        shutil.copyfile(live, copy)
        with live.open("r+b") as handle:
            handle.truncate(0)
        await wait_until(lambda: any(t.file.real_path == str(copy) for t in collector.tracker.tailers.values()))
    with live.open("ab") as handle:
        handle.write(_cri(5, "stdout", "F", b"end") + _cri(6, "stderr", "F", b"e3"))
    async with running(tmp_path, rotate_wait_seconds=0.2) as (_, sink2):
        await wait_until(lambda: "e3" in sink2.messages())
    assert sink2.messages() == ["s1-end", "e3"]


async def test_a_retired_generations_inode_reused_at_its_old_path_is_a_new_file(tmp_path: Path) -> None:
    """A rotated generation read to its end waits for its acks; while podlog is down it is gzip'ed and
    the next 0.log, still empty, gets its inode.  That 0.log is a new file, not the old one truncated:
    the old one is read from its .gz, and its end offset does not stay behind on an entry for the empty
    file, to be counted lost once that file rotates away."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 10))
    _link(tmp_path, live)
    async with running(tmp_path, AckingSink(ack=False)) as (collector, sink):
        await delivered(sink, 10)
        first_ino = live.stat().st_ino
        rotated = directory / "0.log.20261127-000001"
        live.rename(rotated)
        write_cri(live, lines("b", 0, 5))
        await delivered(sink, 15)
        old = next(e for e in collector.checkpoints.entries.values() if e.ino == first_ino)
        await wait_until(lambda: old.final_offset is not None)  # closed, read to its end, not acknowledged
    # Down: the rotated file is gzip'ed, 0.log rotates, and the next (empty) 0.log takes the freed inode.
    _gzip_away(rotated)
    live.rename(directory / "0.log.20261127-000002")
    live.touch()
    state = tmp_path / "state" / "checkpoints" / "checkpoints.json"
    doc = orjson.loads(state.read_bytes())
    for item in doc["files"]:
        if item["ino"] == first_ino:
            assert item["path"] == str(live)
            item["ino"] = live.stat().st_ino
    state.write_bytes(orjson.dumps(doc))
    lost = _lost("deleted_before_read") + _lost("truncated_before_read")
    async with running(tmp_path) as (_, sink2):
        assert await delivered(sink2, 15) == lines("a", 0, 10) + lines("b", 0, 5)
    # Down again: the empty 0.log rotates, and a new one is written.
    live.rename(directory / "0.log.20261127-000003")
    write_cri(live, lines("c", 0, 2))
    async with running(tmp_path) as (_, sink3):
        assert await delivered(sink3, 2) == lines("c", 0, 2)
    assert _lost("deleted_before_read") + _lost("truncated_before_read") == lost


def _copytruncate(live: Path) -> None:
    """logrotate ``copytruncate compress delaycompress``: shift .1 to .2 and gzip it, copy to .1, truncate."""
    first, second = live.with_name(live.name + ".1"), live.with_name(live.name + ".2")
    if first.exists():
        first.rename(second)
        _gzip_away(second)
    shutil.copyfile(live, first)
    with live.open("r+b") as handle:
        handle.truncate(0)


async def test_a_generation_copied_away_before_the_empty_file_was_read_again_is_read_in_its_place(
    tmp_path: Path,
) -> None:
    """Seen empty after a copytruncate, the file fills, is copied and truncated again, and fills once
    more before the next read: the generation in between lives only in the copy (then its .gz).
    It is read from the copy, between the two that were seen."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 5))
    _link(tmp_path, live)
    async with running(tmp_path) as (collector, sink):
        await delivered(sink, 5)
        _copytruncate(live)
        tailer = next(iter(collector.tracker.by_path.values()))
        await wait_until(lambda: tailer.file.generation == 1 and tailer.file.copy_done() and tailer.file.at_eof)
        write_cri(live, lines("b", 0, 5))
        _copytruncate(live)
        write_cri(live, lines("c", 0, 3))
        messages = await delivered(sink, 13)
        await wait_until(lambda: not any(t.file.drain for t in collector.tracker.tailers.values()))
    assert messages == lines("a", 0, 5) + lines("b", 0, 5) + lines("c", 0, 3)
    assert len({r["event"]["id"] for r in sink.records}) == 13


async def test_two_copytruncates_between_two_reads_leave_no_generation_unread(tmp_path: Path) -> None:
    """Read to its end, the file is copied and truncated, fills, is copied and truncated again and
    fills before the next read: the ended generation's copy is .2.gz by then, the one in between is .1."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 5))
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 5)
        write_cri(live, lines("a", 5, 8))
        _copytruncate(live)
        write_cri(live, lines("b", 0, 5))
        _copytruncate(live)
        write_cri(live, lines("c", 0, 2))
        messages = await delivered(sink, 15)
    assert messages == lines("a", 0, 8) + lines("b", 0, 5) + lines("c", 0, 2)


async def test_a_file_copytruncated_again_as_podlog_starts_reads_the_generation_in_between_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Copied and truncated while podlog was down, the file is copied and truncated once more between
    the start's look (truncated: its next generation not seen yet) and its open: the generation in
    between lives only in the new copy. It is read after the old one's copy and before the file."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 5))
    _link(tmp_path, live)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 5)
    write_cri(live, lines("a", 5, 8))
    _copytruncate(live)
    write_cri(live, lines("b", 0, 5))
    order_recovered = FileTracker.order_recovered

    def copytruncate_first(tracker: FileTracker) -> None:
        order_recovered(tracker)
        _copytruncate(live)
        write_cri(live, lines("c", 0, 2))

    monkeypatch.setattr(FileTracker, "order_recovered", copytruncate_first)
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 10)
        await wait_until(lambda: len(sink2.records) >= 10)
    assert messages == lines("a", 5, 8) + lines("b", 0, 5) + lines("c", 0, 2)
