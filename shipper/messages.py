"""Schema 2 messages as the spool keeps them: the bytes that go to Kafka, built once.

The spool turns each batch the collector appends into schema 2 message values
(:mod:`podlog.wire`): one per file generation of one container, split to fit
the message size limit.  :class:`StoredMessages` is what a transport gets
back: the Kafka transport sends each value as it is (a copy, never a
re-encode); a transport that wants records (the embedded index) decodes them,
and the payloads are parsed then, as the indexer does.
"""

from __future__ import annotations

import mmap
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from podlog.errors import SchemaError
from podlog.record import Record, stream_key
from podlog.wire import batch_from_records, decode_message, encode_fitting_rows
from shipper.events import events
from shipper.records import KeptRecords

__all__ = ["DEFAULT_MESSAGE_BYTES", "StoredMessage", "StoredMessages", "build_messages"]

DEFAULT_MESSAGE_BYTES = 1_000_000
"""The message size limit when none is configured: Kafka's default ``message.max.bytes``."""


class StoredMessage(NamedTuple):
    """One schema 2 message value and what decides where it goes."""

    key: str
    """The stream key (:func:`podlog.record.stream_key`): the Kafka message key."""
    retention: str
    """The retention class of its lines, or ``""``: decides the topic."""
    rows: int
    """Lines in the message."""
    value: bytes | memoryview


def _same_run(a: Record, b: Record) -> bool:
    """Records of one file generation with the same metadata: one message's lines."""
    log_a, log_b = a["log"], b["log"]
    if log_a["file"]["identity"] != log_b["file"]["identity"] or log_a["generation"] != log_b["generation"]:
        return False
    k8s_a, k8s_b, podlog_a, podlog_b = a["kubernetes"], b["kubernetes"], a.get("podlog"), b.get("podlog")
    return (k8s_a is k8s_b or k8s_a == k8s_b) and (podlog_a is podlog_b or podlog_a == podlog_b)


def _runs(records: Sequence[Record]) -> Iterator[list[Record]]:
    run: list[Record] = []
    for record in records:
        if run and not _same_run(run[-1], record):
            yield run
            run = []
        run.append(record)
    if run:
        yield run


def build_messages(records: Sequence[Record], max_message_bytes: int = DEFAULT_MESSAGE_BYTES) -> list[StoredMessage]:
    """``records`` as schema 2 messages, in order: one or more per run of one file generation.

    Records of one file generation share their ``kubernetes`` and ``podlog``
    maps (the reader builds them so), so a run is found by identity first.
    The parser is the file's (``podlog.parser``), for the reader of the message.
    """
    out: list[StoredMessage] = []
    for chunk in _runs(records):
        first = chunk[0]
        podlog = first.get("podlog") or {}
        parser = str(podlog.get("parser") or "json")
        batch = batch_from_records(chunk, parser)
        key = stream_key(first).decode("utf-8", "replace")
        retention = str(podlog.get("retention") or "")
        out.extend(StoredMessage(key, retention, rows, value)
                   for value, rows in encode_fitting_rows(batch, max_message_bytes))
    return out


class StoredMessages(KeptRecords):
    """Spooled schema 2 messages; their records decoded (and payloads parsed) only on demand."""

    __slots__ = ("_decoded", "mapped", "messages")

    def __init__(self, messages: list[StoredMessage], *, mapped: tuple[mmap.mmap, ...] = ()) -> None:
        self.messages = messages
        self.mapped = mapped
        """The spool segment mappings the values are views into (none for bytes built in memory)."""
        self._decoded: list[Record] | None = None

    @classmethod
    def concat(cls, parts: Sequence[StoredMessages]) -> StoredMessages:
        """All ``parts`` in order, as one (no value is copied)."""
        if len(parts) == 1:
            return parts[0]
        return cls([m for part in parts for m in part.messages],
                   mapped=tuple(dict.fromkeys(m for part in parts for m in part.mapped)))

    def drop_resident_pages(self) -> None:
        """Let the kernel take back the spool pages the values are mapped from (see
        :meth:`shipper.records.EncodedRecords.drop_resident_pages`)."""
        for mapped in self.mapped:
            if not mapped.closed:
                mapped.madvise(mmap.MADV_DONTNEED)

    def records(self) -> list[Record]:
        """Every message's records, in order, payloads parsed with each message's parser."""
        if self._decoded is None:
            decoded: list[Record] = []
            parsed = truncated = 0
            rejected: Counter[str] = Counter()
            for m in self.messages:
                try:
                    message = decode_message(m.value)
                except SchemaError as exc:
                    events.stored_message_unreadable(key=m.key, rows=m.rows, nbytes=len(m.value), error=str(exc))
                    continue
                decoded.extend(message.records)
                if message.payloads is not None:
                    parsed += message.payloads.parsed
                    truncated += message.payloads.truncated
                    rejected.update(message.payloads.rejected)
            events.payloads_parsed(parsed, truncated, dict(rejected))
            self._decoded = decoded
        return self._decoded

    def __len__(self) -> int:
        return sum(m.rows for m in self.messages)


    def __repr__(self) -> str:
        return f"StoredMessages({len(self)} records in {len(self.messages)} messages)"
