"""Kafka messages become bulk items, dead letters, or salvaged documents."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.documents import BulkItem, KafkaPosition, build_items, dead_letter_item, rejected_field, salvage
from indexer.templates import Capabilities
from podlog.errors import SchemaError
from podlog.record import SourcePosition, decode_batch, encode_batch, make_record
from podlog.retention import RetentionConfig

FLAT = Capabilities("opensearch", (3, 8), "flat_object", ism=False)
OBJECT = Capabilities("opensearch", (2, 0), "object", ism=False)
POS = KafkaPosition("logs", 3, 41)
RETENTION = RetentionConfig(namespaces={"dev-*": "short", "payments": "long"})


def _record(namespace: str = "shop", offset: int = 0, ts: int = 1_795_737_600_000_000_000) -> dict[str, Any]:
    return make_record(
        position=SourcePosition("c", "n", "1:2:ab", 0, offset),
        timestamp="2026-11-27T00:00:00Z",
        timestamp_ns=ts,
        message="hello",
        stream="stdout",
        path="/var/log/x.log",
        kubernetes={"namespace": namespace, "labels": {"app": "web", "tier": {"x": 1}}},
        json={"user": {"id": 7}},
    )


def _build(value: bytes, caps: Capabilities = FLAT) -> tuple[list[BulkItem], list[tuple[str, str, BulkItem]]]:
    return build_items(
        value=value, position=POS, timestamp_ms=None, prefix="pl", retention=RETENTION,
        capabilities=caps,
    )  # fmt: skip


def test_records_route_to_their_class_and_utc_day() -> None:
    """Each record goes to {prefix}-logs-{class}-{UTC day} with _id = event.id."""
    late = 1_795_737_600_000_000_000 - 1  # one ns before midnight UTC
    records = [_record("dev-a", 0), _record("payments", 1, late), _record("shop", 2)]
    items, dead = _build(encode_batch(records))
    assert dead == []
    assert [i.index for i in items] == [
        "pl-logs-short-2026.11.27", "pl-logs-long-2026.11.26", "pl-logs-standard-2026.11.27",
    ]  # fmt: skip
    assert [i.doc_id for i in items] == [r["event"]["id"] for r in records]
    action, source = items[0].lines().splitlines()
    assert orjson.loads(action) == {"create": {"_index": items[0].index, "_id": items[0].doc_id}}
    assert orjson.loads(source) == records[0]


def test_annotation_class_wins_over_namespace_pattern() -> None:
    """A record whose podlog.retention names a class goes to that class's family."""
    record = _record("dev-a")
    record["podlog"]["retention"] = "long"
    items, _ = _build(encode_batch([record]))
    assert items[0].index == "pl-logs-long-2026.11.27"


def test_unknown_schema_becomes_one_dead_letter_with_the_message() -> None:
    """A message of an unknown schema is dead-lettered whole, with reason and position."""
    value = orjson.dumps({"schema": 7, "records": []})
    items, dead = _build(value)
    assert items == []
    [(reason, detail, letter)] = dead
    assert reason == "schema"
    assert "unknown record schema version 7" in detail
    assert letter.doc_id == "logs:3:41"
    assert letter.document["kafka"] == {"topic": "logs", "partition": 3, "offset": 41}
    assert letter.op == "index"


def test_record_without_event_id_is_dead_lettered_alone() -> None:
    """A record lacking event.id is dead-lettered; its neighbours are indexed."""
    bad = _record(offset=5)
    del bad["event"]
    mixed: list[Any] = [_record(offset=4), bad, "not a record"]
    items, dead = _build(encode_batch(mixed))
    assert len(items) == 1
    assert [d[0] for d in dead] == ["invalid_record", "invalid_record"]
    assert [d[2].doc_id for d in dead] == ["logs:3:41:1", "logs:3:41:2"]
    assert dead[0][2].document["record"] == bad


def test_bad_timestamp_falls_back_to_the_text_timestamp() -> None:
    """A non-numeric timestamp_ns routes by @timestamp instead of failing."""
    record = _record()
    record["timestamp_ns"] = "soon"
    record["@timestamp"] = "2026-01-02T03:04:05.5Z"
    items, _ = _build(encode_batch([record]))
    assert items[0].index == "pl-logs-standard-2026.01.02"


def test_object_fallback_adds_key_value_lists() -> None:
    """Without a flat type, labels and json also go out as keyword lists of key=value."""
    items, _ = _build(encode_batch([_record()]), OBJECT)
    doc = items[0].document
    assert doc["kubernetes"]["labels_kv"] == ["app=web", "tier.x=1"]
    assert doc["json_kv"] == ["user.id=7"]


