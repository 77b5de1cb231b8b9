"""Records kept as their JSON encodings, so the spool-to-Kafka path never re-encodes them.

Each record belongs to a *group*: its stream key
(:func:`podlog.record.stream_key`) and retention class, which decide its
Kafka message and topic.  :class:`EncodedRecords` holds records as *runs*:
the comma-joined JSON encodings of consecutive records of one group, e.g.
``{...},{...},{...}``.  Runs keep each stream's records in order; records of
different streams may be regrouped (order across streams carries no meaning).

A transport builds a message value by joining runs:
``{"schema":1,"records":[`` + runs + ``]}`` is byte for byte what
:func:`podlog.record.encode_batch` makes of the same records.  For a transport
that wants dicts, :class:`EncodedRecords` is a ``Sequence[Record]`` that
decodes everything once, on first use.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any, overload

import orjson

from podlog.record import Record, SharedMap, encode_batch, stream_key

__all__ = ["BATCH_PREFIX", "BATCH_SUFFIX", "EncodedRecords", "KeptRecords", "Run", "group_of", "join_batch"]

_EMPTY = encode_batch([])
BATCH_PREFIX = _EMPTY[:-2]
"""``{"schema":1,"records":[``: what precedes the records in a message value."""
BATCH_SUFFIX = _EMPTY[-2:]
"""``]}``: what follows them."""

Group = tuple[str, str]

_SHARED_MAPS = itemgetter("kubernetes", "podlog")
"""What decides a record's group; compared by identity first (``groupby``), so cheap."""


def _maps_or_none(record: Record) -> tuple[Any, Any]:
    return record.get("kubernetes"), record.get("podlog")


def join_batch(parts: Sequence[bytes | memoryview]) -> bytes:
    """The :func:`encode_batch` value of the records whose encodings (or runs) are ``parts``."""
    return BATCH_PREFIX + b",".join(parts) + BATCH_SUFFIX


def group_of(record: Record) -> Group:
    """``(stream key, retention class or "")``: what decides a record's message and topic."""
    podlog = record.get("podlog")
    retention = (podlog.get("retention") if isinstance(podlog, dict) else None) or ""
    return stream_key(record).decode("utf-8", "replace"), str(retention)


class Run:
    """Consecutive records of one group: their comma-joined encodings and each one's length."""

    __slots__ = ("data", "group", "lengths")

    def __init__(self, data: bytes | memoryview, group: int, lengths: list[int]) -> None:
        self.data = data
        """``{...},{...}``: the records' encodings joined by commas (a view into what the
        spool read, so building a message copies the bytes once)."""
        self.group = group
        """Index of the run's group in :attr:`EncodedRecords.groups`."""
        self.lengths = lengths
        """Length of each record's encoding, in order."""

    def fragments(self) -> list[bytes | memoryview]:
        """Each record's own encoding."""
        out: list[bytes | memoryview] = []
        at = 0
        for length in self.lengths:
            out.append(self.data[at : at + length])
            at += length + 1
        return out


