"""Kafka record batches (magic v2) built straight from the spool's bytes.

A message value is ``{"schema":1,"records":[`` + runs + ``]}`` (see
:mod:`shipper.records`); its runs are views into what the spool read.
:func:`build_batches` writes each batch's records section (the Kafka record
framing around every key and value) into one buffer sized exactly up front,
copying each run once, then compresses it and writes the batch header and its
CRC-32C: the same bytes aiokafka's ``DefaultRecordBatchBuilder`` makes of the
same messages, without its copies (join the value, append it to the batch,
slice the batch for the codec).  Blocking: meant for a worker thread, where
the codecs and the copies run beside the event loop.

The batches are built without a producer id.  An idempotent producer numbers
each batch when it drains it (``_set_producer_state``): :class:`BuiltBatch`
then writes the producer id, epoch and base sequence into its header and
computes the CRC again, as aiokafka's own builder would have built it.
:class:`BuiltBatch` is what ``AIOKafkaProducer.send_batch`` is given.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.util import encode_varint, size_of_varint
from crc32c import crc32c

from shipper.records import BATCH_PREFIX, BATCH_SUFFIX

__all__ = ["CODECS", "BuiltBatch", "MessageParts", "PackedBatch", "build_batches"]

# BaseOffset, Length, PartitionLeaderEpoch, Magic, CRC, Attributes, LastOffsetDelta,
# FirstTimestamp, MaxTimestamp, ProducerId, ProducerEpoch, BaseSequence, RecordCount.
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_OFFSET = 17
_ATTRIBUTES_OFFSET = 21
_LENGTH_END = 12
_PRODUCER = struct.Struct(">qhi")  # ProducerId, ProducerEpoch, BaseSequence
_PRODUCER_OFFSET = struct.calcsize(">qiibIhiqq")
_ENVELOPE = len(BATCH_PREFIX) + len(BATCH_SUFFIX)

CODECS: Mapping[str, tuple[int, Callable[[memoryview], bytes] | None]] = {
    "none": (0, None),
    # aiokafka's own encoders, as its builder calls them; only zstd takes a buffer as it is.
    "gzip": (1, lambda data: gzip_encode(bytes(data))),
    "snappy": (2, lambda data: snappy_encode(bytes(data))),
    "lz4": (3, lambda data: lz4_encode(bytes(data))),
    "zstd": (4, zstd_encode),
}
"""Codec name -> (Kafka attribute bits, aiokafka's encoder): the encoders its builder uses."""


@functools.lru_cache(maxsize=16384)
def _partition(key: bytes, choices: tuple[int, ...]) -> int:
    """aiokafka's default partitioner (murmur2 in Python, ~30 us), once per key."""
    return int(DefaultPartitioner()(key, list(choices), list(choices)))


class MessageParts(NamedTuple):
    """One Kafka message whose value is not joined yet."""

    topic: str
    key: bytes
    parts: list[bytes | memoryview]
    """Comma-joined, between :data:`BATCH_PREFIX` and :data:`BATCH_SUFFIX`, they are the value
    of a schema 1 message; a schema 2 message (not ``framed``) is its one part as it is."""
    records: int
    """Records in the message."""
    framed: bool = True
    """Schema 1 records to join; False for a finished (schema 2) value."""

    def value_size(self) -> int:
        """Length of the value the parts make."""
        if not self.framed:
            return sum(len(part) for part in self.parts)
        return _ENVELOPE + sum(len(part) for part in self.parts) + max(0, len(self.parts) - 1)

    def value(self) -> bytes:
        """The value, joined."""
        if not self.framed:
            return b"".join(self.parts)
        return BATCH_PREFIX + b",".join(self.parts) + BATCH_SUFFIX


class BuiltBatch:
    """A closed, built producer batch, in the shape ``AIOKafkaProducer.send_batch`` takes."""

    __slots__ = ("_buffer", "_count")

    def __init__(self, buffer: bytearray, count: int) -> None:
        self._buffer = buffer
        self._count = count

    def append(self, **_: object) -> None:
        """A built batch takes nothing more."""
        return None

    def close(self) -> None:
        """Already closed."""

    def closed(self) -> bool:
        """Always: the batch is complete."""
        return True

    def _set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        """Number the batch for an idempotent producer (called when the producer drains it)."""
        _PRODUCER.pack_into(self._buffer, _PRODUCER_OFFSET, producer_id, producer_epoch, base_sequence)
        _write_crc(self._buffer)

    def _build(self) -> bytearray:
        return self._buffer

    def size(self) -> int:
        """Bytes of the batch as sent."""
        return len(self._buffer)

    def record_count(self) -> int:
        """Kafka records (messages) in the batch."""
        return self._count


class PackedBatch(NamedTuple):
    """A built batch and where it goes."""

    topic: str
    partition: int
    batch: BuiltBatch
    messages: int
    nbytes: int
    """Bytes of message values, before compression."""


def _record_size(offset_delta: int, message: MessageParts, value_size: int) -> tuple[int, int]:
    """(body length, framed length) of one record with timestamp delta 0 and no headers."""
    key = len(message.key)
    body = 2 + size_of_varint(offset_delta) + size_of_varint(key) + key + size_of_varint(value_size) + value_size + 1
    return body, size_of_varint(body) + body


def _encode_batch(batch: list[tuple[MessageParts, int, int]], codec: str, timestamp_ms: int) -> bytearray:
    """Header + (compressed) records of ``batch``: (message, value size, body length) in order."""
    total = _HEADER.size + sum(size_of_varint(body) + body for _, _, body in batch)
    if not any(message.framed for message, _, _ in batch):
        codec = "none"  # schema 2 values are compressed already: compressing again only costs
    attributes, encode = CODECS[codec]
    # Uncompressed, the header goes first so the batch is never copied again;
    # compressed, the records go to a reused buffer that is never zeroed.
    out = bytearray(total) if encode is None else _scratch(total)
    records = memoryview(out)
    at = _HEADER.size
    head = bytearray()
    for offset_delta, (message, value_size, body) in enumerate(batch):
        head.clear()
        encode_varint(body, head.append)
        head.append(0)  # attributes
        head.append(0)  # timestamp delta: varint 0
        encode_varint(offset_delta, head.append)
        encode_varint(len(message.key), head.append)
        head += message.key
        encode_varint(value_size, head.append)
        if message.framed:
            head += BATCH_PREFIX
        records[at : at + len(head)] = head
        at += len(head)
        for index, part in enumerate(message.parts):
            if index and message.framed:
                records[at] = 0x2C  # ","
                at += 1
            records[at : at + len(part)] = part
            at += len(part)
        if message.framed:
            records[at : at + len(BATCH_SUFFIX)] = BATCH_SUFFIX
            at += len(BATCH_SUFFIX)
        records[at] = 0  # headers: varint 0
        at += 1
    assert at == total, "record sizes disagree with what was written"
    if encode is not None:  # out is the scratch buffer: the batch gets its own
        compressed = encode(records[_HEADER.size : total])
        if len(compressed) < total - _HEADER.size:
            out = bytearray(_HEADER.size + len(compressed))
            out[_HEADER.size :] = compressed
        else:
            attributes = 0  # no gain: sent uncompressed, as aiokafka does
            out = bytearray(records[:total])
    records.release()
    _HEADER.pack_into(
        out, 0,
        0, len(out) - _LENGTH_END, -1, 2, 0, attributes, len(batch) - 1,
        timestamp_ms, timestamp_ms, -1, -1, 0, len(batch),
    )  # fmt: skip
    _write_crc(out)
    return out


_local = threading.local()
_SCRATCH_KEPT = 4 << 20
"""Largest scratch buffer a framing thread keeps between batches."""


def _scratch(size: int) -> bytearray:
    """This thread's buffer of at least ``size`` bytes, for records that are compressed next.

    ``bytearray(size)`` zeroes every byte before the records overwrite them:
    a megabyte of memset per batch, about 4% of the shipper's CPU.  A batch
    larger than :data:`_SCRATCH_KEPT` gets a buffer of its own, so an odd
    huge one does not stay resident in every worker thread.
    """
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is not None and len(buffer) >= size:
        return buffer
    if size > _SCRATCH_KEPT:
        return bytearray(size)
    buffer = _local.buffer = bytearray(max(size, 1 << 20))
    return buffer


def _write_crc(batch: bytearray) -> None:
    """The CRC-32C of everything after the CRC field, written into it.

    ``crc32c`` uses the CPU's CRC instruction (SSE 4.2, ARMv8) and releases the
    interpreter lock on large buffers: 0.013 ms per 300 KB against 0.176 ms
    for aiokafka's table-driven one, which holds the lock.  An idempotent
    batch is summed twice, the second time on the event loop when the
    producer numbers it (:meth:`BuiltBatch._set_producer_state`).
    """
    struct.pack_into(">I", batch, _CRC_OFFSET, crc32c(memoryview(batch)[_ATTRIBUTES_OFFSET:]))


def build_batches(
    messages: Sequence[MessageParts],
    partitions: Mapping[str, list[int]],
    *,
    codec: str,
    max_batch_bytes: int,
    timestamp_ms: int | None = None,
) -> list[PackedBatch]:
    """``messages`` packed in order into compressed batches of at most ``max_batch_bytes`` per partition.

    A message goes to the partition aiokafka's default partitioner picks for
    its key among ``partitions[topic]``; within a partition, batches and the
    messages in them keep their order.  A batch closes where aiokafka's
    builder would close it (its uncompressed size past ``max_batch_bytes``; a
    first message always fits).
    """
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    open_batches: dict[tuple[str, int], int] = {}
    plans: list[tuple[str, int, list[tuple[MessageParts, int, int]], list[int]]] = []
    for message in messages:
        partition = _partition(message.key, tuple(partitions[message.topic]))
        value_size = message.value_size()
        at = open_batches.get((message.topic, partition))
        if at is not None:
            _, _, members, size = plans[at]
            body, framed = _record_size(len(members), message, value_size)
            if size[0] + framed <= max_batch_bytes:
                members.append((message, value_size, body))
                size[0] += framed
                continue
        body, framed = _record_size(0, message, value_size)
        open_batches[message.topic, partition] = len(plans)
        plans.append((message.topic, partition, [(message, value_size, body)], [_HEADER.size + framed]))
    return [
        PackedBatch(
            topic,
            partition,
            BuiltBatch(_encode_batch(members, codec, timestamp_ms), len(members)),
            len(members),
            sum(value_size for _, value_size, _ in members),
        )
        for topic, partition, members, _ in plans
    ]
