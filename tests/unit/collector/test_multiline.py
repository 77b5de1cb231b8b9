"""Multi-line events: built-in stack trace rules, custom start patterns, flush timeouts."""

from __future__ import annotations

import pytest

from collector.multiline import Multiline, make_rule
from collector.parsers.entry import Entry

JAVA = """2026-11-27 ERROR request failed
java.lang.IllegalStateException: boom
\tat com.example.Service.handle(Service.java:42)
\tat com.example.Main.main(Main.java:7)
Caused by: java.io.IOException: disk
\tat com.example.Disk.read(Disk.java:9)
\t... 2 more
2026-11-27 INFO next request"""

PYTHON = """ERROR:root:request failed
Traceback (most recent call last):
  File "app.py", line 3, in <module>
    main()
ValueError: bad value

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "app.py", line 5, in <module>
KeyError: 'x'
INFO:root:next request"""

GO = """panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.main()
\t/app/main.go:8 +0x1d
exit status 2
level=info msg="restarted\""""


def _entries(text: str, stream: str = "stdout") -> list[Entry]:
    return [Entry(i * 100, "t", i, stream, line) for i, line in enumerate(text.split("\n"))]


def _run(rule: str, text: str) -> list[str]:
    ml = Multiline(make_rule(rule), flush_seconds=1.0, max_lines=500,  # type: ignore[arg-type]
                   max_bytes=1 << 20)
    out = ml.feed(_entries(text), now=0.0)
    out.extend(ml.flush())
    return [e.message for e in out]


@pytest.mark.parametrize(
    ("rule", "text", "events"),
    [("java", JAVA, 2), ("python", PYTHON, 2), ("go", GO, 2)],
)
def test_builtin_rule_merges_a_stack_trace_into_one_event(rule: str, text: str, events: int) -> None:
    """The trace and the line that reported it become one event; the next line starts anew."""
    messages = _run(rule, text)
    assert len(messages) == events
    assert "\n".join(messages) == text


def test_custom_start_pattern_groups_until_the_next_start() -> None:
    """Lines not matching the start regex continue the open event."""
    text = "[1] start\n  detail a\n  detail b\n[2] start\n[3] start\n  x"
    assert _run(r"^\[\d+\]", text) == ["[1] start\n  detail a\n  detail b", "[2] start",
                                       "[3] start\n  x"]


def test_open_event_is_flushed_after_the_timeout_only() -> None:
    """An event with no new line is held until flush_seconds pass, then emitted whole."""
    ml = Multiline(make_rule("java"), flush_seconds=1.0, max_lines=10,  # type: ignore[arg-type]
                   max_bytes=1000)
    assert ml.feed(_entries("ERROR x\n\tat a.b(C.java:1)"), now=10.0) == []
    assert ml.pending_offset() == 0
    assert ml.flush_due(now=10.5) == []
    (event,) = ml.flush_due(now=11.0)
    assert event.message == "ERROR x\n\tat a.b(C.java:1)"
    assert ml.pending_offset() is None


def test_streams_are_merged_separately() -> None:
    """stderr lines never join an stdout event."""
    ml = Multiline(make_rule("java"), flush_seconds=1.0, max_lines=10,  # type: ignore[arg-type]
                   max_bytes=1000)
    entries = [Entry(0, "t", 0, "stdout", "ERROR x"), Entry(10, "t", 0, "stderr", "\tat no"),
               Entry(20, "t", 0, "stdout", "\tat a.b(C.java:1)")]
    ml.feed(entries, now=0.0)
    assert {e.message for e in ml.flush()} == {"ERROR x\n\tat a.b(C.java:1)", "\tat no"}


def test_event_is_bounded_by_max_lines_and_max_bytes() -> None:
    """A runaway event is cut at max_lines; bytes past max_bytes are truncated and marked."""
    ml = Multiline(make_rule("java"), flush_seconds=1.0, max_lines=3,  # type: ignore[arg-type]
                   max_bytes=20)
    out = ml.feed(_entries("ERROR x\n\tat 1234567890\n\tat 2\n\tat 3"), now=0.0)
    out.extend(ml.flush())
    assert out[0].message == "ERROR x\n\tat 1234567890"[:20]
    assert out[0].truncated
    assert len(out) == 2


def test_none_and_invalid_rules() -> None:
    """``none`` disables merging; an invalid regex is a clear error."""
    assert make_rule("none") is None
    with pytest.raises(ValueError, match="invalid multiline start pattern"):
        make_rule("([")
