"""kill -9 of a real collector process: after a restart nothing is skipped, replays keep ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.fixtures.servers import wait_for
from tests.integration.collector.harness import lines, write_cri
from tests.unit.collector.helpers import container_path

ROOT = Path(__file__).resolve().parents[3]


def _start(tmp_path: Path, out: Path) -> subprocess.Popen[bytes]:
    pattern = str(tmp_path / "containers" / "*.log")
    with (tmp_path / "collector.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.collector.collector_process",
             str(tmp_path / "state"), str(out), pattern],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )


def _delivered(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    raw = out.read_bytes()
    return [orjson.loads(line) for line in raw.split(b"\n") if line]


@pytest.mark.slow
def test_kill_9_mid_stream_resumes_at_the_last_acknowledged_offset(tmp_path: Path) -> None:
    """Killed with SIGKILL while reading and rotating: every line arrives, replays share ids."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs)
    out = tmp_path / "delivered.jsonl"
    write_cri(path, lines("a", 0, 20_000))
    proc = _start(tmp_path, out)
    try:
        wait_for(lambda: len(_delivered(out)) >= 2_000, 30, "first deliveries")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # While it is down: more lines, then a rotation to a new file.
        write_cri(path, lines("a", 20_000, 20_500))
        path.rename(path.with_name(path.name + ".1"))  # kubelet-style: not matched any more
        write_cri(path, lines("b", 0, 300))
        # The renamed file is found by inode in its directory and finished first.
        proc = _start(tmp_path, out)
        expected = lines("a", 0, 20_500) + lines("b", 0, 300)
        wait_for(lambda: len({r["message"] for r in _delivered(out)}) >= len(expected), 60,
                 "all lines after the restart")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    records = _delivered(out)
    first: list[object] = []
    ids: dict[object, object] = {}
    for record in records:
        message = record["message"]
        if message in ids:
            assert ids[message] == record["id"], f"replayed {message} with a new event id"
            continue
        ids[message] = record["id"]
        first.append(message)
    assert first == expected
    assert set(ids) == set(expected)
