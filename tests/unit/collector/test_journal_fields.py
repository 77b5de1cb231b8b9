"""journalctl JSON lines as records: fields, ids, bad input, and the trip through schema 2."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st

from collector.journal import JournalSettings, journalctl_args
from collector.journal_cursor import JOURNAL_KEY, JournalCursorStore, journal_mark
from collector.journal_fields import JournalEntry, JournalRecords, parse_cursor, parse_entry
from collector.parsers.entry import Rejected
from podlog.record import stream_key
from podlog.wire import batch_from_records, decode, encode, to_records

CURSOR = "s=ae939fdd45924493bd1a7c7f3e8d125d;i=1f;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a2;x=48"


def _line(**fields: object) -> bytes:
    doc: dict[str, object] = {"__CURSOR": CURSOR, "__REALTIME_TIMESTAMP": "1700000000000001",
                              "MESSAGE": "hello", "PRIORITY": "6", "_SYSTEMD_UNIT": "kubelet.service",
                              "SYSLOG_IDENTIFIER": "kubelet", "_PID": "42"}
    doc.update(fields)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


def _entry(line: bytes) -> JournalEntry:
    parsed = parse_entry(line)
    assert isinstance(parsed, JournalEntry)
    return parsed


def _builder(node: str = "node-1", max_message_bytes: int = 1000) -> JournalRecords:
    return JournalRecords(cluster="c", node=node, max_message_bytes=max_message_bytes)


def test_cursor_gives_the_sequence_number_id_and_the_hex_sequence_number() -> None:
    """``s=`` and ``i=`` (hexadecimal) of a cursor; None when either is missing."""
    assert parse_cursor(CURSOR) == ("ae939fdd45924493bd1a7c7f3e8d125d", 31)
    assert parse_cursor("b=1;m=2") is None
    assert parse_cursor("s=a;i=zz") is None


def test_entry_fields_map_to_the_record() -> None:
    """MESSAGE, PRIORITY, unit, identifier, pid and the realtime clock land where the docs say."""
    record, truncated, invalid = _builder().build(_entry(_line()))
    assert (truncated, invalid) == (False, False)
    assert record["message"] == "hello"
    assert record["timestamp_ns"] == 1_700_000_000_000_001_000
    assert record["@timestamp"].startswith("2023-11-14T22:13:20.000001")
    assert record["level"] == record["log"]["level"] == "info"
    assert record["log"]["source"] == "journal"
    assert record["log"]["offset"] == 31
    assert record["systemd"] == {"unit": "kubelet.service"}
    assert record["process"] == {"pid": 42}
    assert record["syslog"] == {"identifier": "kubelet"}
    assert record["host"] == {"name": "node-1"}
    assert record["kubernetes"] == {}
    assert record["event"]["id"].endswith(".31")


def test_event_id_depends_on_cluster_node_and_position_only() -> None:
    """The same entry read twice has one id; another node's entry at the same position another."""
    first, _, _ = _builder().build(_entry(_line()))
    again, _, _ = _builder().build(_entry(_line(MESSAGE="other text", _PID="7", PRIORITY="3")))
    elsewhere, _, _ = _builder(node="node-2").build(_entry(_line()))
    assert first["event"]["id"] == again["event"]["id"]
    assert first["event"]["id"] != elsewhere["event"]["id"]


def test_byte_array_message_is_decoded_with_replacement_and_flagged() -> None:
    """A MESSAGE journalctl prints as a byte array (invalid UTF-8) is kept, replaced, flagged."""
    record, truncated, invalid = _builder().build(_entry(_line(MESSAGE=list(b"bad \xff end"))))
    assert record["message"] == "bad \ufffd end"
    assert (truncated, invalid) == (False, True)


def test_long_message_is_cut_without_counting_a_split_character_as_invalid() -> None:
    """A cut through a multi-byte character is not invalid UTF-8."""
    record, truncated, invalid = _builder(max_message_bytes=5).build(_entry(_line(MESSAGE="abcd\u00e9f")))
    assert truncated and not invalid
    assert record["message"] == "abcd\ufffd"
    assert record["log"]["truncated"] is True


def test_repeated_and_missing_fields() -> None:
    """A field given twice keeps its first value; no MESSAGE is an empty one; no PRIORITY no level."""
    record, _, _ = _builder().build(_entry(_line(MESSAGE=["one", "two"], PRIORITY=None, _PID=None)))
    assert record["message"] == "one"
    assert record["level"] is None and "level" not in record["log"]
    assert record["process"] == {}
    record, _, _ = _builder().build(_entry(_line(MESSAGE=None)))
    assert record["message"] == ""


def test_lines_that_are_no_entry_are_rejected_with_a_reason() -> None:
    """Not JSON, not an object, no cursor: Rejected, never an exception."""
    assert isinstance(parse_entry(b"{broken"), Rejected)
    assert parse_entry(b"[1]") == Rejected("invalid_json", "not a JSON object")
    rejected = parse_entry(orjson.dumps({"MESSAGE": "x"}))
    assert isinstance(rejected, Rejected) and rejected.error_code == "no_cursor"


