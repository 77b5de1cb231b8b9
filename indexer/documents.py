"""From Kafka messages to bulk items, dead letters, and salvaged documents.

A :class:`BulkItem` is one record on its way into one index, with the Kafka
position it came from (for the dead-letter index) and the record as it was
read (for a later replay).  Everything here is synchronous and pure: the
writer in ``bulk.py`` does the I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from indexer.events import events
from indexer.templates import Capabilities, dlq_index, index_name
from podlog.errors import SchemaError
from podlog.record import parse_timestamp_ns
from podlog.retention import RetentionConfig, cutoff_ns, retention_class
from podlog.wire import decode_message

__all__ = [
    "BulkItem",
    "KafkaPosition",
    "build_items",
    "dead_letter_item",
    "iso_time",
    "omit_body",
    "salvage",
]

_MIN_NS = 0
_MAX_NS = 253402300799 * 1_000_000_000  # 9999-12-31T23:59:59Z


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaPosition:
    """Where a record was read from."""

    topic: str
    partition: int
    offset: int


@dataclasses.dataclass(slots=True)
class BulkItem:
    """One document to write, and what to dead-letter if it cannot be written."""

    index: str
    """Target index."""
    doc_id: str
    """The document ``_id``: the record's ``event.id`` (or a dead letter's id)."""
    document: Mapping[str, Any]
    """What is sent (the record, plus fallback fields; salvage replaces it)."""
    position: KafkaPosition | None
    """Kafka position of the message it came from; None for a replayed dead letter."""
    original: Any
    """The record as decoded, kept untouched for the dead-letter index."""
    op: str = "create"
    """``create`` for log documents (a second copy is refused), ``index`` for dead letters."""
    attempts: int = 0
    """Times the cluster answered this item with 429 or 5xx."""
    salvaged: list[str] = dataclasses.field(default_factory=list)
    """Fields moved to ``podlog.salvaged`` so far."""
    encoded: bytes | None = None
    """Cached bulk lines (action + source); reset when ``document`` changes."""
    last_status: int = 0
    """HTTP status of the item's last answer (0 before the first)."""
    outcome: str = ""
    """Set by the writer: ``indexed``, ``already_present``, ``dead_lettered`` or ``dropped``."""
    error: str = ""
    """Why the cluster refused it, when ``outcome`` is ``dead_lettered`` or ``dropped``."""

    def lines(self) -> bytes:
        """The two NDJSON lines of this item in a bulk body."""
        if self.encoded is None:
            action = orjson.dumps({self.op: {"_index": self.index, "_id": self.doc_id}})
            self.encoded = action + b"\n" + orjson.dumps(self.document) + b"\n"
        return self.encoded


def _record_timestamp_ns(record: Mapping[str, Any], fallback_ms: int | None) -> int | None:
    value = record.get("timestamp_ns")
    if isinstance(value, int) and not isinstance(value, bool) and _MIN_NS <= value < _MAX_NS:
        return value
    stamp = record.get("@timestamp")
    if isinstance(stamp, str):
        try:
            parsed = parse_timestamp_ns(stamp)
        except ValueError:
            parsed = None
        if parsed is not None and _MIN_NS <= parsed < _MAX_NS:
            return parsed
    if fallback_ms is not None and fallback_ms > 0:
        return fallback_ms * 1_000_000
    return None


def _with_kv(record: Mapping[str, Any]) -> dict[str, Any]:
    """For clusters without a flat type: add ``<field>_kv`` keyword lists of ``k=v``."""
    doc = dict(record)
    k8s = doc.get("kubernetes")
    if isinstance(k8s, dict):
        k8s = dict(k8s)
        for key in ("labels", "annotations"):
            value = k8s.get(key)
            if isinstance(value, dict) and value:
                k8s[f"{key}_kv"] = _flatten_kv(value)
        doc["kubernetes"] = k8s
    payload = doc.get("json")
    if isinstance(payload, dict) and payload:
        doc["json_kv"] = _flatten_kv(payload)
    return doc


