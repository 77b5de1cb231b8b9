"""Line decoders: golden files, edge cases, and properties over arbitrary bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode import LineDecoder, detect_format
from collector.parsers.cri import parse_cri_line, render_cri_line
from collector.parsers.docker import parse_docker_line, render_docker_line
from collector.parsers.entry import Entry, Rejected, timestamp_ns
from collector.partial import PartialJoiner
from podlog.metrics import sample
from podlog.record import parse_timestamp_ns

DATA = Path(__file__).resolve().parents[2] / "data"
REJECTED = "podlog_collector_lines_rejected_total"


def _decode_file(path: Path) -> list[Entry]:
    raw = path.read_bytes()
    lines = raw.split(b"\n")[:-1]
    offsets, offset = [], 0
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    decoder = LineDecoder(str(path))
    return PartialJoiner(1 << 20).feed(decoder.decode(lines, offsets))


@pytest.mark.parametrize("case", ["cri/basic", "docker/basic"])
def test_golden_file_decodes_to_expected_entries(case: str) -> None:
    """Each golden log decodes to its expected entries, rejected lines kept as raw text."""
    expected = [json.loads(line) for line in (DATA / f"{case}.expected.jsonl").read_text().splitlines()]
    rejected_before = {
        e["rejected"]: sample(REJECTED, {"reason": e["rejected"]}) for e in expected if "rejected" in e
    }
    entries = _decode_file(DATA / f"{case}.log")
    assert [(e.offset, e.stream, e.message) for e in entries] == [
        (x["offset"], x["stream"], x["message"]) for x in expected
    ]
    for entry, want in zip(entries, expected, strict=True):
        if "rejected" not in want:
            assert entry.time == want["@timestamp"]
            assert entry.time_ns == want["timestamp_ns"]
    for reason, before in rejected_before.items():
        assert sample(REJECTED, {"reason": reason}) == before + 1


def test_format_is_detected_from_the_first_line() -> None:
    """Docker JSON, CRI and anything else (plain) are told apart by the first line."""
    assert detect_format(b'{"log":"x\\n","stream":"stdout","time":"2026-11-27T00:00:00Z"}') == "docker"
    assert detect_format(b"2026-11-27T00:00:00.1Z stderr P part") == "cri"
    assert detect_format(b"INFO starting") == "plain"


def test_invalid_utf8_is_replaced_and_counted() -> None:
    """A CRI line with invalid UTF-8 keeps its text with replacement characters."""
    before = sample(REJECTED, {"reason": "invalid_utf8"})
    decoder = LineDecoder("x.log", "cri")
    (entry,) = decoder.decode([b"2026-11-27T00:00:00.1Z stdout F bad \xff\xfe byte"], [0])
    assert entry.message == "bad \ufffd\ufffd byte"
    assert sample(REJECTED, {"reason": "invalid_utf8"}) == before + 1


def test_nul_padding_is_skipped_and_counted() -> None:
    """A run of NUL bytes (pre-allocated file after a crash) is counted, not shipped."""
    before = sample(REJECTED, {"reason": "empty_line"})
    decoder = LineDecoder("x.log", "cri")
    entries = decoder.decode([b"\x00" * 64, b"2026-11-27T00:00:00.1Z stdout F ok"], [0, 65])
    assert [e.message for e in entries] == ["ok"]
    assert sample(REJECTED, {"reason": "empty_line"}) == before + 1


def test_docker_line_without_time_is_rejected_not_raised() -> None:
    """A json-file object without ``time`` is a Rejected line with a bounded code."""
    assert parse_docker_line(b'{"log":"x\\n","stream":"stdout"}', 0) == Rejected(
        "invalid_timestamp", "no string 'time' field"
    )


def test_fast_timestamp_matches_the_reference_parser() -> None:
    """The cached fast path gives the same nanoseconds as the record module's parser."""
    for value in ("2026-11-27T00:00:00.000000001Z", "2026-11-27T23:59:59.5Z",
                  "2026-11-27T01:02:03.123456789+02:00", "2026-11-27T01:02:03Z"):
        assert timestamp_ns(value) == parse_timestamp_ns(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_entry_or_a_rejection(line: bytes) -> None:
    """Whatever the bytes, each decoder returns an Entry or a Rejected, never raises."""
    line = line.replace(b"\n", b"")
    for parse in (parse_cri_line, parse_docker_line):
        result = parse(line, 7)
        assert isinstance(result, (Entry, Rejected))
    for fmt in ("cri", "docker", "plain"):
        entries = LineDecoder("fuzz.log", fmt).decode([line], [0])
        assert len(entries) <= 1
        if line.strip(b"\x00 \t\r"):
            assert len(entries) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=400),
    st.lists(st.integers(min_value=1, max_value=50), max_size=20),
    st.sampled_from(["cri", "docker"]),
)
def test_random_partial_chunking_joins_back_to_the_line(
    text: str, cuts: list[int], fmt: str
) -> None:
    """Any split of a line into P..P F fragments (or Docker pieces) joins back to it."""
    pieces, rest = [], text
    for cut in cuts:
        if not rest:
            break
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    time = "2026-11-27T00:00:00.000000001Z"
    if fmt == "cri":
        raw = [render_cri_line(time, "stdout", p.encode(), partial=i < len(pieces) - 1)
               for i, p in enumerate(pieces)]
    else:
        raw = [render_docker_line(time, "stdout", p + ("\n" if i == len(pieces) - 1 else ""))
               for i, p in enumerate(pieces)]
    lines = [r[:-1] for r in raw]
    offsets = [sum(len(r) for r in raw[:i]) for i in range(len(raw))]
    entries = PartialJoiner(1 << 20).feed(LineDecoder("x.log", fmt).decode(lines, offsets))
    # Raw NUL bytes in a CRI file are stripped; Docker escapes them in JSON and keeps them.
    want = text if fmt == "docker" else text.replace("\x00", "")
    assert [(e.message, e.offset) for e in entries] == [(want, 0)]


