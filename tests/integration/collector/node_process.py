"""A collector of node logs in its own process, for kill -9 tests: journal and host files.

    python -m tests.integration.collector.node_process STATE_DIR OUT_FILE JOURNAL_DIR HOST_GLOB

Each batch is appended to OUT_FILE as JSON lines (message, event id, source)
and fsynced before its marks are acknowledged (file offsets and the journal
cursor), like a spool plus an instant transport.  Runs until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from collector.config import CollectorConfig
from collector.pipeline import Collector
from podlog.config import CommonConfig
from podlog.lifecycle import run_services
from podlog.protocols import Batch
from tests.unit.collector.helpers import StaticEnricher


class FileSink:
    """Appends records to a file, fsyncs, then acknowledges."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.collector: Collector | None = None

    async def append(self, batch: Batch) -> None:
        data = b"".join(
            orjson.dumps({"message": r["message"], "id": r["event"]["id"],
                          "source": r["log"].get("source")}) + b"\n"
            for r in batch.records
        )
        if data:
            os.write(self.fd, data)
            os.fsync(self.fd)
        assert self.collector is not None
        self.collector.acks.acknowledged(batch.marks)


async def main(state: str, out: str, journal: str, host_glob: str) -> None:
    sink = FileSink(out)
    common = CommonConfig(cluster="kill", node_name="node-1", state_dir=state, http_listen="")
    config = CollectorConfig(include=[], scan_interval_seconds=0.05, poll_interval_seconds=0.02,
                             rotate_wait_seconds=0.2, checkpoint_interval_seconds=0.05,
                             batch_max_records=50, read_budget_bytes=8192, use_inotify=False,
                             journal_enabled=True, journal_directory=journal,
                             host_files_enabled=True, host_files=[host_glob])
    collector = Collector(common, config, sink=sink, enricher=StaticEnricher())
    sink.collector = collector
    await run_services([collector], grace_seconds=10)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
