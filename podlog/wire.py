"""Schema 2: one Kafka message is one batch of one container stream, in columns.

The resource (what every line of the batch shares: ``kubernetes``,
``log.file``, host, agent, the ``event.id`` prefix) is written once per
message; then one row per line, column by column.  ``docs/wire-format.md``
is the specification; this module is its executable version.

A message value::

    "PLG" 0x02            magic and schema version (a schema 1 value starts with "{")
    codec: u8             0 none, 1 zstd
    body, compressed by the codec:
        header length: u32 LE, then the header: a JSON object
            {"schema": 2, "rows": n, "resource": {...}}
        offset:  n x i64 LE   byte offset of the line's first byte in its file
        time_ns: n x i64 LE   UTC epoch nanoseconds of the runtime's timestamp
        length:  n x u32 LE   bytes of the message
        stream:  n x u8       0 stdout, 1 stderr
        flags:   n x u8       FLAG_JOINED | FLAG_TRUNCATED | FLAG_MULTILINE
        message: the messages' UTF-8 bytes, back to back

The body's size is exactly what the header and the lengths say: anything
else is a :class:`~podlog.errors.SchemaError` naming what is wrong, never a
guess.  :func:`to_records` turns a batch into schema-1-shaped records, so
the index and search see one layout whichever schema a line came in.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import cramjam
import orjson

from podlog.errors import SchemaError
from podlog.payload import PARSERS, PayloadLimits, PayloadsParsed, parse_payloads
from podlog.record import Record, decode_batch, format_timestamp_ns, utf8_boundary

__all__ = [
    "CODECS",
    "FLAG_JOINED",
    "FLAG_MULTILINE",
    "FLAG_TRUNCATED",
    "MAGIC",
    "SCHEMA",
    "SOURCE_CONTAINER",
    "STREAMS",
    "Message",
    "StreamBatch",
    "batch_from_records",
    "decode",
    "decode_message",
    "encode",
    "encode_fitting",
    "encode_fitting_rows",
    "is_schema2",
    "payload_policy",
    "row_count",
    "to_records",
]

SCHEMA = 2
MAGIC = b"PLG\x02"
CODECS = {"none": 0, "zstd": 1}
STREAMS = ("stdout", "stderr")
FLAG_JOINED = 1
"""The line was joined from runtime fragments (CRI ``P``, Docker's 16 KiB split)."""
FLAG_TRUNCATED = 2
"""The line was longer than the collector keeps and was cut (``log.truncated``)."""
FLAG_MULTILINE = 4
"""Several physical lines merged into one event (a stack trace)."""
SOURCE_CONTAINER = "container"
"""``log.source`` of a message whose resource names none: a container's log file."""

_RESOURCE_LOG_KEYS = ("source", "level")
"""``log`` keys a resource may carry besides the file: what the input is (``log.source``), and
the level of a node input that knows it per group of lines (journald's PRIORITY)."""
_RESOURCE_EXTRA_KEYS = ("host", "agent", "systemd", "process", "syslog")
"""Top-level maps a resource may carry for its lines: node records (journal, host files)."""

_ROW_BYTES = 8 + 8 + 4 + 1 + 1
_STREAM_INDEX = {name: index for index, name in enumerate(STREAMS)}
_LOG, _FILE, _KUBERNETES = itemgetter("log"), itemgetter("file"), itemgetter("kubernetes")
_OFFSET, _TIME_NS = itemgetter("offset"), itemgetter("timestamp_ns")
_STREAM, _MESSAGE = itemgetter("stream"), itemgetter("message")
_LITTLE = sys.byteorder == "little"
_ZSTD_LEVEL = 1
"""Level 1: the same size as 3 on log lines (101 against 102 B a line) for 20% less CPU."""


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """One message's content: the resource, and one entry per line in each column."""

    resource: Mapping[str, Any]
    """``kubernetes``, ``log`` (``file``: path, identity; ``generation``), ``host``, ``agent``,
    ``podlog`` (metadata source, retention class, parser) and ``event_id_prefix``."""
    offsets: Sequence[int]
    times_ns: Sequence[int]
    streams: Sequence[int]
    """Indexes into :data:`STREAMS`."""
    flags: Sequence[int]
    messages: Sequence[bytes]
    """UTF-8 bytes of each line's message."""

    def __len__(self) -> int:
        return len(self.offsets)


class Message(NamedTuple):
    """The records of one Kafka message, whichever schema it came in."""

    records: list[Record]
    schema: int
    payloads: PayloadsParsed | None
    """Schema 2: what parsing the messages as application payloads did (the parser is
    the resource's ``podlog.parser``); schema 1 records were parsed by the agent."""


def decode_message(value: bytes | memoryview, limits: PayloadLimits | None = None) -> Message:
    """Records of a message value of schema 1 or 2; :class:`SchemaError` when it is neither.

    Schema 2 lines are parsed here (JSON or logfmt payloads, their level),
    as the agent no longer does.
    """
    if not is_schema2(value):
        return Message(decode_batch(bytes(value)), 1, None)
    batch = decode(value)
    records = to_records(batch)
    podlog = _map(batch.resource, "podlog")
    return Message(records, SCHEMA, parse_payloads(records, *payload_policy(podlog, limits)))


def payload_policy(podlog: Mapping[str, Any], limits: PayloadLimits | None = None) -> tuple[str, PayloadLimits]:
    """The parser and limits a message's ``podlog`` map asks for (the agent's
    ``podlog.io/parser`` and ``kubernetes.payload_max_*``); ``limits`` when it names none."""
    parser = podlog.get("parser", "json")
    if parser not in PARSERS:
        parser = "json"
    asked = podlog.get("payload_limits")
    if isinstance(asked, list) and len(asked) == 2 and all(isinstance(n, int) and n > 0 for n in asked):
        return parser, PayloadLimits(asked[0], asked[1])
    return parser, limits or PayloadLimits()


def row_count(value: bytes | memoryview) -> int:
    """Lines in a schema 2 message value, read from its header; :class:`SchemaError` if unreadable."""
    body = _body(value)
    header = _header(body)
    return int(header["rows"])


def is_schema2(value: bytes | memoryview) -> bool:
    """True when ``value`` starts like a schema 2 message."""
    return bytes(value[:4]) == MAGIC


def encode(batch: StreamBatch, codec: str = "zstd") -> bytes:
    """The message value of ``batch``; raises ``ValueError`` for columns of unequal length."""
    rows = len(batch.offsets)
    if not (len(batch.times_ns) == len(batch.streams) == len(batch.flags) == len(batch.messages) == rows):
        raise ValueError("schema 2 columns of unequal length")
    header = orjson.dumps({"schema": SCHEMA, "rows": rows, "resource": batch.resource})
    lengths = array("I", map(len, batch.messages))
    parts = [
        len(header).to_bytes(4, "little"),
        header,
        _little(array("q", batch.offsets)),
        _little(array("q", batch.times_ns)),
        _little(lengths),
        bytes(batch.streams),
        bytes(batch.flags),
        *batch.messages,
    ]
    body = b"".join(parts)
    code = CODECS.get(codec)
    if code is None:
        raise ValueError(f"unknown schema 2 codec {codec!r}; one of {sorted(CODECS)}")
    if code == 1:
        body = bytes(cramjam.zstd.compress(body, level=_ZSTD_LEVEL))
    return MAGIC + bytes((code,)) + body


def encode_fitting(batch: StreamBatch, max_bytes: int, codec: str = "zstd") -> list[bytes]:
    """``batch`` as one or more message values of at most ``max_bytes`` each, rows in order.

    A batch too large is split in halves until each part fits; a single line that
    does not fit alone is cut (on a UTF-8 boundary) and flagged truncated, with its
    ``event.id`` unchanged.  Nothing is dropped for its size.
    """
    return [value for value, _ in encode_fitting_rows(batch, max_bytes, codec)]


def encode_fitting_rows(batch: StreamBatch, max_bytes: int, codec: str = "zstd") -> list[tuple[bytes, int]]:
    """:func:`encode_fitting`, each value with its row count."""
    value = encode(batch, codec)
    rows = len(batch)
    if len(value) <= max_bytes:
        return [(value, rows)]
    if rows > 1:
        half = rows // 2
        return [*encode_fitting_rows(_rows(batch, 0, half), max_bytes, codec),
                *encode_fitting_rows(_rows(batch, half, rows), max_bytes, codec)]
    message = batch.messages[0]
    overhead = len(value) - len(message)
    room = max(0, max_bytes - overhead - 16)  # a compressed body can be a little larger than its input
    if room >= len(message):
        room = len(message) // 2
    cut = message[: utf8_boundary(message, room)]
    smaller = StreamBatch(batch.resource, batch.offsets, batch.times_ns, batch.streams,
                          [batch.flags[0] | FLAG_TRUNCATED], [cut])
    if not cut:
        return [(encode(smaller, codec), 1)]  # the resource alone is over the limit: sent as small as it gets
    return encode_fitting_rows(smaller, max_bytes, codec)


def _rows(batch: StreamBatch, start: int, stop: int) -> StreamBatch:
    return StreamBatch(batch.resource, batch.offsets[start:stop], batch.times_ns[start:stop],
                       batch.streams[start:stop], batch.flags[start:stop], batch.messages[start:stop])


def decode(value: bytes | memoryview) -> StreamBatch:
    """The batch in a schema 2 message value; :class:`SchemaError` says what is wrong with it."""
    body = _body(value)
    header = _header(body)
    rows, resource = header["rows"], header["resource"]
    at = 4 + int.from_bytes(body[:4], "little")
    fixed = rows * _ROW_BYTES
    if at + fixed > len(body):
        raise SchemaError(f"schema 2 columns truncated: {rows} rows need {fixed} bytes, {len(body) - at} left")
    offsets = _column("q", body, at, rows)
    at += rows * 8
    times = _column("q", body, at, rows)
    at += rows * 8
    lengths = _column("I", body, at, rows)
    at += rows * 4
    streams = body[at : at + rows]
    at += rows
    flags = body[at : at + rows]
    at += rows
    total = sum(lengths)
    if at + total != len(body):
        raise SchemaError(
            f"schema 2 message columns of unequal length: lengths sum to {total} message bytes, "
            f"{len(body) - at} present")
    if any(s > 1 for s in streams):
        raise SchemaError("schema 2 stream column holds a value other than 0 (stdout) or 1 (stderr)")
    messages = []
    for length in lengths:
        messages.append(body[at : at + length])
        at += length
    return StreamBatch(resource, offsets.tolist(), times.tolist(), list(streams), list(flags), messages)


def _body(value: bytes | memoryview) -> bytes:
    """The (decompressed) body of a schema 2 message value."""
    if bytes(value[:4]) != MAGIC:
        raise SchemaError("not a schema 2 message (no PLG\\x02 magic)")
    if len(value) < 5:
        raise SchemaError("schema 2 message truncated before its codec byte")
    code = value[4]
    if code == 0:
        return bytes(value[5:])
    if code == 1:
        try:
            return bytes(cramjam.zstd.decompress(bytes(value[5:])))
        except Exception as exc:  # cramjam raises its own DecompressionError
            raise SchemaError(f"schema 2 message does not decompress (zstd): {exc}") from exc
    raise SchemaError(f"schema 2 message with unknown codec {code}")


def _header(body: bytes) -> dict[str, Any]:
    """The header of a schema 2 body, checked: a row count and a resource."""
    if len(body) < 4:
        raise SchemaError("schema 2 message truncated before its header")
    size = int.from_bytes(body[:4], "little")
    if 4 + size > len(body):
        raise SchemaError(f"schema 2 header of {size} bytes runs past the message ({len(body)} bytes)")
    try:
        header = orjson.loads(body[4 : 4 + size])
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"schema 2 header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SchemaError("schema 2 header is not a JSON object")
    if header.get("schema") != SCHEMA:
        raise SchemaError(f"schema 2 header names schema {header.get('schema')!r}")
    rows, resource = header.get("rows"), header.get("resource")
    if not isinstance(rows, int) or rows < 0 or not isinstance(resource, dict):
        raise SchemaError("schema 2 header without a row count or a resource")
    return header


def batch_from_records(records: Sequence[Record], parser: str = "json") -> StreamBatch:
    """The schema 2 batch of schema-1 records of one file generation (their shared maps once).

    Raises ``ValueError`` when the records come from more than one file generation or
    container; ``level`` and ``json`` are left out (a schema 2 reader parses the messages).
    """
    if not records:
        raise ValueError("no records")
    first = records[0]
    log, kubernetes = first["log"], first["kubernetes"]
    file, identity, generation = log["file"], log["file"]["identity"], log["generation"]
    prefix = _id_prefix(first)
    # Column by column, each one pass at C speed: the records of a file share their maps,
    # so the checks below cost an identity comparison per record.
    logs = list(map(_LOG, records))
    if any(entry["generation"] != generation for entry in logs) or any(
        other is not file and other["identity"] != identity for other in map(_FILE, logs)
    ) or any(other is not kubernetes and other != kubernetes for other in map(_KUBERNETES, records)):
        raise ValueError("records of more than one file generation or container")
    offsets = list(map(_OFFSET, logs))
    times = list(map(_TIME_NS, records))
    try:
        streams = list(map(_STREAM_INDEX.__getitem__, map(_STREAM, records)))
    except KeyError as exc:
        raise ValueError(f"stream {exc} is neither stdout nor stderr") from exc
    flags = [FLAG_TRUNCATED if entry.get("truncated") else 0 for entry in logs]
    messages = [message.encode("utf-8", "surrogatepass") for message in map(_MESSAGE, records)]
    podlog = {key: value for key, value in first.get("podlog", {}).items() if key != "schema"}
    resource_log: dict[str, Any] = {"file": dict(log["file"]), "generation": generation}
    for key in _RESOURCE_LOG_KEYS:
        if key in log:
            resource_log[key] = log[key]
    resource = {
        "kubernetes": kubernetes,
        "log": resource_log,
        "podlog": {**podlog, "parser": parser},
        "event_id_prefix": prefix,
    }
    for key in _RESOURCE_EXTRA_KEYS:
        value = first.get(key)
        if isinstance(value, dict) and value:
            resource[key] = dict(value)
    return StreamBatch(resource, offsets, times, streams, flags, messages)


def _id_prefix(record: Record) -> str:
    event_id, offset = record["event"]["id"], str(record["log"]["offset"])
    if not event_id.endswith(offset):
        raise ValueError(f"event.id {event_id!r} does not end in its offset {offset}")
    return str(event_id[: len(event_id) - len(offset)])


def to_records(batch: StreamBatch) -> list[Record]:
    """Schema-1-shaped records of ``batch`` (``level`` and ``json`` None: the reader parses).

    Invalid UTF-8 in a message is replaced (U+FFFD), as the collector does.
    """
    resource = batch.resource
    log = _map(resource, "log")
    file = _map(log, "file")
    generation = log.get("generation", 0)
    prefix = str(resource.get("event_id_prefix", ""))
    kubernetes = _map(resource, "kubernetes")
    podlog = {**_map(resource, "podlog"), "schema": SCHEMA}
    podlog.pop("parser", None)
    podlog.pop("payload_limits", None)
    extra = {key: resource[key] for key in _RESOURCE_EXTRA_KEYS if isinstance(resource.get(key), dict)}
    source = log.get("source") or SOURCE_CONTAINER
    level = log.get("level") if isinstance(log.get("level"), str) else None
    records = []
    for offset, ns, stream, flags, raw in zip(
        batch.offsets, batch.times_ns, batch.streams, batch.flags, batch.messages, strict=True,
    ):
        try:
            message = raw.decode()
        except UnicodeDecodeError:
            message = raw.decode(errors="replace")
        record: Record = {
            "@timestamp": format_timestamp_ns(ns),
            "timestamp_ns": ns,
            "message": message,
            "stream": STREAMS[stream],
            "level": level,
            "json": None,
            "log": {"file": file, "offset": offset, "generation": generation,
                    "truncated": bool(flags & FLAG_TRUNCATED), "source": source,
                    **({"level": level} if level is not None else {})},
            "kubernetes": kubernetes,
            "event": {"id": f"{prefix}{offset}"},
            "podlog": podlog,
            **extra,
        }
        records.append(record)
    return records


def _map(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _little(column: array[Any]) -> bytes:
    if not _LITTLE:
        column.byteswap()
    return column.tobytes()


def _column(kind: str, body: bytes, at: int, rows: int) -> array[Any]:
    column = array(kind)
    column.frombytes(body[at : at + rows * column.itemsize])
    if not _LITTLE:
        column.byteswap()
    return column
