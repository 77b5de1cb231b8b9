"""The embedded index: idempotent writes, exact ordering, histograms, retention, limits."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from podlog.metrics import sample
from podlog.record import Record
from podlog.retention import RetentionConfig
from search.backends.embedded import EmbeddedIndex
from tests.fixtures.servers import wait_until
from tests.unit.embedded.conftest import T0, Clock, open_index, rec, req

MS = 1_000_000
DAY = 86_400 * 1_000_000_000


def order_key(record: Record) -> tuple[int, int, str]:
    """The contract's order: (timestamp_ns, log.offset, event.id)."""
    return (record["timestamp_ns"], record["log"]["offset"], record["event"]["id"])


def ids(records: list[dict[str, object]]) -> list[str]:
    return [r["event"]["id"] for r in records]  # type: ignore[index]


async def all_pages(index: EmbeddedIndex, q: str | None = None, size: int = 7) -> list[str]:
    """Every hit id, paging with the cursor."""
    seen: list[str] = []
    cursor = None
    while True:
        page = await index.search(req(q, size=size, search_after=cursor))
        seen.extend(ids(page.hits))
        cursor = page.next_cursor
        if cursor is None:
            return seen


async def test_replayed_batch_is_not_a_second_copy(index: EmbeddedIndex) -> None:
    """Writing a batch again, or one that overlaps it, leaves one copy per event.id."""
    batch = [rec(i * 10, T0 + i * MS) for i in range(50)]
    before = sample("podlog_embedded_records_duplicate_total")
    await index.write(batch)
    await index.write(batch)
    await index.write([*batch[25:], rec(5000, T0 + 60 * MS)])
    page = await index.search(req())
    assert page.total == 51
    assert sorted(ids(page.hits)) == sorted(ids([*batch, rec(5000, T0 + 60 * MS)]))
    assert sample("podlog_embedded_records_duplicate_total") - before == 75


async def test_duplicates_inside_one_batch_are_written_once(index: EmbeddedIndex) -> None:
    """A batch that repeats a record (a replay that overlaps itself) indexes it once."""
    record = rec(0, T0)
    await index.write([record, dict(record), rec(10, T0 + MS)])
    assert (await index.search(req())).total == 2


async def test_records_without_id_or_valid_timestamp_are_counted_not_written(
    index: EmbeddedIndex,
) -> None:
    """Bad records are skipped with a counted reason; the rest of the batch is indexed."""
    no_id = rec(0, T0)
    no_id["event"] = {}
    bad_ts = rec(10, T0)
    bad_ts["timestamp_ns"] = "yesterday"
    before_id = sample("podlog_embedded_records_rejected_total", {"reason": "missing_event_id"})
    before_ts = sample("podlog_embedded_records_rejected_total", {"reason": "invalid_timestamp"})
    await index.write([no_id, bad_ts, rec(20, T0)])
    assert (await index.search(req())).total == 1
    assert sample("podlog_embedded_records_rejected_total", {"reason": "missing_event_id"}) == before_id + 1
    assert sample("podlog_embedded_records_rejected_total", {"reason": "invalid_timestamp"}) == before_ts + 1


async def test_equal_timestamps_page_in_exact_order_without_gaps(index: EmbeddedIndex) -> None:
    """3000 lines of one timestamp (a plain-text batch) page by (ts, offset, id) exactly."""
    same = [rec(i, T0 + 5 * MS) for i in range(3000)]
    near = [rec(100_000 + i, T0 + 5 * MS + i) for i in range(40)]
    await index.write(same + near)
    expected = sorted(
        same + near,
        key=lambda r: (r["timestamp_ns"], r["log"]["offset"], r["event"]["id"]),
        reverse=True,
    )
    assert await all_pages(index, size=450) == ids(expected)


async def test_time_keys_taken_by_stored_rows_are_probed_past(index: EmbeddedIndex) -> None:
    """Batches of one millisecond collide with stored time keys; every record still lands."""
    first = [rec(i, T0 + 7 * MS + i) for i in range(2000)]
    second = [rec(10_000 + i, T0 + 7 * MS + i) for i in range(2000)]
    await asyncio.gather(index.write(first), index.write(second))
    await index.write(second[:10])
    expected: list[Record] = sorted(first + second, key=order_key, reverse=True)
    assert await all_pages(index, size=999) == ids(expected)


