"""The embedded index's on-disk layout: one SQLite file in WAL mode.

``r``    one row per record.  The ``rowid`` is a *time key*: the record's
         timestamp in milliseconds times 2**20, plus a tie-break in
         ``[0, 2**20)`` (from ``event.id``, probed on collision).  Scanning
         rowids backwards is scanning newest first, and FTS5 walks its lists
         in the same order, so "newest 100 matches" stops after 100.
         ``(m, eid)`` is unique, ``m`` being the timestamp's minute: a replayed
         record (same event.id, same timestamp) is not a second copy, and the
         index stays time-local (a random ``eid`` alone would scatter every
         batch over the whole index).  Finding a record by ``event.id`` walks
         the ``minutes`` table and probes ``(m, eid)`` per minute.  Filter
         fields are dictionary ids; the record is kept as JSON (``doc``), its
         ``kubernetes`` section as ``null`` and ``k`` naming its row in
         ``shared`` (``k`` NULL: ``doc`` is the whole record).  ``prev`` is
         the rowid of the previous line of the same file and stream (by
         ``(gen, off)``): context walks these links backwards, and forwards
         through the ``r_prev`` index.  Both point at recent rows, so a batch
         adds to the end of the index instead of one page per file.
``chains`` per file and stream (``ident``, ``strm`` id or 0): the rowid,
         generation and offset of its last line, the head of its links.
``f``    FTS5, contentless: ``message`` (unicode61 words) and ``meta`` (one
         token per filter value, ``v<id>``, plus ``zall``), by the same rowid.
``vals`` the dictionary: ``(column, value) -> id``.
``shared`` each distinct ``kubernetes`` section (JSON), stored once instead of
         on every line of its container: about half of a record's bytes.
         ``last`` is at least the end of the millisecond of the newest row using it;
         retention deletes the rows no longer used (``last`` older than the
         oldest record).
``minutes`` records per minute of timestamp, kept with every write and delete:
         histograms and totals of everything without reading rows.
``info`` key/value: the layout version.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping

from search.backends.embedded_fields import Fields, Kubernetes
from search.backends.embedded_query import ALL_TOKEN, TOKEN_FIELDS

__all__ = [
    "LAYOUT_VERSION",
    "ROW_COLUMNS",
    "TIEBREAK",
    "TIME_UNIT_NS",
    "Dictionary",
    "create_schema",
    "meta_tokens",
    "time_key",
]

LAYOUT_VERSION = 3

TIME_UNIT_NS = 1_000_000
"""The time key's unit: one millisecond, the API's finest time granularity."""

TIEBREAK = 1 << 20
"""Rowids per millisecond: ``rowid = ts_ms * TIEBREAK + tiebreak`` (fits 64 bits to 2245)."""

ROW_COLUMNS = ("ns", "pod", "ctr", "node", "wl", "lvl", "strm")
"""Dictionary-id columns of ``r``, in :data:`TOKEN_FIELDS` order."""

_DDL = f"""
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vals (
    id INTEGER PRIMARY KEY,
    col TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (col, value)
);
CREATE TABLE IF NOT EXISTS r (
    rowid INTEGER PRIMARY KEY,
    m INTEGER NOT NULL,
    eid TEXT NOT NULL,
    ts INTEGER NOT NULL,
    off INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    ident TEXT NOT NULL,
    cls TEXT NOT NULL,
    {", ".join(f"{c} INTEGER" for c in ROW_COLUMNS)},
    doc TEXT NOT NULL,
    prev INTEGER,
    k INTEGER
);
CREATE TABLE IF NOT EXISTS shared (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chains (
    ident TEXT NOT NULL,
    strm INTEGER NOT NULL,
    last INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    off INTEGER NOT NULL,
    PRIMARY KEY (ident, strm)
);
CREATE TABLE IF NOT EXISTS minutes (minute INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS r_eid ON r (m, eid);
CREATE INDEX IF NOT EXISTS r_prev ON r (prev) WHERE prev IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS f USING fts5 (
    message, meta, content='', columnsize=0, tokenize='unicode61'
);
"""

_FTS_MERGE = 16
"""FTS5 ``automerge``: segments per level before they merge (default 4).  Fewer
merge passes per token while indexing; a query reads a few more segments."""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if absent, bring a layout 2 file to 3; refuse any other layout."""
    conn.executescript(_DDL)
    row = conn.execute("SELECT value FROM info WHERE key = 'layout'").fetchone()
    if row is None:
        conn.execute("INSERT INTO info (key, value) VALUES ('layout', ?)", (str(LAYOUT_VERSION),))
        conn.execute("INSERT INTO f (f, rank) VALUES ('automerge', ?)", (_FTS_MERGE,))
    elif row[0] == "2":
        # Layout 2 had no shared sections: its rows keep whole documents (k NULL).
        conn.execute("ALTER TABLE r ADD COLUMN k INTEGER")
        conn.execute("UPDATE info SET value = ? WHERE key = 'layout'", (str(LAYOUT_VERSION),))
    elif row[0] != str(LAYOUT_VERSION):
        raise RuntimeError(
            f"index layout version {row[0]} is not {LAYOUT_VERSION}; use a new data directory"
        )


def time_key(timestamp_ns: int, event_id: str) -> int:
    """The first-choice rowid of a record (collisions probe upwards within its millisecond)."""
    return (timestamp_ns // TIME_UNIT_NS) * TIEBREAK + zlib.crc32(event_id.encode()) % TIEBREAK


def meta_tokens(ids: Iterable[int | None]) -> str:
    """The ``meta`` column text of a row from its dictionary ids."""
    return " ".join([ALL_TOKEN, *(f"v{i}" for i in ids if i is not None)])


def filter_values(fields: Fields, k8s: Kubernetes | None) -> tuple[str | None, ...]:
    """The record's value of each dictionary column, in :data:`ROW_COLUMNS` order.

    ``k8s`` is its ``kubernetes`` section, read.  A record without a namespace
    gets ``""``, so callers allowed ``*`` see it.
    (:mod:`~search.backends.embedded_fields` made every value text or None.)
    """
    if k8s is None:
        return ("", None, None, None, None, fields.level, fields.stream)
    pod, container, node, workload = k8s.pod, k8s.container, k8s.node, k8s.workload
    return (
        k8s.namespace or "",
        None if pod is None else pod.name,
        None if container is None else container.name,
        None if node is None else node.name,
        None if workload is None else workload.name,
        fields.level,
        fields.stream,
    )


class Dictionary:
    """``(column, value) <-> id`` in memory, mirrored in ``vals``.

    Ids are allocated in memory (:meth:`resolve`, on the thread that prepares
    batches) and never reused; a batch carries the values it uses that were
    not yet committed, and the writer inserts them (``INSERT OR IGNORE``: an
    earlier batch may have committed them since) in the batch's transaction,
    then :meth:`publish` makes them visible.  Readers see values that are on
    disk.  Implements :class:`embedded_query.Vocabulary`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_column: dict[str, dict[str, int]] = {c: {} for c in TOKEN_FIELDS.values()}
        self._values: dict[int, str] = {}
        self._allocated: dict[tuple[str, str], int] = {}
        """Every id handed out, committed or not (the preparing thread's view)."""
        self._next = 1

    def load(self, conn: sqlite3.Connection) -> None:
        """Read every value from ``vals``."""
        with self._lock:
            for ident, column, value in conn.execute("SELECT id, col, value FROM vals"):
                self._add(column, value, int(ident))
                self._allocated[(column, value)] = int(ident)
                self._next = max(self._next, int(ident) + 1)

    def _add(self, column: str, value: str, ident: int) -> None:
        self._by_column.setdefault(column, {})[value] = ident
        self._values[ident] = value

    def resolve(
        self, values: Iterable[str | None], unpublished: dict[int, tuple[str, str]]
    ) -> tuple[int | None, ...]:
        """The ids of one row's :data:`ROW_COLUMNS` values, allocating new ones.

        Ids not yet published are added to ``unpublished`` (``id -> (column, value)``).
        """
        out: list[int | None] = []
        with self._lock:
            for column, value in zip(ROW_COLUMNS, values, strict=True):
                if value is None:
                    out.append(None)
                    continue
                key = (column, value)
                ident = self._allocated.get(key)
                if ident is None:
                    ident = self._allocated[key] = self._next
                    self._next += 1
                if ident not in self._values:
                    unpublished[ident] = key
                out.append(ident)
        return tuple(out)

    def publish(self, entries: Mapping[int, tuple[str, str]]) -> None:
        """The writer committed ``entries``: make them visible."""
        if not entries:
            return
        with self._lock:
            for ident, (column, value) in entries.items():
                self._add(column, value, ident)

    def id_of(self, column: str, value: str) -> int | None:
        return self._by_column.get(column, {}).get(value)

    def ids(self, column: str, predicate: Callable[[str], bool]) -> list[int]:
        with self._lock:
            items = list(self._by_column.get(column, {}).items())
        return [ident for value, ident in items if predicate(value)]

    def value_of(self, ident: int) -> str | None:
        """The value behind an id."""
        return self._values.get(ident)
