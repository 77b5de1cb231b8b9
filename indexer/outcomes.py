"""Record outcomes, counted once: when the offsets they came from are committed.

A batch's outcomes (indexed, already present, dead-lettered, dropped, and
the messages that did not decode) wait here, per partition, until a commit
of that partition succeeds; only then are they counted and, for dead letters
and drops, logged.  Counting when a message is decoded or written would
count it again each time its batch is replayed: after a crash or a stop
before the commit, or on the member a revoked partition moves to.  A member
that loses a batch that way never reported it, so the member that commits
the replay reports it, once.

* A failed commit keeps the partition's outcomes pending: the next commit of
  that partition covers the same offsets, and reports them with its own.
* A revoked partition's pending outcomes are forgotten: its new owner
  replays them from the last committed offset and reports them.
* The one gap: a crash between a commit and its report loses that batch's
  counts.  The counters may then fall short by a batch, never count twice.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

from indexer.documents import BulkItem, KafkaPosition
from indexer.events import IndexerEvents, events

__all__ = ["DeadLetterNote", "Outcomes", "Partition", "PendingOutcomes", "collect", "report"]

Partition = tuple[str, int]
"""``(topic, partition)``; aiokafka's ``TopicPartition`` is such a tuple."""

_NO_PARTITION: Partition = ("", -1)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetterNote:
    """A message (or a record in it) that could not be decoded and was dead-lettered."""

    reason: str
    """``schema`` (the message) or ``invalid_record`` (one record of it)."""
    position: KafkaPosition
    """Where the message is in Kafka."""
    error: str
    """What was wrong with it."""
    letter: BulkItem
    """The dead letter written for it."""


@dataclasses.dataclass(slots=True)
class Outcomes:
    """What became of the records of some batches of one or more partitions."""

    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    """Records by outcome: ``indexed``, ``already_present``, ``dead_lettered``, ``dropped``."""
    undecodable: list[DeadLetterNote] = dataclasses.field(default_factory=list)
    """Messages and records that did not decode (each also counted in ``counts``)."""
    dropped: list[BulkItem] = dataclasses.field(default_factory=list)
    """Records refused as documents and as dead letters, with and without their body."""
    expired: Counter[str] = dataclasses.field(default_factory=Counter)
    """Records not indexed because they arrived past their retention, by class."""

    def merge(self, other: Outcomes) -> None:
        """Add ``other`` to these."""
        self.counts.update(other.counts)
        self.expired.update(other.expired)
        self.undecodable.extend(other.undecodable)
        self.dropped.extend(other.dropped)


def collect(
    items: Iterable[BulkItem],
    undecodable: Iterable[DeadLetterNote] = (),
    expired: Mapping[Partition, Counter[str]] | None = None,
) -> dict[Partition, Outcomes]:
    """The outcomes of written ``items`` and of dead letters for ``undecodable`` messages, per partition.

    Each record counts once: an item by its own outcome (a document
    dead-lettered or dropped is counted as such, not as its letter), an
    undecodable message by its letter's; ``expired`` records (never items) by
    class, per partition.
    """
    found: dict[Partition, Outcomes] = {}
    for item in items:
        outcomes = found.setdefault(_partition(item.position), Outcomes())
        outcomes.counts[item.outcome] += 1
        if item.outcome == "dropped":
            outcomes.dropped.append(item)
    for note in undecodable:
        outcomes = found.setdefault(_partition(note.position), Outcomes())
        outcomes.undecodable.append(note)
        if note.letter.outcome == "dropped":
            outcomes.counts["dropped"] += 1
            outcomes.dropped.append(note.letter)
        else:
            outcomes.counts["dead_lettered"] += 1
    for partition, classes in (expired or {}).items():
        if classes:
            found.setdefault(partition, Outcomes()).expired.update(classes)
    return found


def _partition(position: KafkaPosition | None) -> Partition:
    return _NO_PARTITION if position is None else (position.topic, position.partition)


def report(outcomes: Outcomes, event_sink: IndexerEvents = events) -> None:
    """Count ``outcomes`` and log their dead letters and drops."""
    event_sink.documents_resolved(outcomes.counts)
    if outcomes.expired:
        event_sink.records_expired(outcomes.expired)
    for note in outcomes.undecodable:
        at = note.position
        event_sink.message_dead_lettered(note.reason, at.topic, at.partition, at.offset, note.error)
    for item in outcomes.dropped:
        where = item.position or KafkaPosition("", -1, -1)
        event_sink.document_dropped(item.doc_id, where.topic, where.partition, where.offset, item.error)


class PendingOutcomes:
    """Outcomes waiting for their partition's next successful commit."""

    def __init__(self) -> None:
        self._waiting: dict[Partition, Outcomes] = {}

    def add(self, found: dict[Partition, Outcomes], assigned: Collection[Partition]) -> None:
        """Keep ``found`` until committed; partitions no longer ``assigned`` are left to their new owner."""
        for partition, outcomes in found.items():
            if partition in assigned:
                self._waiting.setdefault(partition, Outcomes()).merge(outcomes)

    def settle(self, committed: Iterable[Partition]) -> Outcomes:
        """Take the outcomes of partitions whose offsets were just committed."""
        settled = Outcomes()
        for partition in committed:
            outcomes = self._waiting.pop(partition, None)
            if outcomes is not None:
                settled.merge(outcomes)
        return settled

    def forget(self, revoked: Iterable[Partition]) -> None:
        """Drop what revoked partitions were waiting for: their new owner reports the replay."""
        for partition in revoked:
            self._waiting.pop(partition, None)

    def partitions(self) -> set[Partition]:
        """Partitions with outcomes waiting."""
        return set(self._waiting)
