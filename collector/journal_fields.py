"""journald entries (``journalctl -o json`` lines) as records: the format, no process.

One line of ``journalctl --output=json --all`` is one JSON object per entry.
A field's value is a string, an array of byte values when it is not valid
UTF-8 (or holds control characters), ``null`` when it is too large for
journalctl to print (never with ``--all``), or a list of those when the entry
carries the field more than once.

A record from the journal::

    log.source     "journal"
    log.file       {"path": "journal", "identity": "journal:<seqnum id>:<group>"}
    log.offset     the entry's sequence number (``i=`` of the cursor)
    log.level      from PRIORITY (0 emerg .. 7 debug), as ``level`` too
    host.name      the node
    systemd.unit   _SYSTEMD_UNIT          process.pid  _PID
    syslog.identifier  SYSLOG_IDENTIFIER  @timestamp   __REALTIME_TIMESTAMP
    event.id       record_id_prefix(cluster, node, "journal:<seqnum id>", 0) + seqnum

``event.id`` depends only on the cluster, the node and the entry's place in
the journal (sequence number id and sequence number), so an entry read twice
(after a crash, a restart of journalctl) gets the same id.  The identity also
names the entry's group (unit, identifier, pid, level): records of one group
share their maps, so the spool's schema 2 messages carry them once per run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from collector.parsers.entry import Rejected
from podlog.record import Record, SharedMap, format_timestamp_ns, podlog_fields, record_id_prefix

__all__ = [
    "LEVELS",
    "JournalEntry",
    "JournalRecords",
    "parse_cursor",
    "parse_entry",
]

LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
"""``log.level`` by syslog PRIORITY (0..7)."""

SOURCE = "journal"
EMPTY_KUBERNETES: Mapping[str, Any] = SharedMap()
"""Node records carry no pod fields: one shared empty map."""


class JournalEntry(NamedTuple):
    """The fields of one journal entry that a record keeps."""

    cursor: str
    seqnum_id: str
    seqnum: int
    realtime_ns: int
    message: bytes
    """MESSAGE as bytes (byte arrays kept as they are, strings encoded)."""
    priority: int | None
    unit: str
    identifier: str
    pid: int | None


def parse_cursor(cursor: str) -> tuple[str, int] | None:
    """(sequence number id, sequence number) of a journal cursor, or None if it has neither.

    A cursor reads ``s=<seqnum id>;i=<seqnum, hex>;b=<boot id>;m=..;t=..;x=..``.
    """
    parts = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    try:
        return parts["s"], int(parts["i"], 16)
    except (KeyError, ValueError):
        return None


def _bytes(value: Any) -> bytes | None:
    """A field value as bytes: the first value of a repeated field; None when absent."""
    if isinstance(value, list) and value and not isinstance(value[0], int):
        value = value[0]
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    return None


def _text(value: Any) -> str:
    raw = _bytes(value)
    return "" if raw is None else raw.decode("utf-8", "replace")


def _int(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text.isdigit() else None


def parse_entry(line: bytes) -> JournalEntry | Rejected:
    """One ``journalctl -o json`` line as an entry, or :class:`Rejected` with its reason."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Rejected("invalid_json", str(exc))
    if not isinstance(doc, dict):
        return Rejected("invalid_json", "not a JSON object")
    cursor = doc.get("__CURSOR")
    if not isinstance(cursor, str):
        return Rejected("no_cursor", "entry without __CURSOR")
    position = parse_cursor(cursor)
    if position is None:
        return Rejected("no_cursor", f"cursor without s= and i=: {cursor[:200]}")
    realtime = _int(doc.get("__REALTIME_TIMESTAMP"))
    if realtime is None:
        # journalctl always prints it; the entry is kept (its id does not depend on it).
        realtime = time.time_ns() // 1000
    message = _bytes(doc.get("MESSAGE"))
    priority = _int(doc.get("PRIORITY"))
    return JournalEntry(
        cursor=cursor,
        seqnum_id=position[0],
        seqnum=position[1],
        realtime_ns=realtime * 1000,
        message=b"" if message is None else message,
        priority=priority if priority is not None and priority < len(LEVELS) else None,
        unit=_text(doc.get("_SYSTEMD_UNIT")),
        identifier=_text(doc.get("SYSLOG_IDENTIFIER")),
        pid=_int(doc.get("_PID")),
    )


