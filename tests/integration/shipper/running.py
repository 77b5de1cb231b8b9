"""Helpers for running a Shipper inside a test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from shipper.shipper import Shipper


def unique_topic(name: str) -> str:
    return f"shipper-{name}-{time.monotonic_ns()}"


@contextlib.asynccontextmanager
async def running(shipper: Shipper) -> AsyncIterator[Shipper]:
    """Start and run a shipper; stop it (and its run task) on exit."""
    await shipper.start()
    task = asyncio.create_task(shipper.run())
    try:
        yield shipper
    finally:
        await shipper.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


async def until(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)
