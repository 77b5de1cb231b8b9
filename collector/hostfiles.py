"""Node log files beside the containers': syslog, kernel, auth and control-plane logs.

Host files are read by the same machinery as container files (discovery ->
:class:`collector.tracker.FileTracker` -> one :class:`collector.tailer.Tailer`
per file, its checkpoints, rotation by rename, copytruncate, ``.gz`` never
read).  This module only says which discovered files are node files and what
their records get:

- ``log.source: file`` and ``host.name`` (and no pod fields: their path names none);
- the ``syslog`` format when the first line has a syslog prefix (RFC 3164 or
  RFC 5424, see :mod:`collector.parsers.syslog`): each line's time is its
  prefix's, a year-less one resolved against the read time in
  ``host_files_timezone``; the line itself (prefix included) is the message.
  A file without a prefix (the control-plane logs, in klog's format) is ``plain``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.config import DEFAULT_HOST_FILES
from collector.tailer import Tailer
from podlog.record import SharedMap

__all__ = ["DEFAULT_HOST_FILES", "SOURCE_FILE", "HostFiles", "zone"]

SOURCE_FILE = "file"
"""``log.source`` of a node file's records."""

NO_KUBERNETES = SharedMap()
"""A node file's records carry no pod fields."""


def zone(name: str) -> tzinfo:
    """The time zone named ``name`` (``UTC`` or an IANA name); ValueError naming it when unknown."""
    if name in ("", "UTC", "utc"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"collector.host_files_timezone: unknown time zone {name!r}") from exc


class HostFiles:
    """Tells node files from container files, and sets up a node file's tailer."""

    def __init__(self, globs: Sequence[str], timezone: tzinfo = UTC,
                 multiline: Mapping[str, str] | None = None) -> None:
        self.globs = tuple(globs)
        self.timezone = timezone
        self.multiline = dict(multiline or {})
        """Multiline rule by glob; the first glob that matches a file gives its rule."""

    def matches(self, path: str) -> bool:
        """True when ``path`` (as discovered) is matched by a host file glob."""
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.globs)

    def adopt(self, tailer: Tailer) -> bool:
        """Make ``tailer`` a node file's when its path is one; True if it is."""
        if not (self.matches(tailer.file.path) or self.matches(tailer.file.real_path)):
            return False
        tailer.source = SOURCE_FILE
        tailer.kubernetes = NO_KUBERNETES
        tailer.decoder.syslog_zone = self.timezone
        for pattern, rule in self.multiline.items():
            if fnmatch.fnmatchcase(tailer.file.path, pattern) or fnmatch.fnmatchcase(tailer.file.real_path, pattern):
                tailer.default_multiline = rule
                break
        return True
