"""Low-latency hints from inotify (watchdog); the periodic stat pass stays the truth.

Events are hints only: the watcher thread sets a flag and wakes the loop with
``call_soon_threadsafe`` once per burst, never per event.  Where inotify is
unavailable (or runs out of watches) :class:`Watcher` logs it once and the
collector relies on stat polling alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any

from collector.events import EVENTS

__all__ = ["Watcher"]


class Watcher:
    """Watches directories and wakes the collector's loop when something changes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        self._loop = loop
        self._wake = wake
        self._pending = threading.Event()
        self.scan_requested = False
        """Set when a file was created, moved or deleted: a stat pass is due now."""
        self._observer: Any = None
        self._watches: dict[str, Any] = {}
        self.available = True

    def start(self) -> None:
        """Start the observer thread; on failure, fall back to polling."""
        try:
            from watchdog.observers import Observer

            observer = Observer()
            observer.daemon = True
            observer.start()
        except Exception as exc:  # noqa: BLE001 - any failure means polling only
            EVENTS.watch_failed(exc)
            self.available = False
            return
        self._observer = observer

    def watch(self, directory: str, *, recursive: bool = False) -> None:
        """Add a watch on ``directory`` (idempotent); failures degrade to polling."""
        if self._observer is None or directory in self._watches:
            return
        if not os.path.isdir(directory):  # noqa: PTH112 - str paths throughout
            return
        try:
            self._watches[directory] = self._observer.schedule(
                _Handler(self), directory, recursive=recursive
            )
        except Exception as exc:  # noqa: BLE001 - e.g. ENOSPC: out of inotify watches
            EVENTS.watch_failed(exc)
            self._watches[directory] = None

    def unwatch(self, directory: str) -> None:
        """Remove the watch on ``directory`` if there is one."""
        watch = self._watches.pop(directory, None)
        if watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._observer.unschedule(watch)

    def watched(self) -> set[str]:
        """Directories with a watch (or a failed attempt)."""
        return set(self._watches)

    def hint(self, *, structural: bool) -> None:
        """Called from the observer thread: wake the loop once per burst."""
        if structural:
            self.scan_requested = True
        if not self._pending.is_set():
            self._pending.set()
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._pending.clear()
        self._wake.set()

    def stop(self) -> None:
        """Stop the observer thread; idempotent."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        self._watches.clear()


class _Handler:
    """watchdog's handler protocol without subclassing (dispatch is duck-typed)."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: Any) -> None:
        kind = getattr(event, "event_type", "")
        if kind in ("opened", "closed_no_write", "closed"):
            return
        self._watcher.hint(structural=kind != "modified")
