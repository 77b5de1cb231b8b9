"""The journald input over real journal files (made by systemd-journal-remote), read by journalctl."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from collector.pipeline import Collector
from podlog.metrics import sample
from tests.integration.collector.harness import AckingSink
from tests.integration.collector.journal_files import append_journal, entry, require_journal_tools
from tests.unit.collector.helpers import make_collector, wait_until


@asynccontextmanager
async def running_journal(
    tmp_path: Path, sink: AckingSink | None = None, **overrides: Any,
) -> AsyncIterator[tuple[Collector, AckingSink]]:
    """A running collector that reads the journal in ``tmp_path/journal`` (and no files)."""
    sink = sink if sink is not None else AckingSink()
    (tmp_path / "containers").mkdir(exist_ok=True)
    settings: dict[str, Any] = {"journal_enabled": True, "journal_directory": str(tmp_path / "journal"),
                                "use_inotify": False}
    settings.update(overrides)
    collector = make_collector(tmp_path, sink, **settings)
    sink.listener = collector.acks
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        yield collector, sink
    finally:
        await collector.stop()
        await task


def _journal(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "system.journal"


async def _count(sink: AckingSink, count: int, timeout: float = 20.0) -> None:
    await wait_until(lambda: len(sink.records) >= count, timeout, what=f"{count} records")


async def test_every_matching_entry_is_delivered_once_with_its_fields(tmp_path: Path) -> None:
    """Entries of kubelet, containerd and the kernel arrive once, those of other units not at all."""
    require_journal_tools()
    journal = _journal(tmp_path)
    append_journal(journal, [
        entry("kubelet started", pid=100, priority=6),
        entry("pulling image", unit="containerd.service", pid=200, priority=4),
        entry("not collected", unit="cron.service"),
        entry("oom-kill: task 7", transport="kernel", priority=3),
    ])
    async with running_journal(tmp_path) as (_, sink):
        await _count(sink, 3)
        append_journal(journal, [entry(f"live {i}", pid=100) for i in range(50)])
        await _count(sink, 53)
    records = sink.records
    assert len(records) == 53
    messages = [r["message"] for r in records]
    assert "not collected" not in messages
    assert len({r["event"]["id"] for r in records}) == 53
    by_message = {r["message"]: r for r in records}
    kubelet = by_message["kubelet started"]
    assert kubelet["log"]["source"] == "journal"
    assert kubelet["host"] == {"name": "node-1"}
    assert kubelet["systemd"] == {"unit": "kubelet.service"}
    assert kubelet["process"] == {"pid": 100}
    assert kubelet["syslog"] == {"identifier": "kubelet"}
    assert kubelet["level"] == "info"
    assert kubelet["timestamp_ns"] % 1000 == 0 and kubelet["timestamp_ns"] > 1_795_737_600 * 10**9
    assert kubelet["kubernetes"] == {}
    assert by_message["pulling image"]["level"] == "warn"
    kernel = by_message["oom-kill: task 7"]
    assert kernel["level"] == "error"
    assert kernel["systemd"] == {}
    # The live entries of one group keep the journal's order.
    live = [m for m in messages if m.startswith("live ")]
    assert live == [f"live {i}" for i in range(50)]
    cursor = orjson.loads((tmp_path / "state" / "checkpoints" / "journal.json").read_bytes())
    assert cursor["seqnum"] == max(r["log"]["offset"] for r in records)


async def test_restart_resumes_after_the_acknowledged_cursor(tmp_path: Path) -> None:
    """After a restart only the entries written since the acknowledged cursor arrive."""
    require_journal_tools()
    journal = _journal(tmp_path)
    append_journal(journal, [entry(f"before {i}") for i in range(20)])
    async with running_journal(tmp_path) as (_, first):
        await _count(first, 20)
    append_journal(journal, [entry(f"after {i}") for i in range(5)])
    async with running_journal(tmp_path) as (_, second):
        await _count(second, 5)
        append_journal(journal, [entry("later")])
        await _count(second, 6)
    assert [r["message"] for r in second.records] == [f"after {i}" for i in range(5)] + ["later"]
    ids = {r["event"]["id"] for r in first.records} | {r["event"]["id"] for r in second.records}
    assert len(ids) == 26


async def test_entries_read_but_never_acknowledged_are_read_again_with_the_same_ids(tmp_path: Path) -> None:
    """A stop before the downstream acknowledgement leaves the cursor behind: the entries come
    again, with the same event ids, so the index keeps one copy."""
    require_journal_tools()
    journal = _journal(tmp_path)
    append_journal(journal, [entry(f"line {i}") for i in range(10)])
    async with running_journal(tmp_path) as (_, acked):
        await _count(acked, 4)
    append_journal(journal, [entry(f"more {i}") for i in range(10)])
    async with running_journal(tmp_path, AckingSink(ack=False)) as (_, unacked):
        await _count(unacked, 20 - len(acked.records))
    async with running_journal(tmp_path) as (_, replay):
        await _count(replay, len(unacked.records))
    assert [r["event"]["id"] for r in replay.records] == [r["event"]["id"] for r in unacked.records]
    assert [r["message"] for r in acked.records + replay.records] == (
        [f"line {i}" for i in range(10)] + [f"more {i}" for i in range(10)]
    )


async def test_invalid_utf8_and_huge_messages_are_kept_replaced_cut_and_counted(tmp_path: Path) -> None:
    """A binary MESSAGE is shipped with U+FFFD, a 2 MB one cut at max_line_bytes; both counted."""
    require_journal_tools()
    invalid = sample("podlog_collector_journal_entries_flagged_total", {"reason": "invalid_utf8"})
    cut = sample("podlog_collector_journal_entries_flagged_total", {"reason": "truncated"})
    append_journal(_journal(tmp_path), [
        entry(b"bad \xff\xfe bytes"),
        entry("x" * 2_000_000),
        entry("after"),
    ])
    async with running_journal(tmp_path, max_line_bytes=1000) as (_, sink):
        await _count(sink, 3)
    bad, huge, after = sink.records
    assert bad["message"] == "bad \ufffd\ufffd bytes"
    assert huge["message"] == "x" * 1000
    assert huge["log"]["truncated"] is True
    assert after["message"] == "after"
    assert sample("podlog_collector_journal_entries_flagged_total", {"reason": "invalid_utf8"}) == invalid + 1
    assert sample("podlog_collector_journal_entries_flagged_total", {"reason": "truncated"}) == cut + 1


async def test_an_entry_over_the_entry_limit_is_skipped_counted_and_reading_goes_on(tmp_path: Path) -> None:
    """journalctl output longer than journal_max_entry_bytes is skipped whole; the next entry comes."""
    require_journal_tools()
    too_long = sample("podlog_collector_journal_rejected_total", {"reason": "line_too_long"})
    append_journal(_journal(tmp_path), [entry("small"), entry("y" * 3_000_000), entry("next")])
    async with running_journal(tmp_path, journal_max_entry_bytes=100_000) as (_, sink):
        await _count(sink, 2)
    assert [r["message"] for r in sink.records] == ["small", "next"]
    assert sample("podlog_collector_journal_rejected_total", {"reason": "line_too_long"}) == too_long + 1


async def test_a_missing_journalctl_is_retried_with_backoff_and_counted(tmp_path: Path) -> None:
    """journalctl that cannot run: a metric per attempt, retried, and the file input goes on."""
    missing = sample("podlog_collector_journal_restarts_total", {"reason": "missing"})
    async with running_journal(tmp_path, journalctl_command=str(tmp_path / "no-journalctl"),
                               journal_restart_max_seconds=0.2) as (collector, _):
        await wait_until(
            lambda: sample("podlog_collector_journal_restarts_total", {"reason": "missing"}) >= missing + 2,
            10, what="two failed starts")
        assert collector.journal is not None
        assert collector.journal.starts == 0


async def test_journalctl_exiting_is_restarted_and_its_stderr_counted(tmp_path: Path) -> None:
    """journalctl that exits with an error (its journal directory missing) is started again."""
    require_journal_tools()
    exited = sample("podlog_collector_journal_restarts_total", {"reason": "exited"})
    stderr = sample("podlog_collector_journal_stderr_lines_total")
    async with running_journal(tmp_path, journal_directory=str(tmp_path / "nowhere"),
                               journal_restart_max_seconds=0.2) as (collector, _):
        await wait_until(lambda: collector.journal is not None and collector.journal.starts >= 2, 10,
                         what="a second journalctl")
    assert sample("podlog_collector_journal_restarts_total", {"reason": "exited"}) >= exited + 1
    assert sample("podlog_collector_journal_stderr_lines_total") >= stderr + 1


async def test_a_truncated_journal_file_is_skipped_reported_and_the_others_read(tmp_path: Path) -> None:
    """A journal file cut short (a crash, a full disk) is left out with a stderr line; the others are read."""
    require_journal_tools()
    append_journal(_journal(tmp_path), [entry(f"good {i}") for i in range(5)])
    broken = tmp_path / "journal" / "broken.journal"
    append_journal(broken, [entry(f"lost {i}") for i in range(5)])
    with broken.open("r+b") as cut:
        cut.truncate(4000)
    stderr = sample("podlog_collector_journal_stderr_lines_total")
    async with running_journal(tmp_path) as (_, sink):
        await _count(sink, 5)
        await wait_until(lambda: sample("podlog_collector_journal_stderr_lines_total") > stderr, 10,
                         what="journalctl's report of the truncated file")
    assert [r["message"] for r in sink.records] == [f"good {i}" for i in range(5)]


async def test_a_vacuumed_cursor_resumes_at_the_next_entry_and_is_counted(tmp_path: Path) -> None:
    """The acknowledged entry's file is gone after a restart: the first entry left is read too
    (--after-cursor would skip it), and the gap is counted."""
    require_journal_tools()
    old = tmp_path / "journal" / "old.journal"
    append_journal(old, [entry(f"old {i}") for i in range(5)])
    async with running_journal(tmp_path) as (_, first):
        await _count(first, 5)
    old.unlink()  # journald's vacuum
    append_journal(tmp_path / "journal" / "new.journal", [entry(f"new {i}") for i in range(5)])
    gone = sample("podlog_collector_journal_cursor_gone_total")
    async with running_journal(tmp_path) as (_, second):
        await _count(second, 5)
    assert [r["message"] for r in second.records] == [f"new {i}" for i in range(5)]
    assert sample("podlog_collector_journal_cursor_gone_total") == gone + 1
