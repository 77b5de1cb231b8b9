"""Collector settings: discovery, tailing, decoding, multiline, checkpoints."""

from __future__ import annotations

import dataclasses

from podlog.config import setting

__all__ = ["CollectorConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class CollectorConfig:
    """What the collector reads and how."""

    include: list[str] = setting(
        ["/var/log/containers/*.log"], "Glob patterns of log files to read; symlinks are followed."
    )
    exclude: list[str] = setting([], "Glob patterns of files never to read.")
    read_from: str = setting(
        "head", "Where to start in files that exist on the very first start: head or tail."
    )
