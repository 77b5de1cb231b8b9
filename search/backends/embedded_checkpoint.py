"""Checkpointing the embedded index's write-ahead log on a thread of its own.

SQLite's automatic checkpoint runs inside the COMMIT that crosses its
threshold: the writer thread copies the log into the database file and syncs
it while the next batch waits, about a sixth of the writer's time per line.
:class:`Checkpointer` does that copy on its own connection and thread instead,
after every ``every_rows`` committed rows.  Its checkpoints are PASSIVE: they
never wait for the writer or for readers, and copy what they can.

A passive checkpoint cannot restart the log while commits keep arriving (the
log restarts only when a writer finds every frame copied), so when the log
holds more than ``max_wal_pages`` frames the checkpointer marks a restart as
due, and the writer, between two transactions, runs a RESTART checkpoint
(:meth:`Checkpointer.restart`): it copies the frames committed since the
last passive checkpoint, and the next commit writes from the start of the file
again (cut back to ``journal_size_limit``).  It is the writer's to run because
a RESTART from another connection waits for a gap between transactions, which
a busy writer may never leave it.  It waits at most ``busy_seconds`` for
readers still on old frames, and is due again after the next rows otherwise.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

from search.backends.embedded_events import IndexEvents

__all__ = ["Checkpointer"]


class Checkpointer:
    """Copies the write-ahead log into the database file, beside the writer."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        events: IndexEvents,
        *,
        every_rows: int = 8192,
        max_wal_pages: int = 20_000,
        busy_seconds: float = 1.0,
    ) -> None:
        self._connect = connect
        self._events = events
        self.every_rows = every_rows
        self.max_wal_pages = max_wal_pages
        self.busy_seconds = busy_seconds
        self._wake = threading.Condition()
        self._pending = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        """Checkpoints run so far (tests, benchmarks)."""
        self.restarts = 0
        """RESTART checkpoints run by the writer so far."""
        self.restart_due = False
        """The log has grown past ``max_wal_pages``: the writer should :meth:`restart` it."""

    def start(self) -> None:
        """Start the thread; the first checkpoint waits for ``every_rows`` rows."""
        self._thread = threading.Thread(target=self._run, name="podlog-index-checkpoint", daemon=True)
        self._thread.start()

    def committed(self, rows: int) -> None:
        """The writer committed ``rows`` rows (called on the writer thread; never blocks on I/O)."""
        with self._wake:
            self._pending += rows
            if self._pending >= self.every_rows:
                self._wake.notify()

    def stop(self) -> None:
        """Finish the checkpoint in progress and end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            with self._wake:
                while self._pending < self.every_rows and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                self._pending = 0
            if conn is None:
                try:
                    conn = self._connect()
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_seconds * 1000)}")
                except sqlite3.Error as exc:  # the next rows try again
                    self._events.checkpoint_failed(exc)
                    conn = None
                    continue
            self.checkpoint(conn)

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One passive checkpoint; marks a restart due when the log has grown past its bound."""
        started = time.monotonic()
        try:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            # Disk full, I/O errors: the frames stay in the log, where they are safe;
            # the next rows try again.
            self._events.checkpoint_failed(exc)
            return
        self.checkpoints += 1
        if frames > self.max_wal_pages:
            self.restart_due = True
        self._events.checkpointed("passive", time.monotonic() - started)

    def restart(self, writer: sqlite3.Connection) -> None:
        """On the writer's connection, between transactions: copy what is left and restart the log."""
        self.restart_due = False
        started = time.monotonic()
        busy = writer.execute("PRAGMA busy_timeout").fetchone()[0]
        try:
            writer.execute(f"PRAGMA busy_timeout = {int(self.busy_seconds * 1000)}")
            writer.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:
            self._events.checkpoint_failed(exc)
            return
        finally:
            writer.execute(f"PRAGMA busy_timeout = {busy}")
        self.restarts += 1
        self._events.checkpointed("restart", time.monotonic() - started)
