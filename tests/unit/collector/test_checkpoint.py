"""The checkpoint store: acknowledged offsets only, written atomically, the newest complete file read."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from collector.checkpoint import CheckpointStore
from podlog.metrics import sample
from podlog.protocols import FileMark


def _store(tmp_path: Path) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "checkpoints")
    store.load()
    store.register("1:2:ab", "/x/0.log", dev=1, ino=2, head="ab", generation=0, offset=0, size=10)
    return store


def test_acknowledged_marks_persist_and_reload(tmp_path: Path) -> None:
    """An acknowledged offset is written to disk and found again by (dev, inode, head)."""
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 120)})
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    assert again.existed
    entry = again.find(1, 2, "ab")
    assert entry is not None and entry.offset == 120
    assert again.find(1, 2, "other") is None


def test_offsets_never_move_backwards(tmp_path: Path) -> None:
    """A late acknowledgement for an older position does not rewind the checkpoint."""
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 500)})
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 100)})
    assert store.offset("1:2:ab") == 500
    store.truncated("1:2:ab", 1, "cd")
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 900)})
    assert store.offset("1:2:ab") == 0
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 1, 30)})
    assert store.offset("1:2:ab") == 30


def test_unacknowledged_reads_do_not_move_the_offset(tmp_path: Path) -> None:
    """What the spool accepted is remembered apart; the resume offset stays acknowledged."""
    store = _store(tmp_path)
    store.spooled({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 300)})
    store.write()
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    entry = again.find(1, 2, "ab")
    assert entry is not None and entry.offset == 0 and entry.spooled == 300


def test_tmp_file_is_read_first_after_a_crash_before_rename(tmp_path: Path) -> None:
    """A complete tmp file (crash between fsync and rename) wins over the older main file."""
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 10)})
    doc = orjson.loads(store.path.read_bytes())
    doc["files"][0]["offset"] = 99
    doc["written"] += 1
    store.tmp_path.write_bytes(orjson.dumps(doc))
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    assert again.offset("1:2:ab") == 99
    assert not list(store.directory.glob("*.tmp")), "the tmp file took the main file's place"
    assert orjson.loads(store.path.read_bytes())["files"][0]["offset"] == 99


def test_an_older_tmp_file_left_by_a_crash_does_not_win_over_a_newer_main_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 10)})
    doc = orjson.loads(store.path.read_bytes())
    doc["files"][0]["offset"] = 5
    doc["written"] -= 60
    (store.directory / "checkpoints.json.1-1.tmp").write_bytes(orjson.dumps(doc))
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    assert again.offset("1:2:ab") == 10
    assert not list(store.directory.glob("*.tmp"))


def test_a_write_in_flight_from_a_store_on_its_way_out_leaves_the_new_stores_write_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process killed while its checkpoint thread writes: that write may still land beside the
    next process's.  Each keeps its own temporary file, so neither truncates or renames the other's,
    and the new store's write (with the losses it reports) succeeds."""
    old = _store(tmp_path)
    new = CheckpointStore(tmp_path / "checkpoints")
    new.load()
    new.lost("deleted_before_read", "/x/0.log", 10, "1:2:ab")
    new.forget("1:2:ab")
    fsync = os.fsync
    calls = []

    def old_writes_meanwhile(fd: int) -> None:
        fsync(fd)
        calls.append(fd)
        if len(calls) == 1:  # the new store is between its fsync and its rename
            old.dirty = True
            assert old.write()

    monkeypatch.setattr(os, "fsync", old_writes_meanwhile)
    before = sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"})
    assert new.write()
    assert sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"}) == before + 10
    monkeypatch.setattr(os, "fsync", fsync)
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    assert again.find(1, 2, "ab") is None, "the new store's write is the newest on disk"


