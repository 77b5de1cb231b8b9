"""Schema 2 messages: round trips, and every malformed value refused with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podlog.errors import SchemaError
from podlog.record import format_timestamp_ns, record_id_prefix
from podlog.wire import FLAG_TRUNCATED, StreamBatch, decode, encode, is_schema2, to_records

PREFIX = record_id_prefix("c", "node-1", "1:2:ab", 0)
RESOURCE = {
    "kubernetes": {"namespace": "shop", "pod": {"name": "web-1", "uid": "u1"}, "container": {"name": "app"}},
    "log": {"file": {"path": "/var/log/containers/web-1_shop_app-x.log", "identity": "1:2:ab"}, "generation": 0},
    "host": {"name": "node-1"},
    "podlog": {"metadata": "api", "parser": "json"},
    "event_id_prefix": PREFIX,
}


def _batch(messages: list[bytes], flags: list[int] | None = None) -> StreamBatch:
    offsets = []
    at = 0
    for message in messages:
        offsets.append(at)
        at += len(message) + 40
    return StreamBatch(RESOURCE, offsets, [1_795_737_600_000_000_000 + i for i in range(len(messages))],
                       [i % 2 for i in range(len(messages))], flags or [0] * len(messages), messages)


@given(messages=st.lists(st.text().map(str.encode), max_size=40), codec=st.sampled_from(["zstd", "none"]))
def test_a_batch_round_trips(messages: list[bytes], codec: str) -> None:
    batch = _batch(messages)
    value = encode(batch, codec)
    assert is_schema2(value)
    assert decode(value) == StreamBatch(RESOURCE, list(batch.offsets), list(batch.times_ns),
                                        list(batch.streams), list(batch.flags), messages)


def test_records_have_the_schema_1_layout_and_the_same_event_ids() -> None:
    """event.id is the prefix of the file generation and the offset, as in schema 1."""
    (first, second) = to_records(decode(encode(_batch([b"GET /", "café \xff".encode()], [0, FLAG_TRUNCATED]))))
    assert first["event"]["id"] == f"{PREFIX}0"
    assert first["@timestamp"] == format_timestamp_ns(first["timestamp_ns"])
    assert (first["stream"], second["stream"]) == ("stdout", "stderr")
    assert second["message"] == "café \xff" and second["log"]["truncated"] is True
    assert first["kubernetes"]["pod"]["uid"] == "u1" and first["host"] == {"name": "node-1"}
    assert first["podlog"] == {"metadata": "api", "schema": 2}


def test_invalid_utf8_is_replaced_not_raised() -> None:
    (record,) = to_records(decode(encode(_batch([b"ok \xff\xfe"]))))
    assert record["message"] == "ok \ufffd\ufffd"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda v: v[:3], "no PLG"),
        (lambda v: v[:4], "truncated before its codec"),
        (lambda v: v[:5] + b"\x00" * 8, "does not decompress"),
        (lambda v: v[:4] + b"\x07" + v[5:], "unknown codec"),
    ],
)
def test_a_damaged_message_is_refused_with_its_reason(mangle: object, reason: str) -> None:
    value = encode(_batch([b"one", b"two"]))
    with pytest.raises(SchemaError, match=reason):
        decode(mangle(value))  # type: ignore[operator]


def test_columns_that_do_not_add_up_are_refused() -> None:
    """Cut short, or with bytes past the last message: the lengths no longer match."""
    plain = encode(_batch([b"one", b"two"]), "none")
    with pytest.raises(SchemaError, match="unequal length"):
        decode(plain[:-1])
    with pytest.raises(SchemaError, match="unequal length"):
        decode(plain + b"x")
    with pytest.raises(SchemaError, match="runs past the message"):
        decode(plain[:60])
    header_end = 5 + 4 + int.from_bytes(plain[5:9], "little")
    with pytest.raises(SchemaError, match="columns truncated"):
        decode(plain[: header_end + 10])


def test_unequal_columns_are_not_encoded() -> None:
    batch = StreamBatch(RESOURCE, [0, 1], [0], [0, 0], [0, 0], [b"a", b"b"])
    with pytest.raises(ValueError, match="unequal"):
        encode(batch)


def test_schema_1_records_become_one_batch_with_the_same_ids() -> None:
    from podlog.record import SourcePosition, make_record
    from podlog.wire import batch_from_records

    records = [
        make_record(position=SourcePosition("c", "n", "1:2:ab", 0, offset), timestamp="", timestamp_ns=offset,
                    message=f"line {offset}", stream="stdout", path="/p", kubernetes={"namespace": "shop"})
        for offset in (0, 17, 1000)
    ]
    again = to_records(decode(encode(batch_from_records(records))))
    assert [r["event"]["id"] for r in again] == [r["event"]["id"] for r in records]
    assert [r["message"] for r in again] == ["line 0", "line 17", "line 1000"]
    other = make_record(position=SourcePosition("c", "n", "1:2:ab", 1, 5), timestamp="", timestamp_ns=5,
                        message="x", stream="stdout", path="/p", kubernetes={"namespace": "shop"})
    with pytest.raises(ValueError, match="more than one"):
        batch_from_records([*records, other])


@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=30), limit=st.integers(600, 5000))
def test_a_batch_over_the_limit_is_split_in_order_and_nothing_is_dropped(sizes: list[int], limit: int) -> None:
    """Every part fits; rows keep their order and ids; only a line too long alone is cut, flagged."""
    import os

    from podlog.wire import encode_fitting

    messages = [("é" + os.urandom(size).hex())[: size or 1].encode() for size in sizes]
    batch = _batch(messages)
    values = encode_fitting(batch, limit, "none")
    assert all(len(v) <= limit for v in values)
    parts = [decode(v) for v in values]
    assert [o for p in parts for o in p.offsets] == list(batch.offsets)
    for part in parts:
        for flags, message, offset in zip(part.flags, part.messages, part.offsets, strict=True):
            original = messages[list(batch.offsets).index(offset)]
            assert message == original or (flags & FLAG_TRUNCATED and original.startswith(message))
