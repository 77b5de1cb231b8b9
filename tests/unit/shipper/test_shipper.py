"""The Shipper service with fault-injecting transports: retries, order, acks and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from podlog.errors import TransportError
from podlog.lifecycle import Health
from podlog.metrics import sample
from podlog.record import Record
from shipper.config import ShipperConfig, SpoolConfig
from shipper.shipper import Shipper
from shipper.spool import Spool
from tests.unit.shipper.helpers import FlakyTransport, RecordingAcks, batch

FAST = ShipperConfig(
    retry_initial_seconds=0.01, retry_max_seconds=0.05, drain_timeout_seconds=2.0
)


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


class _Running:
    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Shipper:
        await self.shipper.start()
        self.task = asyncio.create_task(self.shipper.run())
        return self.shipper

    async def __aexit__(self, *exc: object) -> None:
        await self.shipper.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


def _shipper(
    tmp_path: Path, transport: object, config: ShipperConfig = FAST
) -> tuple[Shipper, Spool, RecordingAcks, Health]:
    spool = Spool(SpoolConfig(), tmp_path / "spool")
    acks = RecordingAcks()
    health = Health()
    shipper = Shipper(config, spool, transport, acks=acks, health=health)  # type: ignore[arg-type]
    return shipper, spool, acks, health


async def test_delivers_in_spool_order_then_acknowledges_marks(tmp_path: Path) -> None:
    """Every spooled record reaches the transport in order and checkpoints follow."""
    transport = FlakyTransport()
    shipper, spool, acks, _ = _shipper(tmp_path, transport)
    async with _Running(shipper):
        for i in range(10):
            await spool.append(batch("c", i * 5, 5))
        await _until(lambda: acks.offset("p:c:x") == 50)
    assert [r["log"]["offset"] for r in transport.received] == list(range(50))
    offsets = [c["p:c:x"].offset for c in acks.calls]
    assert offsets == sorted(offsets)
    assert spool.records == 0


async def test_retriable_failures_are_retried_without_loss_or_early_ack(tmp_path: Path) -> None:
    """Failed sends are retried with backoff; checkpoints move only after success."""
    transport = FlakyTransport(failures=3)
    shipper, spool, acks, _ = _shipper(tmp_path, transport)
    before = sample("podlog_shipper_send_errors_total", {"transport": "fake", "reason": "retriable"})
    await spool.append(batch("c", 0, 5))
    async with _Running(shipper):
        await _until(lambda: acks.offset("p:c:x") == 5)
    assert transport.attempts == 4
    assert [r["log"]["offset"] for r in transport.received] == list(range(5))
    assert acks.calls == [acks.calls[0]]  # acknowledged once, after the success
    after = sample("podlog_shipper_send_errors_total", {"transport": "fake", "reason": "retriable"})
    assert after == before + 3


async def test_non_retriable_errors_keep_records_and_keep_trying(tmp_path: Path) -> None:
    """A non-retriable send error never drops records: they stay spooled and are retried."""
    transport = FlakyTransport(failures=2, retriable=False)
    shipper, spool, acks, _ = _shipper(tmp_path, transport)
    await spool.append(batch("c", 0, 3))
    async with _Running(shipper):
        await _until(lambda: acks.offset("p:c:x") == 3)
    assert len(transport.received) == 3


async def test_backlog_from_before_a_restart_is_sent_first(tmp_path: Path) -> None:
    """Batches spooled before a restart are delivered, in order, before new ones."""
    spool = Spool(SpoolConfig(), tmp_path / "spool")
    for i in range(3):
        await spool.append(batch("c", i * 2, 2))
    await spool.close()
    transport = FlakyTransport()
    shipper, spool, acks, _ = _shipper(tmp_path, transport)
    async with _Running(shipper):
        await spool.append(batch("c", 6, 2))
        await _until(lambda: acks.offset("p:c:x") == 8)
    assert [r["log"]["offset"] for r in transport.received] == list(range(8))


class HangingTransport(FlakyTransport):
    """A transport whose sends never complete."""

    async def send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        await asyncio.Event().wait()


async def test_stop_gives_up_after_the_drain_timeout_and_keeps_the_spool(tmp_path: Path) -> None:
    """With a hanging transport, stop returns after the drain timeout and nothing is acked or lost."""
    config = ShipperConfig(retry_initial_seconds=0.01, drain_timeout_seconds=0.3)
    transport = HangingTransport()
    shipper, spool, acks, _ = _shipper(tmp_path, transport, config)
    await spool.append(batch("c", 0, 4))
    await shipper.start()
    task = asyncio.create_task(shipper.run())
    await _until(lambda: transport.attempts == 1)
    started = time.monotonic()
    await shipper.stop()
    assert time.monotonic() - started < 2.0
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert task.cancelled()
    assert acks.calls == []
    assert transport.stopped == 1
    reopened = Spool(SpoolConfig(), tmp_path / "spool")
    assert reopened.records == 4
    await reopened.close()


async def test_stop_drains_what_is_spooled(tmp_path: Path) -> None:
    """On stop, batches already spooled are delivered before the transport closes."""
    transport = FlakyTransport(failures=2)
    shipper, spool, acks, _ = _shipper(tmp_path, transport)
    await shipper.start()
    task = asyncio.create_task(shipper.run())
    for i in range(5):
        await spool.append(batch("c", i, 1))
    await shipper.stop()
    await asyncio.wait_for(task, 5)
    assert acks.offset("p:c:x") == 5
    assert len(transport.received) == 5


async def test_stop_twice_is_harmless(tmp_path: Path) -> None:
    """stop() is idempotent."""
    transport = FlakyTransport()
    shipper, _, _, _ = _shipper(tmp_path, transport)
    await shipper.start()
    await shipper.stop()
    await shipper.stop()
    assert transport.stopped == 1


class UnreachableAtStart(FlakyTransport):
    """Start fails (retriable) a few times, like a broker that is still down."""

    def __init__(self, start_failures: int) -> None:
        super().__init__()
        self.start_failures = start_failures

    async def start(self) -> None:
        self.started += 1
        if self.start_failures > 0:
            self.start_failures -= 1
            raise TransportError("cannot reach (shipper.kafka.bootstrap_servers)", retriable=True)


async def test_unreachable_transport_at_start_is_retried_while_spooling(tmp_path: Path) -> None:
    """A retriable start failure does not stop the service; delivery begins once it connects."""
    transport = UnreachableAtStart(start_failures=3)
    shipper, spool, acks, _ = _shipper(tmp_path, transport)
    async with _Running(shipper):
        await spool.append(batch("c", 0, 2))
        await _until(lambda: acks.offset("p:c:x") == 2)
    assert transport.started == 4


async def test_non_retriable_start_failure_is_raised(tmp_path: Path) -> None:
    """A non-retriable start failure (bad password) propagates to stop the process."""

    class BadLogin(FlakyTransport):
        async def start(self) -> None:
            raise TransportError("rejected (shipper.kafka.sasl_password)", retriable=False)

    shipper, _, _, _ = _shipper(tmp_path, BadLogin())
    with pytest.raises(TransportError, match="sasl_password"):
        await shipper.start()


async def test_readiness_reports_a_full_spool_and_long_failures(tmp_path: Path) -> None:
    """Readiness names a full spool, and sends failing longer than unready_after_seconds."""
    config = ShipperConfig(
        retry_initial_seconds=0.01,
        retry_max_seconds=0.02,
        unready_after_seconds=0.05,
        drain_timeout_seconds=0.1,
        spool=SpoolConfig(max_bytes=4096, segment_bytes=4096),
    )
    transport = FlakyTransport(failures=10_000)
    spool = Spool(config.spool, tmp_path / "spool")
    health = Health()
    shipper = Shipper(config, spool, transport, acks=RecordingAcks(), health=health)
    assert health.not_ready() == {}
    await spool.append(batch("c", 0, 2))
    async with _Running(shipper):
        await _until(lambda: "failing" in health.not_ready().get("shipper", ""))
        with pytest.raises(Exception, match="spool holds"):
            for i in range(100):
                await spool.append(batch("c", 2 + i, 5))
        assert "spool full" in health.not_ready()["shipper"]


class FirstSendFails(FlakyTransport):
    """Fails its first send only after the second one was handed over (two in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.second_started = asyncio.Event()
        self.calls = 0

    async def send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        self.calls += 1
        if self.calls == 1:
            await self.second_started.wait()
            raise TransportError("first send lost", retriable=True)
        if self.calls == 2:
            self.second_started.set()
        self.received.extend(records)


async def test_a_failure_with_two_sends_in_flight_redelivers_both_in_order(tmp_path: Path) -> None:
    """When the older of two in-flight sends fails, both are sent again in order and acks stay ordered."""
    config = ShipperConfig(
        retry_initial_seconds=0.01, max_send_records=5, max_in_flight_sends=2, drain_timeout_seconds=2
    )
    transport = FirstSendFails()
    shipper, spool, acks, _ = _shipper(tmp_path, transport, config)
    for i in range(2):
        await spool.append(batch("c", i * 5, 5))
    async with _Running(shipper):
        await _until(lambda: acks.offset("p:c:x") == 10)
    offsets = [r["log"]["offset"] for r in transport.received]
    assert offsets == [5, 6, 7, 8, 9, *range(10)]  # the second send landed, then both again
    assert [c["p:c:x"].offset for c in acks.calls] == [5, 10]


async def test_a_slow_acknowledgement_does_not_hold_up_the_next_send(tmp_path: Path) -> None:
    """While the spool releases one send (slowly), the next is already handed over; the
    acknowledgements still happen once each, in spool order, after their sends, and the
    spool lets go of a batch only after the checkpoints moved past it."""
    config = ShipperConfig(max_send_records=5, max_in_flight_sends=1, drain_timeout_seconds=2)
    transport = FlakyTransport()
    shipper, spool, acks, _ = _shipper(tmp_path, transport, config)
    release = asyncio.Event()
    real_ack = spool.ack

    async def slow_ack(upto_seq: int) -> None:
        await release.wait()
        await real_ack(upto_seq)

    spool.ack = slow_ack  # type: ignore[method-assign]
    for i in range(3):
        await spool.append(batch("c", i * 5, 5))
    async with _Running(shipper):
        await _until(lambda: len(transport.received) == 15)  # the spool has released nothing yet
        assert spool.records == 15
        await _until(lambda: acks.offset("p:c:x") == 15)
        release.set()
        await _until(lambda: acks.offset("p:c:x") == 15)
    assert [r["log"]["offset"] for r in transport.received] == list(range(15))
    assert [c["p:c:x"].offset for c in acks.calls] == [5, 10, 15]
    assert spool.records == 0


async def test_a_failed_acknowledgement_ends_the_run_even_when_idle(tmp_path: Path) -> None:
    """An acknowledgement that raises is not lost in its task: run() fails with it."""
    transport = FlakyTransport()
    shipper, spool, acks, _ = _shipper(tmp_path, transport)

    async def broken_ack(upto_seq: int) -> None:
        raise OSError("state directory gone")

    spool.ack = broken_ack  # type: ignore[method-assign]
    await spool.append(batch("c", 0, 5))
    await shipper.start()
    with pytest.raises(OSError, match="state directory gone"):
        await asyncio.wait_for(shipper.run(), 5)
    await shipper.stop()
    assert [c["p:c:x"].offset for c in acks.calls] == [5]  # the checkpoint moved; the spool keeps the batch