def test_dead_letter_keeps_original_and_position() -> None:
    """A dead letter carries the untouched record, reason, status and Kafka position."""
    items, _ = _build(encode_batch([_record("shop")]))
    letter = dead_letter_item(items[0], "pl", "mapper_parsing_exception", "bad field", 400)
    assert letter.index == "pl-dlq"
    assert letter.doc_id == items[0].doc_id
    doc = letter.document
    assert (doc["reason"], doc["status"], doc["namespace"]) == ("bad field", 400, "shop")
    assert doc["record"] == items[0].original
    assert doc["kafka"] == {"topic": "logs", "partition": 3, "offset": 41}


def test_rejected_field_is_read_from_common_reasons() -> None:
    """Mapping error reasons name their field in a few known shapes."""
    assert rejected_field("failed to parse field [log.offset] of type [long] in document") == ("log.offset")
    assert rejected_field("object mapping for [kubernetes.labels] tried to parse field") == ("kubernetes.labels")
    assert rejected_field("Can't get text on a START_OBJECT at 1:2") is None


def test_salvage_moves_the_value_and_keeps_the_rest() -> None:
    """The offending value moves to podlog.salvaged as text; the input is not modified."""
    record = _record()
    record["log"]["offset"] = "abc"
    result = salvage(record, "failed to parse field [log.offset] of type [long]")
    assert result is not None
    doc, field = result
    assert field == "log.offset"
    assert "offset" not in doc["log"]
    assert doc["podlog"]["salvaged"] == ["log.offset=abc"]
    assert record["log"]["offset"] == "abc"
    assert doc["message"] == "hello"


def test_salvage_of_a_sub_field_moves_its_parent() -> None:
    """A reason naming message.keyword moves message, the field present in the document."""
    result = salvage(_record(), "failed to parse field [message.keyword] of type [keyword]")
    assert result is not None
    assert result[1] == "message"


def test_salvage_never_moves_the_id_and_gives_up_without_a_field() -> None:
    """Nothing to move (or only event.id) means the document is dead-lettered instead."""
    assert salvage(_record(), "failed to parse field [event.id] of type [keyword]") is None
    assert salvage(_record(), "document too large") is None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_become_items_or_dead_letters(value: bytes) -> None:
    """Arbitrary message bytes never raise: undecodable ones become one dead letter."""
    try:
        decode_batch(value)
    except SchemaError:
        items, dead = _build(value)
        assert items == []
        assert [d[0] for d in dead] == ["schema"]
        assert base64.b64decode(dead[0][2].document["message_base64"]) == value


def _schema2(messages: list[bytes], parser: str = "json") -> bytes:
    from podlog.record import record_id_prefix
    from podlog.wire import StreamBatch, encode

    resource = {
        "kubernetes": {"namespace": "payments", "pod": {"name": "api-0", "uid": "u"}, "container": {"name": "app"}},
        "log": {"file": {"path": "/var/log/containers/a.log", "identity": "1:2:ab"}, "generation": 0},
        "podlog": {"metadata": "api", "parser": parser},
        "event_id_prefix": record_id_prefix("c", "n", "1:2:ab", 0),
    }
    offsets = [i * 100 for i in range(len(messages))]
    times = [1_795_737_600_000_000_000 + i for i in range(len(messages))]
    return encode(StreamBatch(resource, offsets, times, [0] * len(messages), [0] * len(messages), messages))


def test_a_schema_2_message_indexes_as_schema_1_would_with_its_payloads_parsed_here() -> None:
    """Same index, same _id as the schema 1 record of the same line; JSON parsed by the indexer."""
    items, dead = _build(_schema2([b'{"level":"error","msg":"charge failed"}', b"plain text"]))
    assert dead == []
    one = _record("payments", 0)
    assert [i.doc_id for i in items] == [one["event"]["id"], one["event"]["id"][:-1] + "100"]
    assert items[0].index == "pl-logs-long-2026.11.27"
    assert items[0].document["level"] == "error" and items[0].document["json"]["msg"] == "charge failed"
    assert items[1].document["json"] is None and items[1].document["podlog"]["schema"] == 2


def test_a_schema_2_message_under_logfmt_and_none_parsers() -> None:
    (item,), _ = _build(_schema2([b"level=warn msg=slow"], parser="logfmt"))
    assert item.document["level"] == "warn"
    (item,), _ = _build(_schema2([b'{"level":"error"}'], parser="none"))
    assert item.document["json"] is None


def test_a_damaged_schema_2_message_is_dead_lettered_with_its_reason() -> None:
    value = _schema2([b"one", b"two"])
    items, dead = _build(value[:-3])
    assert items == []
    ((reason, detail, _),) = dead
    assert reason == "schema" and "decompress" in detail
