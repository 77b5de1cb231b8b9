"""The collector reads real files into a sink: the path the agent end-to-end test uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.collector.helpers import (
    ListSink,
    container_path,
    cri_line,
    make_collector,
    wait_until,
)


async def test_cri_file_of_1000_lines_arrives_in_order_with_path_metadata(tmp_path: Path) -> None:
    """Every line of a CRI file arrives once, in order, with namespace/pod/container."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    path.write_bytes(b"".join(cri_line(i) for i in range(1000)))
    sink = ListSink()
    collector = make_collector(tmp_path, sink)
    await collector.start()
    runner = asyncio.create_task(collector.run())
    await wait_until(lambda: len(sink.records) >= 1000)
    await collector.stop()
    await runner
    assert sink.messages() == [f"line {i}" for i in range(1000)]
    record = sink.records[0]
    assert record["kubernetes"]["namespace"] == "shop"
    assert record["kubernetes"]["pod"]["name"] == "web-1"
    assert record["kubernetes"]["container"]["name"] == "app"
    assert record["log"]["file"]["path"] == str(path)
    assert record["stream"] == "stdout"
    last_mark = sink.batches[-1].marks
    assert [m.offset for m in last_mark.values()] == [path.stat().st_size]
