"""The Shipper service: drains the spool through a transport, acknowledging in order.

::

    spool.read(after cursor) -> transport.send(records) -> acks.acknowledged(marks)
                                                         -> (checkpoints on disk) spool.ack(last seq)

One send is in flight at a time and batches are acknowledged strictly in
spool order, so a checkpoint never moves past a record the transport does not
hold.  A failed send is retried with exponential backoff (with jitter) until
it succeeds: the spool grows meanwhile and, once full, pauses the collector.
Nothing here knows Kafka: the transport is any :class:`podlog.protocols.Transport`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from itertools import groupby
from typing import Any

from podlog.errors import TransportError
from podlog.lifecycle import Health
from podlog.protocols import AckListener, Transport
from shipper.config import ShipperConfig
from shipper.events import events
from shipper.messages import StoredMessages
from shipper.records import EncodedRecords
from shipper.spool import Spool, SpoolBatch, merge_marks

__all__ = ["Shipper"]


class Shipper:
    """Service that delivers spooled batches and moves checkpoints after each delivery."""

    name = "shipper"

    def __init__(
        self,
        config: ShipperConfig,
        spool: Spool,
        transport: Transport,
        *,
        acks: AckListener,
        health: Health,
    ) -> None:
        self.config = config
        self.spool = spool
        self.transport = transport
        self.acks = acks
        self._connected = False
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._drain_deadline = float("inf")
        self._run_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._failing_since: float | None = None
        self._last_error = ""
        self.delivered_seq = spool.acked_seq
        """Sequence number of the last batch delivered and acknowledged."""
        self._sent_seq = spool.acked_seq
        """Sequence number of the last batch delivered (its acknowledgement may still run)."""
        self._acking: asyncio.Task[None] | None = None
        health.add(self.name, self.readiness)

    # -- Service -----------------------------------------------------------

    async def start(self) -> None:
        """Connect the transport; a retriable failure is retried by :meth:`run`."""
        try:
            await self.transport.start()
        except TransportError as exc:
            if not exc.retriable:
                raise
            self._note_failure(exc)
            events.send_failed(
                transport=self.transport.name,
                reason="connection",
                error=str(exc),
                attempt=1,
                retry_in=self.config.retry_initial_seconds,
            )
            return
        self._connected = True

    async def run(self) -> None:
        """Deliver batches until stopped; on stop, keep delivering until drained or out of time."""
        self._run_task = asyncio.current_task()
        try:
            await self._loop()
        finally:
            self._finished.set()

    async def stop(self) -> None:
        """Deliver what can be delivered within the drain timeout, then close; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._drain_deadline = time.monotonic() + self.config.drain_timeout_seconds
        self._stopping.set()
        try:
            if self._run_task is not None and not self._finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._finished.wait(), self.config.drain_timeout_seconds
                    )
        finally:
            if self._run_task is not None and not self._run_task.done():
                self._run_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._run_task
            try:
                await self.transport.stop()
            finally:
                await self.spool.close()
            events.shipper_stopped(
                pending_records=self.spool.records,
                drained=not self.spool.has_pending(self.delivered_seq),
            )

    def readiness(self) -> str | None:
        """None when ready; else why not (spool full, or sends failing for too long)."""
        if self.spool.is_full():
            return (
                f"spool full: {self.spool.disk_bytes} of {self.spool.config.max_bytes} bytes; "
                "collector paused"
            )
        since = self._failing_since
        if since is not None and time.monotonic() - since >= self.config.unready_after_seconds:
            return (
                f"{self.transport.name} sends failing for {time.monotonic() - since:.0f}s: "
                f"{self._last_error}"
            )
        return None

    # -- the loop ----------------------------------------------------------

    async def _loop(self) -> None:
        # Up to max_in_flight_sends sends are in flight, acknowledged strictly in
        # spool order, while the next send's batches are read from disk (one
        # read ahead, even with the window full, so memory stays bounded at
        # max_in_flight_sends + 1 sends).  A failure settles every send in
        # flight, then redelivers from the first unacknowledged batch in
        # order, one send at a time, with backoff.
        window: collections.deque[tuple[list[SpoolBatch], asyncio.Task[None]]] = (
            collections.deque()
        )
        ahead: asyncio.Task[list[SpoolBatch]] | None = None
        try:
            while True:
                self._check_acknowledgements()
                if self._stopping.is_set() and time.monotonic() >= self._drain_deadline:
                    return
                room = len(window) < self.config.max_in_flight_sends
                cursor = window[-1][0][-1].seq if window else self._sent_seq
                if ahead is None and self.spool.has_pending(cursor):
                    ahead = asyncio.create_task(self._read(cursor), name="shipper-read")
                if ahead is not None and room and (ahead.done() or not window):
                    batches, ahead = await ahead, None
                    if batches:
                        task = asyncio.create_task(self._send(batches), name="shipper-send")
                        window.append((batches, task))
                    continue
                if not window:
                    if self._stopping.is_set():
                        await self._acknowledged()
                        return
                    await self._wait_for_work()
                    continue
                batches, task = window[0]
                waits: set[asyncio.Future[Any]] = {task}
                if ahead is not None and room:
                    waits.add(ahead)
                if self._acking is not None:
                    waits.add(self._acking)  # a failed acknowledgement ends the loop at once
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    continue
                error = task.exception()
                if error is None:
                    window.popleft()
                    self._acknowledge_soon(batches)
                    continue
                if not isinstance(error, TransportError):
                    raise error
                await asyncio.gather(*(t for _, t in window), return_exceptions=True)
                failed = [b for b, _ in window]
                window.clear()
                delay = self._failed(error, attempt=1)
                for redo in failed:
                    if not await self._deliver(redo, delay=delay):
                        return
                    delay = 0.0
                    self._acknowledge_soon(redo)
        finally:
            pending = [t for _, t in window] + ([ahead] if ahead is not None else [])
            for pending_task in pending:
                pending_task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self._acking is not None:  # settled above unless the loop failed or was cancelled
                await asyncio.gather(self._acking, return_exceptions=True)

    def _acknowledge_soon(self, batches: list[SpoolBatch]) -> None:
        """Release ``batches`` and move the checkpoints, in spool order, off the loop's path.

        The spool's part (the lock it shares with appends, segment unlinks, the
        acknowledged position on disk) takes milliseconds; awaited here, it held
        up the next send each time one completed (2.5 ms on average, a sixth of
        a backlog drain into noida-db). Each acknowledgement waits for the one
        before it, so they still happen strictly in order.
        """
        self._sent_seq = batches[-1].seq
        self.acks.acknowledged(merge_marks(batches))
        self._acking = asyncio.create_task(
            self._acknowledge(batches, self._acking), name="shipper-ack"
        )

    async def _acknowledge(self, batches: list[SpoolBatch], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous  # re-raises a failed one, so the failure reaches the loop
        durable = getattr(self.acks, "durable", None)
        if durable is not None:
            # The spool lets go of a batch only once the checkpoints on disk hold its
            # marks: after a SIGKILL, what they lack is still spooled, never counted lost.
            await durable()
        last = batches[-1].seq
        await self.spool.ack(last)
        self.delivered_seq = last

    def _check_acknowledgements(self) -> None:
        """Raise a failed acknowledgement in the loop; forget finished ones."""
        acking = self._acking
        if acking is not None and acking.done():
            self._acking = None
            acking.result()

    async def _acknowledged(self) -> None:
        """Wait until every acknowledgement started has happened (raising a failed one)."""
        acking, self._acking = self._acking, None
        if acking is not None:
            await acking

    async def _read(self, after_seq: int) -> list[SpoolBatch]:
        return await self.spool.read(
            after_seq,
            max_records=self.config.max_send_records,
            max_bytes=self.config.max_send_bytes,
        )

    async def _wait_for_work(self) -> None:
        data = asyncio.ensure_future(self.spool.wait(self._sent_seq))
        stop = asyncio.ensure_future(self._stopping.wait())
        waits: set[asyncio.Future[Any]] = {data, stop}
        if self._acking is not None:
            waits.add(self._acking)  # not idle while one could still fail
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (data, stop):
                task.cancel()
            await asyncio.gather(data, stop, return_exceptions=True)

    async def _send(self, batches: list[SpoolBatch]) -> None:
        """One attempt: connect if needed, send, and count it."""
        started = time.perf_counter()
        if not self._connected:
            await self.transport.start()
            self._connected = True
        count = 0
        for records in _sends(batches):
            count += len(records)
            if records:
                await self.transport.send(records)
        events.batch_sent(
            transport=self.transport.name,
            records=count,
            batches=len(batches),
            seconds=time.perf_counter() - started,
        )
        self._failing_since = None
        self._last_error = ""

    def _backoff(self, attempt: int) -> float:
        """Wait before the try after ``attempt`` failures: doubling, capped, with jitter."""
        delay = self.config.retry_initial_seconds * float(2 ** min(attempt - 1, 20))
        return min(self.config.retry_max_seconds, delay) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography

    def _failed(self, exc: TransportError, *, attempt: int) -> float:
        """Log and count failed attempt number ``attempt``; returns the backoff before the next."""
        delay = self._backoff(attempt)
        self._note_failure(exc)
        events.send_failed(
            transport=self.transport.name,
            reason=_reason(exc, connected=self._connected),
            error=str(exc),
            attempt=attempt,
            retry_in=delay,
        )
        return delay

    async def _deliver(self, batches: list[SpoolBatch], *, delay: float = 0.0) -> bool:
        """Wait ``delay``, then send until acknowledged, backing off between attempts.

        False when stopping ran out of time first.
        """
        attempt = 1 if delay else 0
        first_try = time.monotonic()
        while True:
            if delay:
                if self._stopping.is_set():
                    remaining = self._drain_deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    delay = min(delay, remaining)
                await self._pause(delay)
            try:
                await self._send(batches)
            except TransportError as exc:
                attempt += 1
                delay = self._failed(exc, attempt=attempt)
                continue
            if attempt:
                events.send_recovered(
                    transport=self.transport.name,
                    attempts=attempt + 1,
                    seconds=time.monotonic() - first_try,
                )
            return True

    async def _pause(self, seconds: float) -> None:
        """Back off for ``seconds``; a stop request cuts it short so draining starts at once."""
        if self._stopping.is_set():
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _note_failure(self, exc: TransportError) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._last_error = str(exc)


def _reason(exc: TransportError, *, connected: bool) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    if not connected:
        return "connection"
    return "retriable" if exc.retriable else "other"


def _sends(batches: list[SpoolBatch]) -> list[EncodedRecords | StoredMessages]:
    """The records of ``batches`` as one send, kept encoded (a transport that wants dicts decodes
    them by iterating); two or more where schema 1 and schema 2 batches meet (a spool written
    before an upgrade), in spool order."""
    sends: list[EncodedRecords | StoredMessages] = []
    for schema2, same in groupby(batches, lambda batch: isinstance(batch.records, StoredMessages)):
        parts = [batch.records for batch in same]
        if schema2:
            sends.append(StoredMessages.concat([p for p in parts if isinstance(p, StoredMessages)]))
        else:
            sends.append(EncodedRecords.concat([p for p in parts if isinstance(p, EncodedRecords)]))
    return sends