class JournalRecords:
    """Builds the records of journal entries: the one place that knows their layout.

    The maps of a group of entries (unit, identifier, pid, level) are made
    once and shared by its records, as a file's are (see
    :class:`podlog.record.RecordBuilder`).
    """

    def __init__(self, *, cluster: str, node: str, max_message_bytes: int,
                 retention: str | None = None) -> None:
        self.cluster = cluster
        self.node = node
        self.max_message_bytes = max_message_bytes
        self.host = SharedMap(name=node)
        self.podlog = podlog_fields("journal", retention)
        self._prefixes: dict[str, str] = {}
        self._groups: dict[tuple[str, str, str, int | None, int | None], tuple[SharedMap, ...]] = {}

    def prefix(self, seqnum_id: str) -> str:
        """The ``event.id`` prefix of every entry with this sequence number id."""
        prefix = self._prefixes.get(seqnum_id)
        if prefix is None:
            if len(self._prefixes) > 64:
                self._prefixes.clear()
            prefix = self._prefixes[seqnum_id] = record_id_prefix(
                self.cluster, self.node, f"journal:{seqnum_id}", 0)
        return prefix

    def _group(self, entry: JournalEntry) -> tuple[SharedMap, ...]:
        key = (entry.seqnum_id, entry.unit, entry.identifier, entry.pid, entry.priority)
        maps = self._groups.get(key)
        if maps is None:
            if len(self._groups) > 4096:
                self._groups.clear()
            group = ":".join((entry.unit or "-", entry.identifier or "-", str(entry.pid or "-"),
                              str(entry.priority if entry.priority is not None else "-")))
            file = SharedMap(path="journal", identity=f"journal:{entry.seqnum_id}:{group}")
            systemd = SharedMap(unit=entry.unit) if entry.unit else SharedMap()
            process = SharedMap(pid=entry.pid) if entry.pid is not None else SharedMap()
            syslog = SharedMap(identifier=entry.identifier) if entry.identifier else SharedMap()
            maps = self._groups[key] = (file, systemd, process, syslog)
        return maps

    def build(self, entry: JournalEntry) -> tuple[Record, bool, bool]:
        """The record of ``entry``, whether its message was cut to ``max_message_bytes``,
        and whether it was not valid UTF-8 (kept, replaced)."""
        file, systemd, process, syslog = self._group(entry)
        raw = entry.message
        truncated = len(raw) > self.max_message_bytes
        if truncated:
            raw = raw[: self.max_message_bytes]
        try:
            message = raw.decode("utf-8")
            invalid = False
        except UnicodeDecodeError as exc:
            # A cut inside a character is not invalid input.
            invalid = not (truncated and exc.start >= len(raw) - 3 and exc.reason == "unexpected end of data")
            message = raw.decode("utf-8", "replace")
        level = LEVELS[entry.priority] if entry.priority is not None else None
        log: dict[str, Any] = {
            "file": file,
            "offset": entry.seqnum,
            "generation": 0,
            "truncated": truncated,
            "source": SOURCE,
        }
        if level is not None:
            log["level"] = level
        record: Record = {
            "@timestamp": format_timestamp_ns(entry.realtime_ns),
            "timestamp_ns": entry.realtime_ns,
            "message": message,
            "stream": "stdout",
            "level": level,
            "json": None,
            "log": log,
            "kubernetes": EMPTY_KUBERNETES,
            "host": self.host,
            "systemd": systemd,
            "process": process,
            "syslog": syslog,
            "event": {"id": f"{self.prefix(entry.seqnum_id)}{entry.seqnum}"},
            "podlog": self.podlog,
        }
        return record, truncated, invalid
