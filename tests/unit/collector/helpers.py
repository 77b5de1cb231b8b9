"""Test doubles for the collector's seams: a sink that keeps batches, a path-only enricher."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collector.config import CollectorConfig
from collector.enrichment import FilePolicy, PathMeta
from collector.filestate import FileState
from collector.fingerprint import head_fingerprint
from collector.paths import EMPTY_META
from collector.pipeline import Collector
from collector.reader import FdSource
from collector.tailer import Tailer, TailerSettings
from podlog.config import CommonConfig
from podlog.errors import SpoolFullError
from podlog.protocols import Batch
from podlog.record import Record
from tests.fixtures.servers import wait_until as wait_until  # re-exported for the collector's tests

HEX64 = "0123456789abcdef" * 4


class ListSink:
    """Keeps every batch; optionally refuses the first ``refuse`` appends as spool-full."""

    def __init__(self, refuse: int = 0) -> None:
        self.batches: list[Batch] = []
        self.refuse = refuse
        self.changed = asyncio.Event()

    async def append(self, batch: Batch) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            raise SpoolFullError("spool full (test)")
        self.batches.append(batch)
        self.changed.set()

    @property
    def records(self) -> list[Record]:
        return [r for b in self.batches for r in b.records]

    def messages(self, path: str | None = None) -> list[str]:
        return [r["message"] for r in self.records
                if path is None or r["log"]["file"]["path"] == path]


class StaticEnricher:
    """Policy from a table by container name; enrich marks records as path metadata."""

    def __init__(self, policies: dict[str, FilePolicy] | None = None) -> None:
        self.policies = policies or {}

    async def wait_ready(self) -> None:
        return None

    def held(self, meta: PathMeta, now: float) -> bool:
        return False

    def policy(self, meta: PathMeta) -> FilePolicy:
        return self.policies.get(meta.container, FilePolicy())

    def enrich(self, meta: PathMeta, records: list[Record]) -> None:
        for record in records:
            record["podlog"] = {**record["podlog"], "metadata": "path"}


def make_collector(
    tmp_path: Path, sink: Any, *, include: list[str] | None = None,
    enricher: StaticEnricher | None = None, **overrides: Any,
) -> Collector:
    """A collector over ``tmp_path/containers/*.log`` with fast timers."""
    settings: dict[str, Any] = {
        "include": include or [str(tmp_path / "containers" / "*.log")],
        "scan_interval_seconds": 0.05,
        "poll_interval_seconds": 0.02,
        "rotate_wait_seconds": 0.2,
        "checkpoint_interval_seconds": 0.05,
        "multiline_flush_seconds": 0.2,
        "gc_gen0_threshold": 0,  # leave the test process's GC alone
    }
    settings.update(overrides)
    common = CommonConfig(cluster="test", node_name="node-1", state_dir=str(tmp_path / "state"),
                          http_listen="")
    return Collector(common, CollectorConfig(**settings), sink=sink,
                     enricher=enricher or StaticEnricher())


def container_path(directory: Path, pod: str = "web-1", ns: str = "shop",
                   container: str = "app") -> Path:
    """``<dir>/<pod>_<ns>_<container>-<64 hex>.log``."""
    return directory / f"{pod}_{ns}_{container}-{HEX64}.log"


def cri_line(i: int, message: str | None = None, stream: str = "stdout", tag: str = "F") -> bytes:
    """A CRI line with a distinct timestamp per ``i``."""
    text = message if message is not None else f"line {i}"
    return f"2026-11-27T00:00:{i // 1000 % 60:02d}.{i % 1000:03d}000000Z {stream} {tag} {text}\n".encode()


def open_tailer(
    path: Path, settings: TailerSettings, *, identity: str = "i", kubernetes: Mapping[str, Any] | None = None,
    fmt: str | None = None,
) -> Tailer:
    """A tailer over ``path`` from offset 0, outside any tracker."""
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    file = FileState(path=str(path), real_path=str(path), source=FdSource(fd), dev=st.st_dev, ino=st.st_ino,
                     identity=identity, head=head_fingerprint(fd, final=True), generation=0, offset=0,
                     size=st.st_size, meta=EMPTY_META, key="test")
    return Tailer(settings=settings, file=file, kubernetes=kubernetes if kubernetes is not None else {}, fmt=fmt)
