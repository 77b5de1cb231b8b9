"""The consumer-lag gauge: the group's committed offsets against high watermarks, on a timer.

Every ``indexer.kafka.lag_interval_seconds``, for every partition assigned
to this member, ``podlog_indexer_consumer_lag_messages`` is set to the
partition's high watermark minus the group's committed offset, whether or
not batches commit meanwhile: an indexer that is stuck (the cluster
unreachable, every partition paused) shows its lag growing.  A partition
revoked from this member loses its series at once; its new owner reports it.
Before the group's first commit of a partition, lag counts from where the
group starts reading it (``auto_offset_reset``: the log start, or the end
as first seen).

The high watermark is read from a fetch response, never from ListOffsets:
some brokers (tansu) answer ListOffsets(latest) with the base offset of the
last record batch plus one, short of the end whenever that batch holds more
than one record.  The member's own consumer fetches nothing for a paused
partition, so a consumer of no group, the probe, does: it is assigned the
same partitions, resumed for one fetch per reading, paused between readings,
and moved to the high watermark it saw, so a reading fetches at most a
record batch per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from indexer.config import KafkaConsumerConfig
from indexer.events import IndexerEvents, events
from podlog.logging import get_logger

__all__ = ["KafkaOffsets", "LagMonitor", "OffsetSource"]

log = get_logger("indexer.lag")

_PROBE_WAIT_MS = 100
"""Longest a probe fetch waits at the end of a partition for new records."""
_PROBE_DEADLINE_SECONDS = 2.0
"""Longest one reading waits for every partition's fetch answer."""


