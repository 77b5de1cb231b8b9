"""Preparing a batch for the embedded index, off the writer thread.

:class:`BatchPreparer` turns records into rows for ``r`` and ``f`` while the
previous batch commits: it checks ``event.id`` and the timestamp, gives each
record its time key (probed past keys taken inside the batch), its JSON (the
spool's encoding when the batch carries it) with the ``kubernetes`` section
cut out and named by its id in ``shared``, its dictionary ids (allocated in
memory, see :class:`~search.backends.embedded_schema.Dictionary`) and its
``prev`` link to the previous line of its file and stream inside the batch,
then sorts the rows by rowid.  The writer only links each chain's first row to
what is stored and inserts (:mod:`search.backends.embedded`).
"""

from __future__ import annotations

import operator
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol, cast

import orjson

from podlog.record import Record
from podlog.retention import RetentionConfig, class_for, cutoff_ns
from search.backends.embedded_fields import Kubernetes, read_encoded, read_kubernetes, read_records
from search.backends.embedded_schema import TIEBREAK, TIME_UNIT_NS, Dictionary, filter_values, meta_tokens

__all__ = [
    "MAX_TS_NS",
    "MINUTE_NS",
    "BatchPreparer",
    "Chain",
    "EncodedBatch",
    "Link",
    "Prepared",
    "Row",
    "free_key",
]

MAX_TS_NS = 8_700_000_000_000_000_000
"""Latest accepted timestamp (year 2245): its time key fits a signed 64-bit rowid."""

MINUTE_NS = 60_000_000_000
"""Unit of the ``minutes`` table and of ``r.m`` (records per minute, for histograms of everything)."""

COMBINATIONS_KEPT = 100_000
"""Most distinct filter-value combinations remembered between batches."""

SHARED_KEPT = 10_000
"""Most distinct ``kubernetes`` sections remembered between batches (past it, a
section seen again is stored again, under a new id)."""

_KEY = b'"kubernetes":'

Row = tuple[Any, ...]
"""A row of ``r``: ``(rowid, m, eid, ts, off, gen, ident, cls, *dictionary ids, doc, k, prev)``."""

Chain = tuple[str, int]
"""A file and stream: ``(log.file.identity, stream id or 0)``."""


class Link(NamedTuple):
    """The last line of a chain: its rowid and file position."""

    key: int
    generation: int
    offset: int


class Prepared(NamedTuple):
    """A batch made ready outside the writer thread: rows for ``r`` and ``f``, in step.

    Inside the batch each row links to the previous row of its chain; the
    writer links each chain's first row (``heads``) to what is stored.
    """

    rows: list[Row]
    fts_rows: list[tuple[int, str, str]]
    values: dict[int, tuple[str, str]]
    """Dictionary entries the rows use that were not committed when they were prepared."""
    shared: dict[int, tuple[str, int]]
    """Every ``shared`` row the rows use: id -> (section JSON, end of the batch's newest millisecond)."""
    heads: dict[Chain, int]
    """Per chain, the index of its first row."""
    tails: dict[Chain, tuple[int, int, int]]
    """Per chain, its last row: ``(rowid, generation, offset)``."""
    disordered: set[Chain]
    """Chains whose rows are not in file order within the batch."""
    rejected: dict[str, list[Any]]
    duplicates: int
    prepare_seconds: float
    expired: dict[str, int]
    """Records left out because they arrived older than their class keeps, by class."""


class EncodedBatch(Protocol):
    """Records that also carry their JSON encodings (what the spool read from disk)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Record]: ...

    def encodings(self) -> Sequence[bytes | memoryview]:
        """Each record's ``orjson.dumps`` encoding, in iteration order."""
        ...


def free_key(conn: sqlite3.Connection | None, wanted: int, taken: set[int]) -> int | None:
    """The next key after ``wanted`` in its millisecond that is not taken (nor stored, given ``conn``)."""
    base = wanted - wanted % TIEBREAK
    key = wanted
    for _ in range(TIEBREAK):
        if key not in taken:
            if conn is None or conn.execute("SELECT 1 FROM r WHERE rowid = ?", (key,)).fetchone() is None:
                return key
            taken.add(key)
        key = base + (key - base + 1) % TIEBREAK
    return None


