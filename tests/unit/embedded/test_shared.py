"""The ``kubernetes`` section of a record is stored once per distinct value (``shared``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from podlog.record import Record
from podlog.retention import RetentionConfig
from search.backends.embedded import EmbeddedIndex
from tests.unit.embedded.conftest import T0, open_index, rec, req

MS = 1_000_000
DAY = 86_400 * 1_000_000_000


def pod_record(offset: int, ts: int, pod: str, message: str = "hello", **extra: Any) -> Record:
    """A record of ``pod`` with labels, as the collector enriches one."""
    kubernetes = {
        "namespace": "shop",
        "pod": {"name": pod, "uid": f"uid-{pod}"},
        "container": {"name": "app", "image": "shop/app:1.0"},
        "labels": {"app": pod.split("-")[0], "tier": "front"},
    }
    return rec(offset, ts, message, identity=f"1:{pod}:aa", kubernetes=kubernetes, **extra)


def stored(index: EmbeddedIndex) -> tuple[list[tuple[str, str, int | None]], dict[int, str]]:
    """``(eid, doc, k)`` of every row, and the ``shared`` table."""
    conn = sqlite3.connect(index.path)
    try:
        rows = conn.execute("SELECT eid, doc, k FROM r ORDER BY rowid").fetchall()
        shared = dict(conn.execute("SELECT id, doc FROM shared").fetchall())
    finally:
        conn.close()
    return rows, shared


def by_offset(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r["log"]["file"]["identity"], r["log"]["offset"]))


async def test_each_section_is_stored_once_and_every_read_puts_it_back(tmp_path: Path) -> None:
    """Two pods, ten lines each: two sections; search, context and tail give whole records."""
    records = [pod_record(i * 10, T0 + i * MS, pod) for i in range(10) for pod in ("web-1", "api-2")]
    async with open_index(tmp_path) as index:
        await index.write(records)
        page = await index.search(req())
        assert by_offset(page.hits) == by_offset(records)
        anchor = records[8]
        context = await index.context(anchor["event"]["id"], 3, 3, None)
        assert context is not None
        assert context.anchor == anchor
        assert [r["log"]["offset"] for r in [*context.before, *context.after]] == [10, 20, 30, 50, 60, 70]
        assert all(r["kubernetes"] == anchor["kubernetes"] for r in [*context.before, *context.after])
        tail, _ = await index.tail(req(), (T0 - 1, 0, ""))
        assert len(tail) == 20 and all(r["kubernetes"]["labels"]["tier"] == "front" for r in tail)
        # Fields inside the section are queried there.
        assert (await index.search(req("kubernetes.labels.app:web"))).total == 10
        assert (await index.search(req("kubernetes.pod.uid:uid-api-2"))).total == 10
        assert (await index.search(req("kubernetes.container.image:shop*"))).total == 20
        assert (await index.search(req("kubernetes.labels.tier:back"))).total == 0
    rows, shared = stored(index)
    assert len(shared) == 2
    assert all('"kubernetes":null' in doc and k in shared for _, doc, k in rows)
    assert {orjson.loads(text)["pod"]["name"] for text in shared.values()} == {"web-1", "api-2"}


async def test_a_section_that_cannot_be_cut_for_certain_stays_in_its_record(tmp_path: Path) -> None:
    """App JSON holding the same section before it, or a section that is not an object: kept whole.

    A label named ``kubernetes`` inside the section does not stop it being shared.
    """
    section = pod_record(0, T0, "web-1")["kubernetes"]
    copied = pod_record(0, T0, "web-1", "copied", json={"kubernetes": section})
    listed = rec(10, T0 + MS, "listed", kubernetes=["not", "a", "map"])
    labelled = pod_record(20, T0 + 2 * MS, "web-1", "labelled")
    labelled["kubernetes"]["labels"]["kubernetes"] = "yes"
    async with open_index(tmp_path) as index:
        await index.write([copied, listed, labelled])
        hits = {r["message"]: r for r in (await index.search(req())).hits}
        assert hits == {"copied": copied, "listed": listed, "labelled": labelled}
        assert (await index.search(req("kubernetes.labels.app:web"))).total == 2
        assert (await index.search(req("json.kubernetes.labels.app:web"))).total == 1
    rows, shared = stored(index)
    kept = {orjson.loads(doc)["message"]: k for _, doc, k in rows}
    assert kept["copied"] is None and kept["listed"] is None
    assert orjson.loads(shared[kept["labelled"]]) == labelled["kubernetes"]


async def test_retention_removes_the_sections_no_record_uses(tmp_path: Path) -> None:
    """When the last record of a section expires, the section goes too; the others stay."""
    retention = RetentionConfig(classes={"standard": 7.0}, default_class="standard")
    now = T0 + 30 * DAY
    old = [pod_record(i, now - 10 * DAY + i * MS, "old-1") for i in range(5)]
    young = [pod_record(i, now - DAY + i * MS, "young-2") for i in range(5)]
    async with open_index(tmp_path, retention=retention) as index:
        await index.write(old)
        await index.write(young)
        assert len(stored(index)[1]) == 2
        assert await index.expire(now_ns=now) == {"standard": 5}
        assert by_offset((await index.search(req())).hits) == by_offset(young)
        _, shared = stored(index)
        assert [orjson.loads(text)["pod"]["name"] for text in shared.values()] == ["young-2"]
        # The section of a pod seen again after its own went is stored again.
        again = pod_record(100, now, "old-1", "back")
        await index.write([again])
        assert (await index.search(req("back"))).hits == [again]


async def test_a_layout_2_file_is_upgraded_and_keeps_its_whole_records(tmp_path: Path) -> None:
    """A file written before sections were shared opens, reads and takes new records."""
    before = [pod_record(i * 10, T0 + i * MS, "web-1") for i in range(5)]
    async with open_index(tmp_path) as index:
        await index.write(before)
        path = index.path
    # Make it what layout 2 wrote: whole documents, no k column, no shared table.
    conn = sqlite3.connect(path)
    with conn:
        for rowid, doc, k in conn.execute("SELECT rowid, doc, k FROM r").fetchall():
            (section,) = conn.execute("SELECT doc FROM shared WHERE id = ?", (k,)).fetchone()
            whole = doc.replace('"kubernetes":null', f'"kubernetes":{section}')
            conn.execute("UPDATE r SET doc = ? WHERE rowid = ?", (whole, rowid))
        conn.execute("DROP TABLE shared")
        conn.execute("ALTER TABLE r DROP COLUMN k")
        conn.execute("UPDATE info SET value = '2' WHERE key = 'layout'")
    conn.close()
    after = [pod_record(i * 10, T0 + (10 + i) * MS, "api-2") for i in range(5)]
    async with open_index(tmp_path) as index:
        assert by_offset((await index.search(req())).hits) == by_offset(before)
        await index.write(after)
        assert by_offset((await index.search(req())).hits) == by_offset([*before, *after])
        assert (await index.search(req("kubernetes.labels.app:web"))).total == 5
        assert (await index.search(req("kubernetes.labels.app:api"))).total == 5
    rows, shared = stored(index)
    assert [k is None for _, _, k in rows] == [True] * 5 + [False] * 5
    assert len(shared) == 1
