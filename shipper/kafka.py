"""KafkaTransport: records to Kafka with aiokafka, returning only once the brokers hold them.

Wire format (``docs/wire-format.md``): the spool holds schema 2 messages
(one per file generation of a container, built to fit ``max_message_bytes``),
and each is sent as it is, keyed by :func:`podlog.record.stream_key` (pod UID
+ container), so one container's lines stay in one partition, in order.
Records of schema 1 (a spool written before, or records handed over in
memory) are grouped by stream key, and each group becomes one message encoded
with :func:`podlog.record.encode_batch`.  A group larger than
``max_message_bytes`` is split into several messages; a single record larger
than that is truncated (its ``message`` cut, then its ``json`` payload
dropped) with ``log.truncated`` set, and counted.

The producer uses ``acks=all``; idempotence is ``on``, ``off`` or ``auto``
(try it, and fall back with one warning on brokers without InitProducerId,
such as tansu).

A send's messages are framed into Kafka record batches per partition (the
partition aiokafka's default partitioner would pick) straight from the
spooled bytes and compressed, on a worker thread (:mod:`shipper.recordbatch`),
then handed over whole with ``send_batch``: each byte is copied once on its
way from the spool to the codec, and the event loop only moves finished
batches.  An idempotent producer numbers each batch as it drains it, which
writes the producer id and sequence into the batch's header.  One send
enqueues all its batches before the next send starts, so a stream's messages
reach its partition in spool order.

Credentials come from the settings, files or the environment and never
appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors

from podlog import wire
from podlog.errors import TransportError
from podlog.kafka_security import security_kwargs
from podlog.record import Record, encode_batch
from shipper.config import KafkaProducerConfig
from shipper.events import SendErrorReason, events
from shipper.messages import StoredMessages
from shipper.recordbatch import MessageParts, PackedBatch, build_batches
from shipper.records import EncodedRecords, Run

__all__ = ["KafkaSendError", "KafkaTransport", "Message", "encode_messages", "plan_messages"]

_EMPTY_BATCH = len(encode_batch([]))
_MIN_MESSAGE_BYTES = 1024
_SETTING = "shipper.kafka."
_PLUS_ONE = (1).__add__


class Message(NamedTuple):
    """One Kafka message: a batch of records of one stream."""

    topic: str
    key: bytes
    value: bytes
    records: int


class KafkaSendError(TransportError):
    """A send to Kafka failed; ``reason`` is a bounded label for metrics."""

    def __init__(
        self, message: str, *, reason: str, retriable: bool = True, setting: str | None = None
    ) -> None:
        super().__init__(message, retriable=retriable, setting=setting)
        self.reason = reason


def _truncate(record: Record, budget: int) -> Record:
    """A copy of ``record`` whose encoding fits in ``budget`` bytes, flagged as truncated."""
    out = dict(record)
    out["log"] = {**(record.get("log") or {}), "truncated": True}
    message = str(record.get("message") or "").encode()
    keep = len(message)
    # Drop what can go, largest first, until the rest fits.
    fallbacks: list[tuple[str, Any]] = [("json", None)]
    k8s = record.get("kubernetes")
    if isinstance(k8s, dict) and (k8s.get("labels") or k8s.get("annotations")):
        fallbacks.append(("kubernetes", {**k8s, "labels": {}, "annotations": {}}))
    while True:
        out["message"] = message[:keep].decode("utf-8", "ignore")
        size = len(orjson.dumps(out))
        if size <= budget:
            return out
        if keep > 0:
            keep = max(0, keep - (size - budget) - 16)
            continue
        if not fallbacks:
            # Only the identifying skeleton is left; keep it so the record is never lost.
            skeleton = {k: out.get(k) for k in ("@timestamp", "timestamp_ns", "stream", "log", "event", "podlog")}
            skeleton["message"] = ""
            return skeleton
        name, value = fallbacks.pop(0)
        out[name] = value


def encode_messages(
    records: Sequence[Record],
    *,
    topic: str,
    default_retention: str,
    max_message_bytes: int,
) -> list[Message]:
    """Group ``records`` by stream and encode each group as messages within the size limit.

    ``topic`` may contain ``{retention}``, replaced by each record's
    ``podlog.retention`` (else ``default_retention``).  Records that arrive
    as :class:`EncodedRecords` (from the spool) are never decoded: message
    values are joined from their JSON fragments.
    """
    return [
        Message(m.topic, m.key, m.value(), m.records)
        for m in plan_messages(
            records, topic=topic, default_retention=default_retention, max_message_bytes=max_message_bytes
        )
    ]


def plan_messages(
    records: Sequence[Record],
    *,
    topic: str,
    default_retention: str,
    max_message_bytes: int,
) -> list[MessageParts]:
    """The messages of :func:`encode_messages`, their values left as parts (nothing copied)."""
    if isinstance(records, StoredMessages):
        return _stored_messages(records, topic, default_retention, max_message_bytes)
    encoded = EncodedRecords.from_records(records)
    templated = "{retention}" in topic
    slots: dict[tuple[str, bytes], int] = {}
    slot_of_group: list[int] = []
    for stream, retention in encoded.groups:
        name = topic.replace("{retention}", retention or default_retention) if templated else topic
        slot_of_group.append(slots.setdefault((name, stream.encode()), len(slots)))
    members: list[list[Run]] = [[] for _ in slots]
    for run in encoded.runs:
        members[slot_of_group[run.group]].append(run)
    messages: list[MessageParts] = []
    for (name, key), runs in zip(slots, members, strict=True):
        count = sum(len(run.lengths) for run in runs)
        size = _EMPTY_BATCH + sum(len(run.data) for run in runs) + len(runs) - 1
        if size <= max_message_bytes:
            messages.append(MessageParts(name, key, [run.data for run in runs], count))
            continue
        parts = _split(runs, key, max_message_bytes)
        if len(parts) > 1:
            events.message_split(key=key.decode(errors="replace"), parts=len(parts))
        messages.extend(MessageParts(name, key, pieces, count) for pieces, count in parts)
    return messages


def _stored_messages(
    stored: StoredMessages, topic: str, default_retention: str, max_message_bytes: int,
) -> list[MessageParts]:
    """Schema 2 messages from the spool, sent as they are; one over the limit (the broker's turned
    out lower than the one the spool built for) is split again, never dropped."""
    templated = "{retention}" in topic
    out: list[MessageParts] = []
    for message in stored.messages:
        name = topic.replace("{retention}", message.retention or default_retention) if templated else topic
        key = message.key.encode()
        if len(message.value) <= max_message_bytes:
            out.append(MessageParts(name, key, [message.value], message.rows, framed=False))
            continue
        parts = wire.encode_fitting_rows(wire.decode(message.value), max_message_bytes)
        events.message_split(key=message.key, parts=len(parts))
        out.extend(MessageParts(name, key, [value], rows, framed=False) for value, rows in parts)
    return out


def _split(runs: list[Run], key: bytes, limit: int) -> list[tuple[list[bytes | memoryview], int]]:
    """The records of ``runs`` in order, cut into messages of at most ``limit`` bytes.

    Returns each message's pieces (comma-joined, they are its records) and its
    record count.  Greedy, as if record by record: a message takes records
    until the next one would not fit.  A piece is a slice of a run spanning
    every record that fits, found by bisecting the run's cumulative record
    ends, so a large group costs a few slices per message, not a view and a
    copy per record.  A record that cannot fit even alone is truncated to
    fit (:func:`_truncate`) and counted.
    """
    budget = limit - _EMPTY_BATCH
    parts: list[tuple[list[bytes | memoryview], int]] = []
    current: list[bytes | memoryview] = []
    used = count = 0
    for run in runs:
        data, lengths = run.data, run.lengths
        # ends[k]: bytes up to and including record k and the comma after it.
        ends = list(accumulate(map(_PLUS_ONE, lengths)))
        index, total = 0, len(lengths)
        while index < total:
            start = ends[index - 1] if index else 0
            separator = 1 if current else 0
            # Largest last record whose piece data[start : ends[last] - 1] still fits.
            last = bisect_right(ends, budget - used - separator + 1 + start, index) - 1
            if last >= index:
                current.append(data[start : ends[last] - 1])
                used += separator + ends[last] - 1 - start
                count += last + 1 - index
                index = last + 1
                continue
            if current:  # the next record starts a message of its own
                parts.append((current, count))
                current, used, count = [], 0, 0
                continue
            size = lengths[index]  # alone, and still too large: truncate it
            fragment = orjson.dumps(_truncate(orjson.loads(data[start : start + size]), budget))
            events.record_truncated(key=key.decode(errors="replace"), original_bytes=size, limit=limit)
            current.append(fragment)
            used, count = len(fragment), 1
            index += 1
    if current:
        parts.append((current, count))
    return parts


def _release_pages(records: Sequence[Record]) -> None:
    """The records are copied into batches: give back the spool pages they were read from."""
    if isinstance(records, EncodedRecords | StoredMessages):
        records.drop_resident_pages()


async def _after(previous: asyncio.Future[None] | None) -> None:
    """Wait until the previous send has enqueued its messages (it always resolves ``previous``)."""
    if previous is not None and not previous.done():
        await asyncio.shield(previous)


def _pass_turn(turn: asyncio.Future[None], previous: asyncio.Future[None] | None) -> None:
    """Let the next send enqueue, but never before the previous one finished (if this one was cancelled)."""
    def resolve(_: object = None) -> None:
        if not turn.done():
            turn.set_result(None)

    if previous is None or previous.done():
        resolve()
    else:
        previous.add_done_callback(resolve)


def _classify(error: BaseException) -> SendErrorReason:
    if isinstance(error, (kafka_errors.KafkaTimeoutError, kafka_errors.RequestTimedOutError)):
        return "timeout"
    if isinstance(error, (kafka_errors.KafkaConnectionError, kafka_errors.NodeNotReadyError)):
        return "connection"
    if isinstance(
        error, (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordListTooLargeError)
    ):
        return "message_too_large"
    if isinstance(
        error,
        (
            kafka_errors.TopicAuthorizationFailedError,
            kafka_errors.ClusterAuthorizationFailedError,
            kafka_errors.GroupAuthorizationFailedError,
        ),
    ):
        return "authorization"
    if isinstance(error, kafka_errors.BrokerResponseError):
        return "broker"
    return "other"


async def _reachable(bootstrap: str, seconds: float = 2.0) -> bool:
    """True when a TCP connection to any bootstrap address opens."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        if not port.isdigit():
            continue
        try:
            async with asyncio.timeout(seconds):
                _, writer = await asyncio.open_connection(host.strip("[]") or "localhost", int(port))
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


