"""Merge multi-line events (stack traces) into one record, separately per stream.

A rule decides, line by line, whether a line continues the open event.
Built-in rules: ``java``, ``python``, ``go``; anything else is a regex that
matches the *first* line of an event.  An open event is emitted when a line
starts a new one, when it reaches ``max_lines``, or when no line arrived for
``flush_seconds`` (:meth:`Multiline.flush_due`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Protocol

from collector.parsers.entry import Entry

__all__ = ["BUILTIN_RULES", "Multiline", "MultilineRule", "make_rule"]


class MultilineRule(Protocol):
    """Decides whether a line continues the open event of its stream."""

    def continues(self, state: str, line: str) -> tuple[bool, str]:
        """``(continues, next state)`` for ``line`` given the open event's ``state``.

        ``state`` is ``""`` for a fresh event; a rule keeps its own small states.
        """


_JAVA_EXCEPTION = re.compile(
    r"^(?:[a-zA-Z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)\b"
)
_JAVA_MORE = re.compile(r"^\s*\.\.\. \d+ (?:more|common frames omitted)")


class JavaRule:
    """Java/JVM stack traces: ``at`` frames, ``Caused by:``, ``... N more``."""

    def continues(self, state: str, line: str) -> tuple[bool, str]:
        if not line:
            return False, ""
        first = line[0]
        if first in " \t":
            return True, "trace"
        if line.startswith(("Caused by: ", "Suppressed: ")) or _JAVA_MORE.match(line):
            return True, "trace"
        if state != "trace" and _JAVA_EXCEPTION.match(line):
            # An exception header right after the log line that reported it.
            return True, "trace"
        return False, ""


class PythonRule:
    """Python tracebacks, chained ones included, ending at the exception line."""

    _CHAIN = (
        "During handling of the above exception",
        "The above exception was the direct cause",
    )

    def continues(self, state: str, line: str) -> tuple[bool, str]:
        if line.startswith("Traceback (most recent call last):"):
            return True, "tb"
        if state == "tb":
            if not line or line[0] in " \t":
                return True, "tb"
            return True, "end"  # the exception line closes the traceback
        if state in ("end", "chain"):
            if not line:
                return True, state
            if line.startswith(self._CHAIN):
                return True, "chain"
            if state == "chain" and line[0] in " \t":
                return True, "chain"
        return False, ""


_GO_START = ("panic: ", "fatal error: ", "http: panic serving")
_GO_FUNC = re.compile(r"^\S+\(.*\)$")


class GoRule:
    """Go panics and fatal errors with their goroutine dumps."""

    _CONT = ("goroutine ", "[signal ", "created by ", "exit status ", "panic: ", "runtime.")

    def continues(self, state: str, line: str) -> tuple[bool, str]:
        if state == "panic":
            if not line or line[0] in " \t" or line.startswith(self._CONT):
                return True, "panic"
            if _GO_FUNC.match(line):
                return True, "panic"
            return False, "panic" if line.startswith(_GO_START) else ""
        if line.startswith(_GO_START):
            return False, "panic"
        return False, ""

    def opens(self, line: str) -> str:
        """State of an event whose first line is ``line``."""
        return "panic" if line.startswith(_GO_START) else ""


class StartPatternRule:
    """A custom rule: a line matching ``pattern`` starts an event; others continue it."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def continues(self, state: str, line: str) -> tuple[bool, str]:
        return self.pattern.search(line) is None, ""


BUILTIN_RULES = ("java", "python", "go")


def make_rule(name: str) -> MultilineRule | None:
    """The rule called ``name`` (a built-in or a start regex); None for ``none``/empty.

    Raises ``ValueError`` for an invalid regex.
    """
    if not name or name == "none":
        return None
    if name == "java":
        return JavaRule()
    if name == "python":
        return PythonRule()
    if name == "go":
        return GoRule()
    try:
        return StartPatternRule(name)
    except re.error as exc:
        raise ValueError(f"invalid multiline start pattern {name!r}: {exc}") from exc


class _Event:
    __slots__ = ("count", "cut", "first", "last_seen", "lines", "size", "state", "truncated")

    def __init__(self, first: Entry, state: str, now: float) -> None:
        self.first = first
        self.lines = [first.message]
        self.size = len(first.message)
        self.state = state
        self.last_seen = now
        self.truncated = first.truncated
        self.cut = 0
        self.count = 1


class Multiline:
    """Entries in, merged events out; one open event per stream."""

    def __init__(
        self, rule: MultilineRule, *, flush_seconds: float, max_lines: int, max_bytes: int
    ) -> None:
        self.rule = rule
        self.flush_seconds = flush_seconds
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._open: dict[str, _Event] = {}
        self._opens = getattr(rule, "opens", None)

    def feed(self, entries: Sequence[Entry], now: float | None = None) -> list[Entry]:
        """Events completed by ``entries``, in the order they completed."""
        if now is None:
            now = time.monotonic()
        out: list[Entry] = []
        rule = self.rule
        for entry in entries:
            event = self._open.get(entry.stream)
            if event is not None:
                joins, state = rule.continues(event.state, entry.message)
                if joins and event.count < self.max_lines:
                    self._append(event, entry, state, now)
                    continue
                out.append(self._finish(event))
                opened_state = state
            else:
                _, opened_state = rule.continues("", entry.message)
            if self._opens is not None:
                opened_state = self._opens(entry.message)
            self._open[entry.stream] = _Event(entry, opened_state, now)
        return out

    def _append(self, event: _Event, entry: Entry, state: str, now: float) -> None:
        event.state = state
        event.last_seen = now
        event.count += 1
        event.truncated = event.truncated or entry.truncated
        room = self.max_bytes - event.size - 1
        text = entry.message
        if len(text) > room:
            event.cut += len(text) - max(room, 0)
            event.truncated = True
            if room <= 0:
                return
            text = text[:room]
        event.lines.append(text)
        event.size += len(text) + 1

    def _finish(self, event: _Event) -> Entry:
        message = event.lines[0] if len(event.lines) == 1 else "\n".join(event.lines)
        return event.first._replace(message=message, truncated=event.truncated)

    def flush_due(self, now: float | None = None) -> list[Entry]:
        """Events idle for ``flush_seconds``, in offset order."""
        if not self._open:
            return []
        if now is None:
            now = time.monotonic()
        due = [s for s, e in self._open.items() if now - e.last_seen >= self.flush_seconds]
        out = [self._finish(self._open.pop(s)) for s in due]
        out.sort(key=lambda e: e.offset)
        return out

    def flush(self) -> list[Entry]:
        """Every open event, in offset order."""
        out = [self._finish(e) for e in self._open.values()]
        self._open.clear()
        out.sort(key=lambda e: e.offset)
        return out

    def pending_offset(self) -> int | None:
        """Offset of the earliest line of an open event, or None."""
        if not self._open:
            return None
        return min(e.first.offset for e in self._open.values())

    def has_open(self) -> bool:
        """True while some event waits for more lines."""
        return bool(self._open)
