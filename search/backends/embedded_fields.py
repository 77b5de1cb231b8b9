"""What the embedded index reads of a record, decoded without the rest of it.

A record as the spool holds it is about 850 bytes of JSON, most of it
kubernetes metadata (labels, image, ids) that every line of a container
repeats.  :func:`read_encoded` decodes a batch of encodings with msgspec
into :class:`Fields`, structs holding only what the index uses: msgspec skips
everything else without building Python objects for it, which takes about a
third of the time ``orjson.loads`` needs to build whole records.  The
``kubernetes`` section is kept as its raw bytes: the index stores it once per
distinct value, and :func:`read_kubernetes` decodes it once per value too.

The structs check, in C, the shape of the sections they open (``log``,
``event``, ``podlog``) and that level and stream are text or null; other
leaves are ``Any`` and the caller checks them.  A record that does not fit (a
numeric level) is read the careful way, by :func:`read_record`, which never
raises and hands back the same structs with those values made text; so does
:func:`read_kubernetes` for the namespace and the four names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import orjson

__all__ = ["Fields", "Kubernetes", "read_encoded", "read_kubernetes", "read_record", "read_records"]


class _Name(msgspec.Struct, gc=False):
    name: str | None = None


class Kubernetes(msgspec.Struct, gc=False):
    """The filter values inside a record's ``kubernetes`` section."""

    namespace: str | None = None
    pod: _Name | None = None
    container: _Name | None = None
    node: _Name | None = None
    workload: _Name | None = None


class _File(msgspec.Struct, gc=False):
    identity: Any = None


class _Log(msgspec.Struct, gc=False):
    offset: Any = None
    generation: Any = None
    file: _File | None = None


class _Event(msgspec.Struct, gc=False):
    id: Any = None


class _Podlog(msgspec.Struct, gc=False):
    retention: Any = None


T = TypeVar("T")

_NULL = msgspec.Raw(b"null")


class Fields(msgspec.Struct, gc=False):
    """The parts of a record the embedded index uses; ``None`` where absent."""

    timestamp_ns: Any = None
    message: Any = None
    level: str | None = None
    stream: str | None = None
    event: _Event | None = None
    log: _Log | None = None
    kubernetes: msgspec.Raw = _NULL
    """The section's JSON as encoded, unread (see :func:`read_kubernetes`); ``null`` when absent."""
    podlog: _Podlog | None = None


_many = msgspec.json.Decoder(list[Fields])
_one = msgspec.json.Decoder(Fields)
_kubernetes = msgspec.json.Decoder(Kubernetes)
_EMPTY: Mapping[str, Any] = {}


def read_encoded(encodings: Sequence[bytes | memoryview]) -> Sequence[Fields | None]:
    """Fields of each record from its JSON encoding, all in one decoder call.

    When one record does not fit :class:`Fields`, every record is read on its
    own.  ``None`` stands for bytes that are not a JSON object at all.
    """
    try:
        return _many.decode(b"[" + b",".join(encodings) + b"]")
    except (msgspec.ValidationError, msgspec.DecodeError):
        return [_read_one(encoding) for encoding in encodings]


def _read_one(encoding: bytes | memoryview) -> Fields | None:
    return _decode(_one, encoding, read_record)


def _decode(
    decoder: msgspec.json.Decoder[T], data: bytes | memoryview, careful: Callable[[Mapping[str, Any]], T]
) -> T | None:
    """``data`` through ``decoder``; when it does not fit, a JSON object read by ``careful``, else None."""
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return careful(value) if isinstance(value, Mapping) else None


def read_records(records: Iterable[Any]) -> Sequence[Fields | None]:
    """Fields of decoded records (mappings); ``None`` for anything that is not one."""
    return [read_record(record) if isinstance(record, Mapping) else None for record in records]


def read_record(record: Mapping[str, Any]) -> Fields:
    """Fields of one decoded record; sections that are not mappings count as absent.

    ``kubernetes`` is the section encoded again with orjson (what the
    record's own orjson encoding holds), or ``null`` when it is not a mapping
    or cannot be encoded.
    """
    event, log, podlog = (_section(record, key) for key in ("event", "log", "podlog"))
    file = _section(log, "file")
    k8s = record.get("kubernetes")
    raw = _NULL
    if isinstance(k8s, Mapping):
        with contextlib.suppress(TypeError):
            raw = msgspec.Raw(orjson.dumps(k8s))
    return Fields(
        timestamp_ns=record.get("timestamp_ns"),
        message=record.get("message"),
        level=_text(record.get("level")),
        stream=_text(record.get("stream")),
        event=_Event(event.get("id")),
        log=_Log(log.get("offset"), log.get("generation"), _File(file.get("identity"))),
        kubernetes=raw,
        podlog=_Podlog(podlog.get("retention")),
    )


def read_kubernetes(raw: bytes) -> Kubernetes | None:
    """The filter values of an encoded ``kubernetes`` section; None when it is not an object.

    Values that are not text are made text (a number as written) or absent (a map or a list).
    """
    return _decode(_kubernetes, raw, _read_kubernetes)


def _read_kubernetes(k8s: Mapping[str, Any]) -> Kubernetes:
    return Kubernetes(
        _text(k8s.get("namespace")),
        *(_Name(_text(_section(k8s, key).get("name"))) for key in ("pod", "container", "node", "workload")),
    )


def _text(value: Any) -> str | None:
    """A filter value as text: a number or a boolean as written, a map or a list as absent."""
    if value is None or isinstance(value, (dict, list, Mapping)):
        return None
    return value if isinstance(value, str) else str(value)


def _section(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, Mapping) else _EMPTY
