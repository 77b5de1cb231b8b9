"""EmbeddedTransport: returns after the index committed; failures are retriable."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from podlog.errors import TransportError
from podlog.metrics import sample
from podlog.record import Record
from shipper.embedded import EmbeddedTransport
from shipper.records import EncodedRecords, Run
from tests.unit.embedded.conftest import T0, open_index, rec, req


class FailingWriter:
    """A document writer whose disk is full."""

    def __init__(self) -> None:
        self.calls = 0

    async def write(self, records: Sequence[Record]) -> None:
        self.calls += 1
        raise sqlite3.OperationalError("database or disk is full")


async def test_send_returns_once_records_are_searchable(tmp_path: Path) -> None:
    """After send returns, every record of the batch is in the index."""
    async with open_index(tmp_path) as index:
        transport = EmbeddedTransport(index)
        await transport.start()
        await transport.send([rec(i, T0 + i) for i in range(10)])
        assert (await index.search(req())).total == 10
        await transport.stop()
        await transport.stop()


async def test_spooled_records_are_stored_as_the_spool_encoded_them(tmp_path: Path) -> None:
    """Records sent as spool encodings are stored byte for byte and searchable like dicts.

    Byte for byte once the ``kubernetes`` section, stored once for all, is put back.
    """
    records = [rec(i, T0 + i, f"line {i}", stream="stderr" if i % 3 else "stdout") for i in range(12)]
    encoded = EncodedRecords.from_records(records)
    spooled = EncodedRecords(encoded.runs, encoded.groups)  # as read from disk: not decoded yet
    expected = {bytes(f).decode() for run in encoded.runs for f in run.fragments()}
    async with open_index(tmp_path) as index:
        await EmbeddedTransport(index).send(spooled)
        page = await index.search(req())
        assert sorted(page.hits, key=lambda r: r["log"]["offset"]) == records
    conn = sqlite3.connect(index.path)
    try:
        (section,), *others = conn.execute("SELECT doc FROM shared").fetchall()
        assert not others  # one container: one section
        rows = conn.execute("SELECT eid, doc, k FROM r").fetchall()
        assert {k for _, _, k in rows} == {1}
        assert all('"kubernetes":null' in doc and section not in doc for _, doc, _ in rows)
        assert {doc.replace('"kubernetes":null', f'"kubernetes":{section}') for _, doc, _ in rows} == expected
        assert all(json.loads(doc)["event"]["id"] == eid for eid, doc, _ in rows)  # each row its own JSON
    finally:
        conn.close()


async def test_index_failure_is_a_retriable_transport_error() -> None:
    """A write error reaches the shipper as a retriable TransportError naming the cause."""
    writer = FailingWriter()
    transport = EmbeddedTransport(writer)
    with pytest.raises(TransportError, match="disk is full") as caught:
        await transport.send([rec(0, T0)])
    assert caught.value.retriable
    await transport.send([])
    assert writer.calls == 1
    assert transport.name == "embedded"


def odd_records() -> list[Record]:
    """Records whose sections or values have unexpected shapes, and one good record."""
    k8s_list = rec(0, T0 + 1, "k8s is a list")
    k8s_list["kubernetes"] = ["shop"]
    numeric = rec(10, T0 + 2, "level is a number", level=None)
    numeric["level"] = 5
    retention_map = rec(20, T0 + 3, "retention is a map", podlog={"retention": {"days": 1}})
    pod_map = rec(30, T0 + 4, "pod name is a map")
    pod_map["kubernetes"]["pod"] = {"name": {"first": "web"}}
    log_text = rec(40, T0 + 5, "log is text")
    log_text["log"] = "somewhere"
    no_event = rec(50, T0 + 6, "event is a list")
    no_event["event"] = ["x"]
    return [k8s_list, numeric, retention_map, pod_map, log_text, no_event, rec(60, T0 + 7, "good")]


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        columns = "eid, ts, off, gen, ident, cls, ns, pod, ctr, node, wl, lvl, strm"
        rows = conn.execute(f"SELECT {columns} FROM r ORDER BY rowid").fetchall()
        values = dict(conn.execute("SELECT id, value FROM vals").fetchall())
    finally:
        conn.close()
    # Dictionary ids depend on allocation order: compare the values behind them.
    return [(*row[:6], *(values.get(i) for i in row[6:])) for row in rows]


async def test_odd_records_are_read_alike_from_encodings_and_from_dicts(tmp_path: Path) -> None:
    """Unexpected shapes never fail a batch: spooled encodings and dicts give the same rows.

    The encoded path reads only the fields it needs and falls back record by
    record when one does not fit; both paths treat a section that is not an
    object as absent and a non-text value as its text.
    """
    records = odd_records()
    fragments = [orjson.dumps(r) for r in records]  # the collector never makes these: no stream key
    spooled = EncodedRecords([Run(b",".join(fragments), 0, [len(f) for f in fragments])], [("odd", "")])
    async with open_index(tmp_path / "dicts") as from_dicts:
        await EmbeddedTransport(from_dicts).send(records)
    async with open_index(tmp_path / "encoded") as from_encodings:
        await EmbeddedTransport(from_encodings).send(spooled)
    rows = stored_rows(from_dicts.path)
    assert rows == stored_rows(from_encodings.path)
    assert len(rows) == 6  # the record whose event is a list has no event.id
    by_message = {r["message"]: r for r in records}
    stored = {row[0]: row for row in rows}
    k8s_list = stored[by_message["k8s is a list"]["event"]["id"]]
    assert k8s_list[6:9] == ("", None, None)  # no namespace (visible to "*"), pod or container
    assert stored[by_message["level is a number"]["event"]["id"]][11] == "5"
    assert stored[by_message["retention is a map"]["event"]["id"]][5] == "standard"
    assert stored[by_message["pod name is a map"]["event"]["id"]][7] is None
    assert stored[by_message["log is text"]["event"]["id"]][2:5] == (0, 0, "")


async def test_an_encoding_that_is_not_an_object_is_counted_not_fatal(tmp_path: Path) -> None:
    """Bytes in the spool that are JSON but not a record are rejected; the batch is indexed."""
    good = [rec(i, T0 + i) for i in range(3)]
    encoded = EncodedRecords.from_records(good)
    run = encoded.runs[0]
    odd = Run(b'[1,2],"text",' + bytes(run.data), run.group, [5, 6, *run.lengths])
    before = sample("podlog_embedded_records_rejected_total", {"reason": "missing_event_id"})
    async with open_index(tmp_path) as index:
        await EmbeddedTransport(index).send(EncodedRecords([odd], encoded.groups))
        assert (await index.search(req())).total == 3
    assert sample("podlog_embedded_records_rejected_total", {"reason": "missing_event_id"}) == before + 2