async def test_time_range_is_start_inclusive_end_exclusive_at_any_precision(
    index: EmbeddedIndex,
) -> None:
    """Bounds that fall inside a millisecond still cut exactly at the nanosecond."""
    records = [rec(i, T0 + i * 1000 + 1) for i in range(2000)]  # one per microsecond
    await index.write(records)
    start, end = T0 + 123_457, T0 + 1_500_001
    expected = {r["event"]["id"] for r in records if start <= r["timestamp_ns"] < end}
    page = await index.search(req(start_ns=start, end_ns=end, size=5000))
    assert set(ids(page.hits)) == expected
    assert page.total == len(expected)


async def test_histogram_fast_and_exact_paths_agree(index: EmbeddedIndex) -> None:
    """Buckets from the FTS lists (aligned range) equal buckets counted on rows."""
    records = [
        rec(i, T0 + i * 37 * MS + i, "error here" if i % 3 else "fine", level="error" if i % 3 else "info")
        for i in range(600)
    ]
    await index.write(records)
    interval = 1000 * MS
    start, end = T0, T0 + 30_000 * MS
    fast = await index.histogram(req("error", start_ns=start, end_ns=end), interval)
    rows = await index.histogram(req("error AND offset:>=0", start_ns=start, end_ns=end), interval)
    assert fast == rows
    expected: dict[int, int] = {}
    for r in records:
        if "error" in r["message"] and start <= r["timestamp_ns"] < end:
            bucket = r["timestamp_ns"] // interval * interval
            expected[bucket] = expected.get(bucket, 0) + 1
    assert {b.start_ns: b.count for b in fast} == expected
    everything = await index.histogram(req(start_ns=start, end_ns=end), interval)
    assert sum(b.count for b in everything) == 600


async def test_histogram_and_total_of_everything_match_the_records(tmp_path: Path) -> None:
    """Per-minute counts give exact buckets and totals, at any bounds, and follow retention."""
    now = T0 + 30 * DAY
    retention = RetentionConfig(classes={"short": 1.0, "standard": 7.0}, namespaces={"dev": "short"})
    rnd = random.Random(5)
    records = [
        rec(i, now - DAY - 5 * 60_000 * MS + rnd.randrange(10 * 60_000 * MS), namespace=rnd.choice(("dev", "prod")))
        for i in range(3000)
    ]
    async with open_index(tmp_path, retention=retention) as index:
        await index.write(records)
        for start, end, interval in (
            (now - 2 * DAY, now, 60_000 * MS),
            (now - DAY - 123_456_789, now - DAY + 181_000 * MS + 17, 120_000 * MS),
            (now - DAY - 7 * MS, now - DAY + 7 * MS, 60_000 * MS),
        ):
            expected: dict[int, int] = {}
            for r in records:
                if start <= r["timestamp_ns"] < end:
                    bucket = r["timestamp_ns"] // interval * interval
                    expected[bucket] = expected.get(bucket, 0) + 1
            buckets = await index.histogram(req(start_ns=start, end_ns=end), interval)
            assert {b.start_ns: b.count for b in buckets} == expected
            page = await index.search(req(start_ns=start, end_ns=end, size=1))
            assert page.total == sum(expected.values())
        await index.expire(now_ns=now)
        left = [r for r in records if r["kubernetes"]["namespace"] == "prod" or r["timestamp_ns"] >= now - DAY]
        buckets = await index.histogram(req(start_ns=0, end_ns=now), 60_000 * MS)
        assert sum(b.count for b in buckets) == len(left)
        assert (await index.search(req(size=1))).total == len(left)


async def test_total_is_a_lower_bound_past_the_tracking_limit(tmp_path: Path) -> None:
    """Above track_total_hits the total is capped and marked inexact."""
    async with open_index(tmp_path, track_total_hits=100) as index:
        await index.write([rec(i, T0 + i * MS) for i in range(150)])
        page = await index.search(req(size=10))
        assert (page.total, page.total_exact) == (100, False)
        page = await index.search(req("offset:<50", size=10))
        assert (page.total, page.total_exact) == (50, True)


async def test_records_without_namespace_are_visible_to_star(index: EmbeddedIndex) -> None:
    """Files outside Kubernetes naming (no namespace) are searchable with allowed '*'."""
    await index.write([rec(0, T0, namespace=None), rec(10, T0, namespace="shop")])
    assert (await index.search(req(allowed_namespaces=["*"]))).total == 2
    assert (await index.search(req(allowed_namespaces=["sh*"]))).total == 1
    assert (await index.search(req(allowed_namespaces=[]))).total == 0


