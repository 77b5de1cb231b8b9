"""Real files, real rotations: every written line is delivered once, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from podlog.metrics import sample
from tests.integration.collector.harness import (
    AckingSink,
    delivered,
    lines,
    running,
    write_cri,
    write_docker,
)
from tests.unit.collector.helpers import HEX64, container_path, wait_until

POD_DIR = "shop_web-1_5f0c1b1e-8a2b-4c1e-9d0f-1234567890ab"


def _pods(tmp_path: Path) -> Path:
    directory = tmp_path / "pods" / POD_DIR / "app"
    directory.mkdir(parents=True)
    return directory


async def test_kubelet_rename_rotation_reads_old_file_to_its_end_then_the_new(
    tmp_path: Path,
) -> None:
    """0.log -> 0.log.<ts> plus a new 0.log: the old file's unread tail comes first, no gap."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 100))
    include = [str(tmp_path / "pods" / "*" / "*" / "*.log")]
    async with running(tmp_path, include=include) as (_, sink):
        await delivered(sink, 100)
        write_cri(live, lines("a", 100, 150))  # written just before the rename: still unread
        live.rename(directory / "0.log.20261127-004500")
        write_cri(live, lines("b", 0, 100))
        messages = await delivered(sink, 250)
    assert messages == lines("a", 0, 150) + lines("b", 0, 100)
    assert sink.records[-1]["kubernetes"]["container"]["restart_count"] == 0


async def test_docker_json_file_rotation_to_dot_one(tmp_path: Path) -> None:
    """``<id>-json.log`` -> ``.1`` and a new ``-json.log``: both read fully, in order."""
    directory = tmp_path / "docker" / HEX64
    directory.mkdir(parents=True)
    live = directory / f"{HEX64}-json.log"
    write_docker(live, lines("a", 0, 100))
    include = [str(tmp_path / "docker" / "*" / "*-json.log")]
    async with running(tmp_path, include=include) as (_, sink):
        await delivered(sink, 100)
        write_docker(live, lines("a", 100, 130))
        live.rename(directory / f"{HEX64}-json.log.1")
        write_docker(live, lines("b", 0, 70))
        messages = await delivered(sink, 200)
    assert messages == lines("a", 0, 130) + lines("b", 0, 70)


async def test_copytruncate_rereads_new_content_once(tmp_path: Path) -> None:
    """Truncated in place: new content is read from 0 in generation 1, old lines not repeated."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 100))
    before = sample("podlog_collector_file_events_total", {"event": "truncated"})
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 100)
        with path.open("r+b") as f:
            f.truncate(0)
        write_cri(path, lines("b", 0, 20))
        messages = await delivered(sink, 120)
    assert messages == lines("a", 0, 100) + lines("b", 0, 20)
    assert {r["log"]["generation"] for r in sink.records[100:]} == {1}
    assert sample("podlog_collector_file_events_total", {"event": "truncated"}) == before + 1


async def test_copytruncate_that_regrows_past_the_offset_is_noticed_by_its_head(
    tmp_path: Path,
) -> None:
    """Truncated and rewritten longer than before between two passes: the new head tells."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 10))
    async with running(tmp_path, scan_interval_seconds=0.05, use_inotify=False,
                       poll_interval_seconds=0.5) as (_, sink):
        await delivered(sink, 10)
        with path.open("r+b") as f:
            f.truncate(0)
        write_cri(path, lines("b", 0, 300), mode="wb")
        messages = await delivered(sink, 310)
    assert messages == lines("a", 0, 10) + lines("b", 0, 300)


async def test_deleted_file_is_drained_through_the_open_descriptor(tmp_path: Path) -> None:
    """A file deleted right after it was opened is still read to its end, then closed."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 20_000))
    closed = sample("podlog_collector_file_events_total", {"event": "closed"})
    async with running(tmp_path, read_budget_bytes=4096) as (collector, sink):
        path.unlink()
        messages = await delivered(sink, 20_000, timeout=30)
        await wait_until(lambda: not collector.tracker.tailers)
    assert messages == lines("a", 0, 20_000)
    assert sample("podlog_collector_file_events_total", {"event": "closed"}) >= closed + 1


async def test_repointed_symlink_finishes_the_old_target_first(tmp_path: Path) -> None:
    """/var/log/containers link re-pointed to a restarted container's file: old then new."""
    directory = _pods(tmp_path)
    first, second = directory / "0.log", directory / "1.log"
    write_cri(first, lines("a", 0, 50))
    logs = tmp_path / "containers"
    logs.mkdir()
    link = container_path(logs)
    link.symlink_to(first)
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 50)
        write_cri(first, lines("a", 50, 80))
        write_cri(second, lines("b", 0, 40))
        tmp_link = logs / "tmp-link"
        tmp_link.symlink_to(second)
        tmp_link.replace(link)
        messages = await delivered(sink, 120)
    assert messages == lines("a", 0, 80) + lines("b", 0, 40)
    assert {r["log"]["file"]["path"] for r in sink.records} == {str(link)}


