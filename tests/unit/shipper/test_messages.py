"""Schema 2 messages in the spool: built once per file generation, shipped as they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podlog.protocols import FileMark
from podlog.record import Record, SharedMap, stream_key
from podlog.wire import decode, is_schema2
from shipper.config import SpoolConfig
from shipper.kafka import plan_messages
from shipper.messages import StoredMessages, build_messages
from shipper.recordbatch import build_batches
from shipper.segment import decode_payload, decode_records, encode_payload
from shipper.spool import Spool
from tests.unit.shipper.helpers import batch, lines, record


def _file(stream: str, start: int, count: int, *, pod: str = "p", parser: str | None = None,
          retention: str | None = None) -> list[Record]:
    """Records of one file generation sharing their maps, as the collector builds them."""
    records = [record(stream, start + i, pod=pod) for i in range(count)]
    podlog = SharedMap(schema=1, metadata="api", **({"parser": parser} if parser else {}),
                       **({"retention": retention} if retention else {}))
    for r in records:
        r["kubernetes"], r["podlog"] = records[0]["kubernetes"], podlog
    return records


def test_one_message_per_run_of_a_file_generation_keyed_by_its_stream() -> None:
    app, sidecar, more = _file("app", 0, 5), _file("sidecar", 0, 3, retention="short"), _file("app", 5, 2)
    messages = build_messages([*app, *sidecar, *more])
    assert [(m.key, m.retention, m.rows) for m in messages] == [
        (stream_key(app[0]).decode(), "", 5), (stream_key(sidecar[0]).decode(), "short", 3),
        (stream_key(app[0]).decode(), "", 2),
    ]
    assert all(is_schema2(m.value) for m in messages)
    assert lines(StoredMessages(messages)) == lines([*app, *sidecar, *more])


def test_the_reader_parses_payloads_with_the_files_parser() -> None:
    """The agent leaves payloads alone; whoever reads the message parses them with the parser the
    pod asked for (``podlog.parser``), as the indexer does."""
    records = _file("app", 0, 1, parser="logfmt")
    records[0]["message"] = 'level=error msg="charge failed" order=17'
    unparsed = _file("raw", 0, 1, parser="none")
    unparsed[0]["message"] = '{"level": "warn", "msg": "left as text"}'
    got = StoredMessages(build_messages([*records, *unparsed])).records()
    assert got[0]["level"] == "error" and got[0]["json"]["order"] == "17"
    assert got[1]["json"] is None and got[1]["level"] is None
    json_file = _file("web", 0, 1)
    json_file[0]["message"] = '{"level": "warn", "msg": "slow"}'
    assert StoredMessages(build_messages(json_file)).records()[0]["level"] == "warn"


def test_a_run_over_the_message_limit_is_split_in_order_with_its_row_counts() -> None:
    records = _file("app", 0, 40)
    for i, r in enumerate(records):
        r["message"] = os.urandom(300).hex() + f" {i}"
    messages = build_messages(records, max_message_bytes=4096)
    assert len(messages) > 1
    assert all(len(m.value) <= 4096 for m in messages)
    assert [m.rows for m in messages] == [len(decode(m.value)) for m in messages]
    assert lines(StoredMessages(messages)) == lines(records)


def test_a_schema_2_payload_round_trips_its_marks_and_lines() -> None:
    records = [*_file("app", 0, 4), *_file("sidecar", 0, 2)]
    marks = {"k": FileMark("/f", "k", 0, 4, streams=(("stdout", 3),), past=1)}
    payload = encode_payload(records, marks)
    meta, decoded = decode_payload(payload)
    assert meta["n"] == 6 and meta["s"] == 2
    assert lines(decoded) == lines(records)
    stored = decode_records(payload)
    assert isinstance(stored, StoredMessages) and len(stored) == 6 and len(stored.messages) == 2


def test_message_lengths_that_disagree_with_the_body_are_refused() -> None:
    payload = bytearray(encode_payload(_file("app", 0, 3), {}))
    with pytest.raises(ValueError, match="do not add up"):
        decode_records(bytes(payload[:-1]))


def test_stored_messages_go_to_kafka_as_they_are_uncompressed_again() -> None:
    """The value in the Kafka batch is byte for byte the spooled one, and the batch is not
    compressed a second time (the value is zstd already)."""
    records = _file("app", 0, 10, retention="long")
    stored = StoredMessages(build_messages(records))
    planned = plan_messages(stored, topic="logs-{retention}", default_retention="std", max_message_bytes=1 << 20)
    assert [(m.topic, m.records, m.value()) for m in planned] == [
        ("logs-long", 10, bytes(stored.messages[0].value))]
    packed = build_batches(planned, {"logs-long": [0]}, codec="zstd", max_batch_bytes=1 << 20)
    raw = bytes(packed[0].batch._buffer)
    assert raw[22] & 0x07 == 0, "attributes: no compression codec"
    assert bytes(stored.messages[0].value) in raw


async def test_the_spool_writes_schema_2_unless_told_schema_1(tmp_path: Path) -> None:
    """Spool bytes: schema 2 holds the messages (smaller than the input); schema 1 stays for a
    rollout where indexers of the release before still read the topics."""
    for schema, directory in ((2, tmp_path / "two"), (1, tmp_path / "one")):
        spool = Spool(SpoolConfig(schema=schema), directory)
        await spool.append(batch("app", 0, 50))
        got = await spool.read(0, max_records=100, max_bytes=1 << 20)
        assert isinstance(got[0].records, StoredMessages) is (schema == 2)
        assert lines(got[0].records) == lines(batch("app", 0, 50).records)
        await spool.close()
    two, one = (sum(f.stat().st_size for f in d.glob("*.seg")) for d in (tmp_path / "two", tmp_path / "one"))
    assert two < one / 4
