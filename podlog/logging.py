"""Self-logs through structlog: JSON lines on stderr, pretty only on a TTY.

Libraries that log through the standard library (opensearch-py, urllib3,
aiokafka, uvicorn) are bridged into structlog too, at warning and above, so
their lines are JSON like ours (``component`` is the library's logger name).
Each library logger may write :data:`THIRD_PARTY_BURST` lines per
:data:`THIRD_PARTY_WINDOW_SECONDS`; the rest are counted and reported in one
``third_party_logs_suppressed`` line when its window ends, so a flapping
connection cannot flood the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import orjson
import structlog

__all__ = ["THIRD_PARTY_BURST", "THIRD_PARTY_WINDOW_SECONDS", "StdlibBridge", "configure_logging", "get_logger"]

THIRD_PARTY_BURST = 20
"""Lines one standard-library logger may write per window."""
THIRD_PARTY_WINDOW_SECONDS = 60.0

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def configure_logging(level: str = "info", *, fmt: str = "auto", testing: bool = False) -> None:
    """Configure structlog once per process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console when stderr is a TTY).
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; valid: {', '.join(_LEVELS)}")
    pretty = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if pretty:
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            cache_logger_on_first_use=not testing,
        )
    else:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.dict_tracebacks,
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
            cache_logger_on_first_use=not testing,
        )
    # Libraries that log through the standard library (aiokafka, opensearch-py,
    # urllib3, uvicorn) come through structlog at warning and above, rate-limited.
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, (StdlibBridge, logging.StreamHandler)) and not _is_test_handler(handler):
            root.removeHandler(handler)
    root.addHandler(StdlibBridge())
    root.setLevel(max(numeric, logging.WARNING))


def _is_test_handler(handler: logging.Handler) -> bool:
    """pytest's capture handlers stay: they are how tests read library logs."""
    return type(handler).__module__.startswith("_pytest")


class StdlibBridge(logging.Handler):
    """A standard-library handler that writes through structlog, rate-limited per logger name."""

    def __init__(
        self, burst: int = THIRD_PARTY_BURST, window_seconds: float = THIRD_PARTY_WINDOW_SECONDS
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window = window_seconds
        self._windows: dict[str, tuple[float, int, int]] = {}
        """logger name -> (window start, lines written, lines suppressed)."""
        self._lock = threading.Lock()

    def _admit(self, name: str, now: float) -> tuple[bool, int]:
        """Whether to write this line, and how many lines the window that just ended suppressed."""
        with self._lock:
            start, written, suppressed = self._windows.get(name, (now, 0, 0))
            reported = 0
            if now - start >= self._window:
                reported = suppressed
                start, written, suppressed = now, 0, 0
            if written < self._burst:
                self._windows[name] = (start, written + 1, suppressed)
                return True, reported
            self._windows[name] = (start, written, suppressed + 1)
            return False, reported

    def emit(self, record: logging.LogRecord) -> None:
        try:
            admitted, suppressed = self._admit(record.name, time.monotonic())
            log = structlog.get_logger(component=record.name)
            if suppressed:
                log.warning("third_party_logs_suppressed", suppressed=suppressed, window_seconds=self._window)
            if not admitted:
                return
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            log.log(record.levelno, record.getMessage(), **fields)
        except Exception:  # noqa: BLE001 - a log line must never break its caller
            self.handleError(record)


def get_logger(component: str) -> Any:
    """A lazy logger bound to ``component``; bind per unit of work, not at import."""
    return structlog.get_logger(component=component)
