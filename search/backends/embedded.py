"""The embedded index of single-node mode: SQLite FTS5 in one WAL-mode file.

One object is three things in ``podlog run``:

* a :class:`podlog.protocols.DocumentWriter` that the embedded transport
  feeds: :meth:`EmbeddedIndex.write` returns once the batch is committed,
  and a record whose ``event.id`` is already indexed is skipped, so replays
  after a crash never make a second copy;
* a :class:`search.backends.base.SearchBackend` the search API queries;
* a :class:`podlog.lifecycle.Service` whose ``run`` applies retention per
  class every ``retention_interval_seconds``.

SQLite calls block, so they run on threads: one writer thread with the only
writing connection (WAL lets readers proceed during its commits), and
``readers`` threads with one read connection each.  Each read is bounded by
the request's ``timeout_seconds`` through SQLite's progress handler.

The layout and the ordering trick (rowid = time key) are described in
:mod:`search.backends.embedded_schema`; preparing a batch off the writer
thread in :mod:`search.backends.embedded_batch`; query translation in
:mod:`search.backends.embedded_query`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import os
import re
import sqlite3
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from podlog.record import Record
from podlog.retention import RetentionConfig, cutoff_ns
from search.backends.base import (
    FILTER_FIELDS,
    ContextResult,
    Cursor,
    HistogramBucket,
    SearchPage,
    SearchRequest,
)
from search.backends.embedded_batch import (
    MAX_TS_NS,
    MINUTE_NS,
    BatchPreparer,
    Chain,
    EncodedBatch,
    Link,
    Prepared,
    Row,
    free_key,
)
from search.backends.embedded_checkpoint import Checkpointer
from search.backends.embedded_events import IndexEvents
from search.backends.embedded_query import (
    TOKEN_FIELDS,
    Clause,
    and_clauses,
    glob_match,
    id_set,
    translate,
)
from search.backends.embedded_schema import (
    ROW_COLUMNS,
    TIEBREAK,
    TIME_UNIT_NS,
    Dictionary,
    create_schema,
    meta_tokens,
)
from search.config import EmbeddedConfig
from search.errors import BackendError
from search.query import QueryError

__all__ = ["EmbeddedIndex", "EncodedBatch", "default_index_path"]

T = TypeVar("T")

_ROWIDS_PER_MINUTE = MINUTE_NS // TIME_UNIT_NS * TIEBREAK

_CHUNK = 500
"""Parameters per ``IN (...)`` list."""

_ROW = "r.rowid, r.ts, r.off, r.eid, r.doc, r.k"

_INSERT_ROW_HEAD = f"INSERT INTO r (rowid, m, eid, ts, off, gen, ident, cls, {', '.join(ROW_COLUMNS)}, doc, k, prev)"
_INSERT_ROW = f"{_INSERT_ROW_HEAD} VALUES ({','.join('?' * (11 + len(ROW_COLUMNS)))})"

MAX_ROWID = (1 << 63) - 1

_SHARED_KEPT = 4096
"""``shared`` sections the readers keep decoded-ready (JSON text) between searches."""

_STREAM = 8 + ROW_COLUMNS.index("strm")
"""Position of the stream's dictionary id in a row."""

_GROUP_BATCHES = 8
"""Most waiting batches committed in one transaction."""

_CHAIN_WALK_LIMIT = 100_000
"""Most links followed back to place one line that arrives out of file order."""


def default_index_path(state_dir: Path) -> Path:
    """Where the index file lives when ``embedded.path`` is empty."""
    return state_dir / "index" / "podlog.db"


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp_search(pattern: str, value: Any) -> bool:
    return value is not None and _compiled(pattern).search(str(value)) is not None


def _regexp_full(pattern: str, value: Any) -> bool:
    return value is not None and _compiled(pattern).fullmatch(str(value)) is not None


