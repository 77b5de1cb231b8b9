"""Concurrent sends build at once but reach the producer in call order (a fake producer)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

import shipper.kafka as kafka
from shipper import recordbatch
from shipper.config import KafkaProducerConfig
from shipper.kafka import KafkaTransport
from shipper.recordbatch import BuiltBatch, PackedBatch
from tests.unit.shipper.helpers import record


class FakeCluster:
    """The producer's metadata: partitions per topic, as ``client.cluster`` answers them."""

    def __init__(self) -> None:
        self.partitions: dict[str, set[int]] = {}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


class FakeProducer:
    """Records the order (and partition) batches are handed over in; every batch is acknowledged at once.

    ``partitions_for`` answers ``on_fetch`` and puts it in the metadata, as a
    real producer's metadata fetch does.
    """

    def __init__(self, partitions: set[int] | None = None) -> None:
        self.enqueued: list[int] = []
        self.client = SimpleNamespace(cluster=FakeCluster())
        self.on_fetch = partitions or {0}
        self.fetched: list[str] = []
        self.sent_to: list[int] = []

    async def partitions_for(self, topic: str) -> set[int]:
        self.fetched.append(topic)
        self.client.cluster.partitions[topic] = set(self.on_fetch)
        return set(self.on_fetch)

    async def send_batch(self, batch: BuiltBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.enqueued.append(batch.record_count())
        self.sent_to.append(partition)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _transport(producer: FakeProducer) -> KafkaTransport:
    transport = KafkaTransport(KafkaProducerConfig(topic="t", idempotence="off"))
    transport._producer = producer
    return transport


def _hold_first_build(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the first build wait until a later one has finished building."""
    later_built = threading.Event()
    real = recordbatch.build_batches
    calls = {"n": 0}

    def build(*args: Any, **kwargs: Any) -> list[PackedBatch]:
        calls["n"] += 1
        if calls["n"] == 1:
            assert later_built.wait(10), "the second send never built"
            return real(*args, **kwargs)
        out = real(*args, **kwargs)
        later_built.set()
        return out

    monkeypatch.setattr(kafka, "build_batches", build)
    return later_built


async def test_a_later_send_that_builds_first_still_enqueues_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second send finishes building first, yet its batches go to the producer after the first's."""
    later_built = _hold_first_build(monkeypatch)
    producer = FakeProducer()
    transport = _transport(producer)
    first = [record("a", i) for i in range(3)]  # one stream: a batch of one message
    second = [record(s, 10 + i) for i in range(3) for s in ("a", "b")]  # two streams: two messages
    await asyncio.gather(transport.send(first), transport.send(second))
    assert later_built.is_set()
    assert producer.enqueued == [1, 2]
    assert transport._enqueued is not None and transport._enqueued.done()


async def test_a_cancelled_send_keeps_the_order_of_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling a send that waits for its turn never lets the next one overtake the one before."""
    producer = FakeProducer()
    transport = _transport(producer)
    gate = asyncio.Event()
    real_pack = transport._pack
    order: list[str] = []

    async def pack(producer_: Any, records: Any) -> list[PackedBatch]:
        out = await real_pack(producer_, records)
        if len(records) == 3:  # the first send holds its turn until the gate opens
            await gate.wait()
        order.append(f"built {len(records)}")
        return out

    monkeypatch.setattr(transport, "_pack", pack)
    first = asyncio.create_task(transport.send([record("a", i) for i in range(3)]))
    middle = asyncio.create_task(transport.send([record("a", i) for i in range(4)]))
    last = asyncio.create_task(transport.send([record(s, i) for i in range(5) for s in ("a", "b")]))
    deadline = asyncio.get_running_loop().time() + 10
    # Both later sends built (in either order: they build at once) and waiting their turn.
    while sorted(order) != ["built 10", "built 4"]:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    middle.cancel()
    for _ in range(20):  # loop turns enough for a wrongly woken ``last`` to enqueue
        await asyncio.sleep(0)
    assert middle.done()
    assert producer.enqueued == []  # the first still holds its turn: nobody may overtake it
    gate.set()
    await asyncio.gather(first, last)
    with pytest.raises(asyncio.CancelledError):
        await middle
    assert sorted(order[:2]) == ["built 10", "built 4"] and order[2:] == ["built 3"]
    assert producer.enqueued == [1, 2]  # first's batch, then last's: the middle one never enqueued


async def test_partitions_come_from_the_metadata_once_a_topic_is_known() -> None:
    """The first send to a topic fetches its partitions; later sends use the producer's
    metadata as it is then (a partition added counts at once), and a topic the metadata
    lost is fetched again rather than framed for partitions that may be gone."""
    producer = FakeProducer({0})
    transport = _transport(producer)
    streams = [f"s{i}" for i in range(12)]
    records = [record(s, i) for i, s in enumerate(streams)]
    await transport.send(records)
    await transport.send(records)
    assert producer.fetched == ["t"]
    assert set(producer.sent_to) == {0}

    producer.client.cluster.partitions["t"] = {0, 1, 2}  # the topic grew; the metadata knows
    producer.sent_to.clear()
    await transport.send(records)
    assert producer.fetched == ["t"]
    assert set(producer.sent_to) == {0, 1, 2}  # 12 keys over 3 partitions

    del producer.client.cluster.partitions["t"]  # the metadata lost the topic
    producer.on_fetch = {0, 1}
    producer.sent_to.clear()
    await transport.send(records)
    assert producer.fetched == ["t", "t"]
    assert set(producer.sent_to) <= {0, 1}