def test_joined_line_over_the_limit_is_truncated_and_marked() -> None:
    """Fragments past max_bytes are cut; the joined line says it was truncated."""
    joiner = PartialJoiner(10)
    parts = [Entry(i * 10, "t", 0, "stdout", "abcdef", True) for i in range(3)]
    parts.append(Entry(30, "t", 0, "stdout", "end", False))
    (entry,) = joiner.feed(parts)
    assert entry.message == "abcdefabcd"
    assert entry.truncated
    assert joiner.take_cut() == 11


def test_fragments_hold_their_bytes_and_hand_back_what_an_earlier_file_carried() -> None:
    """An open line counts the bytes its fragments take in this file; what the previous file
    handed over comes back as it was handed over (for a drain of this file's copy)."""
    joiner = PartialJoiner(1 << 20)
    joiner.carry({"stderr": (b"first half|", "2026-11-27T00:00:00.000000001Z", 1)})
    lines = [b"2026-11-27T00:00:01.000000000Z stderr P more|", b"2026-11-27T00:00:01.000000000Z stdout F out"]
    entries = LineDecoder("f").decode(lines, [0, len(lines[0]) + 1])
    assert [e.message for e in joiner.feed(entries)] == ["out"]
    assert joiner.pending_held() == len(lines[0]) + 1
    assert joiner.take_carried() == {"stderr": (b"first half|", "2026-11-27T00:00:00.000000001Z", 1)}


def test_a_carried_line_once_complete_no_longer_holds_the_earlier_files_mark() -> None:
    """The earlier file's mark is held by the line it handed over, not by a new open line here."""
    joiner = PartialJoiner(1 << 20)
    joiner.carry({"stdout": (b"m1 first|", "2026-11-27T00:00:00.000000001Z", 1)})
    assert joiner.holds_carried()
    lines = [b"2026-11-27T00:00:01.000000000Z stdout F end", b"2026-11-27T00:00:01.000000000Z stdout P m2 open"]
    done = joiner.feed(LineDecoder("f").decode(lines, [0, len(lines[0]) + 1]))
    assert [e.message for e in done] == ["m1 first|end"]
    assert joiner.has_pending() and not joiner.holds_carried()
