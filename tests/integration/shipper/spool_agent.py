"""A minimal agent process for kill -9 tests: appends batches and ships them.

Usage: ``python -m tests.integration.shipper.spool_agent SPOOL_DIR BOOTSTRAP TOPIC``.
Prints ``appended <n>`` after each append returned (so the batch is fsynced),
and keeps going until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from podlog.lifecycle import Health
from shipper.config import KafkaProducerConfig, ShipperConfig
from shipper.kafka import KafkaTransport
from shipper.shipper import Shipper
from shipper.spool import Spool
from tests.unit.shipper.helpers import RecordingAcks, batch


async def main(directory: str, bootstrap: str, topic: str) -> None:
    config = ShipperConfig(
        kafka=KafkaProducerConfig(bootstrap_servers=bootstrap, topic=topic, connect_timeout_seconds=2),
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
    )
    spool = Spool(config.spool, Path(directory))
    shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=RecordingAcks(), health=Health())
    await shipper.start()
    runner = asyncio.create_task(shipper.run())
    n = 0
    while not runner.done():
        await spool.append(batch("app", n * 10, 10))
        n += 1
        sys.stdout.write(f"appended {n}\n")
        sys.stdout.flush()
        await asyncio.sleep(0.002)
    await runner


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