class OffsetSource(Protocol):
    """Where lag is read from: the member's assignment, the group's offsets, the log's ends."""

    def assignment(self) -> set[TopicPartition]:
        """Partitions assigned to this member now."""

    async def highwaters(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """High watermarks read now; a partition that did not answer is left out."""

    async def committed(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (None: never committed)."""

    async def log_starts(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offset still in each partition's log."""

    async def close(self) -> None:
        """Release connections; idempotent."""


class LagMonitor:
    """Measures every assigned partition's lag every ``interval`` seconds."""

    def __init__(
        self,
        source: OffsetSource,
        interval: float,
        *,
        start: Literal["earliest", "latest"] = "earliest",
        event_sink: IndexerEvents = events,
    ) -> None:
        self._source = source
        self._interval = interval
        self._start = start
        self._events = event_sink
        self._shown: set[TopicPartition] = set()
        self._first_seen: dict[TopicPartition, int] = {}
        self._revoked: set[TopicPartition] = set()
        """Partitions revoked while a measurement was under way; it does not show them."""

    @property
    def shown(self) -> set[TopicPartition]:
        """Partitions that have a lag series now."""
        return set(self._shown)

    async def run(self, stopping: asyncio.Event) -> None:
        """Measure now, then every ``interval``, until ``stopping``; then drop every series.

        The source stays open: :meth:`close` it once this task is done (closing
        here could be cut short by the task's cancellation, leaving connections open).
        """
        try:
            while not stopping.is_set():
                try:
                    # Bounded, so a broker that stops answering delays the next reading, never stops them.
                    async with asyncio.timeout(max(self._interval, 5.0)):
                        await self.measure()
                except (KafkaError, TimeoutError) as exc:
                    self._events.lag_unmeasured(len(self._source.assignment()), repr(exc)[:300])
                except Exception as exc:  # task boundary: the gauge must not stop indexing
                    log.exception("lag_measurement_failed", error=repr(exc)[:300])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await stopping.wait()
        finally:
            self.forget(self._shown)

    async def close(self) -> None:
        """Close the source's connections; idempotent."""
        await self._source.close()

    async def measure(self) -> None:
        """Set the gauge for every assigned partition; drop the series of partitions no longer assigned."""
        assigned = self._source.assignment()
        self.forget(self._shown - assigned)
        if not assigned:
            return
        self._revoked.clear()
        # High watermarks first: a commit landing between the two reads makes the lag
        # read low for a moment, never high.
        highwaters = await self._source.highwaters(assigned)
        committed = await self._source.committed(assigned)
        fresh = [tp for tp in assigned if committed.get(tp) is None]
        starts = await self._starts(fresh, highwaters) if fresh else {}
        current = self._source.assignment() - self._revoked
        missing = 0
        for tp in sorted(assigned & current):
            highwater = highwaters.get(tp)
            base = committed.get(tp)
            if base is None:
                base = starts.get(tp)
            if highwater is None or base is None:
                missing += 1
                continue
            self._events.lag_measured(tp.topic, tp.partition, max(0, highwater - base))
            self._shown.add(tp)
        if missing:
            self._events.lag_unmeasured(missing, "no high watermark read")

    async def _starts(
        self, partitions: list[TopicPartition], highwaters: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Where the group starts reading partitions it never committed."""
        if self._start == "earliest":
            return await self._source.log_starts(partitions)
        for tp in partitions:
            if tp in highwaters:
                self._first_seen.setdefault(tp, highwaters[tp])
        return {tp: self._first_seen[tp] for tp in partitions if tp in self._first_seen}

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Drop the series of ``partitions`` (revoked, or this member is leaving)."""
        for tp in list(partitions):
            self._events.lag_forgotten(tp.topic, tp.partition)
            self._shown.discard(tp)
            self._first_seen.pop(tp, None)
            self._revoked.add(tp)


class KafkaOffsets:
    """The member's assignment and committed offsets, and a probe consumer's high watermarks."""

    def __init__(self, member: Any, kafka: KafkaConsumerConfig, security: dict[str, Any]) -> None:
        self._member = member
        self._kafka = kafka
        self._security = security
        self._probe: Any = None
        self._probing: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self._member.assignment())

    async def committed(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int | None]:
        ordered = list(partitions)
        values = await asyncio.gather(*(self._member.committed(tp) for tp in ordered))
        return dict(zip(ordered, values, strict=True))

    async def log_starts(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        probe = await self._probe_for(set(partitions) | self._probing)
        starts = await probe.beginning_offsets(list(partitions))
        return {tp: int(offset) for tp, offset in starts.items()}

    async def highwaters(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = set(partitions)
        probe = await self._probe_for(wanted)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _PROBE_DEADLINE_SECONDS
        since_ms = int(time.time() * 1000)  # the unit of aiokafka's fetch timestamps
        read: dict[TopicPartition, int] = {}
        probe.resume(*wanted)
        try:
            while len(read) < len(wanted) and loop.time() < deadline:
                await probe.getmany(timeout_ms=_PROBE_WAIT_MS)  # records are not wanted, only the answer
                for tp in wanted - read.keys():
                    stamp, highwater = probe.last_poll_timestamp(tp), probe.highwater(tp)
                    if stamp is not None and stamp >= since_ms and highwater is not None:
                        read[tp] = int(highwater)
        finally:
            probe.pause(*wanted)
        for tp, highwater in read.items():
            probe.seek(tp, highwater)  # the next reading fetches only what arrives meanwhile
        return read

    async def _probe_for(self, partitions: set[TopicPartition]) -> Any:
        if self._probe is None:
            kafka = self._kafka
            probe = AIOKafkaConsumer(
                bootstrap_servers=kafka.bootstrap_servers,
                client_id=f"{kafka.client_id}-lag",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                fetch_max_wait_ms=_PROBE_WAIT_MS,
                max_partition_fetch_bytes=1024,
                **self._security,
            )
            try:
                await probe.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await probe.stop()
                raise
            self._probe = probe
        if partitions != self._probing:
            self._probe.assign(list(partitions))
            self._probe.pause(*partitions)
            self._probing = set(partitions)
        return self._probe

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        self._probing = set()
        if probe is not None:
            await probe.stop()