def _rowid_range(start_ns: int, end_ns: int) -> tuple[int, int, bool]:
    """Rowids that can hold ``[start_ns, end_ns)``, and whether they hold exactly that."""
    start = max(0, start_ns)
    end = min(end_ns, MAX_TS_NS)
    low = (start // TIME_UNIT_NS) * TIEBREAK
    high = ((end - 1) // TIME_UNIT_NS) * TIEBREAK + TIEBREAK - 1
    exact = start % TIME_UNIT_NS == 0 and end % TIME_UNIT_NS == 0
    return low, high, exact


def _key(row: Sequence[Any]) -> Cursor:
    return (int(row[1]), int(row[2]), str(row[3]))


class _Query:
    """One request's clause and bounds, assembled into SQL per call."""

    def __init__(self, clause: Clause, request: SearchRequest) -> None:
        self.clause = clause
        self.request = request
        self.low, self.high, self.exact = _rowid_range(request.start_ns, request.end_ns)

    def sql(
        self,
        select: str,
        *,
        before: Cursor | None = None,
        after: Cursor | None = None,
        extra: str | None = None,
        extra_params: Sequence[Any] = (),
        low: int | None = None,
        high: int | None = None,
    ) -> tuple[str, list[Any]]:
        """``SELECT <select> FROM ... WHERE ...`` for this request (no ORDER BY or LIMIT)."""
        low = self.low if low is None else max(low, self.low)
        high = self.high if high is None else min(high, self.high)
        conditions = ["r.ts >= ?", "r.ts < ?"]
        params: list[Any] = [self.request.start_ns, self.request.end_ns]
        if before is not None:
            conditions.append("(r.ts, r.off, r.eid) < (?, ?, ?)")
            params.extend(before)
        if after is not None:
            conditions.append("(r.ts, r.off, r.eid) > (?, ?, ?)")
            params.extend(after)
        if self.clause.sql is not None:
            conditions.append(self.clause.sql)
            params.extend(self.clause.params)
        if extra is not None:
            conditions.append(extra)
            params.extend(extra_params)
        where = " AND ".join(conditions)
        if self.clause.fts is not None:
            # CROSS JOIN keeps FTS5 as the outer loop: it walks its lists in rowid order.
            sql = (
                f"SELECT {select} FROM f CROSS JOIN r ON r.rowid = f.rowid "  # noqa: S608 - fixed parts; values are parameters
                f"WHERE f MATCH ? AND f.rowid BETWEEN ? AND ? AND {where}"
            )
            return sql, [self.clause.fts, low, high, *params]
        sql = f"SELECT {select} FROM r WHERE r.rowid BETWEEN ? AND ? AND {where}"  # noqa: S608 - fixed parts; values are parameters
        return sql, [low, high, *params]

    @property
    def fts_only(self) -> bool:
        """True when the clause is only FTS: counts in whole milliseconds need no row reads."""
        return self.clause.fts is not None and self.clause.sql is None

    def segments(self, unit_ns: int = TIME_UNIT_NS) -> list[tuple[int, int, bool]]:
        """Rowid ranges covering the request: ``(low, high, inner)``.

        ``inner`` ranges hold whole ``unit_ns`` (a multiple of a millisecond)
        inside ``[start_ns, end_ns)``, so every row in them is in range; the
        (at most two) others are the partial units at the edges, where
        ``r.ts`` must be checked.
        """
        per_unit = unit_ns // TIME_UNIT_NS * TIEBREAK
        start, end = self.request.start_ns, self.request.end_ns
        first = -(-max(0, start) // unit_ns)
        last = min(end, MAX_TS_NS) // unit_ns
        if first >= last:
            return [(self.low, self.high, False)]
        out: list[tuple[int, int, bool]] = []
        inner_low, inner_high = first * per_unit, last * per_unit - 1
        if self.low < inner_low:
            out.append((self.low, inner_low - 1, False))
        out.append((inner_low, inner_high, True))
        if inner_high < self.high:
            out.append((inner_high + 1, self.high, False))
        return out


class EmbeddedIndex:
    """SQLite FTS5 index: document writer, search backend and retention service."""

    name = "embedded-index"

    def __init__(
        self,
        config: EmbeddedConfig,
        retention: RetentionConfig,
        state_dir: Path,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """``clock`` (nanoseconds since the epoch) is what "now" means to retention: records
        arriving past their class's days, what searches see, and :meth:`expire`."""
        if config.synchronous.lower() not in ("full", "normal", "extra"):
            raise ValueError(
                f"embedded.synchronous {config.synchronous!r} is not one of full, normal, extra"
            )
        self.config = config
        self.retention = retention
        self.clock = clock
        self.path = Path(config.path) if config.path else default_index_path(Path(state_dir))
        self.events = IndexEvents()
        self.dictionary = Dictionary()
        self._writer: ThreadPoolExecutor | None = None
        self._preparer: ThreadPoolExecutor | None = None
        self._syncer: ThreadPoolExecutor | None = None
        self._sync_wal = config.synchronous.lower() == "full"
        """``full``: the writer commits without waiting for the disk and the syncer
        thread fsyncs the WAL before the batch's writer returns (see _commit_waiting)."""
        self._wal_fd: int | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._local = threading.local()
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._stopping = asyncio.Event()
        self._written = asyncio.Event()
        self.batches = BatchPreparer(self.dictionary, retention)
        self._checkpointer = Checkpointer(self._connect, self.events)
        self._chains: dict[Chain, Link] = {}
        """Committed last line of each file and stream (the writer's copy of ``chains``)."""
        self._shared_texts: dict[int, str] = {}
        """``shared`` sections the readers fetched: id -> JSON (ids are never reused while open)."""
        self._shared_lock = threading.Lock()
        self._retention_marks: dict[str, int] = {}
        """Per retention pass: the rowid below which nothing is left to expire."""
        self._waiting: deque[tuple[Prepared, asyncio.Future[int]]] = deque()
        """Prepared batches waiting for the writer, in order, with what their writers await."""
        self._committer: asyncio.Task[None] | None = None
        self.write_seq = 0
        """Incremented after every commit that added records (for live tails)."""

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Open (or create) the index file and its connections."""
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise RuntimeError("the embedded index was closed")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.config.switch_interval_ms > 0:
                # Process-wide: every SQLite call gives the GIL up, and taking it back
                # while the preparing (or collecting) thread runs Python waits for
                # that thread's switch interval; 5 ms per statement stalls a commit.
                sys.setswitchinterval(self.config.switch_interval_ms / 1000)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="podlog-index-writer")
            self._preparer = ThreadPoolExecutor(1, thread_name_prefix="podlog-index-prepare")
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="podlog-index-sync")
            self._readers = ThreadPoolExecutor(
                max(1, self.config.readers), thread_name_prefix="podlog-index-reader"
            )
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer, self._open_writer)
            self._started = True
            self.events.index_opened(str(self.path), sqlite3.sqlite_version)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=60.0
        )
        # 8 KiB pages fit ~6 records per leaf (4 KiB fit 3): less CPU per insert, while
        # the pages a commit dirties in the file-order index stay small.
        # Takes effect only when the file is created.
        conn.execute("PRAGMA page_size = 8192")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.config.synchronous.upper()}")
        conn.execute(f"PRAGMA cache_size = {-1024 * max(1, self.config.cache_mb)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.create_function("regexp_search", 2, _regexp_search, deterministic=True)
        conn.create_function("regexp_full", 2, _regexp_full, deterministic=True)
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        # The checkpointer thread copies the WAL into the file, not the committing writer;
        # the WAL file is cut back to 64 MB whenever it restarts.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {64 << 20}")
        if self._sync_wal:
            # The WAL is fsynced by the syncer thread, not inside COMMIT (same guarantee:
            # no write returns before its transaction is on disk).
            conn.execute("PRAGMA synchronous = NORMAL")
        with conn:
            create_schema(conn)
        self.dictionary.load(conn)
        self.batches.load(conn)
        for ident, stream, last, generation, offset in conn.execute("SELECT ident, strm, last, gen, off FROM chains"):
            self._chains[(ident, stream)] = Link(last, generation, offset)
        self._write_conn = conn
        self._checkpointer.start()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            local = self._local
            local.deadline = math.inf
            conn.set_progress_handler(lambda: int(time.monotonic() > local.deadline), 5000)
            self._local.conn = conn
        return conn

    async def run(self) -> None:
        """Apply retention now and every ``retention_interval_seconds`` until stopped."""
        await self.start()
        while not self._stopping.is_set():
            try:
                await self.expire()
            except Exception as exc:  # noqa: BLE001 - retention retries next round; searches go on
                self.events.retention_failed(exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.retention_interval_seconds):
                    await self._stopping.wait()

    async def stop(self) -> None:
        """Finish the running write, close every connection; safe to call twice."""
        self._stopping.set()
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        loop = asyncio.get_running_loop()
        assert self._writer is not None and self._readers is not None
        await loop.run_in_executor(None, self._readers.shutdown, True)
        await loop.run_in_executor(None, self._writer.shutdown, True)
        await loop.run_in_executor(None, self._checkpointer.stop)
        if self._preparer is not None:
            await loop.run_in_executor(None, self._preparer.shutdown, True)
        if self._syncer is not None:
            await loop.run_in_executor(None, self._syncer.shutdown, True)
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._written.set()
        self.events.index_closed(str(self.path))

    async def close(self) -> None:
        """Release the index (the :class:`SearchBackend` name for :meth:`stop`)."""
        await self.stop()

    async def __aenter__(self) -> EmbeddedIndex:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- writing ----------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> None:
        """Commit ``records``; those whose ``event.id`` is already indexed are skipped.

        When ``records`` is an :class:`EncodedBatch`, the stored JSON is its
        encodings, not a second encoding of the decoded records.
        """
        if not records:
            return
        await self.start()
        assert self._writer is not None and self._preparer is not None
        loop = asyncio.get_running_loop()
        # A batch is prepared while earlier ones commit (the shipper keeps several
        # sends in flight); the preparer is FIFO and so is the queue, so commits
        # keep their order.
        prepared = await loop.run_in_executor(self._preparer, self.batches.prepare, records, self.clock())
        written = await self._commit_in_turn(prepared)
        if written:
            self.write_seq += 1
            waiting, self._written = self._written, asyncio.Event()
            waiting.set()

    async def wait_for_write(self, timeout: float) -> bool:  # noqa: ASYNC109 - a poll bound, not a cancellation scope
        """Wait until a commit adds records (True) or ``timeout`` passes (False)."""
        event = self._written
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True

    async def _commit_in_turn(self, batch: Prepared) -> int:
        """Commit ``batch`` together with the batches waiting with it; its rows written."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((batch, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting(), name="embedded-commit")
        return await done

    async def _commit_waiting(self) -> None:
        """Commit what waits, in order, several batches to a transaction (one fsync)."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        while waiting:
            group = [waiting.popleft() for _ in range(min(len(waiting), _GROUP_BATCHES))]
            assert self._writer is not None
            try:
                written = await loop.run_in_executor(self._writer, self._commit_group, [b for b, _ in group])
            except Exception as exc:  # noqa: BLE001 - handed to each writer; the shipper retries
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:
                for _, done in [*group, *waiting]:
                    done.cancel()
                waiting.clear()
                raise
            if self._sync_wal and self._syncer is not None:
                # The next group commits while this one's WAL frames go to disk; fsyncs
                # run one after another, so writers are answered in commit order.
                try:
                    synced = loop.run_in_executor(self._syncer, self._fsync_wal)
                except RuntimeError as exc:  # stopped: the syncer takes no more work
                    synced = loop.create_future()
                    synced.set_exception(exc)
                synced.add_done_callback(functools.partial(_settle, group, written))
            else:
                _settle(group, written, None)

    def _fsync_wal(self) -> None:
        """Make every committed transaction durable (on the syncer thread)."""
        if self._wal_fd is None:
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        os.fsync(self._wal_fd)

    def _write_batch(self, records: Sequence[Record]) -> int:
        """Prepare and commit in the calling thread (tests, benchmarks)."""
        return self._commit_group([self.batches.prepare(records, self.clock())])[0]

    def _commit_group(self, batches: Sequence[Prepared]) -> list[int]:
        """Commit ``batches`` in one transaction; the rows each wrote.

        Group commit: while one transaction commits, the next batches are
        prepared and wait; they then share one (and one WAL fsync).  Each
        batch keeps its own savepoint for replays and links to the chains the
        batches before it in the group extended.
        """
        conn = self._write_conn
        assert conn is not None
        started = time.monotonic()
        undo: dict[Chain, Link | None] = {}
        outcomes: list[tuple[int, int]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for batch in batches:
                chains, rows, duplicates = self._insert_batch(conn, batch)
                for chain in chains.keys() - undo.keys():
                    undo[chain] = self._chains.get(chain)
                self._chains.update(chains)
                outcomes.append((rows, duplicates))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for chain, link in undo.items():
                if link is None:
                    self._chains.pop(chain, None)
                else:
                    self._chains[chain] = link
            raise
        seconds = (time.monotonic() - started) / len(batches)
        for batch, (rows, duplicates) in zip(batches, outcomes, strict=True):
            self.dictionary.publish(batch.values)
            for reason, examples in batch.rejected.items():
                self.events.record_rejected(reason, len(examples), examples[0])
            if batch.expired:
                self.events.records_expired(batch.expired)
            self.events.batch_written(rows, duplicates, batch.prepare_seconds + seconds)
        written = [rows for rows, _ in outcomes]
        self._committed(conn, sum(written))
        return written

    def _insert_batch(self, conn: sqlite3.Connection, batch: Prepared) -> tuple[dict[Chain, Link], int, int]:
        """Insert one batch in the open transaction: the chains it extended, rows written, duplicates."""
        rows, fts_rows = batch.rows, batch.fts_rows
        duplicates = batch.duplicates
        chains: dict[Chain, Link] = {}
        if batch.values:
            conn.executemany(
                "INSERT OR IGNORE INTO vals (id, col, value) VALUES (?, ?, ?)",
                [(ident, column, value) for ident, (column, value) in batch.values.items()],
            )
        # Fast path: a new batch (the common case) goes in without looking anything up.
        try:
            conn.execute("SAVEPOINT batch")
            ordered, unordered = self._link_heads(batch, chains)
            insert_rows(conn, _INSERT_ROW_HEAD, ordered)
            if unordered:
                self._insert_in_file_order(conn, unordered, chains)
            conn.execute("RELEASE batch")
        except sqlite3.IntegrityError:
            # A replay (an event.id already stored) or a time key taken by a stored
            # row: undo, then skip what is stored and probe for free keys.
            conn.execute("ROLLBACK TO batch")
            conn.execute("RELEASE batch")
            chains.clear()
            rows, fts_rows, stored = self._unstored(conn, rows, fts_rows)
            duplicates += stored
            self._insert_in_file_order(conn, rows, chains)
        insert_json(conn, _INSERT_FTS, fts_rows)
        insert_json(conn, _UPSERT_SHARED, [(ident, *used) for ident, used in batch.shared.items()])
        _count_minutes(conn, (row[0] for row in rows), 1)
        insert_json(conn, _UPSERT_CHAINS, [(*chain, *link) for chain, link in chains.items()])
        if rows and self._retention_marks:
            # Old lines arrive late (a backfill): let the next retention pass look at them.
            oldest = min(row[0] for row in rows)
            for mark, low in self._retention_marks.items():
                self._retention_marks[mark] = min(low, oldest)
        return chains, len(rows), duplicates

    def _committed(self, conn: sqlite3.Connection, rows: int) -> None:
        """After a commit on the writer thread: count it toward the next checkpoint."""
        self._checkpointer.committed(rows)
        if self._checkpointer.restart_due:
            self._checkpointer.restart(conn)

    def _link_heads(self, batch: Prepared, chains: dict[Chain, Link]) -> tuple[list[Row], list[Row]]:
        """Link each chain's first row to the chain's stored last line.

        Returns the rows that extend their chain, ready to insert, and the rows of
        chains that arrive out of file order (placed one by one); ``chains`` gets
        the new last line of each extended chain.
        """
        rows = batch.rows
        disordered = set(batch.disordered)
        stored = self._chains
        for chain, index in batch.heads.items():
            last = stored.get(chain)
            if last is None:
                continue
            head = rows[index]
            if (head[5], head[4]) <= (last.generation, last.offset):
                disordered.add(chain)
            elif head[-1] is None:
                rows[index] = (*head[:-1], last.key)
        for chain, tail in batch.tails.items():
            if chain not in disordered:
                chains[chain] = Link(*tail)
        if not disordered:
            return rows, []
        ordered: list[Row] = []
        unordered: list[Row] = []
        for row in rows:
            (unordered if (row[6], row[_STREAM] or 0) in disordered else ordered).append(row)
        return ordered, unordered

    def _insert_in_file_order(self, conn: sqlite3.Connection, rows: list[Row], chains: dict[Chain, Link]) -> None:
        """Insert ``rows`` one by one, each linked at its place in its chain (the slow path)."""
        for row in rows:
            chain: Chain = (row[6], row[_STREAM] or 0)
            position = (row[5], row[4])
            last = chains.get(chain) or self._chains.get(chain)
            if last is None or position > (last.generation, last.offset):
                conn.execute(_INSERT_ROW, (*row[:-1], None if last is None else last.key))
                chains[chain] = Link(row[0], row[5], row[4])
                continue
            # Out of file order: walk back to the line before it, and link the one after to it.
            after, node = last.key, last.key
            before: int | None = None
            for _ in range(_CHAIN_WALK_LIMIT):
                found = conn.execute(
                    "SELECT gen, off, prev, ident, strm FROM r WHERE rowid = ?", (node,)
                ).fetchone()
                if found is None or (found[3], found[4] or 0) != chain:
                    break  # expired, or a link from before a rowid was reused
                if (found[0], found[1]) < position:
                    before = node
                    break
                after = node
                if found[2] is None:
                    break
                node = found[2]
            conn.execute(_INSERT_ROW, (*row[:-1], before))
            conn.execute("UPDATE r SET prev = ? WHERE rowid = ?", (row[0], after))

    def _unstored(
        self, conn: sqlite3.Connection, rows: list[Row], fts_rows: list[tuple[int, str, str]]
    ) -> tuple[list[Row], list[tuple[int, str, str]], int]:
        """Rows not stored yet, each with a time key no stored row holds; and how many were."""
        keep: list[Row] = []
        keep_fts: list[tuple[int, str, str]] = []
        taken = {row[0] for row in rows}
        for row, fts_row in zip(rows, fts_rows, strict=True):
            key, minute, event_id = row[0], row[1], row[2]
            if conn.execute("SELECT 1 FROM r WHERE m = ? AND eid = ?", (minute, event_id)).fetchone():
                taken.discard(key)
                continue
            if conn.execute("SELECT 1 FROM r WHERE rowid = ?", (key,)).fetchone():
                taken.discard(key)
                free = free_key(conn, key, taken)
                if free is None:
                    self.events.record_rejected("timestamp_crowded", 1, event_id)
                    continue
                taken.add(free)
                row = (free, *row[1:])
                fts_row = (free, *fts_row[1:])
            keep.append(row)
            keep_fts.append(fts_row)
        return keep, keep_fts, len(rows) - len(keep)

    # -- retention --------------------------------------------------------------

    async def expire(self, now_ns: int | None = None) -> dict[str, int]:
        """Delete records older than their class's retention; counts by class."""
        await self.start()
        assert self._writer is not None
        now = self.clock() if now_ns is None else now_ns
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._expire, now)

    def _expire(self, now_ns: int) -> dict[str, int]:
        conn = self._write_conn
        assert conn is not None
        retention = self.retention
        configured = list(retention.classes)
        passes: list[tuple[str, str, float, str, tuple[str, ...]]] = [
            (name, name, days, "cls = ?", (name,)) for name, days in retention.classes.items()
        ]
        # Records of a class no longer configured expire with the default class.
        passes.append(
            (
                retention.default_class,
                "",
                retention.classes[retention.default_class],
                f"cls NOT IN ({','.join('?' * len(configured))})",
                tuple(configured),
            )
        )
        deleted: dict[str, int] = dict.fromkeys(configured, 0)
        for name, mark, days, condition, params in passes:
            cutoff = min(now_ns - int(days * 86_400 * 1_000_000_000), MAX_TS_NS)
            if cutoff <= 0:
                continue
            low = self._retention_marks.get(mark, 0)
            high = (cutoff // TIME_UNIT_NS) * TIEBREAK + TIEBREAK - 1
            total = 0
            while True:
                if self._stopping.is_set():
                    return deleted
                rows = conn.execute(
                    f"SELECT rowid, doc, {', '.join(ROW_COLUMNS)} FROM r"  # noqa: S608 - fixed parts
                    f" WHERE rowid BETWEEN ? AND ? AND {condition} AND ts < ? ORDER BY rowid LIMIT ?",
                    (low, high, *params, cutoff, max(1, self.config.retention_batch)),
                ).fetchall()
                if not rows:
                    break
                self._delete_rows(conn, rows)
                self._committed(conn, len(rows))
                low = rows[-1][0] + 1
                total += len(rows)
            # Everything of this pass before the cutoff's millisecond is gone: start there next time.
            self._retention_marks[mark] = (cutoff // TIME_UNIT_NS) * TIEBREAK
            if total:
                self.events.retention_applied(name, total, cutoff)
            deleted[name] += total
        if any(deleted.values()):
            # Sections last used before the oldest record left are used by none.
            conn.execute(
                "DELETE FROM shared WHERE last < coalesce((SELECT min(rowid) FROM r), ?)", (MAX_ROWID,)
            )
        return deleted

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, rows: list[Any]) -> None:
        """Delete rows (``rowid, doc, *dictionary ids``) from ``r`` and their FTS entries."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO f (f, rowid, message, meta) VALUES ('delete', ?, ?, ?)",
                [(row[0], _message(row[1]), meta_tokens(row[2:])) for row in rows],
            )
            conn.executemany("DELETE FROM r WHERE rowid = ?", [(row[0],) for row in rows])
            _count_minutes(conn, (row[0] for row in rows), -1)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    # -- reading ----------------------------------------------------------------

    async def _read(self, kind: str, limit: float, fn: Callable[..., T], *args: Any) -> T:
        await self.start()
        assert self._readers is not None
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            return await loop.run_in_executor(self._readers, self._call, limit, fn, args)
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc):
                self.events.query_timed_out(kind, limit)
                raise TimeoutError(f"{kind} exceeded its time limit of {limit}s") from exc
            raise BackendError(f"embedded index: {exc}", retriable=True) from exc
        except sqlite3.Error as exc:
            raise BackendError(f"embedded index: {exc}", retriable=False) from exc
        finally:
            self.events.query_answered(kind, time.monotonic() - started)

    def _call(self, timeout: float, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._reader()
        self._local.deadline = time.monotonic() + max(0.001, timeout)
        try:
            return fn(conn, *args)
        finally:
            self._local.deadline = math.inf

    def _clause(self, request: SearchRequest) -> Clause:
        limit = self.config.wildcard_expansion_limit
        parts = [translate(request.query, self.dictionary, limit)]
        for name, values in request.filters.items():
            path = FILTER_FIELDS.get(name)
            if path is None:
                raise QueryError(f"unknown filter {name!r}; use one of {', '.join(FILTER_FIELDS)}")
            if not values:
                continue
            column = TOKEN_FIELDS[path]
            ids = [i for v in values if (i := self.dictionary.id_of(column, str(v))) is not None]
            parts.append(id_set(column, ids, limit))
        if request.allowed_namespaces is not None:
            patterns = list(request.allowed_namespaces)
            ids = self.dictionary.ids("ns", lambda value: glob_match(patterns, value))
            parts.append(id_set("ns", ids, limit))
        kept = self.retention_clause(request.start_ns, self.clock())
        if kept is not None:
            parts.append(kept)
        return and_clauses(parts)

    def retention_clause(self, start_ns: int, now_ns: int) -> Clause | None:
        """Only records within their class's retention at ``now_ns``; None when no record a
        search from ``start_ns`` can reach has expired.

        Retention passes delete expired rows every ``retention_interval_seconds``;
        this makes what a search sees exact in between (a row expires for search
        at the nanosecond its class's days have passed).  Searches of recent
        times, newer than every class's cutoff, get no extra condition.
        """
        retention = self.retention
        cutoffs = {name: cutoff_ns(retention, name, now_ns) for name in retention.classes}
        if start_ns >= max(cutoffs.values()):
            return None
        cases = " ".join("WHEN ? THEN r.ts >= ?" for _ in cutoffs)
        params: list[Any] = [max(cutoffs.values())]
        for name, cutoff in cutoffs.items():
            params.extend((name, cutoff))
        params.append(cutoffs[retention.default_class])  # a class no longer configured
        return Clause(sql=f"(r.ts >= ? OR CASE r.cls {cases} ELSE r.ts >= ? END)", params=tuple(params))

    async def search(self, request: SearchRequest) -> SearchPage:
        """Matching records, newest first, one page."""
        clause = self._clause(request)
        if clause.is_false or request.start_ns >= request.end_ns or request.size <= 0:
            return SearchPage(hits=[], total=0)
        query = _Query(clause, request)
        return await self._read("search", request.timeout_seconds, self._search, query)

    def _search(self, conn: sqlite3.Connection, query: _Query) -> SearchPage:
        request = query.request
        rows = self._newest(conn, query, request.size + 1, before=request.search_after)
        more = len(rows) > request.size
        rows = rows[: request.size]
        hits = self._documents(conn, [(row[4], row[5]) for row in rows])
        total, exact = self._count(conn, query)
        next_cursor = _key(rows[-1]) if more and rows else None
        return SearchPage(hits=hits, total=total, total_exact=exact, next_cursor=next_cursor)

    def _newest(
        self, conn: sqlite3.Connection, query: _Query, limit: int, before: Cursor | None
    ) -> list[tuple[Any, ...]]:
        """The ``limit`` newest matches older than ``before``, in exact order."""
        high = None if before is None else (before[0] // TIME_UNIT_NS) * TIEBREAK + TIEBREAK - 1
        sql, params = query.sql(_ROW, before=before, high=high)
        order = "f.rowid" if query.clause.fts is not None else "r.rowid"
        rows = conn.execute(f"{sql} ORDER BY {order} DESC LIMIT ?", [*params, limit]).fetchall()
        if len(rows) == limit:
            # Rowids order by millisecond; finish the last millisecond in exact order.
            last = rows[-1][0]
            floor = last - last % TIEBREAK
            sql, params = query.sql(_ROW, before=before, low=floor, high=last - 1)
            rows.extend(conn.execute(sql, params).fetchall())
        rows.sort(key=_key, reverse=True)
        return rows[:limit]

    def _count(self, conn: sqlite3.Connection, query: _Query) -> tuple[int, bool]:
        cap = max(1, self.config.track_total_hits)
        count = 0
        everything = query.clause.is_true
        for low, high, inner in query.segments(MINUTE_NS if everything else TIME_UNIT_NS):
            if inner and everything:
                (found,) = conn.execute(
                    "SELECT coalesce(sum(n), 0) FROM minutes WHERE minute BETWEEN ? AND ?",
                    (low // _ROWIDS_PER_MINUTE, high // _ROWIDS_PER_MINUTE),
                ).fetchone()
                count += int(found)
                if count > cap:
                    return cap, False
                continue
            if inner and query.fts_only:
                sql = "SELECT 1 FROM f WHERE f MATCH ? AND rowid BETWEEN ? AND ?"
                params: list[Any] = [query.clause.fts, low, high]
            else:
                sql, params = query.sql("1", low=low, high=high)
            (found,) = conn.execute(
                f"SELECT count(*) FROM ({sql} LIMIT ?)",  # noqa: S608 - built from fixed parts
                [*params, cap + 1 - count],
            ).fetchone()
            count += int(found)
            if count > cap:
                return cap, False
        return count, True

    async def histogram(self, request: SearchRequest, interval_ns: int) -> list[HistogramBucket]:
        """Counts per ``interval_ns`` (aligned to the epoch) over ``[start_ns, end_ns)``."""
        if interval_ns <= 0:
            raise QueryError("histogram interval must be positive")
        clause = self._clause(request)
        if clause.is_false or request.start_ns >= request.end_ns:
            return []
        query = _Query(clause, request)
        return await self._read("histogram", request.timeout_seconds, self._histogram, query, interval_ns)

    def _histogram(
        self, conn: sqlite3.Connection, query: _Query, interval: int
    ) -> list[HistogramBucket]:
        counts: dict[int, int] = {}
        if query.clause.is_true and interval % MINUTE_NS == 0:
            # Everything, in whole minutes: the per-minute counts answer without rows.
            per_bucket = interval // MINUTE_NS
            for low, high, inner in query.segments(MINUTE_NS):
                if inner:
                    sql = (
                        "SELECT minute / ?1 * ?2 AS b, sum(n) FROM minutes "
                        "WHERE minute BETWEEN ?3 AND ?4 GROUP BY b"
                    )
                    params: list[Any] = [
                        per_bucket, interval, low // _ROWIDS_PER_MINUTE, high // _ROWIDS_PER_MINUTE,
                    ]
                else:
                    sql, params = self._bucket_rows(query, interval, low, high)
                for bucket, count in conn.execute(sql, params):
                    counts[int(bucket)] = counts.get(int(bucket), 0) + int(count)
            return [HistogramBucket(start, counts[start]) for start in sorted(counts) if counts[start]]
        fast = interval % TIME_UNIT_NS == 0 and query.fts_only
        per_rowid_bucket = interval // TIME_UNIT_NS * TIEBREAK
        for low, high, inner in query.segments():
            if fast and inner:
                # The rowid holds the millisecond: buckets come from the FTS lists alone.
                sql = (
                    "SELECT rowid / ?1 * ?2 AS b, count(*) FROM f "
                    "WHERE f MATCH ?3 AND rowid BETWEEN ?4 AND ?5 GROUP BY b"
                )
                params = [per_rowid_bucket, interval, query.clause.fts, low, high]
            else:
                sql, params = self._bucket_rows(query, interval, low, high)
            for bucket, count in conn.execute(sql, params):
                counts[int(bucket)] = counts.get(int(bucket), 0) + int(count)
        return [HistogramBucket(start, counts[start]) for start in sorted(counts)]

    @staticmethod
    def _bucket_rows(query: _Query, interval: int, low: int, high: int) -> tuple[str, list[Any]]:
        rows, params = query.sql("r.ts AS ts", low=low, high=high)
        sql = f"SELECT ts / ? * ? AS b, count(*) FROM ({rows}) GROUP BY b"  # noqa: S608 - built from fixed parts
        return sql, [interval, interval, *params]

    async def top_values(
        self, request: SearchRequest, field: str, size: int
    ) -> list[tuple[str, int]]:
        """The ``size`` most frequent values of a filter field among matches."""
        path = FILTER_FIELDS.get(field)
        if path is None:
            raise QueryError(f"unknown field {field!r}; use one of {', '.join(FILTER_FIELDS)}")
        clause = self._clause(request)
        if clause.is_false or request.start_ns >= request.end_ns or size <= 0:
            return []
        query = _Query(clause, request)
        column = TOKEN_FIELDS[path]
        return await self._read(
            "top_values", request.timeout_seconds, self._top_values, query, column, size
        )

    def _top_values(
        self, conn: sqlite3.Connection, query: _Query, column: str, size: int
    ) -> list[tuple[str, int]]:
        inner, params = query.sql(f"r.{column} AS v", extra=f"r.{column} IS NOT NULL")
        sql = f"SELECT v, count(*) FROM ({inner}) GROUP BY v"  # noqa: S608 - column from a fixed table
        counts: list[tuple[str, int]] = []
        for ident, count in conn.execute(sql, params):
            value = self.dictionary.value_of(int(ident))
            if value is not None:
                counts.append((value, int(count)))
        counts.sort(key=lambda item: (-item[1], item[0]))
        return counts[:size]

    async def context(
        self,
        event_id: str,
        before: int,
        after: int,
        allowed_namespaces: Sequence[str] | None,
    ) -> ContextResult | None:
        """Lines around ``event_id`` from its file and stream, in file order."""
        return await self._read(
            "context", 10.0, self._context, event_id, max(0, before), max(0, after), allowed_namespaces
        )

    def _context(
        self,
        conn: sqlite3.Connection,
        event_id: str,
        before: int,
        after: int,
        allowed_namespaces: Sequence[str] | None,
    ) -> ContextResult | None:
        anchor = conn.execute(
            "SELECT r.rowid, r.ident, r.strm, r.prev, r.ns, r.doc, r.k, r.cls, r.ts"
            " FROM minutes CROSS JOIN r ON r.m = minutes.minute AND r.eid = ? LIMIT 1",
            (event_id,),
        ).fetchone()
        if anchor is None:
            return None
        key, ident, stream, prev, namespace_id, doc, shared, klass, ts = anchor
        cutoffs: dict[str, int] = {}
        now = self.clock()

        def expired(row_class: str, row_ts: int) -> bool:
            """Past its class's days, though no retention pass deleted it yet."""
            cutoff = cutoffs.get(row_class)
            if cutoff is None:
                cutoff = cutoffs[row_class] = cutoff_ns(self.retention, row_class, now)
            return row_ts < cutoff

        if expired(klass, ts):
            return None
        if allowed_namespaces is not None:
            namespace = self.dictionary.value_of(namespace_id) if namespace_id is not None else ""
            if not glob_match(list(allowed_namespaces), namespace or ""):
                return None
        # The lines of one file and stream are linked in file order (see embedded_schema).
        older: list[tuple[str, int | None]] = []
        node = prev
        while node is not None and len(older) < before:
            row = conn.execute(
                "SELECT prev, doc, k, cls, ts FROM r WHERE rowid = ? AND ident = ? AND strm IS ?",
                (node, ident, stream),
            ).fetchone()
            if row is None or expired(row[3], row[4]):
                break  # expired
            node = row[0]
            older.append((row[1], row[2]))
        newer: list[tuple[str, int | None]] = []
        node = key
        while len(newer) < after:
            row = conn.execute(
                "SELECT rowid, doc, k, cls, ts FROM r WHERE prev = ? AND ident = ? AND strm IS ?"
                " ORDER BY gen, off LIMIT 1",
                (node, ident, stream),
            ).fetchone()
            if row is None or expired(row[3], row[4]):
                break
            node = row[0]
            newer.append((row[1], row[2]))
        documents = self._documents(conn, [*reversed(older), (doc, shared), *newer])
        return ContextResult(
            before=documents[: len(older)],
            anchor=documents[len(older)],
            after=documents[len(older) + 1 :],
        )

    def _documents(self, conn: sqlite3.Connection, stored: Sequence[tuple[str, int | None]]) -> list[Record]:
        """Records from ``(doc, k)`` pairs: each ``doc`` with its shared ``kubernetes`` put back."""
        wanted = {k for _, k in stored if k is not None}
        sections: dict[int, str] = {}
        if wanted:
            cache = self._shared_texts
            with self._shared_lock:
                sections = {k: cache[k] for k in wanted if k in cache}
            missing = sorted(wanted - sections.keys())
            for at in range(0, len(missing), _CHUNK):
                chunk = missing[at : at + _CHUNK]
                found = conn.execute(
                    f"SELECT id, doc FROM shared WHERE id IN ({','.join('?' * len(chunk))})",  # noqa: S608 - placeholders only
                    chunk,
                ).fetchall()
                sections.update(found)
                with self._shared_lock:
                    if len(cache) + len(found) > _SHARED_KEPT:
                        cache.clear()
                    cache.update(found)
        documents: list[Record] = []
        for doc, k in stored:
            record = orjson.loads(doc)
            if k is not None and type(record) is dict:
                text = sections.get(k)
                # Absent only if retention removed the section between two reads.
                record["kubernetes"] = None if text is None else orjson.loads(text)
            documents.append(record)
        return documents

    async def tail(
        self, request: SearchRequest, after: Cursor | None
    ) -> tuple[list[Record], Cursor | None]:
        """Matches newer than ``after``, oldest first, and the newest cursor seen."""
        clause = self._clause(request)
        if clause.is_false or request.start_ns >= request.end_ns:
            return [], after
        query = _Query(clause, request)
        return await self._read("tail", request.timeout_seconds, self._tail, query, after)

    def _tail(
        self, conn: sqlite3.Connection, query: _Query, after: Cursor | None
    ) -> tuple[list[Record], Cursor | None]:
        if after is None:
            newest = self._newest(conn, query, 1, before=None)
            return [], (_key(newest[0]) if newest else None)
        limit = max(1, query.request.size)
        low = (after[0] // TIME_UNIT_NS) * TIEBREAK
        sql, params = query.sql(_ROW, after=after, low=low)
        order = "f.rowid" if query.clause.fts is not None else "r.rowid"
        rows = conn.execute(f"{sql} ORDER BY {order} LIMIT ?", [*params, limit]).fetchall()
        if len(rows) == limit:
            last = rows[-1][0]
            ceiling = last - last % TIEBREAK + TIEBREAK - 1
            sql, params = query.sql(_ROW, after=after, low=last + 1, high=ceiling)
            rows.extend(conn.execute(sql, params).fetchall())
        rows.sort(key=_key)
        rows = rows[:limit]
        if not rows:
            return [], after
        return self._documents(conn, [(row[4], row[5]) for row in rows]), _key(rows[-1])


def _settle(
    group: Sequence[tuple[Prepared, asyncio.Future[int]]],
    written: Sequence[int],
    synced: asyncio.Future[None] | None,
) -> None:
    """Answer each writer of a committed group: its rows, or why its commit is not durable."""
    error: BaseException | None = None
    if synced is not None:
        error = asyncio.CancelledError() if synced.cancelled() else synced.exception()
    for (_, done), rows in zip(group, written, strict=True):
        if done.done():
            continue
        if error is None:
            done.set_result(rows)
        elif isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)


_INSERT_FTS = "INSERT INTO f (rowid, message, meta) VALUES (?, ?, ?)"
_UPSERT_SHARED = (
    "INSERT INTO shared (id, doc, last) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET last = max(last, excluded.last)"
)
_UPSERT_CHAINS = (
    "INSERT INTO chains (ident, strm, last, gen, off) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (ident, strm) DO UPDATE"
    " SET last = excluded.last, gen = excluded.gen, off = excluded.off"
)


@functools.cache
def _from_json(statement: str) -> str:
    """``statement`` (``INSERT ... VALUES (?, ...) [ON CONFLICT ...]``) reading its rows from one JSON array."""
    head, rest = statement.split(" VALUES ", 1)
    width = rest.count("?")
    tail = rest[rest.index(")") + 1 :]
    columns = ", ".join(f"value ->> {i}" for i in range(width))
    # "WHERE true": an upsert after a SELECT needs it to parse.
    return f"{head} SELECT {columns} FROM json_each(?) WHERE true{tail}"  # noqa: S608 - fixed statements; values are parameters


def insert_json(conn: sqlite3.Connection, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """``statement`` for every row, as one statement over a JSON array of the rows.

    One call that holds the GIL only to bind one text: ``executemany`` gives
    the GIL up and takes it back for every row, and each time it is taken back
    while the preparing or collecting thread runs Python it waits for that
    thread's switch interval, so a batch's commit stalled for as long as the
    next batch took to prepare.  Rows that JSON cannot carry exactly (a NUL,
    which SQLite's ``->>`` cuts text at, or a lone surrogate) go through
    ``executemany``.
    """
    if not rows:
        return
    try:
        encoded = orjson.dumps(rows)
    except orjson.JSONEncodeError:
        encoded = None
    if encoded is None or b"\\u0000" in encoded:
        conn.executemany(statement, rows)
        return
    conn.execute(_from_json(statement), (encoded.decode(),))


_ROWS_PER_STATEMENT = (1024, 128, 16, 1)
"""Rows per multi-row INSERT, largest first (a few statement texts, all cached).

One statement binds up to 1,024 rows and runs them in one call, instead of
one call (and one release and retake of the GIL) per row with
``executemany``: rows of ``r`` went in at 3.1 instead of 3.9 us each."""


@functools.cache
def _values_statement(head: str, width: int, rows: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([one] * rows)}"


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """``head`` (``INSERT INTO t (a, b)``) for every row, with few multi-row statements."""
    if not rows:
        return
    width, at, total = len(rows[0]), 0, len(rows)
    flat = itertools.chain.from_iterable
    for size in _ROWS_PER_STATEMENT:
        while total - at >= size:
            conn.execute(_values_statement(head, width, size), list(flat(rows[at : at + size])))
            at += size


def _count_minutes(conn: sqlite3.Connection, rowids: Iterable[int], sign: int) -> None:
    """Add (``sign`` 1) or remove (-1) rows from the per-minute counts."""
    per_minute = Counter(rowid // _ROWIDS_PER_MINUTE for rowid in rowids)
    conn.executemany(
        "INSERT INTO minutes (minute, n) VALUES (?, ?)"
        " ON CONFLICT (minute) DO UPDATE SET n = n + excluded.n",
        [(minute, sign * n) for minute, n in per_minute.items()],
    )


def _message(doc: str) -> str:
    message = orjson.loads(doc).get("message")
    return message if isinstance(message, str) else ""
