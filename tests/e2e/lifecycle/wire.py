"""The one place this suite reads podlog's record layouts: Kafka message values and search hits.

A Kafka message value is a schema-1 batch or a schema-2 stream batch (a
resource once, then columns): :func:`decode_message` returns one ``dict`` per
record laid out as schema 1 lays records out (``message``, ``event.id``,
``log.file``) for both, which is also what the search API returns.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.lifecycle.checker import Delivered

__all__ = ["decode_message", "delivered"]


def decode_message(value: bytes) -> list[dict[str, Any]]:
    """The records of one Kafka message value, in the order the agent sent them."""
    from podlog.wire import decode_message as decode  # imported here: the one seam to podlog's layouts

    return decode(value).records


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