async def test_context_follows_file_order_across_generations(index: EmbeddedIndex) -> None:
    """Context is by (generation, offset) in one file and stream, not by timestamp."""
    lines = [rec(off, T0 + (10 - off) * MS, f"line {off}") for off in range(5)]  # clock went back
    truncated = [rec(off, T0 + 50 * MS, f"after truncate {off}", generation=1) for off in range(2)]
    other_stream = [rec(2, T0, "stderr line", stream="stderr")]
    await index.write(lines + truncated + other_stream)
    ctx = await index.context(lines[2]["event"]["id"], 5, 5, None)
    assert ctx is not None
    assert [r["message"] for r in ctx.before] == ["line 0", "line 1"]
    assert [r["message"] for r in ctx.after] == ["line 3", "line 4", "after truncate 0", "after truncate 1"]


async def context_offsets(index: EmbeddedIndex, record: Record, around: int = 20) -> list[int]:
    """Offsets of the context around ``record``, with its own, in the order returned."""
    ctx = await index.context(record["event"]["id"], around, around, None)
    assert ctx is not None
    return [r["log"]["offset"] for r in [*ctx.before, ctx.anchor, *ctx.after]]


async def test_context_places_lines_that_arrive_out_of_file_order(index: EmbeddedIndex) -> None:
    """Lines written late, across batches or shuffled inside one, still come back in file order."""
    lines = {off: rec(off, T0 + off * MS, f"line {off}") for off in range(0, 80, 10)}
    await index.write([lines[0], lines[20], lines[40]])
    await index.write([lines[30], lines[10]])  # both before the stored last line
    await index.write([lines[70], lines[50], lines[60]])  # shuffled inside the batch
    expected = list(range(0, 80, 10))
    for record in lines.values():
        assert await context_offsets(index, record) == expected
    ctx = await index.context(lines[30]["event"]["id"], 2, 1, None)
    assert ctx is not None
    assert [r["log"]["offset"] for r in [*ctx.before, *ctx.after]] == [10, 20, 40]


