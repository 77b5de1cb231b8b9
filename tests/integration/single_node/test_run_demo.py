"""`podlog run --demo` as a user starts it: searchable within seconds, clean shutdown."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fixtures.servers import free_port, wait_for
from tests.integration.single_node.runner import start_run


def test_demo_serves_search_results_within_ten_seconds(tmp_path: Path) -> None:
    """From process start, /api/search answers with demo lines in under 10 s; the URL is printed."""
    port = free_port()
    started = time.monotonic()
    run = start_run(["--demo", "--data-dir", str(tmp_path / "data")], port, tmp_path / "out")
    try:
        page = wait_for(
            lambda: (p := run.get("/api/search?q=namespace:shop&size=5"))["hits"] and p,
            10.0,
            "demo lines in /api/search",
        )
        assert time.monotonic() - started < 10.0
        assert page["total"] >= 1
        assert {hit["kubernetes"]["namespace"] for hit in page["hits"]} == {"shop"}
        assert f"search page at {run.url}/" in run.output()
        errors = wait_for(
            lambda: run.get('/api/search?q="IllegalStateException"&size=1')["hits"],
            20.0,
            "a joined Java stack trace",
        )
        assert "\n\tat com.example" in errors[0]["message"]
        assert (tmp_path / "data" / "index" / "podlog.db").exists()
        assert run.stop() == 0, run.tail()
    finally:
        run.kill()
