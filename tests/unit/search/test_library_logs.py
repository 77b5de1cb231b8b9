"""Library logs (opensearch-py, urllib3, aiokafka) reach the log as structlog JSON, rate-limited."""

from __future__ import annotations

import logging

from structlog.testing import capture_logs

from podlog.logging import StdlibBridge


def test_library_warnings_go_through_structlog_with_their_logger_name() -> None:
    """A standard-library warning becomes a structlog event carrying the library's logger name."""
    bridge = StdlibBridge(burst=5, window_seconds=60)
    record = logging.LogRecord("opensearch", logging.WARNING, __file__, 1, "node %s failed", ("n1",), None)
    with capture_logs() as logs:
        bridge.emit(record)
    assert logs == [
        {"component": "opensearch", "logger": "opensearch", "event": "node n1 failed", "log_level": "warning"}
    ]


def test_a_flood_from_one_library_is_cut_and_counted() -> None:
    """Past the burst a logger's lines are suppressed and reported once, when its window ends."""
    bridge = StdlibBridge(burst=3, window_seconds=60)
    now = [0.0]
    admit = bridge._admit
    assert [admit("urllib3", now[0])[0] for _ in range(5)] == [True, True, True, False, False]
    assert admit("aiokafka", now[0]) == (True, 0)  # another logger has its own allowance
    now[0] += 61
    assert admit("urllib3", now[0]) == (True, 2)