async def test_waiting_batches_share_a_transaction_and_link_across_it(
    index: EmbeddedIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent writes commit in fewer transactions, in order, their lines linked in file order.

    The fourth batch replays part of the third inside the same group: its savepoint undoes
    only itself, and the group's other batches stay.
    """
    groups: list[int] = []
    commit_group = index._commit_group
    committing, release = threading.Event(), threading.Event()

    lines = [rec(off, T0 + off * MS, f"line {off}") for off in range(0, 400, 10)]
    batches = [lines[at : at + 8] for at in range(0, 40, 8)]
    batches.insert(3, lines[20:26])  # a replay, between its neighbours

    def counted(group: list[object]) -> list[int]:
        groups.append(len(group))
        if len(groups) == 1:  # hold the first commit until the others wait behind it
            committing.set()
            assert release.wait(10), "the other batches never queued"
        return commit_group(group)  # type: ignore[arg-type]

    monkeypatch.setattr(index, "_commit_group", counted)
    first = asyncio.create_task(index.write(batches[0]))
    assert await asyncio.to_thread(committing.wait, 10)
    rest = [asyncio.create_task(index.write(batch)) for batch in batches[1:]]
    try:
        await wait_until(lambda: len(index._waiting) == len(rest))
    finally:
        release.set()
    written = await asyncio.gather(first, *rest)
    assert written == [None] * len(batches)
    assert groups == [1, len(batches) - 1]
    assert (await index.search(req())).total == 40
    expected = list(range(0, 400, 10))
    for record in lines[::7]:
        assert await context_offsets(index, record, around=50) == expected


async def test_a_failed_group_leaves_nothing_behind(index: EmbeddedIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """When one batch of a group fails, none of the group stays: not its rows, not its chains;
    every writer waiting on it gets the error, and the same batches written again link as if
    never tried."""
    await index.write([rec(0, T0, "line 0")])
    chains = dict(index._chains)
    lines = [rec(off, T0 + off * MS, f"line {off}") for off in range(10, 70, 10)]
    first, second = lines[:3], lines[3:]
    insert_batch = index._insert_batch
    calls = 0

    def failing(conn: sqlite3.Connection, batch: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return insert_batch(conn, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(index, "_insert_batch", failing)
    group = [index.batches.prepare(first), index.batches.prepare(second)]
    assert index._writer is not None
    with pytest.raises(sqlite3.OperationalError):
        await asyncio.get_running_loop().run_in_executor(index._writer, index._commit_group, group)
    assert calls == 2
    assert index._chains == chains
    assert (await index.search(req())).total == 1

    def refused(batches: object) -> list[int]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(index, "_commit_group", refused)
    outcomes = await asyncio.gather(index.write(first), index.write(second), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["database or disk is full"] * 2
    monkeypatch.undo()
    await index.write(first)
    await index.write(second)
    assert await context_offsets(index, lines[0]) == list(range(0, 70, 10))


async def test_a_write_returns_only_once_its_transaction_is_on_disk(
    index: EmbeddedIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """synchronous=full: the WAL is fsynced off the writer thread, but before write() returns;
    a failed fsync fails the write (the shipper resends it; the replay is not a second copy)."""
    import search.backends.embedded as embedded

    fsync = embedded.os.fsync
    called, release = threading.Event(), threading.Event()
    failures: list[OSError] = []

    def held(fd: int) -> None:
        called.set()
        assert release.wait(10)
        if failures:
            raise failures.pop()
        fsync(fd)

    monkeypatch.setattr(embedded.os, "fsync", held)
    batch = [rec(0, T0, "line 0")]
    write = asyncio.create_task(index.write(batch))
    assert await asyncio.to_thread(called.wait, 10)
    assert (await index.search(req())).total == 1  # committed, visible, not yet durable
    assert not write.done()
    release.set()
    await write
    failures.append(OSError(5, "Input/output error"))
    with pytest.raises(OSError, match="Input/output"):
        await index.write([rec(10, T0 + MS, "line 10")])
    await index.write([rec(10, T0 + MS, "line 10")])
    assert (await index.search(req())).total == 2


async def test_context_links_survive_a_restart_and_a_replay(tmp_path: Path) -> None:
    """After reopening the file, new lines extend the stored ones; a replay adds no link."""
    first = [rec(off, T0 + off * MS) for off in range(0, 50, 10)]
    later = [rec(off, T0 + off * MS) for off in range(50, 100, 10)]
    index = open_index(tmp_path)
    async with index:
        await index.write(first)
    index = open_index(tmp_path)
    async with index:
        await index.write([*first[2:], *later])  # a replay that overlaps the stored lines
        assert await context_offsets(index, first[0]) == list(range(0, 100, 10))
        assert await context_offsets(index, later[-1]) == list(range(0, 100, 10))


async def test_context_stops_at_expired_lines(tmp_path: Path) -> None:
    """Lines removed by retention end the context instead of breaking it."""
    retention = RetentionConfig(classes={"standard": 1.0}, default_class="standard")
    old = [rec(off, T0 - 3 * DAY + off * MS) for off in range(3)]
    new = [rec(off, T0 + off * MS) for off in range(3, 6)]
    clock = Clock(T0 - 3 * DAY)  # the old lines arrive while they are within retention
    index = open_index(tmp_path, retention=retention, clock=clock)
    async with index:
        await index.write(old)
        clock.now_ns = T0
        await index.write(new)
        assert await index.expire(now_ns=T0) == {"standard": 3}
        assert await context_offsets(index, new[1]) == [3, 4, 5]
        await index.write([rec(6, T0 + 6 * MS)])
        assert await context_offsets(index, new[0]) == [3, 4, 5, 6]


async def test_tail_returns_only_newer_matches_oldest_first(index: EmbeddedIndex) -> None:
    """A tail started from now sees later writes once, oldest first, with its cursor moving."""
    await index.write([rec(0, T0, "old error")])
    records, cursor = await index.tail(req("error"), None)
    assert records == [] and cursor is not None
    waiter = asyncio.create_task(index.wait_for_write(5.0))
    await index.write([rec(20, T0 + 2 * MS, "new error"), rec(10, T0 + MS, "newer? no, error")])
    assert await waiter
    records, cursor = await index.tail(req("error"), cursor)
    assert [r["log"]["offset"] for r in records] == [10, 20]
    assert await index.tail(req("error"), cursor) == ([], cursor)


async def test_retention_removes_exactly_the_expired_records_per_class(tmp_path: Path) -> None:
    """Each class keeps its own days; records on the keep side of the cutoff all stay."""
    retention = RetentionConfig(
        classes={"short": 1.0, "standard": 7.0}, default_class="standard", namespaces={"dev-*": "short"}
    )
    now = T0 + 30 * DAY
    clock = Clock(T0)  # the records arrive before they age: the passes below expire them
    async with open_index(tmp_path, retention=retention, clock=clock) as index:
        records: list[Record] = []
        for age_hours in (1, 23, 25, 24 * 6, 24 * 8):
            for ns in ("dev-a", "prod"):
                ts = now - age_hours * 3600 * 1_000_000_000
                records.append(rec(len(records), ts, f"{ns} {age_hours}h", namespace=ns))
        edge = rec(999, now - DAY, "exactly one day", namespace="dev-b")
        await index.write([*records, edge])
        deleted = await index.expire(now_ns=now)
        kept = {r["message"] for r in (await index.search(req())).hits}
        assert kept == {
            "dev-a 1h", "dev-a 23h", "exactly one day",
            "prod 1h", "prod 23h", "prod 25h", "prod 144h",
        }  # fmt: skip
        assert deleted == {"short": 3, "standard": 1}
        assert (await index.search(req("dev"))).total == 2  # FTS rows went with their records
        assert await index.expire(now_ns=now) == {"short": 0, "standard": 0}
        clock.now_ns = now - 40 * DAY  # a backfill that arrived (then) within retention
        await index.write([rec(5000, now - 40 * DAY, "late backfill", namespace="prod")])
        clock.now_ns = now
        assert await index.expire(now_ns=now) == {"short": 0, "standard": 1}
        assert (await index.search(req("backfill"))).total == 0


async def test_index_survives_reopen_with_its_dictionary(tmp_path: Path) -> None:
    """Filter values and records written before a restart are found after it."""
    async with open_index(tmp_path) as index:
        await index.write([rec(0, T0, namespace="shop"), rec(10, T0, namespace="data")])
    async with open_index(tmp_path) as index:
        assert (await index.search(req(filters={"namespace": ["data"]}))).total == 1
        await index.write([rec(20, T0, namespace="data"), rec(0, T0, namespace="shop")])
        assert (await index.search(req("namespace:data"))).total == 2
        assert (await index.search(req())).total == 3


async def test_slow_query_is_interrupted_at_its_time_limit(index: EmbeddedIndex) -> None:
    """A query past timeout_seconds raises TimeoutError and is counted."""
    await index.write([rec(i, T0 + i, f"line {i}") for i in range(20_000)])
    before = sample("podlog_embedded_queries_timed_out_total", {"kind": "search"})
    with pytest.raises(TimeoutError):
        await index.search(req("/l.*e.*[0-9]+/", timeout_seconds=0.001))
    assert sample("podlog_embedded_queries_timed_out_total", {"kind": "search"}) == before + 1
    assert (await index.search(req("line", size=1))).total == 10_000  # the reader still works


async def test_user_text_cannot_change_the_statement(index: EmbeddedIndex) -> None:
    """Quotes, SQL and FTS5 syntax in a query are matched as text, never executed."""
    await index.write([rec(0, T0, "say \"hi\" OR 1=1; DROP TABLE r; -- NEAR(x y)")])
    for q in ['"\\"hi\\" OR 1=1"', "DROP", "NEAR", 'labels.x:"\'); DROP TABLE r; --"', "json.a\\.b:1"]:
        await index.search(req(q))
    assert (await index.search(req('"1=1; DROP TABLE r"'))).total == 1
    assert (await index.search(req("NEAR"))).total == 1
    assert (await index.search(req())).total == 1


async def test_message_text_is_indexed_whole_whatever_its_characters(index: EmbeddedIndex) -> None:
    """Escapes, non-ASCII and NUL reach the full-text index as written (a batch is one JSON text)."""
    await index.write([rec(0, T0, 'tab\tand "quotes" \\ ünïcode 日本'), rec(10, T0 + MS, "before\x00after")])
    await index.write([rec(20, T0 + 2 * MS, "plain ünïcode")])
    assert (await index.search(req("ünïcode"))).total == 2
    assert (await index.search(req("quotes"))).total == 1
    assert (await index.search(req("after"))).total == 1  # not cut at the NUL
    assert (await index.search(req("before"))).total == 1


async def test_writes_after_stop_are_refused(tmp_path: Path) -> None:
    """A stopped index does not reopen silently."""
    index = open_index(tmp_path)
    await index.start()
    await index.stop()
    await index.stop()
    with pytest.raises(RuntimeError):
        await index.write([rec(0, T0)])


async def test_index_file_is_wal_and_checks_its_layout(tmp_path: Path) -> None:
    """The file is in WAL mode, and a file of another layout version is refused."""
    async with open_index(tmp_path) as index:
        await index.write([rec(0, T0)])
        path = index.path
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("UPDATE info SET value = '99' WHERE key = 'layout'")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="layout version 99"):
        await open_index(tmp_path).start()
