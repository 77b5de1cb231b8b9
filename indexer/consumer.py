"""The indexer service: a Kafka consumer group feeding the bulk writer.

::

    getmany (until batch_max_bytes, batch_max_wait_seconds, or batch_idle_seconds of quiet)
      -> decode batches (undecodable messages become dead letters)
      -> BulkWriter.write: every item indexed, already present, or dead-lettered
      -> commit the batch's offsets (only partitions still assigned)
      -> report the committed partitions' outcomes (indexer.outcomes)

Beside it, a timer measures the consumer lag of every assigned partition
(``indexer.lag``), whether or not batches commit.

Offsets move only after every item of a batch is resolved, so a crash, a
restart or a rebalance replays at most the batch in flight, and replays cost
nothing but ``409`` answers (``_id`` is the record's ``event.id``).  While the
cluster is unreachable the writer keeps retrying, and the consumer keeps its
group membership by polling with every partition paused.  On a rebalance the
batch in flight is given ``rebalance_wait_seconds`` to finish and commit
before its partitions are handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaConnectionError, KafkaError
from opensearchpy.exceptions import OpenSearchException

from indexer.bulk import BulkWriter, WriterClosedError
from indexer.config import IndexerConfig
from indexer.dlq import expire_dead_letters
from indexer.documents import BulkItem, KafkaPosition, build_items
from indexer.events import events
from indexer.lag import KafkaOffsets, LagMonitor
from indexer.outcomes import DeadLetterNote, Partition, PendingOutcomes, collect, report
from indexer.retention import apply_ism, apply_retention
from indexer.retry import backoff_delay
from indexer.templates import Capabilities, ensure_templates, open_client
from podlog.config import CommonConfig
from podlog.errors import TransportError
from podlog.kafka_security import security_kwargs
from podlog.lifecycle import Health
from podlog.logging import get_logger
from podlog.retention import RetentionConfig

__all__ = ["Indexer"]

log = get_logger("indexer.consumer")

Message = ConsumerRecord  # aiokafka's record type (untyped)


class Indexer:
    """Kafka consumer group -> OpenSearch, committing only resolved batches."""

    name = "indexer"

    def __init__(
        self,
        common: CommonConfig,
        config: IndexerConfig,
        retention: RetentionConfig,
        *,
        health: Health,
    ) -> None:
        self._common = common
        self._config = config
        self._retention = retention
        events.classes_known(retention)
        self._writer = BulkWriter(config, health=health)
        self._consumer: Any = None
        self._security: dict[str, Any] = {}
        self._capabilities: Capabilities | None = None
        self._carry: list[Any] = []
        self._inflight: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._lag: LagMonitor | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._pending = PendingOutcomes()
        self._stopping = asyncio.Event()
        self._not_ready: str | None = "starting"
        self._stopped = False
        health.add("indexer", lambda: self._not_ready)

    @property
    def capabilities(self) -> Capabilities | None:
        """What the cluster supports, once templates are in place."""
        return self._capabilities

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member holds right now (empty before the group is joined)."""
        if self._consumer is None:
            return set()
        return set(self._consumer.assignment())

    async def start(self) -> None:
        """Open the bulk writer and join the consumer group.

        Kafka unreachable is not fatal: it is logged, readiness says so, and
        :meth:`run` keeps trying with backoff (the agent spools meanwhile).
        A misconfiguration (TLS/SASL settings, a rejected login) is.
        """
        await self._writer.start()
        try:
            self._security = security_kwargs(self._config.kafka, "indexer.kafka")
        except TransportError:
            await self._writer.close()
            raise
        try:
            await self._connect_once()
        except KafkaConnectionError as exc:
            self._unreachable(exc, attempt=1)
        except KafkaError as exc:
            await self._writer.close()
            raise TransportError(
                f"cannot use Kafka at {self._config.kafka.bootstrap_servers}: {exc}",
                setting="indexer.kafka.bootstrap_servers",
            ) from exc

    async def _connect_once(self) -> None:
        kafka = self._config.kafka
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=kafka.group_id,
            client_id=kafka.client_id,
            enable_auto_commit=False,
            auto_offset_reset=kafka.auto_offset_reset,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=max(100, kafka.session_timeout_ms // 3),
            max_poll_interval_ms=kafka.max_poll_interval_ms,
            rebalance_timeout_ms=max(kafka.session_timeout_ms, int(kafka.rebalance_wait_seconds * 1000) + 5000),
            **self._security,
        )
        consumer.subscribe(kafka.topics, listener=_RebalanceListener(self))
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer
        log.info("indexer_started", topics=kafka.topics, group_id=kafka.group_id)

    def _unreachable(self, exc: Exception, *, attempt: int) -> float:
        kafka = self._config.kafka
        delay = backoff_delay(attempt, self._config.retry_initial_seconds, self._config.retry_max_seconds)
        self._not_ready = f"Kafka unreachable at {kafka.bootstrap_servers}"
        log.warning(
            "kafka_unreachable",
            setting="indexer.kafka.bootstrap_servers",
            bootstrap_servers=kafka.bootstrap_servers,
            error=repr(exc),
            attempt=attempt,
            retry_in=round(delay, 3),
        )
        return delay

    async def _connect(self) -> bool:
        """Join the group if :meth:`start` could not; False once stopping."""
        attempt = 1
        while self._consumer is None:
            delay = backoff_delay(attempt, self._config.retry_initial_seconds, self._config.retry_max_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return False
            attempt += 1
            try:
                await self._connect_once()
            except KafkaConnectionError as exc:
                self._unreachable(exc, attempt=attempt)
        return True

    async def run(self) -> None:
        """Consume, index and commit until stopped.

        Up to ``max_inflight_batches`` batches are written at once (the next
        one is fetched and decoded while the cluster works on the previous);
        each commits only after its own writes and every earlier batch's
        commit, so offsets still move in order.
        """
        if not await self._connect():
            return
        kafka = self._config.kafka
        if kafka.lag_interval_seconds > 0:  # before the cluster answers: a stuck indexer shows its lag
            self._lag = LagMonitor(
                KafkaOffsets(self._consumer, kafka, self._security),
                kafka.lag_interval_seconds,
                start=kafka.auto_offset_reset,
            )
            self._lag_task = asyncio.create_task(self._lag.run(self._stopping), name="consumer-lag")
        if not await self._prepare_cluster():
            return
        self._not_ready = None
        if self._config.retention_interval_seconds > 0:
            # The pass is the authority on log indices with or without ISM: it ages
            # them by the day they hold (ISM only by their creation), see indexer.retention.
            self._retention_task = asyncio.create_task(self._apply_retention(), name="retention")
        inflight: deque[asyncio.Task[None]] = deque()
        depth = max(1, self._config.max_inflight_batches)
        try:
            while not self._stopping.is_set():
                try:
                    messages = await self._collect()
                except ConsumerStoppedError:
                    break
                except KafkaError as exc:
                    if self._stopping.is_set():
                        break
                    log.warning("fetch_failed", error=repr(exc))
                    continue
                if messages:
                    previous = inflight[-1] if inflight else None
                    task = asyncio.create_task(
                        self._process(messages, previous), name="indexer-batch"
                    )
                    inflight.append(task)
                    self._inflight = task
                while inflight and inflight[0].done():
                    inflight.popleft().result()
                if inflight and (len(inflight) >= depth or not messages):
                    await self._wait_with_keepalive(inflight[0])
                    inflight.popleft()
            while inflight:  # stopping: let the batches in flight commit
                await self._wait_with_keepalive(inflight[0])
                inflight.popleft()
        except WriterClosedError:
            log.info("batches_abandoned", batches=len(inflight))
        finally:
            self._inflight = None
            for task in inflight:
                task.cancel()

    async def stop(self) -> None:
        """Let the batch in flight finish (within part of the grace), then leave the group."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        task = self._inflight
        if task is not None and not task.done():
            grace = max(1.0, self._common.shutdown_grace_seconds * 0.6)
            await asyncio.wait({task}, timeout=grace)
            if not task.done():
                log.warning("batch_abandoned_on_stop", grace_seconds=grace)
                self._writer.abort()
                await asyncio.wait({task}, timeout=2.0)
        for background in (self._retention_task, self._lag_task):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        if self._lag is not None:
            await self._lag.close()
        if self._consumer is not None:
            await self._consumer.stop()
        await self._writer.close()
        log.info("indexer_stopped")

    async def __aenter__(self) -> Indexer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- steps ------------------------------------------------------------------

    async def _prepare_cluster(self) -> bool:
        """Install templates (and ISM policies) before the first write; retry until done."""
        client = open_client(self._config.opensearch)
        attempt = 0
        try:
            while not self._stopping.is_set():
                try:
                    caps = await asyncio.to_thread(ensure_templates, client, self._config.opensearch)
                    if caps.ism:
                        await asyncio.to_thread(apply_ism, client, self._config.opensearch, self._retention)
                except OpenSearchException as exc:
                    attempt += 1
                    delay = backoff_delay(attempt, self._config.retry_initial_seconds, self._config.retry_max_seconds)
                    self._not_ready = f"index templates not installed: {exc}"[:300]
                    events.templates_failed(repr(exc)[:300], attempt, delay)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stopping.wait()
                    continue
                self._capabilities = caps
                return True
            return False
        finally:
            client.close()

    async def _apply_retention(self) -> None:
        """Now and then, delete expired log indices, the expired documents of the index a
        class's retention ends in, and expired dead letters."""
        opensearch = self._config.opensearch
        prefix = opensearch.index_prefix
        while not self._stopping.is_set():
            client = open_client(opensearch)
            try:
                await asyncio.to_thread(apply_retention, client, prefix, self._retention)
                await asyncio.to_thread(
                    expire_dead_letters, client, prefix, self._config.dead_letter_days,
                    datetime.now(tz=UTC),
                )
            except OpenSearchException as exc:
                log.warning("retention_failed", error=repr(exc)[:300])
            except Exception as exc:  # task boundary: retention must never stop indexing
                log.exception("retention_failed", error=repr(exc)[:300])
            finally:
                client.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.retention_interval_seconds):
                    await self._stopping.wait()

    async def _collect(self) -> list[Any]:
        """Messages up to ``batch_max_bytes``, waiting at most ``batch_max_wait_seconds``."""
        kafka = self._config.kafka
        batch, self._carry = self._carry, []
        size = sum(len(m.value or b"") for m in batch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + kafka.batch_max_wait_seconds
        while size < kafka.batch_max_bytes and not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if batch:  # caught up with the partitions: flush after a short idle gap
                remaining = min(remaining, kafka.batch_idle_seconds)
            fetched = await self._consumer.getmany(
                timeout_ms=max(1, int(remaining * 1000)), max_records=kafka.fetch_max_records
            )
            if batch and not fetched:
                break
            for messages in fetched.values():
                batch.extend(messages)
                size += sum(len(m.value or b"") for m in messages)
        return self._cut(batch)

    def _cut(self, batch: list[Any]) -> list[Any]:
        """At most ``batch_max_bytes`` of ``batch`` (at least one message); the rest is carried.

        One getmany can return far more than a batch (a whole prefetched
        backlog of compressed messages): decoded at once it would cost
        several times its size in memory.  The carried messages open the
        next batch, so each partition's order is kept.
        """
        limit = self._config.kafka.batch_max_bytes
        size = 0
        for index, message in enumerate(batch):
            size += len(message.value or b"")
            if size >= limit and index + 1 < len(batch):
                self._carry = batch[index + 1 :] + self._carry
                return batch[: index + 1]
        return batch

    async def _process(
        self, messages: list[Any], previous: asyncio.Task[None] | None = None
    ) -> None:
        """Index one batch, wait for the batch before it, and commit."""
        started = time.perf_counter()
        caps = self._capabilities
        assert caps is not None, "templates are installed before the first batch"
        prefix = self._config.opensearch.index_prefix
        items: list[BulkItem] = []
        undecodable: list[DeadLetterNote] = []
        offsets: dict[TopicPartition, int] = {}
        expired: dict[Partition, Counter[str]] = {}
        now_ns = time.time_ns()  # one moment per batch: a replay decides the same way or later
        size = 0
        for message in messages:
            position = KafkaPosition(message.topic, message.partition, message.offset)
            built, letters = build_items(
                value=message.value,
                position=position,
                timestamp_ms=message.timestamp,
                prefix=prefix,
                retention=self._retention,
                capabilities=caps,
                expired=expired.setdefault((message.topic, message.partition), Counter()),
                now_ns=now_ns,
            )
            items.extend(built)
            undecodable.extend(DeadLetterNote(reason, position, detail, letter) for reason, detail, letter in letters)
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = max(offsets.get(tp, -1), message.offset + 1)
            size += len(message.value or b"")
        events.batch_consumed(len(messages), size)
        outcomes = await self._writer.write(items, [note.letter for note in undecodable])
        if previous is not None:
            await previous  # raises if it failed: then this batch is not committed either
        # Counted once committed, never when decoded or written: see indexer.outcomes.
        self._pending.add(collect(items, undecodable, expired), self._consumer.assignment())
        committed = await self._commit(offsets)
        report(self._pending.settle(committed))
        events.batch_committed(len(messages), time.perf_counter() - started, outcomes)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> set[TopicPartition]:
        """Commit ``offsets`` of partitions still assigned (others are replayed by their
        owner); returns the partitions committed."""
        assigned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not mine:
            return set()
        try:
            await self._consumer.commit(mine)
        except KafkaError as exc:
            events.commit_failed(exc)
            return set()
        return set(mine)

    async def _wait_with_keepalive(self, task: asyncio.Task[None]) -> None:
        """Wait for ``task``; while it takes long, poll with partitions paused.

        Polling keeps the group membership (``max_poll_interval_ms``) while
        the cluster is unreachable; records that still arrive (from partitions
        assigned meanwhile) are kept for the next batch.
        """
        interval = min(5.0, self._config.kafka.max_poll_interval_ms / 3000)
        paused: set[TopicPartition] = set()
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=interval)
                if done:
                    break
                if self._stopping.is_set():
                    continue
                fresh = set(self._consumer.assignment()) - paused
                if fresh:
                    self._consumer.pause(*fresh)
                    paused |= fresh
                with contextlib.suppress(KafkaError, ConsumerStoppedError):
                    fetched = await self._consumer.getmany(timeout_ms=0)
                    for messages in fetched.values():
                        self._carry.extend(messages)
        finally:
            if paused and not self._stopped:
                still = paused & set(self._consumer.assignment())
                if still:
                    self._consumer.resume(*still)
        task.result()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        task = self._inflight
        if task is not None and not task.done():
            log.info("rebalance_waiting_for_batch", partitions=len(revoked))
            await asyncio.wait({task}, timeout=self._config.kafka.rebalance_wait_seconds)
        before = len(self._carry)
        self._carry = [m for m in self._carry if TopicPartition(m.topic, m.partition) not in revoked]
        self._pending.forget(revoked)
        if self._lag is not None:
            self._lag.forget(revoked)
        log.info(
            "partitions_revoked",
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in revoked),
            carried_dropped=before - len(self._carry),
        )


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finishes the batch in flight before partitions move to another member."""

    def __init__(self, indexer: Indexer) -> None:
        self._indexer = indexer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._indexer._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        counts = Counter(tp.topic for tp in assigned)
        log.info("partitions_assigned", partitions=dict(counts))
