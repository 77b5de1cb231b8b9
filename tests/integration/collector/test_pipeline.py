"""Decoding, joining and merging through the whole pipeline, on real files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from collector.enrichment import FilePolicy
from podlog.errors import SpoolFullError
from podlog.metrics import sample
from podlog.protocols import Batch
from tests.integration.collector.harness import delivered, running
from tests.unit.collector.helpers import StaticEnricher, container_path, cri_line, make_collector, wait_until

TIME = "2026-11-27T00:00:00.5Z"


def _docker(log: str, stream: str = "stdout") -> bytes:
    return orjson.dumps({"log": log, "stream": stream, "time": TIME}) + b"\n"


async def test_bad_input_is_counted_and_reading_goes_on(tmp_path: Path) -> None:
    """Invalid JSON, invalid UTF-8, NUL padding and an over-long line never stop a file."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    data = (
        _docker("first\n")
        + b'{"log": "broken\n'
        + b'{"log":"bad \xff utf8\\n","stream":"stdout","time":"' + TIME.encode() + b'"}\n'
        + b"\x00" * 100 + b"\n"
        + _docker("x" * 5000 + "\n")
        + _docker("last\n")
    )
    path.write_bytes(data)
    invalid_json = sample("podlog_collector_lines_rejected_total", {"reason": "invalid_json"})
    truncated = sample("podlog_collector_lines_truncated_total")
    async with running(tmp_path, max_line_bytes=1000) as (_, sink):
        await delivered(sink, 5)
        assert sink.messages()[-1] == "last"
    messages = sink.messages()
    assert messages[0] == "first"
    assert messages[1] == '{"log": "broken'
    assert messages[2] == "bad \ufffd utf8"
    assert sink.records[3]["log"]["truncated"] is True
    assert len(messages) == 5
    assert sample("podlog_collector_lines_rejected_total", {"reason": "invalid_json"}) >= (
        invalid_json + 1
    )
    assert sample("podlog_collector_lines_truncated_total") == truncated + 1


async def test_docker_16k_split_lines_join_per_stream(tmp_path: Path) -> None:
    """Docker's pieces of a long line join back, with an stderr line interleaved between."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    long_line = "y" * 40_000
    path.write_bytes(
        _docker(long_line[:16384]) + _docker("interleaved\n", "stderr")
        + _docker(long_line[16384:32768]) + _docker(long_line[32768:] + "\n")
    )
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 2)
    by_stream = {r["stream"]: r for r in sink.records}
    assert by_stream["stdout"]["message"] == long_line
    assert by_stream["stdout"]["log"]["offset"] == 0
    assert by_stream["stderr"]["message"] == "interleaved"


async def test_multiline_from_the_pod_policy_merges_a_java_trace(tmp_path: Path) -> None:
    """A container whose policy says java gets its stack trace as one record."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs, container="api")
    trace = ["ERROR request failed", "java.lang.IllegalStateException: boom",
             "\tat com.example.A.b(A.java:1)", "\tat com.example.C.d(C.java:2)"]
    path.write_bytes(b"".join(
        f"2026-11-27T00:00:0{i}.1Z stdout F {line}\n".encode()
        for i, line in enumerate([*trace, "INFO next"])
    ))
    enricher = StaticEnricher({"api": FilePolicy(multiline="java")})
    async with running(tmp_path, enricher=enricher) as (_, sink):
        messages = await delivered(sink, 2)  # the last event flushes after the timeout
    assert messages == ["\n".join(trace), "INFO next"]
    assert sink.records[0]["log"]["offset"] == 0


async def test_unparseable_path_is_read_with_empty_metadata_and_counted(tmp_path: Path) -> None:
    """A file whose name is no container log is still read; its records are counted."""
    logs = tmp_path / "containers"
    logs.mkdir()
    (logs / "syslog.log").write_bytes(b"plain text line\n")
    before = sample("podlog_collector_unattributed_records_total")
    async with running(tmp_path) as (_, sink):
        assert await delivered(sink, 1) == ["plain text line"]
    assert sink.records[0]["kubernetes"]["namespace"] == ""
    assert sample("podlog_collector_unattributed_records_total") == before + 1


class _RefusingFirstFile:
    """A sink that refuses, as a full spool does, every batch holding ``refused``'s lines."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.batches: list[object] = []
        self.tried = 0
        self.listener = None

    async def append(self, batch: Batch) -> None:
        self.tried += 1
        if any(r["log"]["file"]["path"] == self.refused for r in batch.records):
            raise SpoolFullError("spool full (test)")
        self.batches.append(batch)


async def test_stopping_after_a_refused_batch_leaves_every_later_batch_for_the_restart(tmp_path: Path) -> None:
    """A stop while the spool refuses gives the refused batch up, and every batch queued behind it:
    appended, a later one would move a file's spooled mark past lines that were never spooled."""
    logs = tmp_path / "containers"
    logs.mkdir()
    first, second = container_path(logs, pod="a"), container_path(logs, pod="b")
    first.write_bytes(b"".join(cri_line(i) for i in range(5)))
    sink = _RefusingFirstFile(str(first))
    collector = make_collector(tmp_path, sink, batch_max_records=5)
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        await wait_until(lambda: sink.tried >= 1, 10, "the first file's batch refused")
        second.write_bytes(b"".join(cri_line(i) for i in range(5)))
        await wait_until(lambda: collector._queue.qsize() >= 1, 10, "the second file's batch queued behind it")
    finally:
        await collector.stop()
        await task
    assert sink.batches == []
    assert all(entry.spooled == 0 for entry in collector.checkpoints.entries.values())