def _flatten_kv(value: Mapping[str, Any], prefix: str = "", limit: int = 256) -> list[str]:
    out: list[str] = []
    stack: list[tuple[str, Any]] = [(f"{prefix}{k}", v) for k, v in value.items()]
    while stack and len(out) < limit:
        key, item = stack.pop(0)
        if isinstance(item, dict):
            stack.extend((f"{key}.{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            out.extend(f"{key}={_text(v)}" for v in item[: max(0, limit - len(out))])
        else:
            out.append(f"{key}={_text(item)}")
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def build_items(
    *,
    value: bytes | None,
    position: KafkaPosition,
    timestamp_ms: int | None,
    prefix: str,
    retention: RetentionConfig,
    capabilities: Capabilities,
    expired: Counter[str] | None = None,
    now_ns: int | None = None,
) -> tuple[list[BulkItem], list[tuple[str, str, BulkItem]]]:
    """Decode one Kafka message into bulk items.

    Returns ``(items, dead)``; ``dead`` holds ``(reason, detail, item)`` for
    what cannot be indexed at all (an undecodable message, a record that is
    not a record), already shaped as dead-letter items.

    Given ``expired``, a record already older than its class keeps at
    ``now_ns`` (default: now) is no item: it is counted there by class
    instead, for the caller to report once its offsets are committed.
    """
    cutoffs: dict[str, int] = {}
    if expired is not None and now_ns is None:
        now_ns = time.time_ns()
    try:
        message = decode_message(value or b"")
    except SchemaError as exc:
        dead = _message_dead_letter(value or b"", position, prefix, str(exc))
        return [], [("schema", str(exc), dead)]
    records = message.records
    if message.payloads is not None:
        events.payloads_parsed(message.payloads)
    items: list[BulkItem] = []
    dead_items: list[tuple[str, str, BulkItem]] = []
    for number, record in enumerate(records):
        problem = _record_problem(record)
        if problem is not None:
            detail = f"record {number} of the message: {problem}"
            doc_id = f"{position.topic}:{position.partition}:{position.offset}:{number}"
            item = BulkItem(index="", doc_id=doc_id, document={}, position=position, original=record)
            dead_items.append(("invalid_record", detail, dead_letter_item(item, prefix, "invalid_record", detail)))
            continue
        ts = _record_timestamp_ns(record, timestamp_ms)
        if ts is None:
            ts = time.time_ns()
        try:
            klass = retention_class(retention, record)
        except (AttributeError, TypeError):
            klass = retention.default_class
        if expired is not None and now_ns is not None:
            cutoff = cutoffs.get(klass)
            if cutoff is None:
                cutoff = cutoffs[klass] = cutoff_ns(retention, klass, now_ns)
            if ts < cutoff:
                expired[klass] += 1
                continue
        document = _with_kv(record) if capabilities.flat_type == "object" else record
        items.append(
            BulkItem(
                index=index_name(prefix, klass, ts),
                doc_id=record["event"]["id"],
                document=document,
                position=position,
                original=record,
            )
        )
    return items, dead_items


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"not an object but {type(record).__name__}"
    event = record.get("event")
    doc_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > 512:
        return "no string event.id"
    return None


def iso_time(moment: datetime) -> str:
    """``moment`` as a dead letter's ``@timestamp`` (UTC, milliseconds, ``Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_iso() -> str:
    return iso_time(datetime.now(tz=UTC))


def _message_dead_letter(value: bytes, position: KafkaPosition, prefix: str, reason: str) -> BulkItem:
    doc = {
        "@timestamp": _now_iso(),
        "reason": reason,
        "error_type": "schema",
        "status": 0,
        "index": "",
        "event_id": "",
        "namespace": "",
        "attempts": 0,
        "kafka": dataclasses.asdict(position),
        "message_base64": base64.b64encode(value).decode("ascii"),
    }
    return BulkItem(
        index=dlq_index(prefix),
        doc_id=f"{position.topic}:{position.partition}:{position.offset}",
        document=doc,
        position=position,
        original=None,
        op="index",
    )


def dead_letter_item(item: BulkItem, prefix: str, error_type: str, reason: str, status: int = 0) -> BulkItem:
    """The dead-letter document for ``item``: reason, original record, Kafka position.

    Its id is the record's id, so dead-lettering the same record twice (a
    replayed batch) keeps one dead letter.
    """
    original = item.original
    namespace = ""
    if isinstance(original, dict):
        k8s = original.get("kubernetes")
        if isinstance(k8s, dict) and isinstance(k8s.get("namespace"), str):
            namespace = k8s["namespace"]
    doc: dict[str, Any] = {
        "@timestamp": _now_iso(),
        "reason": reason[:8192],
        "error_type": error_type,
        "status": status,
        "index": item.index,
        "event_id": item.doc_id if item.index else "",
        "namespace": namespace,
        "attempts": item.attempts,
        "kafka": dataclasses.asdict(item.position) if item.position is not None else None,
        "record": original,
    }
    return BulkItem(
        index=dlq_index(prefix),
        doc_id=item.doc_id,
        document=doc,
        position=item.position,
        original=original,
        op="index",
    )


_BODY_FIELDS = ("record", "message_base64")


def omit_body(letter: BulkItem, error: str) -> int | None:
    """Strip the record (or the message bytes) from a dead letter the cluster refused.

    What stays is what an operator needs to find the record in Kafka: the
    reason, the error type, the event id, the namespace and the Kafka topic,
    partition and offset; ``body_omitted``, ``body_bytes`` and ``body_error``
    say what was left out and why.  Returns the bytes left out, or None when
    the letter has no body left to strip (then it cannot be made smaller).
    """
    doc = letter.document
    if doc.get("body_omitted"):
        return None
    present = [key for key in _BODY_FIELDS if doc.get(key) is not None]
    if not present:
        return None
    size = sum(len(orjson.dumps(doc[key])) for key in present)
    kept = {key: value for key, value in doc.items() if key not in _BODY_FIELDS}
    letter.document = {**kept, "body_omitted": True, "body_bytes": size, "body_error": error[:2000]}
    letter.encoded = None
    letter.attempts = 0
    return size


_FIELD_PATTERNS = (
    re.compile(r"failed to parse field \[([^\]]+)\]"),
    re.compile(r"object mapping for \[([^\]]+)\]"),
    re.compile(r"mapper \[([^\]]+)\]"),
    re.compile(r"field \[([^\]]+)\]"),
)


def rejected_field(reason: str) -> str | None:
    """The dotted field a mapping error names, if it names one."""
    for pattern in _FIELD_PATTERNS:
        match = pattern.search(reason)
        if match:
            return match.group(1)
    return None


def salvage(document: Mapping[str, Any], reason: str) -> tuple[dict[str, Any], str] | None:
    """Move the value of the field ``reason`` names to ``podlog.salvaged``.

    Returns the new document and the moved field, or None when the reason
    names no field present in the document (then it is dead-lettered).  The
    value is kept as the string ``"<field>=<JSON or text>"``, so nothing is
    lost and the rest of the document is indexed as usual.
    """
    field = rejected_field(reason)
    if field is None:
        return None
    parts = field.split(".")
    # The named field may be a sub-field ("message.keyword") or inside a flat
    # field; move the longest prefix that exists in the document.
    for end in range(len(parts), 0, -1):
        path = parts[:end]
        found, value = _lookup(document, path)
        if found and path not in (["podlog", "salvaged"], ["event"], ["event", "id"]):
            new = _without(document, path)
            podlog = dict(new.get("podlog") or {}) if isinstance(new.get("podlog"), dict) else {}
            moved = list(podlog.get("salvaged") or [])
            moved.append(f"{'.'.join(path)}={_text(value)}"[:32000])
            podlog["salvaged"] = moved
            new["podlog"] = podlog
            return new, ".".join(path)
    return None


def _lookup(document: Mapping[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = document
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _without(document: Mapping[str, Any], path: list[str]) -> dict[str, Any]:
    """A copy of ``document`` without ``path``, copying only the dicts on the way."""
    top = dict(document)
    node = top
    for part in path[:-1]:
        child = dict(node[part])
        node[part] = child
        node = child
    del node[path[-1]]
    return top