async def test_rotation_while_down_finishes_the_rotated_file_first(tmp_path: Path) -> None:
    """Rotated while podlog was stopped: resume the old file at its checkpoint, then the new."""
    directory = _pods(tmp_path)
    live = directory / "0.log"
    write_cri(live, lines("a", 0, 100))
    include = [str(tmp_path / "pods" / "*" / "*" / "*.log")]
    async with running(tmp_path, include=include) as (_, sink):
        await delivered(sink, 100)
    write_cri(live, lines("a", 100, 160))
    live.rename(directory / "0.log.20261127-004500")
    write_cri(live, lines("b", 0, 40))
    async with running(tmp_path, include=include) as (_, sink2):
        messages = await delivered(sink2, 100)
    assert messages == lines("a", 100, 160) + lines("b", 0, 40)


async def test_file_deleted_while_down_counts_its_unread_bytes(tmp_path: Path) -> None:
    """Bytes a file took with it while podlog was down are counted as lost, with the amount."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 10))
    lost = sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"})
    async with running(tmp_path, AckingSink(ack=False)) as (_, sink):
        await delivered(sink, 10)
    # Nothing acknowledged, but the sink holds all 10 lines: not lost.
    path.unlink()
    async with running(tmp_path):
        pass
    assert sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"}) == lost
    write_cri(path, lines("b", 0, 10))
    async with running(tmp_path) as (collector, sink):
        await delivered(sink, 10)
        (entry,) = collector.checkpoints.entries.values()
        entry.size = path.stat().st_size + 500  # it grew by 500 bytes podlog never read
        collector.checkpoints.dirty = True
    path.unlink()
    async with running(tmp_path):
        pass
    assert sample("podlog_collector_lost_bytes_total", {"reason": "deleted_before_read"}) == lost + 500


async def test_restart_resumes_at_the_acknowledged_offset(tmp_path: Path) -> None:
    """After a restart only lines past the last acknowledgement are read again."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 100))
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 100)
    write_cri(path, lines("a", 100, 130))
    async with running(tmp_path) as (_, sink2):
        messages = await delivered(sink2, 30)
    assert messages == lines("a", 100, 130)


async def test_unacknowledged_lines_are_read_again_with_the_same_ids(tmp_path: Path) -> None:
    """Without acknowledgements a restart re-reads from the last acked offset: same event ids."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 50))
    async with running(tmp_path, AckingSink(ack=False)) as (_, sink):
        await delivered(sink, 50)
    async with running(tmp_path) as (_, sink2):
        await delivered(sink2, 50)
    assert [r["event"]["id"] for r in sink.records] == [r["event"]["id"] for r in sink2.records]


async def test_read_from_tail_skips_existing_content_on_the_first_start_only(
    tmp_path: Path,
) -> None:
    """read_from=tail starts existing files at their end; files created later from the head."""
    logs = tmp_path / "containers"
    logs.mkdir()
    old = container_path(logs, pod="old")
    write_cri(old, lines("old", 0, 10))
    async with running(tmp_path, read_from="tail") as (_, sink):
        new = container_path(logs, pod="new")
        write_cri(new, lines("new", 0, 5))
        write_cri(old, lines("old", 10, 12))
        await delivered(sink, 7)
    assert sorted(sink.messages()) == sorted(lines("new", 0, 5) + lines("old", 10, 12))


async def test_spool_full_pauses_and_retries_without_dropping(tmp_path: Path) -> None:
    """The sink refusing batches (spool full) delays them; every line still arrives once."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 500))
    retries = sample("podlog_collector_sink_retries_total")
    async with running(tmp_path, AckingSink(refuse=3), batch_max_records=100) as (_, sink):
        messages = await delivered(sink, 500)
    assert messages == lines("a", 0, 500)
    assert sample("podlog_collector_sink_retries_total") == retries + 3


