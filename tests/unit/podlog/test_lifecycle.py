"""Services start in order, stop in reverse, and one failure stops them all."""

from __future__ import annotations

import asyncio

import pytest

from podlog.lifecycle import Health, run_services


class Recorder:
    def __init__(self, name: str, events: list[str], fail_run: bool = False, hang_stop: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail_run = fail_run
        self.hang_stop = hang_stop
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        self.events.append(f"start:{self.name}")

    async def run(self) -> None:
        if self.fail_run:
            raise RuntimeError(f"{self.name} broke")
        await self.stopped.wait()

    async def stop(self) -> None:
        self.events.append(f"stop:{self.name}")
        if self.hang_stop:
            await asyncio.Event().wait()
        self.stopped.set()


async def test_stop_event_stops_services_in_reverse_order() -> None:
    """The last service started (the collector) is the first stopped."""
    events: list[str] = []
    stop = asyncio.Event()
    services = [Recorder("shipper", events), Recorder("collector", events)]
    task = asyncio.create_task(run_services(services, grace_seconds=5, stop_event=stop))
    await asyncio.sleep(0)
    while len(events) < 2:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert events == ["start:shipper", "start:collector", "stop:collector", "stop:shipper"]


async def test_one_failure_stops_all_and_is_reraised() -> None:
    """A service whose run() raises stops the others, then the error surfaces."""
    events: list[str] = []
    services = [Recorder("a", events), Recorder("b", events, fail_run=True)]
    with pytest.raises(RuntimeError, match="b broke"):
        await run_services(services, grace_seconds=5, stop_event=asyncio.Event())
    assert events[-2:] == ["stop:b", "stop:a"]


async def test_stop_that_hangs_is_cut_at_the_grace_deadline() -> None:
    """A stop() that never returns costs at most the grace period, and the others still stop."""
    events: list[str] = []
    stop = asyncio.Event()
    stop.set()
    services = [Recorder("a", events), Recorder("b", events, hang_stop=True)]
    loop = asyncio.get_running_loop()
    began = loop.time()
    await run_services(services, grace_seconds=0.5, stop_event=stop)
    assert loop.time() - began < 3
    assert "stop:a" in events


def test_health_reports_failing_checks_with_reasons() -> None:
    """/readyz reasons come from checks that return a string or raise."""
    health = Health()
    health.add("ok", lambda: None)
    health.add("spool", lambda: "spool full")

    def broken() -> str | None:
        raise ValueError("boom")

    health.add("broken", broken)
    assert health.not_ready() == {"spool": "spool full", "broken": "check failed: boom"}
