"""The private aiokafka API the shipper relies on, name by name and call by call.

``shipper/recordbatch.py`` builds record batches itself and hands them to
``AIOKafkaProducer.send_batch`` as :class:`~shipper.recordbatch.BuiltBatch`,
which stands in for aiokafka's private ``BatchBuilder``: the producer's
``MessageBatch`` and ``MessageAccumulator`` call underscored methods on it.
It also frames records with ``aiokafka.record.util``'s varint helpers.

``pyproject.toml`` pins aiokafka to the minor these tests pass on.  Before
the pin moves to a new minor, run this file against it: a failure names the
private name that moved, instead of a producer that stalls or sends corrupt
batches at run time.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.cluster import ClusterMetadata
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator, MessageBatch
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import TopicPartition
from packaging.requirements import Requirement

from shipper.recordbatch import BuiltBatch, MessageParts, build_batches

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"

BUILDER_METHODS = {
    "_set_producer_state": ["self", "producer_id", "producer_epoch", "base_sequence"],
    "_build": ["self"],
    "record_count": ["self"],
    "closed": ["self"],
    "close": ["self"],
    "size": ["self"],
}
"""BatchBuilder's methods that aiokafka's producer calls on a batch, with their parameters."""

CALLERS = (MessageBatch, MessageAccumulator)
"""aiokafka's classes that hold a batch builder and call it."""


def _aiokafka_requirement() -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (spec,) = [Requirement(d) for d in dependencies if Requirement(d).name == "aiokafka"]
    return spec


def _one_batch(count: int = 5) -> BuiltBatch:
    messages = [MessageParts("t", f"k{i}".encode(), [b'{"n":%d}' % i], 1) for i in range(count)]
    (packed,) = build_batches(messages, {"t": [0]}, codec="none", max_batch_bytes=1 << 20, timestamp_ms=1)
    return packed.batch


def test_aiokafka_is_pinned_to_one_minor_and_the_installed_one_is_in_it() -> None:
    """pyproject.toml bounds aiokafka to >=X.Y,<X.(Y+1), and the version under test is inside."""
    requirement = _aiokafka_requirement()
    bounds = {s.operator: s.version for s in requirement.specifier}
    assert set(bounds) == {">=", "<"}, f"aiokafka must be pinned to one minor, not {requirement.specifier}"
    low_major, low_minor = (int(p) for p in bounds[">="].split(".")[:2])
    assert bounds["<"] == f"{low_major}.{low_minor + 1}", f"aiokafka's bounds span more than one minor: {bounds}"
    installed = version("aiokafka")
    assert requirement.specifier.contains(installed), (
        f"aiokafka {installed} is installed but pyproject.toml pins {requirement.specifier}: "
        "run this file against it before moving the pin"
    )


@pytest.mark.parametrize("name", sorted(BUILDER_METHODS))
def test_batch_builder_methods_the_producer_calls_keep_their_signatures(name: str) -> None:
    """aiokafka's BatchBuilder still has each method BuiltBatch mirrors, with the same parameters."""
    theirs = getattr(BatchBuilder, name, None)
    assert theirs is not None, (
        f"aiokafka.producer.message_accumulator.BatchBuilder.{name} is gone: "
        "shipper/recordbatch.py's BuiltBatch imitates it"
    )
    assert list(inspect.signature(theirs).parameters) == BUILDER_METHODS[name], (
        f"BatchBuilder.{name}{inspect.signature(theirs)} changed its parameters"
    )
    ours = getattr(BuiltBatch, name)
    assert list(inspect.signature(ours).parameters) == BUILDER_METHODS[name]


def test_producer_calls_no_builder_method_that_built_batches_lack() -> None:
    """Every ``_builder.<name>`` that MessageBatch and MessageAccumulator call exists on BuiltBatch."""
    called = {name for cls in CALLERS for name in re.findall(r"_builder\.(\w+)", inspect.getsource(cls))}
    assert called, "aiokafka's producer no longer reaches its batch through ._builder; re-read message_accumulator.py"
    missing = sorted(name for name in called if not hasattr(BuiltBatch, name))
    assert not missing, f"aiokafka's producer now calls {missing} on a batch; BuiltBatch does not have them"


async def test_message_batch_numbers_and_sends_a_built_batch() -> None:
    """aiokafka's MessageBatch drives a BuiltBatch as its own: producer state written, CRC valid, bytes sent."""
    built = _one_batch()
    batch = MessageBatch(TopicPartition("t", 0), built, ttl=30.0, linger_time=0.0)
    assert batch.record_count == 5
    assert not batch.is_empty()
    assert batch.remaining_linger() is None  # closed: sent without lingering
    batch.set_producer_state(producer_id=7, producer_epoch=3, base_sequence=40)
    sent = DefaultRecordBatch(bytes(batch.get_data_buffer()))
    assert (sent.producer_id, sent.producer_epoch, sent.base_sequence) == (7, 3, 40)
    assert sent.validate_crc()
    assert [record.key for record in sent] == [f"k{i}".encode() for i in range(5)]


def test_send_batch_takes_a_batch_a_topic_and_a_keyword_partition() -> None:
    """``AIOKafkaProducer.send_batch(batch, topic, *, partition)``: the call shipper/kafka.py makes."""
    parameters = inspect.signature(AIOKafkaProducer.send_batch).parameters
    assert list(parameters) == ["self", "batch", "topic", "partition"]
    assert parameters["partition"].kind is inspect.Parameter.KEYWORD_ONLY
    assert callable(getattr(ClusterMetadata, "partitions_for_topic", None)), "producer.client.cluster lookups"


def test_varint_helpers_frame_as_kafka_does() -> None:
    """``aiokafka.record.util``'s varints: zig-zag encoded, with their sizes."""
    from aiokafka.record.util import encode_varint, size_of_varint

    out = bytearray()
    encode_varint(300, out.append)
    assert bytes(out) == b"\xd8\x04"
    out.clear()
    encode_varint(-1, out.append)
    assert bytes(out) == b"\x01"
    assert [size_of_varint(v) for v in (0, 63, 64, 300, 8191, 8192)] == [1, 1, 2, 2, 2, 3]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_codecs_round_trip(codec: str) -> None:
    """Each ``aiokafka.codec.<codec>_encode`` the batches use still pairs with its decoder."""
    import aiokafka.codec as codecs

    encode = getattr(codecs, f"{codec}_encode")
    decode = getattr(codecs, f"{codec}_decode")
    payload = b"podlog " * 100
    assert decode(encode(payload)) == payload


def test_default_partitioner_is_called_with_key_and_partition_lists() -> None:
    """``DefaultPartitioner()(key, all_partitions, available)`` picks one of the partitions, stably."""
    assert list(inspect.signature(DefaultPartitioner.__call__).parameters) == ["key", "all_partitions", "available"]
    chosen = {DefaultPartitioner()(b"namespace/pod", [0, 1, 2, 3], [0, 1, 2, 3]) for _ in range(3)}
    assert len(chosen) == 1 and chosen <= {0, 1, 2, 3}
