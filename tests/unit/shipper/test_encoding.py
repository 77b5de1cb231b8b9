"""The wire format: one message per stream group, split or truncated to the size limit."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from podlog.metrics import sample
from podlog.record import Record, decode_batch, encode_batch, stream_key
from shipper.kafka import Message, encode_messages, plan_messages
from shipper.records import EncodedRecords, group_of, join_batch
from shipper.segment import decode_records, encode_payload
from tests.unit.shipper.helpers import record


def _encode(records: list[Record], limit: int = 1_000_000, topic: str = "logs") -> list[Message]:
    return encode_messages(records, topic=topic, default_retention="standard", max_message_bytes=limit)


def test_one_message_per_stream_keyed_by_stream_key() -> None:
    """Records of two containers become two messages, each keyed by its stream and in order."""
    records = [record("a", 0), record("b", 0), record("a", 1), record("b", 1), record("a", 2)]
    messages = _encode(records)
    assert [m.key for m in messages] == [stream_key(records[0]), stream_key(records[1])]
    assert [r["log"]["offset"] for r in decode_batch(messages[0].value)] == [0, 1, 2]
    assert [r["log"]["offset"] for r in decode_batch(messages[1].value)] == [0, 1]
    assert [m.records for m in messages] == [3, 2]


def test_records_whose_sections_are_not_maps_are_sent_not_dropped() -> None:
    """A record from elsewhere with a list for ``kubernetes`` or ``podlog`` gets a message of its own key."""
    odd = [{**record("a", 0), "kubernetes": ["x"]}, {**record("a", 1), "podlog": "standard"}]
    messages = _encode([record("b", 0), *odd])
    assert [m.key for m in messages] == [stream_key(record("b", 0)), b"//", stream_key(record("a", 1))]
    assert [r for m in messages for r in decode_batch(m.value)] == [record("b", 0), *odd]


def test_large_group_is_split_under_the_limit_in_order() -> None:
    """A group over max_message_bytes is split into messages that each fit, keeping order."""
    records = [record("a", i, "x" * 300) for i in range(50)]
    before = sample("podlog_shipper_messages_split_total")
    messages = _encode(records, limit=4096)
    assert len(messages) > 3
    assert all(len(m.value) <= 4096 for m in messages)
    decoded = [r for m in messages for r in decode_batch(m.value)]
    assert decoded == records
    assert sample("podlog_shipper_messages_split_total") == before + 1


def test_oversized_record_is_truncated_flagged_and_counted() -> None:
    """A single record above the limit is cut to fit, marked log.truncated, and counted."""
    big = record("a", 7, "é" * 5000)
    before = sample("podlog_shipper_records_truncated_total")
    (message,) = _encode([big], limit=2048)
    assert len(message.value) <= 2048
    (out,) = decode_batch(message.value)
    assert out["log"]["truncated"] is True
    assert out["event"]["id"] == big["event"]["id"]
    assert big["message"].startswith(out["message"])
    assert big["log"]["truncated"] is False  # the caller's record is untouched
    assert sample("podlog_shipper_records_truncated_total") == before + 1


def test_record_with_huge_json_payload_still_fits() -> None:
    """When cutting the message is not enough, the parsed json payload is dropped too."""
    big = record("a", 1, "short")
    big["json"] = {"blob": "z" * 10_000}
    (message,) = _encode([big], limit=2048)
    (out,) = decode_batch(message.value)
    assert len(message.value) <= 2048
    assert out["json"] is None
    assert out["log"]["truncated"] is True


def test_topic_template_uses_the_retention_class() -> None:
    """`{retention}` in the topic becomes the record's class, else the default."""
    tagged = record("a", 0)
    tagged["podlog"]["retention"] = "short"
    messages = _encode([tagged, record("b", 0)], topic="logs-{retention}")
    assert sorted(m.topic for m in messages) == ["logs-short", "logs-standard"]


@settings(max_examples=40, deadline=None)
@given(
    streams=st.lists(st.sampled_from("abc"), min_size=1, max_size=60),
    sizes=st.lists(st.integers(0, 3000), min_size=60, max_size=60),
    limit=st.integers(1024, 8192),
)
def test_any_input_fits_and_keeps_per_stream_order(
    streams: list[str], sizes: list[int], limit: int
) -> None:
    """Every message fits the limit and each stream's records come out complete and in order."""
    records = [record(s, i, "m" * sizes[i]) for i, s in enumerate(streams)]
    messages = _encode(records, limit=limit)
    assert all(len(m.value) <= limit for m in messages)
    for stream in set(streams):
        key = stream_key(record(stream, 0))
        got = [r["log"]["offset"] for m in messages if m.key == key for r in decode_batch(m.value)]
        assert got == [i for i, s in enumerate(streams) if s == stream]
    assert sum(m.records for m in messages) == len(records)
    assert all(orjson.loads(m.value)["schema"] == 1 for m in messages)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 400), min_size=1, max_size=25), min_size=1, max_size=4),
    limit=st.integers(1024, 6000),
)
def test_split_packs_messages_as_record_by_record_greedy(batches: list[list[int]], limit: int) -> None:
    """Cutting runs by bisection gives the messages a record-by-record greedy split gives.

    The group's records arrive as several runs (one per spool batch); each
    message takes records until the next would not fit.  (Every record fits
    alone here; records that do not are the test above.)
    """
    offset = 0
    spooled = []
    for sizes in batches:
        records = [record("a", offset + i, "m" * size) for i, size in enumerate(sizes)]
        offset += len(sizes)
        spooled.append(decode_records(encode_payload(records, {}, schema=1)))
    joined = EncodedRecords.concat(spooled)
    fragments = [orjson.dumps(r) for r in joined]
    budget = limit - len(encode_batch([]))
    expected: list[list[bytes]] = []
    used = 0
    for fragment in fragments:
        extra = len(fragment) + (1 if expected and expected[-1] else 0)
        if not expected or used + extra > budget:
            expected.append([fragment])
            used = len(fragment)
        else:
            expected[-1].append(fragment)
            used += extra
    messages = plan_messages(joined, topic="t", default_retention="standard", max_message_bytes=limit)
    assert [m.value() for m in messages] == [join_batch(part) for part in expected]
    assert [m.records for m in messages] == [len(part) for part in expected]
    assert all(m.value_size() <= limit for m in messages)