@contextlib.contextmanager
def _quiet_sender(quiet: bool) -> Iterator[None]:
    sender = logging.getLogger("aiokafka.producer.sender")
    level = sender.level
    if quiet:
        sender.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        sender.setLevel(level)


class KafkaTransport:
    """The :class:`podlog.protocols.Transport` that delivers records to Kafka."""

    name = "kafka"

    def __init__(self, config: KafkaProducerConfig) -> None:
        self.config = config
        self.max_message_bytes = config.max_message_bytes
        self.idempotent = False
        self._producer: AIOKafkaProducer | None = None
        self._enqueued: asyncio.Future[None] | None = None
        """Resolved once the latest send has handed all its messages to the producer."""
        self._topics: set[str] = set()
        """Every topic sent to so far; their partitions come from the metadata each send."""

    # -- connecting --------------------------------------------------------

    def _security(self) -> dict[str, Any]:
        return security_kwargs(self.config, _SETTING.rstrip("."))

    def _make_producer(self, idempotent: bool) -> AIOKafkaProducer:
        cfg = self.config
        return AIOKafkaProducer(
            bootstrap_servers=[s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()],
            client_id=cfg.client_id,
            acks="all",
            enable_idempotence=idempotent,
            compression_type=None if cfg.compression == "none" else cfg.compression,
            linger_ms=cfg.linger_ms,
            max_batch_size=cfg.max_batch_bytes,
            max_request_size=max(cfg.max_batch_bytes, cfg.max_message_bytes) + (64 << 10),
            request_timeout_ms=cfg.request_timeout_ms,
            retry_backoff_ms=200,
            **self._security(),
        )

    async def start(self) -> None:
        """Connect to the brokers; raise :class:`TransportError` naming the bad setting."""
        if self._producer is not None:
            return
        want = self.config.idempotence != "off"
        try:
            # In auto mode a refused InitProducerId is expected on some brokers:
            # aiokafka's own error line would duplicate our one warning.
            with _quiet_sender(self.config.idempotence == "auto"):
                self._producer = await self._start_producer(want)
            self.idempotent = want
        except TransportError:
            raise
        except kafka_errors.KafkaError as exc:
            if self.config.idempotence == "on" or not want:
                raise await self._start_error(exc) from exc
            # A broker without InitProducerId answers it with an error code; anything
            # else (no connection, a refused login) is not about idempotence.
            if not isinstance(exc, kafka_errors.BrokerResponseError) or "Sasl" in type(exc).__name__:
                raise await self._start_error(exc) from exc
            events.idempotence_disabled(bootstrap=self.config.bootstrap_servers, error=repr(exc))
            try:
                self._producer = await self._start_producer(False)
            except kafka_errors.KafkaError as again:
                raise await self._start_error(again) from again
            self.idempotent = False
        events.transport_started(
            transport=self.name,
            bootstrap=self.config.bootstrap_servers,
            idempotent=self.idempotent,
            compression=self.config.compression,
            security_protocol=self.config.security_protocol,
        )

    async def _start_producer(self, idempotent: bool) -> AIOKafkaProducer:
        producer = self._make_producer(idempotent)
        try:
            async with asyncio.timeout(self.config.connect_timeout_seconds):
                await producer.start()
        except TimeoutError as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise kafka_errors.KafkaConnectionError(
                f"no answer within {self.config.connect_timeout_seconds}s"
            ) from exc
        except kafka_errors.KafkaError:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        except Exception as exc:
            # aiokafka's SASL code fails with plain exceptions (KeyError on a
            # SCRAM error reply): treat them as the broker rejecting the login.
            with contextlib.suppress(Exception):
                await producer.stop()
            raise kafka_errors.KafkaError(f"handshake failed: {exc!r}") from exc
        return producer

    async def _start_error(self, exc: BaseException) -> TransportError:
        """A clear error that names the setting most likely at fault."""
        cfg = self.config
        if isinstance(exc, kafka_errors.KafkaConnectionError) and not await _reachable(
            cfg.bootstrap_servers
        ):
            return TransportError(
                f"cannot reach Kafka at {cfg.bootstrap_servers} "
                f"({_SETTING}bootstrap_servers): {exc}",
                retriable=True,
                setting=_SETTING + "bootstrap_servers",
            )
        if cfg.security_protocol.startswith("SASL"):
            return TransportError(
                f"Kafka at {cfg.bootstrap_servers} rejected the {cfg.sasl_mechanism} login "
                f"({_SETTING}sasl_username / {_SETTING}sasl_password, or "
                f"{_SETTING}sasl_mechanism): {type(exc).__name__}",
                retriable=False,
                setting=_SETTING + "sasl_password",
            )
        if cfg.security_protocol == "SSL":
            return TransportError(
                f"TLS connection to Kafka at {cfg.bootstrap_servers} failed "
                f"({_SETTING}ssl_cafile / {_SETTING}security_protocol): {exc}",
                retriable=False,
                setting=_SETTING + "ssl_cafile",
            )
        if isinstance(exc, kafka_errors.KafkaConnectionError):
            return TransportError(
                f"Kafka at {cfg.bootstrap_servers} accepts connections but the Kafka handshake "
                f"failed; does it expect TLS or SASL ({_SETTING}security_protocol)? {exc}",
                retriable=True,
                setting=_SETTING + "security_protocol",
            )
        return TransportError(
            f"the producer could not start ({_SETTING}idempotence={cfg.idempotence}): {exc!r}",
            retriable=False,
            setting=_SETTING + "idempotence",
        )

    # -- sending -----------------------------------------------------------

    async def send(self, records: Sequence[Record]) -> None:
        """Return once the brokers acknowledged every record (``acks=all``).

        Concurrent sends build their batches at the same time, but each hands
        them to the producer only after the send called before it has, so a
        stream's messages reach its partition in call order.
        """
        producer = self._producer
        if producer is None:
            raise TransportError("send before start", retriable=True)
        previous, turn = self._enqueued, asyncio.get_running_loop().create_future()
        self._enqueued = turn
        futures: list[asyncio.Future[Any]] = []
        started = time.perf_counter()
        try:
            try:
                batches = await self._pack(producer, records)
                count, nbytes = sum(b.messages for b in batches), sum(b.nbytes for b in batches)
                await _after(previous)
                for packed in batches:
                    futures.append(
                        await producer.send_batch(packed.batch, packed.topic, partition=packed.partition)
                    )
            finally:
                _pass_turn(turn, previous)
            await asyncio.gather(*futures)
        except kafka_errors.KafkaError as exc:
            # Collect every outcome so no future's exception goes unretrieved.
            await asyncio.gather(*futures, return_exceptions=True)
            raise self._send_error(exc) from exc
        events.messages_delivered(messages=count, nbytes=nbytes, seconds=time.perf_counter() - started)

    async def _pack(self, producer: AIOKafkaProducer, records: Sequence[Record]) -> list[PackedBatch]:
        """Plan, partition, frame and compress ``records`` on the framing thread, then drop their pages.

        One hand-off to the thread when every topic's partitions are already
        known (the usual case); a topic seen for the first time makes the
        plan come back first, so its partitions can be fetched.
        """
        known = self._known_partitions(producer)

        def frame(messages: list[MessageParts], partitions: dict[str, list[int]]) -> list[PackedBatch]:
            batches = build_batches(
                messages,
                partitions,
                codec=self.config.compression,
                max_batch_bytes=self.config.max_batch_bytes,
            )
            _release_pages(records)
            return batches

        def plan_and_frame() -> tuple[list[MessageParts], list[PackedBatch] | None]:
            messages = plan_messages(
                records,
                topic=self.config.topic,
                default_retention=self.config.default_retention,
                max_message_bytes=self.max_message_bytes,
            )
            if any(m.topic not in known for m in messages):
                return messages, None
            return messages, frame(messages, known)

        messages, batches = await asyncio.to_thread(plan_and_frame)
        if batches is not None:
            return batches
        for topic in {m.topic for m in messages}:
            known[topic] = sorted(await producer.partitions_for(topic))
            self._topics.add(topic)
        return await asyncio.to_thread(frame, messages, known)

    def _known_partitions(self, producer: AIOKafkaProducer) -> dict[str, list[int]]:
        """Partitions of the topics sent to before, as the producer's metadata has them now.

        A topic the metadata no longer lists is left out, so the send fetches
        its partitions again (``partitions_for``) instead of framing for stale ones.
        """
        cluster = producer.client.cluster
        known: dict[str, list[int]] = {}
        for topic in self._topics:
            current = cluster.partitions_for_topic(topic)
            if current:
                known[topic] = sorted(current)
        return known

    def _send_error(self, exc: kafka_errors.KafkaError) -> KafkaSendError:
        reason = _classify(exc)
        if reason == "message_too_large" and self.max_message_bytes > _MIN_MESSAGE_BYTES:
            # The broker's limit is below ours: halve ours so the next try fits,
            # instead of failing the same messages forever.
            old = self.max_message_bytes
            self.max_message_bytes = max(_MIN_MESSAGE_BYTES, old // 2)
            events.message_limit_lowered(old=old, new=self.max_message_bytes)
            return KafkaSendError(
                f"broker rejected a message as too large; {_SETTING}max_message_bytes lowered "
                f"from {old} to {self.max_message_bytes}",
                reason=reason,
                setting=_SETTING + "max_message_bytes",
            )
        setting = _SETTING + "topic" if reason == "authorization" else None
        return KafkaSendError(
            f"Kafka send failed ({reason}): {exc!r}",
            reason=reason,
            retriable=bool(getattr(exc, "retriable", False)) or reason in ("timeout", "connection"),
            setting=setting,
        )

    async def stop(self) -> None:
        """Flush what is queued and disconnect; idempotent."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
            events.transport_stopped(transport=self.name)