async def test_files_appearing_while_the_spool_is_full_are_opened(tmp_path: Path) -> None:
    """Reading pauses while the sink refuses, the stat pass does not: a new pod's file is
    opened and sized then (so its loss would be counted if it rotated away unread), and
    once the sink accepts again every line of both files arrives once."""
    logs = tmp_path / "containers"
    logs.mkdir()
    first = container_path(logs, pod="first")
    write_cri(first, lines("a", 0, 5000))
    full = AckingSink(refuse=1_000_000)
    retries = sample("podlog_collector_sink_retries_total")
    async with running(tmp_path, full, batch_max_records=50, queue_batches=1,
                       read_budget_bytes=4096) as (collector, sink):
        # One batch retried by the sender, one in the queue, more of the file unread.
        await wait_until(lambda: sample("podlog_collector_sink_retries_total") > retries
                         and collector._queue.full()
                         and collector.tracker.by_path[str(first)].read_offset
                         < first.stat().st_size, 10)
        second = container_path(logs, pod="second")
        write_cri(second, lines("b", 0, 10))
        await wait_until(lambda: str(second) in collector.tracker.by_path, 10)
        assert full.records == []
        sink.refuse = 0
        messages = await delivered(sink, 5010)
    assert sorted(messages) == sorted(lines("a", 0, 5000) + lines("b", 0, 10))


async def test_stop_with_the_spool_full_leaves_unspooled_lines_for_the_restart(tmp_path: Path) -> None:
    """Stopping while the sink refuses everything ends promptly; a restart reads those lines."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 300))
    full = AckingSink(refuse=1_000_000)
    retries = sample("podlog_collector_sink_retries_total")
    async with asyncio.timeout(10):
        async with running(tmp_path, full, batch_max_records=100):
            await wait_until(lambda: sample("podlog_collector_sink_retries_total") > retries, 10)
    assert full.records == []
    async with running(tmp_path, batch_max_records=100) as (_, sink):
        assert await delivered(sink, 300) == lines("a", 0, 300)


async def test_noisy_file_does_not_starve_a_quiet_one(tmp_path: Path) -> None:
    """With a per-file read budget, a quiet file's lines arrive before a huge backlog drains."""
    logs = tmp_path / "containers"
    logs.mkdir()
    noisy, quiet = container_path(logs, pod="noisy"), container_path(logs, pod="quiet")
    write_cri(noisy, lines("n", 0, 100_000))
    write_cri(quiet, lines("q", 0, 3))
    async with running(tmp_path, read_budget_bytes=65536, batch_max_records=500) as (_, sink):
        await wait_until(lambda: {"q-0", "q-1", "q-2"} <= set(sink.messages()), 20)
        position = max(i for i, m in enumerate(sink.messages()) if m.startswith("q-"))
        assert position < 10_000
        await delivered(sink, 100_003, timeout=60)


async def test_own_container_is_excluded(tmp_path: Path, monkeypatch: object) -> None:
    """The agent's own pod (POD_NAMESPACE/POD_NAME) is never read."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("POD_NAMESPACE", "podlog")
    monkeypatch.setenv("POD_NAME", "podlog-agent-x")
    logs = tmp_path / "containers"
    logs.mkdir()
    write_cri(container_path(logs, pod="podlog-agent-x", ns="podlog", container="agent"),
              lines("self", 0, 5))
    write_cri(container_path(logs), lines("app", 0, 5))
    async with running(tmp_path) as (_, sink):
        await delivered(sink, 5)
    assert sink.messages() == lines("app", 0, 5)


async def test_file_renamed_away_and_back_is_read_once(tmp_path: Path) -> None:
    """A file that leaves the include glob and comes back is not opened a second time."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    write_cri(path, lines("a", 0, 10))
    async with running(tmp_path, rotate_wait_seconds=30) as (collector, sink):
        await delivered(sink, 10)
        away = logs / "parked.txt"
        path.rename(away)
        await wait_until(lambda: not collector.tracker.by_path)
        away.rename(path)
        write_cri(path, lines("a", 10, 20))
        messages = await delivered(sink, 20)
        await wait_until(lambda: len(collector.tracker.by_path) == 1)
    assert messages == lines("a", 0, 20)
    assert len({r["log"]["file"]["identity"] for r in sink.records}) == 1


async def test_file_with_one_short_line_is_read(tmp_path: Path) -> None:
    """A short-lived pod's tiny file (one line, a few bytes) is read, no minimum size."""
    logs = tmp_path / "containers"
    logs.mkdir()
    write_cri(container_path(logs), ["x"])
    async with running(tmp_path) as (_, sink):
        assert await delivered(sink, 1) == ["x"]


