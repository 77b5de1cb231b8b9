"""kill -9 of a real collector reading the journal and a host file: after a restart every entry
and line arrives, and a replayed one keeps its event id (the index keeps one copy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.fixtures.servers import wait_for
from tests.integration.collector.journal_files import append_journal, entry, require_journal_tools

ROOT = Path(__file__).resolve().parents[3]


def _start(tmp_path: Path, out: Path) -> subprocess.Popen[bytes]:
    with (tmp_path / "collector.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.collector.node_process",
             str(tmp_path / "state"), str(out), str(tmp_path / "journal"), str(tmp_path / "syslog")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )


def _delivered(out: Path) -> list[dict[str, str]]:
    if not out.exists():
        return []
    return [orjson.loads(line) for line in out.read_bytes().split(b"\n") if line]


def _syslog_lines(start: int, stop: int) -> bytes:
    return b"".join(f"Dec  6 05:00:{i % 60:02d} node-a app[1]: file {i}\n".encode() for i in range(start, stop))


@pytest.mark.slow
def test_kill_9_mid_journal_and_mid_file_loses_nothing_and_replays_with_the_same_ids(tmp_path: Path) -> None:
    """SIGKILL while both inputs are mid-stream; more written while down; restart: all once by id."""
    require_journal_tools()
    journal = tmp_path / "journal" / "system.journal"
    append_journal(journal, [entry(f"journal {i}") for i in range(20_000)])
    syslog = tmp_path / "syslog"
    syslog.write_bytes(_syslog_lines(0, 20_000))
    out = tmp_path / "delivered.jsonl"
    proc = _start(tmp_path, out)
    try:
        wait_for(lambda: len({r["source"] for r in _delivered(out)}) == 2 and len(_delivered(out)) >= 500,
                 60, "deliveries from both inputs")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        before = len(_delivered(out))
        assert before < 40_000, "killed after everything was delivered: not mid-stream"
        append_journal(journal, [entry(f"journal {i}") for i in range(20_000, 20_500)])
        with syslog.open("ab") as more:
            more.write(_syslog_lines(20_000, 20_500))
        proc = _start(tmp_path, out)
        expected = {f"journal {i}" for i in range(20_500)} | {f"file {i}" for i in range(20_500)}
        wait_for(lambda: {r["message"].rsplit(": ", 1)[-1] for r in _delivered(out)} >= expected, 90,
                 "every entry and line after the restart")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    ids: dict[str, str] = {}
    for record in _delivered(out):
        message = record["message"].rsplit(": ", 1)[-1]
        assert ids.setdefault(message, record["id"]) == record["id"], f"{message} replayed with a new id"
    assert set(ids) == expected
    assert len(set(ids.values())) == len(expected)
