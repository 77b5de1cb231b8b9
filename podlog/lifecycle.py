"""Run long-lived services together: one fails, all stop; signals stop them in order.

A service has ``async start()``, ``async run()`` and an idempotent
``async stop()``.  :func:`run_services` starts them in the given order, runs
them in one task group, and on shutdown (a signal, or any service failing or
returning) stops them in *reverse* order, each under the remaining grace time:
with the agent composed as ``[shipper, collector]`` the collector stops first
(drain tailers, flush, spool fsync), then the shipper flushes the producer and
checkpoints are written last.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from podlog.logging import get_logger

__all__ = ["Health", "Service", "ShutdownSignal", "run_services"]

log = get_logger("podlog.lifecycle")


@runtime_checkable
class Service(Protocol):
    """A long-running part of a process."""

    name: str

    async def start(self) -> None:
        """Acquire resources; return when the service can do work."""

    async def run(self) -> None:
        """Do the work until stopped; returning or raising stops the process."""

    async def stop(self) -> None:
        """Finish in-flight work and release resources; safe to call twice."""


class Health:
    """Readiness checks that ``/readyz`` evaluates; liveness is the loop answering."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], str | None]] = {}

    def add(self, name: str, check: Callable[[], str | None]) -> None:
        """Register ``check``: it returns None when ready, else a short reason."""
        self._checks[name] = check

    def not_ready(self) -> dict[str, str]:
        """Reasons of every failing check, by name; empty when ready."""
        reasons: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a broken check means not ready
                reason = f"check failed: {exc}"
            if reason:
                reasons[name] = reason
        return reasons


class ShutdownSignal:
    """SIGTERM/SIGINT set an event; a second signal forces exit (uvicorn's handle_exit)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._count = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._handle, sig)

    def _handle(self, sig: signal.Signals) -> None:
        self._count += 1
        log.info("shutdown_requested", signal=sig.name, count=self._count)
        if self._count > 1:
            raise SystemExit(128 + int(sig))
        self.event.set()


async def run_services(
    services: Sequence[Service],
    *,
    grace_seconds: float,
    stop_event: asyncio.Event | None = None,
) -> None:
    """Start ``services`` in order, run them, and stop them in reverse order.

    Returns after an ordered shutdown; re-raises the first service failure
    after every service was stopped.
    """
    shutdown = ShutdownSignal()
    if stop_event is None:
        shutdown.install()
        stop_event = shutdown.event
    started: list[Service] = []
    runners: dict[asyncio.Task[None], Service] = {}
    failure: BaseException | None = None
    try:
        for service in services:
            await service.start()
            started.append(service)
            log.info("service_started", service=service.name)
        runners = {asyncio.create_task(s.run(), name=f"run:{s.name}"): s for s in services}
        stopper = asyncio.create_task(stop_event.wait(), name="stop-event")
        done, _ = await asyncio.wait([*runners, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is stopper:
                continue
            service = runners[task]  # type: ignore[index]
            if task.exception() is not None:
                failure = task.exception()
                log.error("service_failed", service=service.name, error=repr(failure))
            else:
                log.info("service_finished", service=service.name)
            break
    except Exception as exc:
        failure = exc
        log.exception("service_start_failed", error=repr(exc))
    finally:
        await _stop_all(started, grace_seconds)
        await _cancel_runners(runners)
    if failure is not None:
        raise failure


async def _stop_all(started: list[Service], grace_seconds: float) -> None:
    deadline = time.monotonic() + grace_seconds
    for service in reversed(started):
        remaining = max(0.1, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                await service.stop()
            log.info("service_stopped", service=service.name)
        except TimeoutError:
            log.error(  # noqa: TRY400 - a timeout has no traceback worth printing
                "service_stop_timed_out", service=service.name, grace_seconds=grace_seconds
            )
        except Exception as exc:
            log.exception("service_stop_failed", service=service.name, error=repr(exc))


async def _cancel_runners(runners: dict[asyncio.Task[None], Service]) -> None:
    """Give each ``run()`` a moment to return after ``stop()``, then cancel the rest."""
    pending = [task for task in runners if not task.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=1.0)
        for task in still:
            task.cancel()
        if still:
            log.warning("service_tasks_cancelled", count=len(still), services=[runners[t].name for t in still])
            await asyncio.gather(*still, return_exceptions=True)
    for task in runners:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("service_run_failed", service=runners[task].name, error=repr(task.exception()))
