"""EmbeddedTransport: returns after the index committed; failures are retriable."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from podlog.errors import TransportError
from podlog.record import Record
from shipper.embedded import EmbeddedTransport
from shipper.records import EncodedRecords
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
    """Records sent as spool encodings are stored byte for byte and searchable like dicts."""
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
        rows = conn.execute("SELECT eid, doc FROM r").fetchall()
        assert {doc for _, doc in rows} == expected
        assert all(json.loads(doc)["event"]["id"] == eid for eid, doc in rows)  # each row its own JSON
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
