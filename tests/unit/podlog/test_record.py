"""The record contract: deterministic ids, timestamps, batch encoding."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from podlog.errors import SchemaError
from podlog.record import (
    SCHEMA_VERSION,
    RecordBuilder,
    SharedMap,
    SourcePosition,
    decode_batch,
    encode_batch,
    format_timestamp_ns,
    make_record,
    parse_timestamp_ns,
    podlog_fields,
    record_id,
    record_id_prefix,
    stream_key,
)

POS = SourcePosition("prod", "node-1", "2049:1234:abcd", 0, 4096)


def test_record_id_is_stable_for_the_same_position() -> None:
    """Re-reading a line after a crash yields the same event.id."""
    assert record_id(POS) == record_id(SourcePosition(*POS))
    assert record_id(POS) == "Kr8f7b8100s8D6hPScq_kg.4096"  # fixed forever: replays must match


def test_record_id_is_the_file_prefix_then_the_hex_offset() -> None:
    """Ids of one file generation share a 23-char prefix; the offset follows in decimal."""
    prefix = record_id_prefix(POS.cluster, POS.node, POS.identity, POS.generation)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}\.", prefix)
    assert record_id(POS) == prefix + "4096"
    assert record_id(POS._replace(offset=0)) == prefix + "0"


@given(
    st.text(max_size=300), st.text(max_size=300), st.text(max_size=300),
    st.integers(0, 2**63), st.integers(0, 2**63),
)
def test_record_id_is_a_valid_opensearch_id(
    cluster: str, node: str, identity: str, generation: int, offset: int
) -> None:
    """Whatever the names, the id is short URL-safe ASCII (OpenSearch allows 512 bytes)."""
    value = record_id(SourcePosition(cluster, node, identity, generation, offset))
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}\.[0-9]{1,19}", value)
    assert len(value.encode()) <= 42


@pytest.mark.parametrize(
    "changed",
    [
        POS._replace(cluster="staging"),
        POS._replace(node="node-2"),
        POS._replace(identity="2049:1234:ffff"),
        POS._replace(generation=1),
        POS._replace(offset=4097),
    ],
)
def test_record_id_changes_with_every_part_of_the_position(changed: SourcePosition) -> None:
    """New content at a reused offset (truncation, inode reuse) never collides with the old line."""
    assert record_id(changed) != record_id(POS)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (SourcePosition("ab", "c", "x", 0, 1), SourcePosition("a", "bc", "x", 0, 1)),
        (SourcePosition("a", "b", "x:1", 1, 1), SourcePosition("a", "b", "x:11", 1, 1)),
        (SourcePosition("a", "b", "x", 1, 11), SourcePosition("a", "b", "x", 11, 1)),
        (SourcePosition("a", "b", "x", 1, 23), SourcePosition("a", "b", "x", 12, 3)),
    ],
)
def test_record_id_separator_prevents_ambiguous_concatenation(
    a: SourcePosition, b: SourcePosition
) -> None:
    """Fields are delimited, so moving characters between fields changes the id."""
    assert record_id(a) != record_id(b)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T00:00:00Z", 1795737600_000000000),
        ("2026-11-27T00:00:00.123456789Z", 1795737600_123456789),
        ("2026-11-27T00:00:00.5Z", 1795737600_500000000),
        ("2026-11-27T01:00:00.000000001+01:00", 1795737600_000000001),
    ],
)
def test_parse_timestamp_keeps_nanoseconds(text: str, expected: int) -> None:
    """Runtime timestamps keep all nine fraction digits, in UTC."""
    assert parse_timestamp_ns(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-27T00:00:00", "2026-11-27T00:00:00.1234567890Z"])
def test_parse_timestamp_rejects_garbage(text: str) -> None:
    """Bad timestamps raise ValueError rather than producing a wrong time."""
    with pytest.raises(ValueError):
        parse_timestamp_ns(text)


@given(st.integers(min_value=0, max_value=4_000_000_000 * 1_000_000_000))
def test_format_then_parse_round_trips(ns: int) -> None:
    """format_timestamp_ns is the inverse of parse_timestamp_ns."""
    assert parse_timestamp_ns(format_timestamp_ns(ns)) == ns


def _record(**kwargs: object) -> dict[str, object]:
    base: dict[str, object] = {
        "position": POS,
        "timestamp": "2026-11-27T00:00:00.1Z",
        "timestamp_ns": 1795737600_100000000,
        "message": "hello",
        "stream": "stdout",
        "path": "/var/log/containers/a_b_c-1.log",
        "kubernetes": {"namespace": "b", "pod": {"name": "a", "uid": "u1"}, "container": {"name": "c"}},
    }
    base.update(kwargs)
    return make_record(**base)  # type: ignore[arg-type]


def test_make_record_has_every_contract_field() -> None:
    """A record carries the ECS-style fields documented in docs/record.md."""
    record = _record()
    assert record["event"]["id"] == record_id(POS)
    assert record["log"] == {
        "file": {"path": "/var/log/containers/a_b_c-1.log", "identity": POS.identity},
        "offset": 4096,
        "generation": 0,
        "truncated": False,
    }
    assert record["podlog"]["schema"] == SCHEMA_VERSION
    assert set(record) >= {"@timestamp", "timestamp_ns", "message", "stream", "level", "json", "kubernetes"}


def test_builder_records_share_the_per_file_maps_read_only() -> None:
    """Records of one file share log.file, kubernetes and podlog; writing into them raises."""
    kubernetes = SharedMap(namespace="b", pod=SharedMap(name="a"))
    builder = RecordBuilder(
        cluster=POS.cluster, node=POS.node, identity=POS.identity, generation=POS.generation,
        path="/p.log", kubernetes=kubernetes, podlog=podlog_fields("path"),
    )
    first = builder.build(4096, "2026-11-27T00:00:00.1Z", 1795737600_100000000, "a", "stdout")
    second = builder.build(4200, "2026-11-27T00:00:00.2Z", 1795737600_200000000, "b", "stderr")
    assert first == _record(message="a", path="/p.log", kubernetes=kubernetes)
    assert second["event"]["id"] == record_id(POS._replace(offset=4200))
    for key in ("kubernetes", "podlog"):
        assert first[key] is second[key]
    assert first["log"]["file"] is second["log"]["file"]
    assert first["log"] is not second["log"] and first["event"] is not second["event"]
    for shared in (first["kubernetes"], first["podlog"], first["log"]["file"]):
        with pytest.raises(TypeError, match="read-only"):
            shared["x"] = 1
        with pytest.raises(TypeError, match="read-only"):
            shared.setdefault("x", 1)
    assert orjson.loads(orjson.dumps(first)) == first


def test_make_record_sub_maps_are_its_own() -> None:
    """make_record gives each record writable sub-maps of its own."""
    kubernetes = {"namespace": "b"}
    one, two = _record(kubernetes=kubernetes), _record(kubernetes=kubernetes)
    one["podlog"]["retention"] = "long"
    one["kubernetes"]["namespace"] = "c"
    one["log"]["file"]["path"] = "/other"
    assert two["podlog"] == {"schema": SCHEMA_VERSION, "metadata": "path"}
    assert two["kubernetes"] == kubernetes == {"namespace": "b"}
    assert two["log"]["file"]["path"] == "/var/log/containers/a_b_c-1.log"


def test_batch_round_trip() -> None:
    """encode_batch and decode_batch are inverses."""
    records = [_record(), _record(message="second")]
    assert decode_batch(encode_batch(records)) == records


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a podlog batch"),
        (orjson.dumps({"schema": 99, "records": []}), "unknown record schema version 99"),
        (orjson.dumps({"schema": 1, "records": {}}), "not a list"),
    ],
)
def test_decode_rejects_unknown_or_broken_batches(value: bytes, match: str) -> None:
    """Unknown schema versions and foreign bytes fail with a clear error."""
    with pytest.raises(SchemaError, match=match):
        decode_batch(value)


def test_stream_key_groups_a_container_and_falls_back_to_names() -> None:
    """The Kafka key is pod UID + container, or namespace/pod when the UID is unknown."""
    assert stream_key(_record()) == b"u1/c"
    no_uid = _record(kubernetes={"namespace": "b", "pod": {"name": "a"}, "container": {"name": "c"}})
    assert stream_key(no_uid) == b"b/a/c"


@pytest.mark.parametrize(
    ("kubernetes", "key"),
    [
        (["not", "a", "map"], b"//"),
        ("text", b"//"),
        ({"namespace": "b", "pod": "p", "container": ["c"]}, b"b//"),
        ({"pod": {"uid": 7, "name": None}, "container": {"name": "\ud800"}}, b"7/?"),
    ],
)
def test_stream_key_of_a_malformed_section_is_a_key_not_a_crash(kubernetes: object, key: bytes) -> None:
    """A record from elsewhere whose sections are not maps still gets a key (one for all such)."""
    record = {**_record(), "kubernetes": kubernetes}
    assert stream_key(record) == key