class BatchPreparer:
    """Rows from records; one thread at a time (the index's preparing thread)."""

    def __init__(self, dictionary: Dictionary, retention: RetentionConfig) -> None:
        self.dictionary = dictionary
        self.retention = retention
        self._combinations: dict[tuple[str | None, ...], tuple[tuple[int | None, ...], str]] = {}
        """Filter values -> (dictionary ids, meta tokens), for combinations already committed."""
        self._sections: dict[bytes, _Section] = {}
        """Encoded ``kubernetes`` section -> what it holds and its ``shared`` id."""
        self._texts: dict[int, str] = {}
        """``shared`` id -> its section's JSON, for the sections in ``_sections``."""
        self._next_shared = 1

    def load(self, conn: sqlite3.Connection) -> None:
        """Continue ``shared`` ids after the largest stored one."""
        (largest,) = conn.execute("SELECT max(id) FROM shared").fetchone()
        self._next_shared = max(self._next_shared, int(largest or 0) + 1)

    def _section(self, raw: bytes) -> _Section:
        """What an encoded ``kubernetes`` section holds; objects get a ``shared`` id."""
        ident = None
        if raw[:1] == b"{":
            ident = self._next_shared
            self._next_shared += 1
            self._texts[ident] = str(raw, "utf-8")
        found = self._sections[raw] = _Section(read_kubernetes(raw), ident)
        return found

    def prepare(self, records: Sequence[Record], now_ns: int | None = None) -> Prepared:
        """Everything about a batch that needs no database: runs beside the previous commit.

        Rows get their first-choice time key (probed past keys taken inside the
        batch), their dictionary ids and their JSON; the writer only inserts.
        A record already older than its retention class keeps at ``now_ns``
        (default: now) gets no row: it is counted in ``expired`` by class.
        """
        started = time.monotonic()
        now = time.time_ns() if now_ns is None else now_ns
        cutoffs: dict[str, int] = {}
        expired: dict[str, int] = {}
        # Read only the fields the index uses (the stored JSON is the record's
        # encoding when the batch carries one, so nothing else is decoded).
        decoded: Sequence[Record] = ()
        encodings: Sequence[bytes | memoryview] | None = None
        if hasattr(records, "encodings"):
            encodings = cast("EncodedBatch", records).encodings()
            fields = read_encoded(encodings)
        else:
            decoded = records if isinstance(records, list) else list(records)
            fields = read_records(decoded)
        rejected: dict[str, list[Any]] = {}
        crc, unit, tiebreak = zlib.crc32, TIME_UNIT_NS, TIEBREAK  # time_key, inlined: hot loop
        if len(self._sections) > SHARED_KEPT:
            # Between batches: the ids this batch hands out keep their text to its end.
            self._sections.clear()
            self._texts.clear()
        sections, section_of = self._sections, self._section
        dumps, minute_ns, max_ts = orjson.dumps, MINUTE_NS, MAX_TS_NS
        seen: set[str] = set()
        duplicates = 0
        taken: set[int] = set()
        rows: list[Row] = []
        fts_rows: list[tuple[int, str, str]] = []
        unpublished: dict[int, tuple[str, str]] = {}
        # Records of one container share every filter value: resolve each combination once.
        combinations = self._combinations
        if len(combinations) > COMBINATIONS_KEPT:
            combinations.clear()
        pending: dict[tuple[str | None, ...], tuple[tuple[int | None, ...], str]] = {}
        classes: dict[tuple[str | None, str | None], str] = {}
        head_keys: dict[int, Chain] = {}
        tails: dict[Chain, tuple[int, int, int]] = {}
        disordered: set[Chain] = set()
        for position, record in enumerate(fields):
            if record is None:
                rejected.setdefault("missing_event_id", []).append(None)
                continue
            event = record.event
            event_id = None if event is None else event.id
            ts = record.timestamp_ns
            if type(event_id) is not str or not event_id:
                rejected.setdefault("missing_event_id", []).append(event_id)
                continue
            if type(ts) is not int or not 0 <= ts <= max_ts:
                rejected.setdefault("invalid_timestamp", []).append(event_id)
                continue
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            key = ts // unit * tiebreak + crc(event_id.encode()) % tiebreak
            if key in taken:
                free = free_key(None, key, taken)
                if free is None:
                    rejected.setdefault("timestamp_crowded", []).append(event_id)
                    continue
                key = free
            try:
                encoded = dumps(decoded[position]) if encodings is None else bytes(encodings[position])
            except TypeError as exc:
                rejected.setdefault("unencodable", []).append(f"{event_id}: {exc}")
                continue
            taken.add(key)
            raw_bytes = bytes(record.kubernetes)
            k8s = k = None  # k: the section's id in shared, as r.k holds it
            if raw_bytes != b"null":
                section = sections.get(raw_bytes) or section_of(raw_bytes)
                k8s, k = section.kubernetes, section.ident
                if k is not None:
                    # The first "kubernetes": key, holding the section, with no such key
                    # after it, can only be the record's own: nothing is guessed (and
                    # a record where it is not so keeps its section).
                    at = encoded.find(_KEY) + len(_KEY)
                    end = at + len(raw_bytes)
                    if at < len(_KEY) or not encoded.startswith(raw_bytes, at) or encoded.find(_KEY, end) >= 0:
                        k = None
                    else:
                        encoded = encoded[:at] + b"null" + encoded[end:]
            values = filter_values(record, k8s)
            podlog = record.podlog
            chosen = None if podlog is None else podlog.retention
            class_key = (values[0], chosen if type(chosen) is str else None)
            retention = classes.get(class_key)
            if retention is None:
                retention = classes[class_key] = class_for(self.retention, *class_key)
            cutoff = cutoffs.get(retention)
            if cutoff is None:
                cutoff = cutoffs[retention] = cutoff_ns(self.retention, retention, now)
            if ts < cutoff:
                # Arrived expired (a backfill, a re-read after a restart): never indexed.
                expired[retention] = expired.get(retention, 0) + 1
                taken.discard(key)
                continue
            doc = str(encoded, "utf-8")
            found = combinations.get(values) or pending.get(values)
            if found is None:
                new: dict[int, tuple[str, str]] = {}
                ids = self.dictionary.resolve(values, new)
                found = (ids, meta_tokens(ids))
                if new:
                    unpublished.update(new)
                    pending[values] = found
                else:
                    combinations[values] = found
            log = record.log
            if log is not None:
                offset, generation, file = log.offset, log.generation, log.file
                if type(offset) is not int:
                    offset = _int(offset)
                if type(generation) is not int:
                    generation = _int(generation)
                identity = None if file is None else file.identity
                if type(identity) is not str:
                    identity = str(identity or "")
            else:
                offset = generation = 0
                identity = ""
            ids = found[0]
            chain = (identity, ids[-1] or 0)
            prior = tails.get(chain)
            if prior is None:
                head_keys[key] = chain
                prev = None
            else:
                prev = prior[0]
                if (generation, offset) <= prior[1:]:
                    disordered.add(chain)
            tails[chain] = (key, generation, offset)
            rows.append(
                (key, ts // minute_ns, event_id, ts, offset, generation, identity, retention, *ids, doc, k, prev)
            )
            message = record.message
            fts_rows.append((key, message if type(message) is str else "", found[1]))
        # In rowid order: each leaf of ``r`` fills before the next (a batch arrives
        # grouped by stream, so its rows would otherwise jump back and forth in time).
        rows.sort(key=_first)
        fts_rows.sort(key=_first)
        shared: dict[int, tuple[str, int]] = {}
        if rows:
            # Every section used is kept at least as long as the batch's newest record.
            newest = rows[-1][0]
            last = newest - newest % tiebreak + tiebreak - 1
            texts = self._texts
            shared = {ident: (texts[ident], last) for ident in {row[-2] for row in rows} if ident is not None}
        heads = {head_keys[row[0]]: i for i, row in enumerate(rows) if row[0] in head_keys}
        return Prepared(
            rows,
            fts_rows,
            unpublished,
            shared,
            heads,
            tails,
            disordered,
            rejected,
            duplicates,
            time.monotonic() - started,
            expired,
        )


_first = operator.itemgetter(0)


class _Section(NamedTuple):
    """An encoded ``kubernetes`` section, read."""

    kubernetes: Kubernetes | None
    ident: int | None
    """Its ``shared`` id; None when it is not an object (the record keeps it)."""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
