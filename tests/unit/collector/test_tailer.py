"""One file's tailer: long lines, marks that never skip pending data, truncation."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.tailer import Tailer, TailerSettings
from podlog.metrics import sample
from tests.unit.collector.helpers import open_tailer


def _tailer(path: Path, *, max_line: int = 100) -> Tailer:
    settings = TailerSettings(cluster="c", node="n", chunk_bytes=64, max_line_bytes=max_line,
                              multiline_flush_seconds=1.0, multiline_max_lines=100)
    return open_tailer(path, settings, fmt="plain")


def test_long_line_is_truncated_without_buffering_it_whole(tmp_path: Path) -> None:
    """A 10 KB line with a 100-byte limit ships 100 bytes, marked, and reading goes on."""
    path = tmp_path / "a.log"
    path.write_bytes(b"short\n" + b"x" * 10_000 + b"\nafter\n")
    before = sample("podlog_collector_lines_truncated_total")
    tailer = _tailer(path)
    records = tailer.read(1 << 20)
    tailer.close()
    assert [r["message"] for r in records] == ["short", "x" * 100, "after"]
    assert [r["log"]["truncated"] for r in records] == [False, True, False]
    assert records[2]["log"]["offset"] == 6 + 10_001
    assert sample("podlog_collector_lines_truncated_total") == before + 1
    assert tailer.mark().offset == path.stat().st_size


def test_unterminated_line_is_held_and_the_mark_stays_before_it(tmp_path: Path) -> None:
    """A line without its newline is not emitted yet; the mark points at its start."""
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntw")
    tailer = _tailer(path)
    assert [r["message"] for r in tailer.read(1 << 20)] == ["one"]
    assert tailer.mark().offset == 4
    with path.open("ab") as f:
        f.write(b"o\n")
    assert [r["message"] for r in tailer.read(1 << 20)] == ["two"]
    assert tailer.mark().offset == 8
    tailer.close()


def test_pending_cri_fragment_holds_the_mark(tmp_path: Path) -> None:
    """A P fragment without its F keeps the mark at the fragment: a restart re-reads it whole."""
    path = tmp_path / "a.log"
    path.write_bytes(b"2026-11-27T00:00:00.1Z stdout F a\n2026-11-27T00:00:00.2Z stdout P b1\n")
    tailer = _tailer(path)
    tailer.decoder.format = None
    records = tailer.read(1 << 20)
    assert [r["message"] for r in records] == ["a"]
    assert tailer.mark().offset == 34
    tailer.close()


def test_truncation_restarts_at_zero_in_a_new_generation(tmp_path: Path) -> None:
    """After copytruncate the new content is read from 0 with generation + 1."""
    path = tmp_path / "a.log"
    path.write_bytes(b"old 1\nold 2\n")
    tailer = _tailer(path)
    assert len(tailer.read(1 << 20)) == 2
    os.truncate(path, 0)
    with path.open("ab") as f:
        f.write(b"new\n")
    records = tailer.read(1 << 20) + tailer.read(1 << 20)
    assert [(r["message"], r["log"]["generation"], r["log"]["offset"]) for r in records] == [
        ("new", 1, 0)
    ]
    tailer.close()


def test_event_ids_are_stable_across_rereads(tmp_path: Path) -> None:
    """Reading the same bytes twice gives the same event ids (replays overwrite)."""
    path = tmp_path / "a.log"
    path.write_bytes(b"a\nb\n")
    first = _tailer(path)
    second = _tailer(path)
    ids_a = [r["event"]["id"] for r in first.read(1 << 20)]
    ids_b = [r["event"]["id"] for r in second.read(1 << 20)]
    first.close()
    second.close()
    assert ids_a == ids_b and len(set(ids_a)) == 2


_TIME = "2026-11-27T00:00:01.25Z"
_TIME9 = "2026-11-27T00:00:02.123456789Z"
_ASCII = st.text(st.characters(max_codepoint=127), max_size=40)
_LINE = st.one_of(
    st.text(max_size=40).map(lambda t: f"{_TIME} stdout F {t}".encode()),
    _ASCII.map(lambda t: f"{_TIME9} stdout F {t}".encode()),
    _ASCII.map(lambda t: f"{_TIME9} stderr P {t}".encode()),
    _ASCII.map(lambda t: f"{_TIME9[:-2]}Z stdout F {t}".encode()),
    _ASCII.map(lambda t: orjson.dumps({"log": t + "\n", "stream": "stdout", "time": _TIME9})),
    st.text(max_size=40).map(lambda t: f"{_TIME} stderr P {t}".encode()),
    st.text(max_size=40).map(
        lambda t: orjson.dumps({"log": t + "\n", "stream": "stdout", "time": _TIME})),
    st.text(max_size=40).map(
        lambda t: orjson.dumps({"log": t, "stream": "stderr", "time": _TIME})),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=30), st.sampled_from([b"cri", b"docker"]))
def test_fast_path_gives_what_the_general_path_gives(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], first: bytes
) -> None:
    """Whatever the lines, the fast path's records equal the general path's, never raising."""
    head = (f"{_TIME} stdout F start".encode() if first == b"cri"
            else orjson.dumps({"log": "start\n", "stream": "stdout", "time": _TIME}))
    lines = [head, *(line.replace(b"\n", b" ") for line in lines)]
    path = tmp_path_factory.mktemp("fast") / "a.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]

    def shape(records: list[dict[str, object]]) -> list[tuple[object, ...]]:
        out = []
        for r in records:
            log = r["log"]
            assert isinstance(log, dict)
            stamp = r["@timestamp"] if r["@timestamp"] in (_TIME, _TIME9, _TIME9[:-2] + "Z") else "read time"
            time_ns = r["timestamp_ns"] if stamp != "read time" else None
            out.append((log["offset"], r["message"], r["stream"], stamp, time_ns, r["event"]["id"]))
        return out

    fast = _tailer(path, max_line=1 << 20)
    fast.decoder.format = None
    fast_records = fast.read(1 << 20) + fast.finish()
    slow = _tailer(path, max_line=1 << 20)
    slow.decoder.format = None
    slow.decoder.detect(lines)
    slow_records = slow._slow(lines, offsets) + slow.finish()
    fast.close()
    slow.close()
    assert shape(fast_records) == shape(slow_records)


@pytest.mark.parametrize("how", ["removed", "deleted"])
def test_a_file_removed_while_its_copy_is_read_ends_once_the_copy_is_done(tmp_path: Path, how: str) -> None:
    """Truncated with a copy to read first, then its name removed (or the file unlinked) before the
    copy is done: it is rotated (deleted) from then on, and ends at its end, not read as a live file."""
    path = tmp_path / "a.log"
    path.write_bytes(b"old 1\nold 2\n")
    live = _tailer(path)
    live.read(1 << 20)
    copy_path = tmp_path / "a.log.1"
    copy_path.write_bytes(b"old 1\nold 2\nold 3\n")
    copy = _tailer(copy_path)
    live.restart_truncated(0, None, copy.file)
    if how == "removed":
        live.file.rotate(1.0, "removed")
    else:
        live.file.deleted(1.0)
    assert not live.file.copy_done()
    copy.file.close("drained")
    assert live.file.copy_done()
    assert live.file.draining
    assert live.file.state.name == ("ROTATED" if how == "removed" else "DELETED")
    live.read(1 << 20)
    assert live.file.should_close(1.0 + 3600, rotate_wait=5.0)
    live.close()
