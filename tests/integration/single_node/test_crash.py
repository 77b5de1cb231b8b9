"""kill -9 of `podlog run` at random moments, then a restart: every line indexed exactly once."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from pathlib import Path

from podlog.demo import render_line
from tests.fixtures.servers import free_port, wait_for
from tests.integration.single_node.runner import RunProcess, start_run

FILES = 3
LINES_PER_FILE = 1500


def file_name(i: int) -> str:
    digest = hashlib.sha256(f"crash-{i}".encode()).hexdigest()
    return f"app-{i}-6c8d7e9f5-m3n4b_crash_app-{digest}.log"


class LineWriter:
    """Appends numbered CRI lines to the files; each line's message is unique."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.next = [0] * FILES
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, count: int) -> None:
        for i in range(FILES):
            with (self.directory / file_name(i)).open("ab") as out:
                for _ in range(count):
                    n = self.next[i]
                    if n >= LINES_PER_FILE:
                        break
                    out.write(render_line("cri", "stdout", time.time_ns(), f"crashline f{i} n{n} payload"))
                    self.next[i] += 1

    def write_slowly(self, count: int, rounds: int) -> None:
        """``rounds`` writes of ``count`` lines per file, as fast as the disk takes them."""
        for _ in range(rounds):
            self.write(count)

    def expected(self) -> set[str]:
        return {f"crashline f{i} n{n} payload" for i in range(FILES) for n in range(self.next[i])}


def indexed(db: Path) -> list[str]:
    """Messages in the index file, read while the process may be running (WAL reader)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [row[0] for row in conn.execute("SELECT json_extract(doc, '$.message') FROM r")]
    except sqlite3.OperationalError:  # the schema is being created
        return []
    finally:
        conn.close()


def test_kill_9_at_any_moment_then_restart_indexes_every_line_once(tmp_path: Path) -> None:
    """Three kill -9s (while idle, mid-write, mid-catch-up) lose nothing and duplicate nothing."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    logs, data = tmp_path / "logs", tmp_path / "data"
    db = data / "index" / "podlog.db"
    writer = LineWriter(logs)
    args = ["--logs", str(logs), "--data-dir", str(data)]
    env = {"PODLOG_SHIPPER__SPOOL__MAX_BYTES": str(64 << 20)}
    runs: list[RunProcess] = []
    try:
        for phase in range(3):
            writer.write(LINES_PER_FILE // 5)
            run = start_run(args, free_port(), tmp_path / "out", env)
            runs.append(run)
            if phase == 1:
                # Lines keep arriving while the process runs and is killed.
                feeder = threading.Thread(target=writer.write_slowly, args=(20, 15))
                feeder.start()
            wait_for(lambda: len(indexed(db)) > 0, 30.0, f"first lines indexed (seed {seed})")
            time.sleep(rnd.uniform(0.0, 1.5))  # the random moment of the crash, not synchronisation
            run.kill()
            if phase == 1:
                feeder.join()
            assert len(indexed(db)) == len(set(indexed(db))), f"duplicates after kill (seed {seed})"
        writer.write(LINES_PER_FILE)
        expected = writer.expected()
        run = start_run(args, free_port(), tmp_path / "out", env)
        runs.append(run)
        wait_for(
            lambda: len(indexed(db)) >= len(expected),
            90.0,
            f"{len(expected)} lines indexed (seed {seed})",
        )
        page = run.get("/api/search?q=crashline&size=1")
        assert page["total"] == len(expected), run.tail()
        assert run.stop() == 0, run.tail()
        messages = indexed(db)
        assert len(messages) == len(expected), f"seed {seed}"
        assert set(messages) == expected, f"seed {seed}"
        conn = sqlite3.connect(db)
        (fts_rows,) = conn.execute("SELECT count(*) FROM f WHERE f MATCH 'meta:zall'").fetchone()
        conn.close()
        assert fts_rows == len(expected)
    finally:
        for run in runs:
            run.kill()
