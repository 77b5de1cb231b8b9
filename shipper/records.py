"""Records kept as their JSON encodings, so the spool-to-Kafka path never re-encodes them.

The spool stores each record's ``orjson`` encoding with its *group*: the
stream key (:func:`podlog.record.stream_key`) and retention class.  A reader
gets an :class:`EncodedRecords`, which is a ``Sequence[Record]`` (decoded on
first use, for transports that want dicts) that also exposes the fragments
and groups, so a transport can build each message value by joining bytes:
``{"schema":1,"records":[`` + fragments + ``]}`` is exactly what
:func:`podlog.record.encode_batch` would produce for the same records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import orjson

from podlog.record import Record, encode_batch, stream_key

__all__ = ["BATCH_PREFIX", "BATCH_SUFFIX", "EncodedRecords", "group_of", "join_batch"]

_EMPTY = encode_batch([])
BATCH_PREFIX = _EMPTY[:-2]
"""``{"schema":1,"records":[``: what precedes the records in a message value."""
BATCH_SUFFIX = _EMPTY[-2:]
"""``]}``: what follows them."""


def join_batch(fragments: Sequence[bytes]) -> bytes:
    """The :func:`encode_batch` value of the records whose encodings are ``fragments``."""
    return BATCH_PREFIX + b",".join(fragments) + BATCH_SUFFIX


def group_of(record: Record) -> tuple[str, str]:
    """``(stream key, retention class or "")``: what decides a record's message and topic."""
    retention = (record.get("podlog") or {}).get("retention") or ""
    return stream_key(record).decode("utf-8", "replace"), str(retention)


class EncodedRecords(Sequence[Record]):
    """A run of records as JSON fragments plus their groups; decoded lazily."""

    __slots__ = ("_decoded", "fragments", "group_index", "groups")

    def __init__(
        self,
        fragments: list[bytes],
        groups: list[tuple[str, str]],
        group_index: list[int],
    ) -> None:
        if len(fragments) != len(group_index):
            raise ValueError("one group index per fragment is required")
        self.fragments = fragments
        """Each record's JSON encoding, in order."""
        self.groups = groups
        """Distinct ``(stream key, retention class)`` pairs."""
        self.group_index = group_index
        """Per record, its position in :attr:`groups`."""
        self._decoded: list[Record] | None = None

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> EncodedRecords:
        """Encode ``records`` (already-encoded input is returned as is)."""
        if isinstance(records, EncodedRecords):
            return records
        positions: dict[tuple[str, str], int] = {}
        index: list[int] = []
        for record in records:
            group = group_of(record)
            position = positions.get(group)
            if position is None:
                position = positions[group] = len(positions)
            index.append(position)
        out = cls([orjson.dumps(r) for r in records], list(positions), index)
        out._decoded = list(records)
        return out

    @classmethod
    def concat(cls, parts: Sequence[EncodedRecords]) -> EncodedRecords:
        """One run of all ``parts`` in order, groups merged."""
        if len(parts) == 1:
            return parts[0]
        positions: dict[tuple[str, str], int] = {}
        fragments: list[bytes] = []
        index: list[int] = []
        for part in parts:
            remap = []
            for group in part.groups:
                position = positions.get(group)
                if position is None:
                    position = positions[group] = len(positions)
                remap.append(position)
            fragments.extend(part.fragments)
            index.extend(remap[i] for i in part.group_index)
        return cls(fragments, list(positions), index)

    def records(self) -> list[Record]:
        """All records decoded (once, in one pass)."""
        if self._decoded is None:
            self._decoded = orjson.loads(b"[" + b",".join(self.fragments) + b"]")
        return self._decoded

    def __len__(self) -> int:
        return len(self.fragments)

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

    def __repr__(self) -> str:
        return f"EncodedRecords({len(self)} records, {len(self.groups)} groups)"
