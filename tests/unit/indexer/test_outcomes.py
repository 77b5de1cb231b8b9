"""Record outcomes wait for their partition's commit, so a replay is never counted twice."""

from __future__ import annotations

from indexer.documents import BulkItem, KafkaPosition
from indexer.outcomes import DeadLetterNote, PendingOutcomes, collect, report
from podlog import metrics


def _item(topic: str, partition: int, offset: int, outcome: str) -> BulkItem:
    item = BulkItem(index="i", doc_id=f"{topic}-{partition}-{offset}", document={},
                    position=KafkaPosition(topic, partition, offset), original=None)  # fmt: skip
    item.outcome = outcome
    return item


def _letter(outcome: str) -> BulkItem:
    letter = BulkItem(index="pl-dlq", doc_id="d", document={}, position=None, original=None, op="index")
    letter.outcome = outcome
    return letter


def _counted(outcome: str) -> float:
    return metrics.sample("podlog_indexer_documents_total", {"outcome": outcome})


def _messages(reason: str) -> float:
    return metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": reason})


def test_each_record_counts_once_under_its_own_partition() -> None:
    """Items count by their own outcome; an undecodable message counts by its letter's."""
    items = [
        _item("t", 0, 1, "indexed"),
        _item("t", 0, 1, "already_present"),
        _item("t", 1, 5, "dead_lettered"),
        _item("t", 1, 6, "dropped"),
    ]
    notes = [
        DeadLetterNote("schema", KafkaPosition("t", 1, 7), "bad", _letter("indexed")),
        DeadLetterNote("schema", KafkaPosition("t", 1, 8), "bad", _letter("dropped")),
    ]
    found = collect(items, notes)
    assert dict(found[("t", 0)].counts) == {"indexed": 1, "already_present": 1}
    assert dict(found[("t", 1)].counts) == {"dead_lettered": 2, "dropped": 2}
    assert [i.doc_id for i in found[("t", 1)].dropped] == ["t-1-6", "d"]
    assert len(found[("t", 1)].undecodable) == 2


def test_a_failed_commit_keeps_outcomes_until_the_next_commit_of_that_partition() -> None:
    """Nothing is reported before a commit; a failed commit keeps the batch waiting, and
    the next commit of the partition reports both batches, once."""
    pending = PendingOutcomes()
    assigned = {("a", 0), ("a", 1)}
    pending.add(collect([_item("a", 0, 1, "indexed"), _item("a", 1, 1, "indexed")]), assigned)
    first = pending.settle([])  # the commit failed
    assert sum(first.counts.values()) == 0
    pending.add(collect([_item("a", 0, 2, "indexed")]), assigned)
    second = pending.settle([("a", 0)])
    assert dict(second.counts) == {"indexed": 2}
    assert pending.partitions() == {("a", 1)}
    assert sum(pending.settle([("a", 0)]).counts.values()) == 0


def test_revoked_or_unassigned_partitions_are_left_to_their_new_owner() -> None:
    """Outcomes of a partition revoked before its commit are never reported here (the new
    owner replays and reports them), nor are those of a partition no longer assigned."""
    pending = PendingOutcomes()
    pending.add(collect([_item("b", 0, 1, "indexed"), _item("b", 1, 1, "indexed")]), {("b", 0), ("b", 1)})
    pending.forget([("b", 1)])
    pending.add(collect([_item("b", 2, 1, "indexed")]), {("b", 0), ("b", 1)})
    settled = pending.settle([("b", 0), ("b", 1), ("b", 2)])
    assert dict(settled.counts) == {"indexed": 1}


def test_a_batch_replayed_after_an_uncommitted_attempt_is_reported_once() -> None:
    """A bad message decoded twice (the first attempt abandoned before its commit, as in a
    crash) moves the dead-lettered message and document counters by one each."""
    messages_before, documents_before = _messages("schema"), _counted("dead_lettered")
    note = DeadLetterNote("schema", KafkaPosition("c", 0, 3), "unknown schema", _letter("indexed"))
    abandoned = PendingOutcomes()
    abandoned.add(collect([], [note]), {("c", 0)})  # never committed: the member died

    replay = PendingOutcomes()
    replay.add(collect([], [note]), {("c", 0)})
    report(replay.settle([("c", 0)]))
    assert _messages("schema") == messages_before + 1
    assert _counted("dead_lettered") == documents_before + 1
