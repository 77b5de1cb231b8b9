"""glibc malloc tuning for a process that allocates and frees in large, steady waves.

A podlog process allocates a few megabytes per batch (records, their
encodings, read chunks, framed Kafka batches) and frees them a moment later.
glibc's defaults give that memory back to the kernel as soon as more than
128 KiB is free at the top of the heap, and serve buffers above its mmap
threshold with fresh mappings, so the next batch faults the same pages in
again.  On the bench backlog that was about one page fault per record and
more than half of the cost of encoding a record for the spool (4.8 against
1.6 µs per record, ``bench/collector.py``).

:func:`tune_malloc` keeps a bounded amount of freed memory for reuse
instead.  :class:`HeapTrimmer` gives it back once the process goes idle, so
a drained backlog does not leave the peak resident for good.

Both are no-ops where the C library is not glibc (musl has no ``mallopt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podlog.logging import get_logger

if TYPE_CHECKING:
    from podlog.config import CommonConfig

__all__ = ["HeapTrimmer", "resident_bytes", "tune_malloc", "tune_malloc_as_configured"]

log = get_logger("podlog.allocator")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def tune_malloc(trim_threshold: int, mmap_threshold: int) -> bool:
    """Keep up to ``trim_threshold`` bytes of freed heap; ``mmap`` only above ``mmap_threshold``.

    Setting either disables glibc's adaptive thresholds, so both are set
    together.  A ``trim_threshold`` of 0 or less leaves glibc alone.  Returns
    whether the thresholds were set.
    """
    if trim_threshold <= 0:
        return False
    libc = _libc()
    if libc is None:
        log.info("malloc_tuning_unavailable", reason="not glibc")
        return False
    limit = 2**31 - 1  # mallopt takes a C int
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(min(mmap_threshold, limit))) == 1)
    ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(min(trim_threshold, limit))) == 1) and ok
    if not ok:
        log.warning("malloc_tuning_rejected", trim_threshold=trim_threshold,
                    mmap_threshold=mmap_threshold)
    return ok


def tune_malloc_as_configured(common: CommonConfig) -> bool:
    """:func:`tune_malloc` with the ``podlog.malloc_*`` settings, as every podlog process starts."""
    return tune_malloc(common.malloc_trim_threshold_bytes, common.malloc_mmap_threshold_bytes)


def resident_bytes() -> int:
    """The process's resident set size now (0 where ``/proc`` is missing)."""
    try:
        return int(Path("/proc/self/statm").read_bytes().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class HeapTrimmer:
    """A lifecycle service: ``malloc_trim`` once whenever the process turns idle.

    Every ``interval`` seconds it compares the CPU time the process used with
    ``idle_fraction`` of the interval.  The first idle interval after a busy
    one returns the freed heap to the kernel; busy intervals never trim, so
    a process under load keeps reusing its pages.
    """

    name = "heap-trimmer"

    def __init__(self, interval: float, *, idle_fraction: float = 0.05) -> None:
        self.interval = interval
        self.idle_fraction = idle_fraction
        self.trims = 0
        """How many times the heap was trimmed (for tests and the log)."""
        self._libc = _libc()
        self._stopped = asyncio.Event()
        self._busy_since_trim = True

    async def start(self) -> None:
        """Nothing to acquire."""

    async def run(self) -> None:
        """Check once per interval until stopped."""
        if self._libc is None or self.interval <= 0:
            await self._stopped.wait()
            return
        cpu = time.process_time()
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.interval)
            if self._stopped.is_set():
                return
            now = time.process_time()
            await self.tick(now - cpu)
            cpu = now

    async def tick(self, cpu_seconds: float) -> bool:
        """One check, given the CPU seconds used in the last interval; returns whether it trimmed."""
        if cpu_seconds > self.idle_fraction * self.interval:
            self._busy_since_trim = True
            return False
        if not self._busy_since_trim or self._libc is None:
            return False
        self._busy_since_trim = False
        before = resident_bytes()
        await asyncio.to_thread(self._libc.malloc_trim, 0)
        self.trims += 1
        log.debug("heap_trimmed", rss_before=before, rss_after=resident_bytes())
        return True

    async def stop(self) -> None:
        """End :meth:`run`."""
        self._stopped.set()
