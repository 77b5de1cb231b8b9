"""glibc malloc tuning: freed memory is kept for reuse while busy and returned once idle."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from podlog.allocator import HeapTrimmer, _libc, tune_malloc, tune_malloc_as_configured
from podlog.config import CommonConfig

pytestmark = pytest.mark.skipif(_libc() is None, reason="needs glibc's mallopt")

_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from podlog.allocator import HeapTrimmer, resident_bytes, tune_malloc

    tuned = tune_malloc(int(sys.argv[1]), 32 << 20)
    base = resident_bytes()
    blocks = [bytearray(b"x" * 65536) for _ in range(1600)]  # 100 MiB of heap chunks
    full = resident_bytes()
    del blocks
    freed = resident_bytes()
    trimmer = HeapTrimmer(10.0)
    trimmed = asyncio.run(trimmer.tick(0.0))
    print(json.dumps({"tuned": tuned, "base": base, "full": full, "freed": freed,
                      "trimmed": trimmed, "after": resident_bytes()}))
    """
)


def _run(trim_threshold: int) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(trim_threshold)],
                         check=True, capture_output=True, text=True, timeout=60)
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_tuned_heap_keeps_freed_memory_until_the_idle_trim() -> None:
    mib = 1 << 20
    r = _run(256 << 20)
    assert r["tuned"]
    assert r["full"] - r["base"] > 90 * mib
    assert r["freed"] - r["base"] > 90 * mib, "freed chunks should stay for reuse"
    assert r["trimmed"]
    assert r["after"] - r["base"] < 20 * mib, "the idle trim should return them"


def test_untuned_heap_returns_freed_memory_at_once() -> None:
    """The default the tuning changes: without it the same free gives the pages back."""
    r = _run(0)
    assert not r["tuned"]
    assert r["freed"] - r["base"] < 20 * (1 << 20)


def test_tune_malloc_off_for_zero() -> None:
    assert tune_malloc(0, 32 << 20) is False
    assert tune_malloc_as_configured(CommonConfig(malloc_trim_threshold_bytes=0)) is False


async def test_trims_once_per_idle_period() -> None:
    trimmer = HeapTrimmer(10.0, idle_fraction=0.05)
    assert await trimmer.tick(0.0)  # idle after start (startup counts as busy)
    assert not await trimmer.tick(0.0)  # still idle: nothing new to give back
    assert not await trimmer.tick(5.0)  # busy: keep the pages
    assert not await trimmer.tick(0.6)  # 6% of the interval is still busy
    assert await trimmer.tick(0.4)  # 4%: idle again
    assert trimmer.trims == 2


async def test_run_trims_when_the_process_idles_and_stops_promptly() -> None:
    trimmer = HeapTrimmer(0.2)
    task = asyncio.create_task(trimmer.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while trimmer.trims == 0 and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert trimmer.trims == 1
    await trimmer.stop()
    await asyncio.wait_for(task, 2)
