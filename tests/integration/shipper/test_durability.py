"""Nothing is lost: broker outages, kill -9 of the agent, and a full disk."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podlog.errors import SpoolFullError
from podlog.lifecycle import Health
from podlog.protocols import Batch
from podlog.record import Record, stream_key
from shipper.config import KafkaProducerConfig, ShipperConfig, SpoolConfig
from shipper.kafka import KafkaTransport
from shipper.segment import SegmentWriter
from shipper.shipper import Shipper
from shipper.spool import Spool
from tests.fixtures.servers import DurableKafka, free_port
from tests.integration.shipper.readback import read_topic
from tests.integration.shipper.running import running, unique_topic, until
from tests.unit.shipper.helpers import RecordingAcks, batch, record

REPO = Path(__file__).resolve().parents[3]


class Feeder:
    """Plays the collector: appends batches of two streams, pausing while the spool is full."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.appended: list[Record] = []
        self.paused = 0
        self.stop = asyncio.Event()
        self.batches = 0

    async def run(self, *, limit: int = 1_000_000, pace: float = 0.01) -> None:
        n = 0
        while not self.stop.is_set() and n < limit:
            stream = ("app", "sidecar")[n % 2]
            b = batch(stream, (n // 2) * 5, 5)
            try:
                await self.spool.append(b)
            except SpoolFullError:
                self.paused += 1  # the collector pauses its tailers and tries again
                await asyncio.sleep(0.05)
                continue
            self.appended.extend(b.records)
            n += 1
            self.batches = n
            await asyncio.sleep(pace)


def _assert_all_delivered_in_order(bootstrap: str, topic: str, appended: list[Record]) -> None:
    content = read_topic(bootstrap, topic, expect_ids=len(appended), timeout=60)
    assert {r["event"]["id"] for r in appended} <= content.ids()
    for key in {stream_key(r) for r in appended}:
        expected = [r["log"]["offset"] for r in appended if stream_key(r) == key]
        assert content.first_seen_offsets(key) == expected


@pytest.mark.slow
async def test_broker_down_for_30_seconds_loses_nothing(
    durable_kafka: DurableKafka, tmp_path: Path
) -> None:
    """The broker is killed for 30 s mid-stream: the spool fills, tailing pauses, and after
    the restart every record arrives, each stream in order."""
    topic = unique_topic("outage")
    config = ShipperConfig(
        kafka=KafkaProducerConfig(
            bootstrap_servers=durable_kafka.bootstrap, topic=topic, request_timeout_ms=3000
        ),
        spool=SpoolConfig(max_bytes=96 << 10, segment_bytes=16 << 10),
        retry_initial_seconds=0.1,
        retry_max_seconds=1.0,
    )
    spool = Spool(config.spool, tmp_path / "spool")
    acks = RecordingAcks()
    shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=acks, health=Health())
    feeder = Feeder(spool)
    async with running(shipper):
        feeding = asyncio.create_task(feeder.run())
        await until(lambda: shipper.delivered_seq >= 20)
        durable_kafka.stop_broker()
        down_at = time.monotonic()
        await until(spool.is_full, timeout=30)
        assert shipper.delivered_seq < feeder.batches
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        await asyncio.to_thread(durable_kafka.start_broker)
        await until(lambda: not spool.is_full(), timeout=60)
        feeder.stop.set()
        await feeding
        await until(lambda: shipper.delivered_seq == spool.last_seq, timeout=60)
    assert feeder.paused > 0
    for stream in ("app", "sidecar"):
        last = [r for r in feeder.appended if r["log"]["file"]["identity"] == f"p:{stream}:x"][-1]
        assert acks.offset(f"p:{stream}:x") == last["log"]["offset"] + 1
    _assert_all_delivered_in_order(durable_kafka.bootstrap, topic, feeder.appended)


def _appended_lines(stdout: list[str]) -> int:
    counts = [int(line.split()[1]) for line in stdout if line.startswith("appended ")]
    return max(counts, default=0)


async def test_kill_9_with_records_in_the_spool_then_restart_delivers_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """An agent killed with -9 mid-append leaves a spool that the next run delivers in full."""
    topic = unique_topic("kill9")
    directory = tmp_path / "spool"
    unreachable = f"127.0.0.1:{free_port()}"  # so the records stay in the spool
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.shipper.spool_agent", str(directory),
         unreachable, topic],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if _appended_lines(lines[-1:]) >= 60:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        lines.extend(proc.stdout.read().splitlines())
        proc.stdout.close()
    appended = _appended_lines(lines)
    assert appended >= 60

    config = ShipperConfig(kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic))
    spool = Spool(config.spool, directory)
    assert spool.records >= appended * 10
    acks = RecordingAcks()
    shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=acks, health=Health())
    async with running(shipper):
        await until(lambda: spool.records == 0)
    expected = [record("app", i) for i in range(appended * 10)]
    content = read_topic(kafka_bootstrap, topic, expect_ids=len(expected), timeout=30)
    assert {r["event"]["id"] for r in expected} <= content.ids()
    assert content.first_seen_offsets(stream_key(expected[0]))[: len(expected)] == list(
        range(len(expected))
    )
    assert acks.offset("p:app:x") >= appended * 10


async def test_disk_full_pauses_and_recovers_without_loss(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC at the file layer pauses the feeder; once space returns everything is delivered."""
    topic = unique_topic("enospc")
    config = ShipperConfig(kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic))
    spool = Spool(config.spool, tmp_path / "spool")
    shipper = Shipper(
        config, spool, KafkaTransport(config.kafka), acks=RecordingAcks(), health=Health()
    )
    disk = {"full": False, "refused": 0}
    real_write = SegmentWriter._write_all

    def write(self: SegmentWriter, data: bytes) -> None:
        if disk["full"]:
            disk["refused"] += 1
            real_write(self, data[:7])  # the disk fills mid-write
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, data)

    monkeypatch.setattr(SegmentWriter, "_write_all", write)
    feeder = Feeder(spool)
    async with running(shipper):
        feeding = asyncio.create_task(feeder.run(limit=120, pace=0.002))
        await until(lambda: feeder.batches >= 30)
        disk["full"] = True
        await until(lambda: feeder.paused >= 5)
        assert spool.is_full()
        disk["full"] = False
        await feeding
        await until(lambda: shipper.delivered_seq == spool.last_seq)
    assert disk["refused"] >= 5
    assert len(feeder.appended) == 600
    _assert_all_delivered_in_order(kafka_bootstrap, topic, feeder.appended)


async def test_marks_only_batches_move_checkpoints_through_kafka(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A batch of marks without records is acknowledged in order without sending anything."""
    config = ShipperConfig(
        kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=unique_topic("marks"))
    )
    spool = Spool(config.spool, tmp_path / "spool")
    acks = RecordingAcks()
    shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=acks, health=Health())
    async with running(shipper):
        await spool.append(batch("c", 0, 3))
        await spool.append(Batch([], batch("c", 3, 2).marks))
        await until(lambda: acks.offset("p:c:x") == 5)
    assert [c["p:c:x"].offset for c in acks.calls if "p:c:x" in c][-1] == 5