@given(st.binary(max_size=300))
def test_any_bytes_give_an_entry_or_rejected(data: bytes) -> None:
    """Arbitrary journalctl output never raises."""
    result = parse_entry(data)
    assert isinstance(result, (JournalEntry, Rejected))


def test_journal_records_survive_schema_2_with_their_node_fields() -> None:
    """A group of journal records encodes with its maps once and decodes with every field."""
    builder = _builder()
    records = [builder.build(_entry(_line(__CURSOR=CURSOR.replace("i=1f", f"i={i:x}"),
                                          MESSAGE=f"m{i}")))[0] for i in range(1, 4)]
    batch = batch_from_records(records)
    assert batch.resource["log"]["source"] == "journal"
    assert batch.resource["host"] == {"name": "node-1"}
    decoded = to_records(decode(encode(batch)))
    assert [r["message"] for r in decoded] == ["m1", "m2", "m3"]
    assert [r["event"]["id"] for r in decoded] == [r["event"]["id"] for r in records]
    first = decoded[0]
    assert first["log"]["source"] == "journal"
    assert first["level"] == first["log"]["level"] == "info"
    assert first["systemd"] == {"unit": "kubelet.service"}
    assert first["process"] == {"pid": 42}
    assert first["syslog"] == {"identifier": "kubelet"}
    assert first["host"] == {"name": "node-1"}


def test_container_messages_decode_with_source_container() -> None:
    """A resource that names no source (every container message) reads as log.source container."""
    builder = _builder()
    record = builder.build(_entry(_line()))[0]
    batch = batch_from_records([record])
    batch.resource["log"].pop("source")
    batch.resource["log"].pop("level")
    (decoded,) = to_records(decode(encode(batch)))
    assert decoded["log"]["source"] == "container"
    assert decoded["level"] is None


def test_node_records_are_keyed_by_source_and_node() -> None:
    """Journal records of a node share one Kafka key, apart from any pod's."""
    record = _builder().build(_entry(_line()))[0]
    assert stream_key(record) == b"journal@node-1"
    pod = {"log": {"source": "container"}, "kubernetes": {"pod": {"uid": "u"}, "container": {"name": "c"}}}
    assert stream_key(pod) == b"u/c"


def test_journalctl_arguments_follow_from_the_cursor_or_the_start() -> None:
    """After a cursor every later entry (--no-tail); tail: none of the old; matches ORed with +."""
    settings = JournalSettings(directory="/j", matches=("_SYSTEMD_UNIT=a.service", "_TRANSPORT=kernel"))
    args = journalctl_args(settings, "s=1;i=2")
    assert "--no-tail" in args and "--after-cursor=s=1;i=2" in args and "--directory=/j" in args
    assert args[-3:] == ["_SYSTEMD_UNIT=a.service", "+", "_TRANSPORT=kernel"]
    assert "--cursor=s=1;i=2" in journalctl_args(settings, "s=1;i=2", gone=True)
    assert "--lines=0" in journalctl_args(JournalSettings(read_from="tail"), None)
    assert "--no-tail" in journalctl_args(JournalSettings(), None)


def test_cursor_store_moves_only_on_acknowledgement_and_persists(tmp_path: Path) -> None:
    """The cursor moves with the journal's mark, is written by flush, and loads back."""
    store = JournalCursorStore(tmp_path)
    assert store.load() is None
    store.acknowledged({"other": journal_mark("s=x;i=9", 9)})
    assert store.position is None
    store.acknowledged({JOURNAL_KEY: journal_mark("s=x;i=a", 10)})
    store.flush()
    again = JournalCursorStore(tmp_path)
    position = again.load()
    assert position is not None and position.cursor == "s=x;i=a" and position.seqnum == 10


def test_cursor_never_moves_back_within_one_sequence(tmp_path: Path) -> None:
    """An older mark of the same sequence number id (a replay acknowledged late) is ignored;
    a new sequence (another journal writer) is taken."""
    store = JournalCursorStore(tmp_path)
    store.acknowledged({JOURNAL_KEY: journal_mark("s=x;i=a", 10)})
    store.acknowledged({JOURNAL_KEY: journal_mark("s=x;i=4", 4)})
    assert store.position is not None and store.position.seqnum == 10
    store.acknowledged({JOURNAL_KEY: journal_mark("s=y;i=2", 2)})
    assert store.position.cursor == "s=y;i=2"


def test_unreadable_cursor_file_starts_anew(tmp_path: Path) -> None:
    """A damaged or foreign-version cursor file is reported and ignored."""
    (tmp_path / "journal.json").write_bytes(b"{not json")
    assert JournalCursorStore(tmp_path).load() is None
    (tmp_path / "journal.json").write_bytes(orjson.dumps({"version": 99, "cursor": "c", "seqnum": 1}))
    assert JournalCursorStore(tmp_path).load() is None
