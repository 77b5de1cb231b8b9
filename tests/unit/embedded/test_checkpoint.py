"""The WAL checkpointer: copies beside the writer, keeps the log bounded, survives errors."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from podlog.metrics import sample
from search.backends.embedded_checkpoint import Checkpointer
from search.backends.embedded_events import IndexEvents
from tests.unit.embedded.conftest import T0, open_index, rec, req

PAGE = 4096


def connector(path: Path) -> tuple[list[sqlite3.Connection], object]:
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        opened.append(conn)
        return conn

    return opened, connect


def writer_of(connect: object) -> sqlite3.Connection:
    writer: sqlite3.Connection = connect()  # type: ignore[operator]
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(f"PRAGMA journal_size_limit = {64 * PAGE}")
    writer.execute("CREATE TABLE t (doc TEXT NOT NULL)")
    return writer


def commit(writer: sqlite3.Connection, batch: int, rows: int = 25) -> None:
    writer.execute("BEGIN IMMEDIATE")
    writer.executemany("INSERT INTO t (doc) VALUES (?)", [(f"{batch}:{i}:" + "x" * 800,) for i in range(rows)])
    writer.execute("COMMIT")


def wal_frames(path: Path) -> int:
    return (path.with_name(path.name + "-wal").stat().st_size - 32) // (PAGE + 24)


def test_passive_copies_and_past_the_bound_the_log_restarts(tmp_path: Path) -> None:
    """Below the bound a checkpoint copies without blocking; past it a restart is due,
    and after the writer's restart the next commit writes from the start of the -wal
    file instead of growing it."""
    path = tmp_path / "x.db"
    opened, connect = connector(path)
    writer = writer_of(connect)
    checkpointer = Checkpointer(connect, IndexEvents(), max_wal_pages=100)  # type: ignore[arg-type]
    conn = connect()  # type: ignore[operator]
    commit(writer, 0)
    checkpointer.checkpoint(conn)
    assert (checkpointer.checkpoints, checkpointer.restarts) == (1, 0)
    for batch in range(1, 30):  # past 100 frames: ~7 frames per commit
        commit(writer, batch)
    assert wal_frames(path) > 100
    checkpointer.checkpoint(conn)
    assert checkpointer.restart_due
    checkpointer.restart(writer)
    assert (checkpointer.restarts, checkpointer.restart_due) == (1, False)
    size = path.with_name("x.db-wal").stat().st_size
    for batch in range(30, 33):
        commit(writer, batch)
    assert path.with_name("x.db-wal").stat().st_size <= max(size, 64 * PAGE)  # rewritten from the start
    for c in opened:
        c.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (33 * 25,)


def test_log_stays_bounded_beside_a_writer_that_never_pauses(tmp_path: Path) -> None:
    """The checkpointer thread keeps up with commits arriving back to back: the -wal
    file stays within a small multiple of its bound and every row is in the database."""
    path = tmp_path / "x.db"
    opened, connect = connector(path)
    writer = writer_of(connect)
    checkpointer = Checkpointer(connect, IndexEvents(), every_rows=100, max_wal_pages=400)  # type: ignore[arg-type]
    checkpointer.start()
    largest = 0
    try:
        for batch in range(600):
            commit(writer, batch)
            checkpointer.committed(25)
            if checkpointer.restart_due:
                checkpointer.restart(writer)
            largest = max(largest, path.with_name("x.db-wal").stat().st_size)
    finally:
        checkpointer.stop()
    assert checkpointer.restarts >= 1
    # Without checkpoints the log would hold ~4,200 frames (600 commits of ~7 pages).
    assert largest < 4 * 400 * (PAGE + 24)
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (15_000,)
    for conn in opened:
        conn.close()


def test_a_failing_checkpoint_is_counted_and_the_next_rows_try_again(tmp_path: Path) -> None:
    """A checkpoint error leaves the frames in the log and never reaches the writer."""
    path = tmp_path / "x.db"
    refuse = threading.Event()
    refuse.set()
    opened, plain_connect = connector(path)

    def connect() -> sqlite3.Connection:
        conn = plain_connect()  # type: ignore[operator]

        def authorize(action: int, *_: object) -> int:
            if action == sqlite3.SQLITE_PRAGMA and refuse.is_set():
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        conn.set_authorizer(authorize)
        return conn

    writer = plain_connect()  # type: ignore[operator]
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (doc TEXT)")
    checkpointer = Checkpointer(connect, IndexEvents(), every_rows=10)
    before = sample("podlog_embedded_checkpoint_failures_total")
    conn = connect()
    checkpointer.checkpoint(conn)
    assert sample("podlog_embedded_checkpoint_failures_total") == before + 1
    assert checkpointer.checkpoints == 0
    refuse.clear()
    writer.execute("INSERT INTO t VALUES ('a')")
    checkpointer.checkpoint(conn)
    assert checkpointer.checkpoints == 1
    for c in opened:
        c.close()


async def test_index_checkpoints_off_the_writer_and_reads_see_every_row(tmp_path: Path) -> None:
    """In the index the writer never checkpoints: the checkpointer thread does, and
    searches during and after see each committed row once."""
    index = open_index(tmp_path)
    await index.start()
    try:
        assert index._write_conn is not None
        assert index._write_conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        for batch in range(12):
            await index.write([rec(batch * 1000 + i, T0 + batch * 1000 + i) for i in range(1000)])
        deadline = time.monotonic() + 10
        while index._checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            await index.wait_for_write(0.05)
        assert index._checkpointer.checkpoints >= 1
        assert (await index.search(req(size=1))).total == 10_000  # the tracked-total limit
    finally:
        await index.stop()
    conn = sqlite3.connect(index.path)
    try:
        assert conn.execute("SELECT count(*) FROM r").fetchone() == (12_000,)
    finally:
        conn.close()