class KeptRecords(Sequence[Record]):
    """Records kept encoded, decoded all at once on first use: a ``Sequence[Record]`` for a
    transport that wants dicts.  Subclasses say how (:meth:`records`) and how many."""

    __slots__ = ()

    def records(self) -> list[Record]:
        """Every record, decoded (once)."""
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        return self.records()[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self.records() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class EncodedRecords(KeptRecords):
    """Records as runs of JSON encodings plus their groups; decoded only on demand."""

    __slots__ = ("_count", "_decoded", "_groups", "_parts", "_runs", "mapped")

    def __init__(
        self, runs: list[Run], groups: list[Group], *, mapped: tuple[mmap.mmap, ...] = ()
    ) -> None:
        self._runs: list[Run] | None = runs
        self._groups: list[Group] | None = groups
        self._parts: Sequence[EncodedRecords] = ()
        self._count = sum(len(run.lengths) for run in runs)
        self._decoded: list[Record] | None = None
        self.mapped = mapped
        """The spool segment mappings the runs are views into (none for bytes built in memory)."""

    @property
    def runs(self) -> list[Run]:
        """The records, run by run."""
        if self._runs is None:
            self._merge()
        assert self._runs is not None
        return self._runs

    @property
    def groups(self) -> list[Group]:
        """Distinct ``(stream key, retention class)`` pairs."""
        if self._groups is None:
            self._merge()
        assert self._groups is not None
        return self._groups

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> EncodedRecords:
        """Encode ``records``, one run per group (already-encoded input is returned as is).

        Consecutive records that share their ``kubernetes`` and ``podlog`` maps
        (the records of one file read share the very objects) are one chunk:
        its group is computed once and its records are encoded in one C-level
        ``map``, so the per-record cost is orjson's, not this loop's.
        """
        if isinstance(records, EncodedRecords):
            return records
        try:
            return cls._encode(records, _SHARED_MAPS)
        except KeyError:  # a record without one of the maps
            return cls._encode(records, _maps_or_none)

    @classmethod
    def _encode(cls, records: Sequence[Record], maps: Callable[[Record], Any]) -> EncodedRecords:
        positions: dict[Group, int] = {}
        members: list[list[bytes]] = []
        # Groups of shared (read-only) map pairs, by identity: records of
        # interleaved files do not recompute them per chunk.  (The records hold
        # the maps for the whole call, so ids are not reused.)
        shared: dict[tuple[int, int], Group] = {}
        for (k8s, podlog), same_maps in groupby(records, maps):
            chunk = list(same_maps)
            if type(k8s) is SharedMap and type(podlog) is SharedMap:
                key = (id(k8s), id(podlog))
                group = shared.get(key)
                if group is None:
                    group = shared[key] = group_of(chunk[0])
            else:
                group = group_of(chunk[0])
            position = positions.get(group)
            if position is None:
                position = positions[group] = len(positions)
                members.append([])
            members[position].extend(map(orjson.dumps, chunk))
        runs = [Run(b",".join(fragments), i, list(map(len, fragments)))
                for i, fragments in enumerate(members)]
        return cls(runs, list(positions))

    @classmethod
    def concat(cls, parts: Sequence[EncodedRecords]) -> EncodedRecords:
        """All ``parts`` in order, as one (groups merged; no record is copied).

        The merge itself waits until runs or groups are first asked for, so a
        sender that plans its messages on a worker thread does it there, not
        on the event loop (a send joins hundreds of runs).
        """
        if len(parts) == 1:
            return parts[0]
        out = cls([], [], mapped=tuple(dict.fromkeys(m for part in parts for m in part.mapped)))
        out._runs = out._groups = None
        out._parts = parts
        out._count = sum(len(part) for part in parts)
        return out

    def _merge(self) -> None:
        positions: dict[Group, int] = {}
        runs: list[Run] = []
        for part in self._parts:
            remap = [positions.setdefault(group, len(positions)) for group in part.groups]
            runs.extend(Run(run.data, remap[run.group], run.lengths) for run in part.runs)
        self._runs, self._groups, self._parts = runs, list(positions), ()

    def drop_resident_pages(self) -> None:
        """Let the kernel take back the pages of the spool segments the runs are mapped from.

        Once a send is framed its source bytes are not read again unless the
        send is retried; until then their pages only inflate the resident set
        (``max_in_flight_sends + 1`` sends of up to ``max_send_bytes`` each).
        The runs stay valid: a shared file mapping faults dropped pages back
        in from the page cache (or the file) when they are read.
        """
        for mapped in self.mapped:
            if not mapped.closed:
                mapped.madvise(mmap.MADV_DONTNEED)

    def records(self) -> list[Record]:
        """All records decoded (once, in one pass), run by run."""
        if self._decoded is None:
            if not self.runs:
                self._decoded = []
            else:
                self._decoded = orjson.loads(b"[" + b",".join(r.data for r in self.runs) + b"]")
        return self._decoded

    def __len__(self) -> int:
        return self._count


    def __repr__(self) -> str:
        return f"EncodedRecords({len(self)} records in {len(self.runs)} runs)"
