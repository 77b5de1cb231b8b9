"""The on-disk snapshot of the pod cache: ``<state_dir>/kube/pods.json``.

Written by the watch every few seconds when the cache changed, and on stop,
so a restarted agent still enriches the remaining lines of pods that were
deleted while it was down or before it caught up.  Versioned JSON written to
a temporary file, fsynced, renamed over the old one, and the directory fsynced;
a reader that finds the main file unreadable falls back to the temporary one
(a crash between the two fsyncs).  Blocking: call it from a thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from collector.kube.cache import PodCache
from collector.kube.metadata import (
    NamespaceMeta,
    PodMeta,
    pod_from_snapshot,
    pod_to_snapshot,
)
from podlog.files import write_atomically

__all__ = ["SNAPSHOT_VERSION", "Snapshot", "read_snapshot", "snapshot_bytes", "write_snapshot"]

SNAPSHOT_VERSION = 1
FILE_NAME = "pods.json"


class Snapshot:
    """What a snapshot file holds."""

    __slots__ = ("namespaces", "node", "pods")

    def __init__(self, node: str, pods: list[PodMeta], namespaces: list[NamespaceMeta]) -> None:
        self.node = node
        self.pods = pods
        self.namespaces = namespaces


def snapshot_bytes(cache: PodCache, node: str) -> bytes:
    """Serialize the cache (on the event loop: cheap, no I/O)."""
    doc: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "node": node,
        "pods": [pod_to_snapshot(entry.pod) for entry in cache.entries()],
        "namespaces": [
            {"name": ns.name, "labels": dict(ns.labels), "retention": ns.retention}
            for ns in cache.namespaces.values()
        ],
    }
    return orjson.dumps(doc)


def write_snapshot(directory: Path, data: bytes) -> Path:
    """Write ``data`` durably as ``directory/pods.json``; raises OSError."""
    path = directory / FILE_NAME
    write_atomically(path, directory / (FILE_NAME + ".tmp"), data)
    return path


def read_snapshot(directory: Path) -> tuple[Snapshot | None, list[str]]:
    """The newest readable snapshot in ``directory`` and the problems met on the way.

    ``(None, [])`` when there is none at all.
    """
    problems: list[str] = []
    for name in (FILE_NAME, FILE_NAME + ".tmp"):
        path = directory / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
            continue
        try:
            return _decode(data), problems
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{path}: {exc}")
    return None, problems


def _decode(data: bytes) -> Snapshot:
    doc = orjson.loads(data)
    if not isinstance(doc, dict):
        raise TypeError("snapshot is not an object")
    if doc.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unknown snapshot version {doc.get('version')!r}")
    pods = [pod_from_snapshot(item) for item in _items(doc.get("pods"))]
    namespaces = [
        NamespaceMeta(
            name=str(item["name"]),
            labels={str(k): str(v) for k, v in dict(item.get("labels") or {}).items()},
            retention=str(item["retention"]) if item.get("retention") else None,
        )
        for item in _items(doc.get("namespaces"))
    ]
    return Snapshot(str(doc.get("node") or ""), pods, namespaces)


def _items(value: Any) -> Iterable[dict[str, Any]]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    for item in value:
        if not isinstance(item, dict):
            raise TypeError("expected objects in the list")
        yield item
