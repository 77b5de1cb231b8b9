"""The lag gauge: every assigned partition, on a timer, whether or not batches commit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from indexer.lag import LagMonitor
from podlog import metrics
from tests.fixtures.servers import wait_until

_topics = itertools.count()


def _topic() -> str:
    return f"lag-unit-{next(_topics)}"


def _lag(tp: TopicPartition) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "podlog_indexer_consumer_lag_messages", {"topic": tp.topic, "partition": str(tp.partition)}
    )


def _failures() -> float:
    return metrics.sample("podlog_indexer_lag_measurement_failures_total")


class FakeOffsets:
    """An assignment, committed offsets and high watermarks a test moves by hand."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.highwater: dict[TopicPartition, int] = dict.fromkeys(assigned, 0)
        self.committed_at: dict[TopicPartition, int | None] = dict.fromkeys(assigned)
        self.log_start: dict[TopicPartition, int] = dict.fromkeys(assigned, 0)
        self.silent: set[TopicPartition] = set()
        """Partitions whose fetch does not answer."""
        self.fail: BaseException | None = None
        self.during_read: list[object] = []
        """Callbacks run while high watermarks are read (a rebalance meanwhile)."""
        self.readings = 0
        self.closed = False

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def highwaters(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        self.readings += 1
        if self.fail is not None:
            raise self.fail
        for callback in self.during_read:
            callback()  # type: ignore[operator]
        return {tp: self.highwater[tp] for tp in partitions if tp not in self.silent}

    async def committed(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int | None]:
        return {tp: self.committed_at.get(tp) for tp in partitions}

    async def log_starts(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log_start[tp] for tp in partitions}

    async def close(self) -> None:
        self.closed = True


def _partitions(count: int) -> list[TopicPartition]:
    topic = _topic()
    return [TopicPartition(topic, n) for n in range(count)]


async def test_every_assigned_partition_shows_its_lag_while_nothing_commits() -> None:
    """Lag is high watermark minus committed offset for each assigned partition, and it
    keeps rising with the high watermark while the committed offsets stand still."""
    tps = _partitions(3)
    source = FakeOffsets(set(tps))
    for n, tp in enumerate(tps):
        source.committed_at[tp] = 10 * n
        source.highwater[tp] = 10 * n + 5
    monitor = LagMonitor(source, 15.0)
    await monitor.measure()
    assert [_lag(tp) for tp in tps] == [5, 5, 5]
    for n, tp in enumerate(tps):
        source.highwater[tp] += 100 + n
    await monitor.measure()
    assert [_lag(tp) for tp in tps] == [105, 106, 107]
    assert monitor.shown == set(tps)


async def test_a_partition_never_committed_counts_from_where_the_group_starts() -> None:
    """Before the first commit, lag counts from the log start (earliest) or from the end as
    first seen (latest), so a group that never committed still shows its backlog."""
    (early,) = _partitions(1)
    source = FakeOffsets({early})
    source.log_start[early] = 3
    source.highwater[early] = 40
    await LagMonitor(source, 15.0, start="earliest").measure()
    assert _lag(early) == 37

    (late,) = _partitions(1)
    source = FakeOffsets({late})
    source.highwater[late] = 40
    monitor = LagMonitor(source, 15.0, start="latest")
    await monitor.measure()
    assert _lag(late) == 0
    source.highwater[late] = 52
    await monitor.measure()
    assert _lag(late) == 12


async def test_a_revoked_partition_loses_its_series() -> None:
    """A partition no longer assigned has no series after the next measurement, and one
    revoked while a measurement is under way is not shown by that measurement."""
    first, second, third = _partitions(3)
    source = FakeOffsets({first, second, third})
    for tp in (first, second, third):
        source.highwater[tp] = 9
        source.committed_at[tp] = 4
    monitor = LagMonitor(source, 15.0)
    await monitor.measure()
    assert _lag(second) == 5

    source.assigned.discard(second)
    await monitor.measure()
    assert _lag(second) is None
    assert monitor.shown == {first, third}

    def rebalance() -> None:
        source.assigned.discard(third)
        monitor.forget({third})

    source.during_read.append(rebalance)
    await monitor.measure()
    assert _lag(third) is None
    assert _lag(first) == 5
    assert monitor.shown == {first}


async def test_a_partition_that_does_not_answer_keeps_its_value_and_is_counted() -> None:
    """A partition whose high watermark could not be read keeps its last lag, and the
    failure is counted, while the others are measured."""
    quiet, loud = _partitions(2)
    source = FakeOffsets({quiet, loud})
    source.highwater.update({quiet: 7, loud: 7})
    source.committed_at.update({quiet: 2, loud: 2})
    monitor = LagMonitor(source, 15.0)
    await monitor.measure()
    before = _failures()
    source.silent.add(quiet)
    source.highwater.update({quiet: 70, loud: 70})
    await monitor.measure()
    assert (_lag(quiet), _lag(loud)) == (5, 68)
    assert _failures() == before + 1


async def test_the_timer_measures_again_survives_broker_errors_and_drops_every_series_on_stop() -> None:
    """The task measures every interval; a Kafka error is counted and the next tick measures
    again; on stop every series goes, and the source is closed by its owner."""
    (tp,) = _partitions(1)
    source = FakeOffsets({tp})
    source.committed_at[tp] = 0
    source.highwater[tp] = 1
    stopping = asyncio.Event()
    monitor = LagMonitor(source, 0.05)
    task = asyncio.create_task(monitor.run(stopping))
    try:
        await wait_until(lambda: _lag(tp) == 1, 10, "the first measurement")
        before = _failures()
        source.fail = KafkaConnectionError("broker gone")
        readings = source.readings
        await wait_until(lambda: source.readings >= readings + 2, 10, "two failed measurements")
        assert _failures() >= before + 1
        assert _lag(tp) == 1
        source.fail = None
        source.highwater[tp] = 30
        await wait_until(lambda: _lag(tp) == 30, 10, "a measurement after the errors")
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
    assert _lag(tp) is None
    assert not source.closed
    await monitor.close()
    assert source.closed