@settings(max_examples=40, deadline=None)
@given(
    messages=st.lists(st.text(max_size=50), max_size=20),
    streams=st.lists(st.sampled_from("ab"), min_size=20, max_size=20),
)
def test_joined_runs_equal_encode_batch_per_stream(messages: list[str], streams: list[str]) -> None:
    """A message joined from spooled runs is byte-for-byte what encode_batch makes of that stream."""
    records = [record(streams[i], i, m) for i, m in enumerate(messages)]
    encoded = EncodedRecords.from_records(records)
    for run in encoded.runs:
        stream = [r for r in records if group_of(r) == encoded.groups[run.group]]
        assert join_batch([run.data]) == encode_batch(stream)
        assert join_batch(run.fragments()) == encode_batch(stream)
    assert sorted(encoded, key=lambda r: r["log"]["offset"]) == records


def test_spooled_payload_round_trips_through_runs() -> None:
    """Records written to a spool payload come back as runs that decode to the same records."""
    records = [record("a", 0), record("b", 1, "ü\n\"q\""), record("a", 2)]
    again = decode_records(encode_payload(records, {}, schema=1))
    assert again.groups == [group_of(records[0]), group_of(records[1])]
    assert [(run.group, len(run.lengths)) for run in again.runs] == [(0, 2), (1, 1)]
    assert list(again) == [records[0], records[2], records[1]]  # grouped by stream
    assert len(decode_records(encode_payload([], {}, schema=1))) == 0


def test_concatenated_parts_merge_groups_and_keep_each_streams_order() -> None:
    """Parts read from several spool batches become one send: one group per stream, records in order."""
    first = [record("a", 0), record("b", 1), record("a", 2)]
    second = [record("c", 3), record("a", 4)]
    third = [record("b", 5)]
    parts = [decode_records(encode_payload(batch, {}, schema=1)) for batch in (first, second, third)]
    joined = EncodedRecords.concat(parts)
    assert len(joined) == 6
    assert joined.groups == [group_of(first[0]), group_of(first[1]), group_of(second[0])]
    offsets: list[list[int]] = [[] for _ in joined.groups]
    for run in joined.runs:
        offsets[run.group] += [r["log"]["offset"] for r in orjson.loads(join_batch([run.data]))["records"]]
    assert offsets == [[0, 2, 4], [1, 5], [3]]
    assert sorted(joined, key=lambda r: r["log"]["offset"]) == first + second + third
    assert EncodedRecords.concat(parts[:1]) is parts[0]


def test_records_sharing_maps_are_grouped_by_stream_and_retention() -> None:
    """Chunks of records that share their maps (a file read) keep each stream's order, even
    when files interleave, a stream's retention changes mid-way, or a record lacks a map."""
    from podlog.record import RecordBuilder, SharedMap, podlog_fields

    def builder(container: str, retention: str | None) -> RecordBuilder:
        k8s = SharedMap(namespace="ns", pod=SharedMap(name="p", uid="u"),
                        container=SharedMap(name=container))
        return RecordBuilder(cluster="c", node="n", identity=f"1:{container}:f", generation=0,
                             path=f"/{container}.log", kubernetes=k8s,
                             podlog=podlog_fields("api", retention))

    a, b, a_long = builder("a", None), builder("b", None), builder("a", "long")
    made = [a.build(i, "2026-11-27T00:00:00Z", 0, f"m{i}", "stdout") for i in range(3)]
    made += [b.build(i, "2026-11-27T00:00:00Z", 0, f"m{i}", "stdout") for i in range(2)]
    made += [a.build(3, "2026-11-27T00:00:00Z", 0, "m3", "stdout"),
             a_long.build(4, "2026-11-27T00:00:00Z", 0, "m4", "stdout"),
             b.build(2, "2026-11-27T00:00:00Z", 0, "m2", "stdout")]
    encoded = EncodedRecords.from_records(made)
    assert encoded.groups == [("u/a", ""), ("u/b", ""), ("u/a", "long")]
    offsets = [[orjson.loads(f)["log"]["offset"] for f in run.fragments()] for run in encoded.runs]
    assert offsets == [[0, 1, 2, 3], [0, 1, 2], [4]]
    assert [bytes(f) for run in encoded.runs for f in run.fragments()] == [
        orjson.dumps(r) for r in (*made[:3], made[5], *made[3:5], made[7], made[6])]

    loose = [made[0], {"message": "no maps"}, made[1]]
    again = EncodedRecords.from_records(loose)
    assert again.groups == [("u/a", ""), ("//", "")]
    assert sorted(again, key=lambda r: r["message"]) == sorted(loose, key=lambda r: r["message"])
