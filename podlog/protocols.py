"""The seams between components: small protocols that ``podlog/cli.py`` wires.

::

    collector --RecordSink.append(Batch)--> spool --Transport.send(records)--> Kafka | embedded
         ^                                     |
         +------ AckListener(marks) <----------+   (after the transport confirmed)

A :class:`Batch` carries the records read since the previous batch and the
:class:`FileMark` of every file they came from: the position *after* the
batch.  The spool persists marks with the records and, once the transport has
confirmed every record up to and including a batch, hands the marks to the
:class:`AckListener`, which is the collector's checkpoint store.  So a file
offset is checkpointed only after Kafka (or the embedded index) holds its
records: at-least-once, end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from podlog.record import Record

__all__ = ["AckListener", "Batch", "DocumentWriter", "FileMark", "RecordSink", "Transport"]


@dataclass(frozen=True, slots=True)
class FileMark:
    """A file's read position after a batch: where reading resumes after a restart."""

    path: str
    """Path the file was opened by (the symlink's target path when followed)."""
    identity: str
    """``"<dev>:<inode>:<fingerprint>"``, as in ``log.file.identity``."""
    generation: int
    """Truncation/reuse generation, as in ``log.generation``."""
    offset: int
    """Byte offset just past the last byte consumed into this or an earlier batch."""
    streams: tuple[tuple[str, int], ...] = ()
    """Where each stream resumes when it is past ``offset``: (stream, offset) pairs.

    An open partial line of one stream holds ``offset`` back while the other
    stream's lines go on; after a restart at ``offset``, a line of a listed
    stream that starts before its own offset was already emitted (alone or
    joined) and is skipped, so no half of a joined line is emitted again.
    """
    past: int = 0
    """Bytes after ``offset`` already emitted (the lines of the stream that went on): a file
    that vanishes takes ``size - offset - past`` unread bytes with it, not ``size - offset``."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Records handed from the collector to the spool, with the marks they complete."""

    records: Sequence[Record]
    marks: Mapping[str, FileMark] = field(default_factory=dict)
    """By file key (the identity): the position after this batch."""


class RecordSink(Protocol):
    """Where the collector puts batches (the spool, or a null sink in benchmarks)."""

    async def append(self, batch: Batch) -> None:
        """Store ``batch`` durably per the sink's fsync policy.

        Raises :class:`podlog.errors.SpoolFullError` (retriable) when full;
        the collector then pauses its tailers and retries.
        """


class AckListener(Protocol):
    """Told when batches are durable downstream; moves checkpoints."""

    def acknowledged(self, marks: Mapping[str, FileMark]) -> None:
        """Every record before ``marks`` is held downstream; persist them."""


class Transport(Protocol):
    """Delivers record batches downstream: Kafka, or the embedded index."""

    name: str

    async def start(self) -> None:
        """Connect; raise :class:`podlog.errors.TransportError` naming the bad setting."""

    async def send(self, records: Sequence[Record]) -> None:
        """Return once every record is durable downstream, in order per stream.

        Raises :class:`podlog.errors.TransportError`; ``retriable`` says
        whether the spool should try the same records again.
        """

    async def stop(self) -> None:
        """Flush and disconnect; idempotent."""


class DocumentWriter(Protocol):
    """Writes records into an index idempotently (by ``event.id``)."""

    async def write(self, records: Sequence[Record]) -> None:
        """Index every record; a record already present is not a second copy."""
