"""The record contract: what podlog puts on Kafka and into the index.

A *record* is one log line (or one joined partial line, or one merged
multi-line event) from one container stream.  In memory and on the wire it is
a plain ``dict`` with ECS-style nested keys, because that is what orjson
encodes fastest and what OpenSearch indexes as is.  ``docs/record.md``
describes every field; this module is the executable version of that page.

Schema version 1::

    {
      "@timestamp": "2026-11-27T00:00:00.123456789Z",  # as the runtime wrote it
      "timestamp_ns": 1795737600123456789,               # UTC epoch ns: exact sort key
      "message": "GET /healthz 200",
      "stream": "stdout",                                # stdout | stderr
      "level": "info",                                    # or None
      "json": {...},                                      # parsed app payload, or None
      "log": {"file": {"path": ..., "identity": ...},
              "offset": 1234, "generation": 0, "truncated": False},
      "kubernetes": {"namespace": ..., "pod": {"name": ..., "uid": ...},
                     "container": {"name": ..., "id": ..., "image": ...,
                                   "restart_count": 0},
                     "node": {"name": ...}, "labels": {...}, "annotations": {...},
                     "workload": {"kind": ..., "name": ...}},
      "event": {"id": "..."},
      "podlog": {"schema": 1, "metadata": "api"}          # api | path | cache
    }

``event.id`` is :func:`record_id` of the record's :class:`SourcePosition`, so
a line read twice (after a crash, a replay, a rebalance) gets the same id and
OpenSearch keeps one copy, while new content at a reused offset (a truncated
file, a reused inode) differs in ``identity`` or ``generation`` and never
collides with the old line.

On Kafka, one message carries a *batch* of records from one container stream
(see :func:`encode_batch`): per-message overhead dominates in Python, so the
producer sends few large messages and lets Kafka compress them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, NewType

import orjson

from podlog.errors import SchemaError

__all__ = [
    "SCHEMA_VERSION",
    "Inode",
    "Offset",
    "Record",
    "RecordBuilder",
    "SharedMap",
    "SourcePosition",
    "decode_batch",
    "encode_batch",
    "format_timestamp_ns",
    "make_record",
    "parse_timestamp_ns",
    "podlog_fields",
    "record_id",
    "record_id_prefix",
    "stream_key",
    "utf8_boundary",
]

SCHEMA_VERSION = 1
"""The version written into every record and batch; readers reject others."""

Record = dict[str, Any]
"""One log record in the nested layout of schema version 1."""

Inode = NewType("Inode", int)
Offset = NewType("Offset", int)


class SourcePosition(NamedTuple):
    """Where a record starts in its source file; the input of :func:`record_id`."""

    cluster: str
    """Cluster name from the configuration; keeps ids apart across clusters."""
    node: str
    """Node the file lives on."""
    identity: str
    """File identity: ``"<dev>:<inode>:<head fingerprint>"``."""
    generation: int
    """Bumped whenever the file is truncated in place or its inode is reused."""
    offset: int
    """Byte offset of the record's first byte in the file."""


def record_id_prefix(cluster: str, node: str, identity: str, generation: int) -> str:
    """The part of ``event.id`` that every record of one file generation shares.

    23 characters: URL-safe base64 (22 characters, no padding) of a 128-bit
    BLAKE2b digest over ``cluster \x1f node \x1f identity \x1f generation``,
    then ``.``, which base64 never produces, to separate it from the offset.
    """
    key = "\x1f".join((cluster, node, identity, str(generation))).encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") + "."


def record_id(position: SourcePosition) -> str:
    """The deterministic ``event.id`` of the record that starts at ``position``.

    :func:`record_id_prefix` of the file generation, then the byte offset in
    decimal: ``"<22 base64 chars>.<offset>"``, at most 42 ASCII characters.
    The prefix is hashed once per file generation, and the ids of one file
    share it (which also keeps OpenSearch's ``_id`` lookups local).
    """
    prefix = record_id_prefix(position.cluster, position.node, position.identity,
                              position.generation)
    return f"{prefix}{position.offset}"


def parse_timestamp_ns(value: str) -> int:
    """UTC epoch nanoseconds of an RFC 3339 timestamp with up to 9 fraction digits.

    Raises ``ValueError`` for anything else. Faster than ``datetime`` for the
    common ``...Z`` form that both Docker and CRI runtimes write.
    """
    # Split off the fraction, which datetime cannot hold past microseconds.
    frac_ns = 0
    dot = value.find(".", 19)
    if dot == 19:
        end = dot + 1
        while end < len(value) and value[end].isdigit():
            end += 1
        digits = value[dot + 1 : end]
        if not digits or len(digits) > 9:
            raise ValueError(f"bad fraction in timestamp {value!r}")
        frac_ns = int(digits.ljust(9, "0"))
        base = value[:19] + value[end:]
    else:
        base = value
    if base.endswith(("Z", "z")):
        base = base[:-1] + "+00:00"
    parsed = datetime.fromisoformat(base)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a zone: {value!r}")
    seconds = int(parsed.timestamp())
    return seconds * 1_000_000_000 + frac_ns


def format_timestamp_ns(ns: int) -> str:
    """RFC 3339 UTC with nine fraction digits, the inverse of :func:`parse_timestamp_ns`."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


class SharedMap(dict[str, Any]):
    """A read-only ``dict``: a sub-map that many records share.

    Records are read-only once built: a stage that changes one replaces the
    sub-map it changes (``{**record["podlog"], "retention": ...}``) and never
    writes into a shared one.  Writing into a ``SharedMap`` raises
    ``TypeError``, so a stage that forgets fails in tests instead of changing
    every record of a file.  orjson encodes it as the ``dict`` it is.
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a record's shared sub-map is read-only: replace it, do not write into it")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


