"""inotify hints bring lines in fast; without them the stat pass and polling still do."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.collector.harness import delivered, lines, running, write_cri
from tests.unit.collector.helpers import container_path


async def test_inotify_hint_delivers_an_appended_line_long_before_the_next_poll(
    tmp_path: Path,
) -> None:
    """With polling every 5 s, an appended line still arrives in well under a second."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 1))
    async with running(tmp_path, scan_interval_seconds=30, poll_interval_seconds=5) as (
        collector, sink,
    ):
        await delivered(sink, 1)
        assert collector._watcher is not None
        started = time.monotonic()
        write_cri(path, lines("a", 1, 2))
        await delivered(sink, 2, timeout=4)
        assert time.monotonic() - started < 1.0


async def test_inotify_hint_opens_a_new_file_before_the_next_stat_pass(tmp_path: Path) -> None:
    """A file created after start is found from the directory event, not the 30 s pass."""
    logs = tmp_path / "containers"
    logs.mkdir()
    async with running(tmp_path, scan_interval_seconds=30, poll_interval_seconds=5) as (_, sink):
        started = time.monotonic()
        write_cri(container_path(logs), lines("n", 0, 3))
        await delivered(sink, 3, timeout=4)
        assert time.monotonic() - started < 1.0


async def test_polling_alone_reads_new_files_and_lines(tmp_path: Path) -> None:
    """Without inotify, the stat pass finds files and polling reads what they gain."""
    logs = tmp_path / "containers"
    logs.mkdir()
    async with running(tmp_path, use_inotify=False) as (collector, sink):
        assert collector._watcher is None
        path = container_path(logs)
        write_cri(path, lines("p", 0, 3))
        await delivered(sink, 3)
        write_cri(path, lines("p", 3, 5))
        assert await delivered(sink, 5) == lines("p", 0, 5)
