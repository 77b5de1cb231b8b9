"""Record batches built from runs: the bytes aiokafka's builder makes, batched and partitioned as it would."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.kafka import encode_messages, plan_messages
from shipper.recordbatch import CODECS, MessageParts, build_batches
from tests.unit.shipper.helpers import record

NOW_MS = 1_795_737_600_123


def _reference(messages: list[MessageParts], codec: str, batch_bytes: int) -> list[bytes]:
    """What aiokafka's own builder makes of ``messages`` (one partition)."""
    out: list[bytes] = []
    builder = BatchBuilder(batch_bytes, CODECS[codec][0])
    for message in messages:
        value = message.value()
        if builder.append(timestamp=NOW_MS, key=message.key, value=value) is None:
            out.append(bytes(builder._build()))
            builder = BatchBuilder(batch_bytes, CODECS[codec][0])
            assert builder.append(timestamp=NOW_MS, key=message.key, value=value) is not None
    out.append(bytes(builder._build()))
    return out


def _messages(count: int, streams: int = 3, size: int = 40) -> list[MessageParts]:
    records = [record(f"s{i % streams}", i, f"line {i} " + "x" * size) for i in range(count)]
    return plan_messages(records, topic="t", default_retention="standard", max_message_bytes=1 << 20)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_batches_are_byte_identical_to_aiokafkas_builder(codec: str) -> None:
    """Framing, header, codec and CRC match aiokafka's DefaultRecordBatchBuilder byte for byte."""
    messages = _messages(300, streams=7)
    built = build_batches(messages, {"t": [0]}, codec=codec, max_batch_bytes=4096, timestamp_ms=NOW_MS)
    assert len(built) > 3
    assert [bytes(b.batch._build()) for b in built] == _reference(messages, codec, 4096)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_every_codec_gives_valid_batches_with_the_same_records(codec: str) -> None:
    """Each codec's batches pass the CRC check and hold exactly the messages, in order."""
    messages = _messages(200, streams=4)
    built = build_batches(messages, {"t": [0]}, codec=codec, max_batch_bytes=8192, timestamp_ms=NOW_MS)
    seen: list[tuple[bytes | None, bytes | None]] = []
    for packed in built:
        batch = DefaultRecordBatch(bytes(packed.batch._build()))
        assert batch.validate_crc()
        assert batch.compression_type == CODECS[codec][0]
        items = list(batch)
        assert [r.offset for r in items] == list(range(len(items)))
        assert packed.messages == len(items) == packed.batch.record_count()
        seen.extend((r.key, r.value) for r in items)
    assert seen == [(m.key, m.value()) for m in messages]


def test_incompressible_batch_is_sent_uncompressed() -> None:
    """When the codec gains nothing the batch goes out uncompressed, as aiokafka does."""
    message = MessageParts("t", b"k", [random.Random(7).randbytes(2000)], 1)
    (packed,) = build_batches([message], {"t": [0]}, codec="zstd", max_batch_bytes=1 << 20)
    batch = DefaultRecordBatch(bytes(packed.batch._build()))
    assert batch.validate_crc()
    assert batch.compression_type == 0
    assert [r.value for r in batch] == [message.value()]


def test_message_larger_than_a_batch_gets_a_batch_of_its_own() -> None:
    """A first message always fits, however large; the next one starts a new batch."""
    big = MessageParts("t", b"k", [b"x" * 10_000], 1)
    small = MessageParts("t", b"k", [b"y"], 1)
    built = build_batches([small, big, small], {"t": [0]}, codec="none", max_batch_bytes=1024)
    assert [b.messages for b in built] == [1, 1, 1]


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.sampled_from([b"a/x", b"b/y", b"c/z", b"d/w", b"e/v"]), min_size=1, max_size=60),
    partitions=st.integers(1, 6),
    batch_bytes=st.integers(200, 3000),
)
def test_partitions_and_order_follow_aiokafkas_partitioner(
    keys: list[bytes], partitions: int, batch_bytes: int
) -> None:
    """Each message lands where the default partitioner puts its key, each partition in input order."""
    messages = [MessageParts("t", key, [b'{"n":%d}' % i], 1) for i, key in enumerate(keys)]
    choices = list(range(partitions))
    built = build_batches(messages, {"t": choices}, codec="none", max_batch_bytes=batch_bytes)
    partitioner = DefaultPartitioner()
    expected: dict[int, list[bytes]] = {}
    for m in messages:
        expected.setdefault(partitioner(m.key, choices, choices), []).append(m.value())
    got: dict[int, list[bytes]] = {}
    for packed in built:
        got.setdefault(packed.partition, []).extend(
            r.value for r in DefaultRecordBatch(bytes(packed.batch._build())) if r.value is not None
        )
    assert got == expected


def test_planned_messages_join_to_the_encoded_messages() -> None:
    """plan_messages and encode_messages agree: the parts join to the encoded values."""
    records = [record(f"s{i % 3}", i) for i in range(50)]
    kwargs = {"topic": "t", "default_retention": "standard", "max_message_bytes": 2048}
    planned = plan_messages(records, **kwargs)  # type: ignore[arg-type]
    encoded = encode_messages(records, **kwargs)  # type: ignore[arg-type]
    assert [(m.topic, m.key, m.value(), m.records) for m in planned] == [tuple(m) for m in encoded]
    assert all(m.value_size() == len(m.value()) for m in planned)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_numbered_batches_are_byte_identical_to_aiokafkas_builder(codec: str) -> None:
    """An idempotent producer's numbering (producer id, epoch, base sequence, CRC) matches aiokafka's."""
    messages = _messages(40, streams=3)
    built = build_batches(messages, {"t": [0]}, codec=codec, max_batch_bytes=1 << 20, timestamp_ms=NOW_MS)
    assert len(built) == 1
    reference = BatchBuilder(1 << 20, CODECS[codec][0])
    for message in messages:
        assert reference.append(timestamp=NOW_MS, key=message.key, value=message.value()) is not None
    reference._set_producer_state(4711, 3, 1200)
    batch = built[0].batch
    batch._set_producer_state(4711, 3, 1200)
    data = bytes(batch._build())
    assert data == bytes(reference._build())
    parsed = DefaultRecordBatch(data)
    assert (parsed.producer_id, parsed.producer_epoch, parsed.base_sequence) == (4711, 3, 1200)
    assert parsed.validate_crc()