def podlog_fields(metadata: str, retention: str | None = None) -> SharedMap:
    """The record's ``podlog`` map: schema, metadata source and retention class."""
    if retention is None:
        return SharedMap(schema=SCHEMA_VERSION, metadata=metadata)
    return SharedMap(schema=SCHEMA_VERSION, metadata=metadata, retention=retention)


class RecordBuilder:
    """Builds the records of one file generation; the one place that knows the layout.

    What every record of the file has in common (``log.file``, ``kubernetes``,
    ``podlog`` and the ``event.id`` prefix) is made once and shared by all of
    them, so a record costs three small dicts.  Shared maps are read-only (see
    :class:`SharedMap`); ``kubernetes`` and ``podlog`` are the caller's and are
    shared as given.
    """

    __slots__ = ("file", "generation", "host", "id_prefix", "kubernetes", "path", "podlog", "source")

    def __init__(
        self, *, cluster: str, node: str, identity: str, generation: int, path: str,
        kubernetes: Mapping[str, Any], podlog: Mapping[str, Any], source: str | None = None,
    ) -> None:
        self.source = source
        """``log.source`` of a node file (``file``), with ``host.name``; None for a container's."""
        self.host = SharedMap(name=node)
        self.path = path
        self.generation = generation
        self.id_prefix = record_id_prefix(cluster, node, identity, generation)
        self.file = SharedMap(path=path, identity=identity)
        self.kubernetes = kubernetes
        self.podlog = podlog

    def build(
        self, offset: int, timestamp: str, timestamp_ns: int, message: str, stream: str,
        truncated: bool = False,
    ) -> Record:
        """The record that starts at ``offset``; ``level`` and ``json`` are None."""
        record: Record = {
            "@timestamp": timestamp,
            "timestamp_ns": timestamp_ns,
            "message": message,
            "stream": stream,
            "level": None,
            "json": None,
            "log": {
                "file": self.file,
                "offset": offset,
                "generation": self.generation,
                "truncated": truncated,
            },
            "kubernetes": self.kubernetes,
            "event": {"id": f"{self.id_prefix}{offset}"},
            "podlog": self.podlog,
        }
        if self.source is not None:
            record["log"]["source"] = self.source
            record["host"] = self.host
        return record


def make_record(
    *,
    position: SourcePosition,
    timestamp: str,
    timestamp_ns: int,
    message: str,
    stream: str,
    path: str,
    truncated: bool = False,
    kubernetes: Mapping[str, Any] | None = None,
    level: str | None = None,
    json: Mapping[str, Any] | None = None,
    metadata: str = "path",
) -> Record:
    """Build one schema-1 record whose sub-maps are its own (plain, writable dicts).

    For many records of one file, :class:`RecordBuilder` shares what they have
    in common instead.
    """
    builder = RecordBuilder(
        cluster=position.cluster, node=position.node, identity=position.identity,
        generation=position.generation, path=path,
        kubernetes=dict(kubernetes) if kubernetes is not None else {},
        podlog={"schema": SCHEMA_VERSION, "metadata": metadata},
    )
    record = builder.build(position.offset, timestamp, timestamp_ns, message, stream, truncated)
    record["log"]["file"] = dict(builder.file)
    record["level"] = level
    record["json"] = json
    return record


def stream_key(record: Record) -> bytes:
    """The Kafka message key that keeps one container stream in order.

    Pod UID (or namespace/pod when the UID is unknown) plus container name:
    every record of a container lands in one partition, in file order.  A
    section that is not a map counts as absent (such records share one key).
    A node record (``log.source`` other than ``container``, no pod) is keyed
    ``<source>@<host.name>``: one node's journal stays in order.
    """
    k8s = _section(record, "kubernetes")
    pod = _section(k8s, "pod")
    source = _section(record, "log").get("source")
    if source is not None and source != "container" and not pod:
        # A node input (journal, host file): one key per input and node, in read order.
        return f"{source}@{_section(record, 'host').get('name', '')}".encode(errors="replace")
    owner = pod.get("uid") or f"{k8s.get('namespace', '')}/{pod.get('name', '')}"
    container = _section(k8s, "container").get("name", "")
    return f"{owner}/{container}".encode(errors="replace")


def _section(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def encode_batch(records: Sequence[Record]) -> bytes:
    """Encode records as one Kafka message value: ``{"schema": 1, "records": [...]}``."""
    return orjson.dumps({"schema": SCHEMA_VERSION, "records": records})


def decode_batch(value: bytes) -> list[Record]:
    """Decode a message from :func:`encode_batch`.

    Raises :class:`SchemaError` for bytes that are not a batch or carry a
    schema version this release does not know, naming what it found.
    """
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"message is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or "records" not in doc:
        raise SchemaError("message is not a podlog batch (no 'records' key)")
    version = doc.get("schema")
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"unknown record schema version {version!r}; this podlog reads {SCHEMA_VERSION}"
        )
    records = doc["records"]
    if not isinstance(records, list):
        raise SchemaError("'records' is not a list")
    return records


def utf8_boundary(data: bytes, size: int) -> int:
    """The largest length <= ``size`` that does not end inside a UTF-8 character."""
    if size >= len(data):
        return len(data)
    end = size
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return end


def iter_fields(record: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Yield ``(dotted.path, value)`` for every leaf of a record (maps under
    ``labels``, ``annotations`` and ``json`` count as leaves)."""
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("labels", "annotations", "json"):
            yield from iter_fields(value, path + ".")
        else:
            yield path, value


def get_field(record: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` (``"kubernetes.pod.name"``), or None."""
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
