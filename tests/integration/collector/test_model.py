"""A hypothesis state machine over real files: writes, rotations, truncations, restarts.

The collector runs on the machine's own event loop, which only turns while a
rule waits for it, so every interleaving is reproducible.  ``crash`` abandons
the collector without ``stop()`` (no final flush, no last checkpoint write),
as ``kill -9`` would; the separate subprocess test kills a real process.

Invariant (checked after every catch-up): every written line was delivered at
least once, first deliveries are in written order, and nothing that was not
written was delivered.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from collector.pipeline import Collector
from tests.integration.collector.harness import AckingSink, write_cri
from tests.unit.collector.helpers import make_collector

POD_DIR = "shop_web-1_5f0c1b1e-8a2b-4c1e-9d0f-1234567890ab"


class TailerModel(RuleBasedStateMachine):
    """Rules: write, rename-rotate, copytruncate, delete, recreate, restart, crash, read."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="podlog-model-"))
        self.directory = self.tmp / "pods" / POD_DIR / "app"
        self.directory.mkdir(parents=True)
        self.live = self.directory / "0.log"
        self.include = [str(self.tmp / "pods" / "*" / "*" / "*.log")]
        self.loop = asyncio.new_event_loop()
        self.written: list[str] = []
        self.sinks: list[AckingSink] = []
        self.counter = 0
        self.rotations = 0
        self.deleted_undrained = False
        """A file was deleted since the last catch-up: a crash now would really lose it."""
        self.collector: Collector | None = None
        self.task: asyncio.Task[None] | None = None
        self._start()

    # -- collector lifecycle ---------------------------------------------------

    def _start(self) -> None:
        sink = AckingSink()
        collector = make_collector(self.tmp, sink, include=self.include,
                                   checkpoint_interval_seconds=0.02, use_inotify=False)
        sink.listener = collector.checkpoints
        self.sinks.append(sink)
        self.collector = collector

        async def boot() -> asyncio.Task[None]:
            await collector.start()
            return asyncio.create_task(collector.run())

        self.task = self.loop.run_until_complete(boot())

    def _stop(self) -> None:
        assert self.collector is not None and self.task is not None
        self.loop.run_until_complete(self.collector.stop())
        self.loop.run_until_complete(self.task)
        self.collector = self.task = None

    def _crash(self) -> None:
        if self.deleted_undrained:
            # A deleted file lives only in the open descriptor: killed before draining
            # it, its unread lines are gone (and counted as lost). Drain it first.
            self.read()
        assert self.collector is not None and self.task is not None
        collector, task = self.collector, self.task
        for child in collector._tasks:
            child.cancel()
        task.cancel()
        self.loop.run_until_complete(asyncio.gather(task, *collector._tasks,
                                                    return_exceptions=True))
        collector.tracker.close_all()  # the kernel closes descriptors of a killed process
        self.collector = self.task = None

    def _run_until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async def waiting() -> None:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await asyncio.sleep(0.005)

        self.loop.run_until_complete(waiting())

    def _file_open(self) -> bool:
        collector = self.collector
        if collector is None or not self.live.exists():
            return False
        if b"\n" not in self.live.read_bytes()[:256]:
            return True  # no complete line yet: nothing to open, nothing to lose
        ino = self.live.stat().st_ino
        return any(t.file.ino == ino and not t.file.draining for t in collector.tracker.tailers.values())

    # -- what was delivered -----------------------------------------------------

    def delivered(self) -> list[str]:
        return [m for sink in self.sinks for m in sink.messages()]

    def first_deliveries(self) -> list[str]:
        seen: set[str] = set()
        first = []
        for message in self.delivered():
            if message not in seen:
                seen.add(message)
                first.append(message)
        return first

    # -- rules -----------------------------------------------------------------

    @rule(count=st.integers(min_value=1, max_value=25))
    def write_lines(self, count: int) -> None:
        messages = [f"m{self.counter + i}" for i in range(count)]
        self.counter += count
        write_cri(self.live, messages)
        self.written.extend(messages)

    @precondition(lambda self: self.live.exists())
    @rule()
    def rotate_rename(self) -> None:
        self._run_until(self._file_open)
        self.rotations += 1
        self.live.rename(self.directory / f"0.log.{self.rotations}")

    @precondition(lambda self: self.live.exists())
    @rule()
    def copytruncate(self) -> None:
        self.read()  # logrotate copies first; lines written after the copy are the race
        shutil.copyfile(self.live, self.directory / f"0.log.copy{self.counter}")
        with self.live.open("r+b") as f:
            f.truncate(0)

    @precondition(lambda self: self.live.exists())
    @rule()
    def delete(self) -> None:
        self._run_until(self._file_open)
        self.live.unlink()
        self.deleted_undrained = True

    @precondition(lambda self: not self.live.exists())
    @rule()
    def recreate(self) -> None:
        self.write_lines(3)

    @rule()
    def restart(self) -> None:
        self._stop()
        self._start()

    @rule()
    def crash(self) -> None:
        self._crash()
        self._start()

    @precondition(lambda self: self.live.exists())
    @rule()
    def rotate_while_down(self) -> None:
        self._run_until(self._file_open)
        self._crash()
        self.rotations += 1
        self.live.rename(self.directory / f"0.log.{self.rotations}")
        self.write_lines(2)
        self._start()

    @rule()
    def read(self) -> None:
        expected = len(self.written)
        self._run_until(lambda: len(self.first_deliveries()) >= expected)
        self.deleted_undrained = False
        self.check()

    def check(self) -> None:
        written = set(self.written)
        stray = [m for m in self.delivered() if m not in written]
        assert not stray, f"delivered lines never written: {stray[:5]}"
        first = self.first_deliveries()
        assert first == self.written[: len(first)], "first deliveries out of written order"

    def teardown(self) -> None:
        try:
            if self.collector is not None:
                self.read()
                self._stop()
        finally:
            if self.collector is not None:
                self._crash()
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


TailerModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_tailer_model = TailerModel.TestCase
