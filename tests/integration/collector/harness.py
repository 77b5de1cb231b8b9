"""Run a collector over real files inside a test: start, wait for records, stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from collector.pipeline import Collector
from podlog.protocols import Batch
from tests.unit.collector.helpers import ListSink, StaticEnricher, make_collector, wait_until


class AckingSink(ListSink):
    """Keeps batches and acknowledges them at once, as a shipper would after Kafka acks."""

    def __init__(self, refuse: int = 0, *, ack: bool = True) -> None:
        super().__init__(refuse)
        self.listener: Any = None
        self.ack = ack

    async def append(self, batch: Batch) -> None:
        await super().append(batch)
        if self.ack and self.listener is not None:
            self.listener.acknowledged(batch.marks)


@asynccontextmanager
async def running(
    tmp_path: Path, sink: AckingSink | None = None, *, enricher: StaticEnricher | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Collector, AckingSink]]:
    """A started, running collector; stopped (and its task awaited) on exit."""
    sink = sink if sink is not None else AckingSink()
    collector = make_collector(tmp_path, sink, enricher=enricher, **overrides)
    sink.listener = collector.checkpoints
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        yield collector, sink
    finally:
        await collector.stop()
        await task


async def delivered(sink: ListSink, count: int, timeout: float = 15.0) -> list[str]:
    """Wait until the sink holds ``count`` records; their messages."""
    await wait_until(lambda: len(sink.records) >= count, timeout)
    return sink.messages()


def lines(prefix: str, start: int, stop: int) -> list[str]:
    """``prefix-<i>`` for i in [start, stop)."""
    return [f"{prefix}-{i}" for i in range(start, stop)]


def write_cri(path: Path, messages: list[str], mode: str = "ab") -> None:
    """Append CRI lines for ``messages``."""
    data = b"".join(
        f"2026-11-27T00:00:00.{i:09d}Z stdout F {m}\n".encode() for i, m in enumerate(messages)
    )
    with path.open(mode) as f:
        f.write(data)


def write_docker(path: Path, messages: list[str], mode: str = "ab") -> None:
    """Append Docker json-file lines for ``messages``."""
    import orjson

    data = b"".join(
        orjson.dumps({"log": m + "\n", "stream": "stdout", "time": "2026-11-27T00:00:00.5Z"})
        + b"\n"
        for m in messages
    )
    with path.open(mode) as f:
        f.write(data)
