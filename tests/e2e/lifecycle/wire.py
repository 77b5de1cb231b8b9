"""The one place this suite reads podlog's record layouts: Kafka message values and search hits.

Today a Kafka message value is a schema-1 batch (``podlog.record.decode_batch``).
When the wire format moves to schema 2 (``StreamBatch``: a resource once plus
columns), only :func:`decode_message` changes: it must keep returning one
``dict`` per record laid out as schema 1 lays records out (``message``,
``event.id``, ``log.file``), which is also what the search API returns.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.lifecycle.checker import Delivered

__all__ = ["decode_message", "delivered"]


def decode_message(value: bytes) -> list[dict[str, Any]]:
    """The records of one Kafka message value, in the order the agent sent them."""
    from podlog.record import decode_batch  # imported here: the seam the schema-2 change replaces

    return decode_batch(value)


def _origin(record: dict[str, Any]) -> str:
    """Where the record says it was read (``path@offset gen=N identity``), for post-mortems; best effort."""
    log = record.get("log")
    if not isinstance(log, dict):
        return ""
    file = log.get("file")
    if not isinstance(file, dict):
        file = {}
    where = f"{file.get('path', '?')}@{log.get('offset', '?')}"
    return f"{where} gen={log.get('generation', '?')} {file.get('identity', '?')}"


def delivered(record: dict[str, Any], key: str | None = None, lane: str = "") -> Delivered:
    """A decoded record as the checker takes it."""
    return Delivered(str(record["message"]), str(record["event"]["id"]), key, lane, _origin(record))
