"""Which files to read: include/exclude globs, symlinks followed, podlog itself left out."""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from typing import NamedTuple

from collector.enrichment import PathMeta
from collector.events import EVENTS

__all__ = ["Discovery", "Found", "self_identity"]


class Found(NamedTuple):
    """A discovered file: the path as matched and the file it names now."""

    real_path: str
    """The symlink target (or the path itself)."""
    dev: int
    ino: int
    size: int


def self_identity() -> tuple[str, str] | None:
    """(namespace, pod) of the agent itself from the downward API, or None outside a pod."""
    namespace = os.environ.get("POD_NAMESPACE", "")
    pod = os.environ.get("POD_NAME", "")
    if namespace and pod:
        return namespace, pod
    return None


class Discovery:
    """Glob the include patterns, drop excludes, and stat what is left."""

    def __init__(self, include: list[str], exclude: list[str], *, exclude_self: bool) -> None:
        self.include = list(include)
        self.exclude = list(exclude)
        self.own = self_identity() if exclude_self else None
        self._skipped: set[str] = set()
        """Paths that name no regular file, logged once until they do again."""

    def is_excluded(self, path: str, real_path: str) -> bool:
        """True when either path matches an exclude pattern."""
        return any(
            fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(real_path, pattern)
            for pattern in self.exclude
        )

    def is_self(self, meta: PathMeta) -> bool:
        """True for the agent's own container logs."""
        return self.own is not None and (meta.namespace, meta.pod) == self.own

    def scan(self) -> dict[str, Found]:
        """Every included file by discovered path; vanished or unreadable ones are skipped."""
        found: dict[str, Found] = {}
        for pattern in self.include:
            for path in glob.glob(pattern):  # noqa: PTH207 - str paths, hot stat pass
                if path in found:
                    continue
                try:
                    st = os.stat(path)  # noqa: PTH116 - str paths, hot stat pass
                    real_path = os.path.realpath(path) if os.path.islink(path) else path  # noqa: PTH114
                except FileNotFoundError:
                    continue  # gone between glob and stat (or a dangling link): the next pass decides
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        self._skip_once(path, "symlink_loop", exc)
                    else:
                        EVENTS.file_failed(path, exc, "stat")
                    continue
                if not _is_regular(st.st_mode):
                    self._skip_once(path, "not_regular", None)
                    continue
                self._skipped.discard(path)
                if self.exclude and self.is_excluded(path, real_path):
                    continue
                found[path] = Found(real_path, st.st_dev, st.st_ino, st.st_size)
        return found

    def _skip_once(self, path: str, reason: str, error: OSError | None) -> None:
        if path not in self._skipped:
            if len(self._skipped) > 65536:
                self._skipped.clear()
            self._skipped.add(path)
            EVENTS.file_skipped(path, reason, error)

    def watch_roots(self) -> list[tuple[str, bool]]:
        """``(directory, recursive)`` to watch for each include pattern."""
        roots: list[tuple[str, bool]] = []
        for pattern in self.include:
            head = pattern
            while glob.has_magic(head):
                head = os.path.dirname(head)  # noqa: PTH120 - glob patterns are str
            directory = os.path.dirname(pattern)  # noqa: PTH120 - glob patterns are str
            recursive = glob.has_magic(directory) or "**" in pattern
            roots.append((head if recursive else directory, recursive))
        return roots


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