def test_torn_tmp_file_falls_back_to_the_main_file(tmp_path: Path) -> None:
    """A half-written tmp file is ignored and the last complete checkpoint is used."""
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 10)})
    store.tmp_path.write_bytes(store.path.read_bytes()[:20])
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    assert again.offset("1:2:ab") == 10


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    """A checkpoint from another version is not guessed at: the store starts empty."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "checkpoints.json").write_bytes(b'{"version": 99, "files": []}')
    store = CheckpointStore(directory)
    store.load()
    assert not store.existed and store.entries == {}


def test_retired_file_is_dropped_once_acknowledged_to_its_end(tmp_path: Path) -> None:
    """A closed file keeps its entry until the acknowledgement reaches its final offset."""
    store = _store(tmp_path)
    store.retire("1:2:ab", 200)
    assert "1:2:ab" in store.entries
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 200)})
    assert "1:2:ab" not in store.entries


async def test_durable_returns_once_the_file_on_disk_holds_every_acknowledgement(tmp_path: Path) -> None:
    """While the collector writes periodically, durable() waits for the write that holds the
    acknowledgements made before it was called; an unchanged store needs no write."""
    store = _store(tmp_path)
    store.write_on_ack = False
    await asyncio.wait_for(store.durable(), 1)  # nothing acknowledged: nothing to wait for
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 120)})
    waiting = asyncio.create_task(store.durable())
    await asyncio.sleep(0)  # let it start waiting
    assert not waiting.done()
    on_disk = orjson.loads((tmp_path / "checkpoints" / "checkpoints.json").read_bytes()) if (
        tmp_path / "checkpoints" / "checkpoints.json").exists() else {"files": []}
    assert all(f["offset"] == 0 for f in on_disk["files"])
    await store.flush_async()
    await asyncio.wait_for(waiting, 1)
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    entry = again.find(1, 2, "ab")
    assert entry is not None and entry.offset == 120


async def test_durable_does_not_wait_once_every_acknowledgement_is_written_at_once(tmp_path: Path) -> None:
    """Stopping, the collector writes on every acknowledgement: a waiter is released by that write."""
    store = _store(tmp_path)
    store.write_on_ack = False
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 120)})
    waiting = asyncio.create_task(store.durable())
    await asyncio.sleep(0)
    store.write_on_ack = True
    store.write()
    await asyncio.wait_for(waiting, 1)


def test_a_mark_held_at_a_fragment_still_moves_the_other_streams_resume_offset(tmp_path: Path) -> None:
    """The offset stays at an open stderr fragment while stdout goes on: the entry keeps where each
    stream resumes, persisted; moving past the fragment clears it."""
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 40, (("stdout", 90), ("stderr", 40)))})
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 40, (("stdout", 150), ("stderr", 40)))})
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    entry = again.find(1, 2, "ab")
    assert entry is not None and (entry.offset, entry.streams) == (40, {"stdout": 150, "stderr": 40})
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 200)})
    assert store.entries["1:2:ab"].streams == {}


def test_a_file_gone_at_an_open_fragment_loses_only_what_was_not_emitted(tmp_path: Path) -> None:
    """Held at a stderr fragment (offset 40) while stdout went on to 150: the 70 bytes of stdout
    lines past the offset were emitted, so a file gone at 200 bytes lost 200 - 40 - 70."""
    store = _store(tmp_path)
    store.register("1:2:ab", "/x/0.log", dev=1, ino=2, head="ab", generation=0, offset=0, size=200)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 40, (("stdout", 150), ("stderr", 40)), 70)})
    again = CheckpointStore(tmp_path / "checkpoints")
    again.load()
    entry = again.find(1, 2, "ab")
    assert entry is not None and again.unread(entry) == 90
    store.spooled({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 120)})
    assert store.unread(store.entries["1:2:ab"]) == 80


def _kept_copy(store: CheckpointStore) -> None:
    """``1:2:ab`` truncated after 100 bytes of generation 0 were read, 40 acknowledged: its copy keeps them."""
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 40)})
    store.register("1:3:ab", "/x/0.log.1", dev=1, ino=3, head="ab", generation=0, offset=40, size=100,
                   origin="1:2:ab", origin_generation=0, origin_read=100)
    store.retire("1:3:ab", 100)
    store.truncated("1:2:ab", 1, "cd")


def test_a_kept_copy_moves_with_its_generations_acknowledgements(tmp_path: Path) -> None:
    """Marks of the truncated generation move the copy's entry; the last drops it."""
    store = _store(tmp_path)
    _kept_copy(store)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 70)})
    assert store.entries["1:3:ab"].offset == 70
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 100)})
    assert "1:3:ab" not in store.entries


def test_a_kept_copy_is_acknowledged_by_a_mark_of_a_later_generation(tmp_path: Path) -> None:
    """A batch keeps only a file's last mark: one of the next generation acknowledges all before it,
    and a spooled one means none of the copy's bytes is lost if the copy vanishes."""
    store = _store(tmp_path)
    _kept_copy(store)
    store.spooled({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 1, 5)})
    assert store.unread(store.entries["1:3:ab"]) == 0
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 1, 5)})
    assert "1:3:ab" not in store.entries
    assert store.offset("1:2:ab") == 5


def test_a_drained_copy_starts_where_its_generation_was_acknowledged(tmp_path: Path) -> None:
    """``1:2:ab`` truncated after 100 bytes were read and 40 acknowledged; the copy's drain reads on
    from 100.  The generation's own marks move the copy's entry up to 100, the drain's beyond; a
    mark of the next generation does not skip what the drain has not delivered."""
    store = _store(tmp_path)
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 40)})
    store.register("1:3:ab", "/x/0.log.1", dev=1, ino=3, head="ab", generation=0, offset=40, size=100,
                   origin="1:2:ab", origin_generation=0, origin_read=100)
    store.truncated("1:2:ab", 1, "cd")
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 1, 5)})
    assert store.entries["1:3:ab"].offset == 40
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 100, streams=(("stdout", 100), ("stderr", 90)))})
    assert store.entries["1:3:ab"].offset == 100
    store.acknowledged({"1:3:ab": FileMark("/x/0.log.1", "1:3:ab", 0, 150)})
    store.acknowledged({"1:2:ab": FileMark("/x/0.log", "1:2:ab", 0, 100)})
    assert store.entries["1:3:ab"].offset == 150


def test_a_loss_is_reported_once_the_checkpoint_that_no_longer_owes_it_is_written(tmp_path: Path) -> None:
    """Counted before the write, a SIGKILL in between would count it again at the next start (the
    entry still on disk): the count waits for the write, and comes once."""
    store = _store(tmp_path)
    store.write()
    before = sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"})
    store.forget("1:2:ab")
    store.lost("deleted_before_read", "/x/0.log", 7, "1:2:ab")
    assert sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"}) == before
    store.flush()
    assert sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"}) == before + 7
    store.flush()
    store.write()
    assert sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"}) == before + 7
