"""Shared bits of the reproductions: a kubelet layout, a collector, kill -9, checkpoint on disk."""
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

from podlog.metrics import sample  # noqa: E402
from tests.integration.collector.harness import AckingSink  # noqa: E402
from tests.unit.collector.helpers import make_collector  # noqa: E402
from tests.unit.collector.helpers import wait_until as wait_until  # noqa: E402 - re-exported for the scripts

POD = "shop_web-1_5f0c1b1e-8a2b-4c1e-9d0f-1234567890ab"


class Bed:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="podlog-repro-"))
        self.dir = self.tmp / "pods" / POD / "app"
        self.dir.mkdir(parents=True)
        self.live = self.dir / "0.log"
        self.include = [str(self.tmp / "pods" / "*" / "*" / "*.log")]
        self.sinks = []
        self.collector = None
        self.task = None

    async def start(self, refuse=0, **overrides):
        sink = AckingSink(refuse)
        c = make_collector(self.tmp, sink, include=self.include, use_inotify=False,
                           checkpoint_interval_seconds=0.02, **overrides)
        sink.listener = c.checkpoints
        await c.start()
        self.task = asyncio.create_task(c.run())
        self.collector, self.sink = c, sink
        self.sinks.append(sink)
        return c, sink

    async def kill(self):
        c = self.collector
        for t in c._tasks:
            t.cancel()
        self.task.cancel()
        await asyncio.gather(self.task, *c._tasks, return_exceptions=True)
        c.tracker.close_all()

    async def stop(self):
        await self.collector.stop()
        await self.task

    def disk(self):
        return json.loads((self.tmp / "state" / "checkpoints" / "checkpoints.json").read_bytes())["files"]

    def records(self):
        return [r for s in self.sinks for r in s.records]


def cri(i, stream="stdout", tag="F", message=b""):
    return b"2026-11-27T00:00:00.%09dZ %s %s %s\n" % (i, stream.encode(), tag.encode(), message)


def lost():
    return sum(sample("podlog_collector_lost_bytes_total", {"reason": r})
               for r in ("deleted_before_read", "truncated_before_read"))


def replay(steps, default_tries=20):
    """Replay a lifecycle-model example on fresh models, ``tries`` times (the command line's first
    argument): what the explore found does not fail on every replay.  Exits 1 at the first failure."""
    import tests.integration.collector.test_lifecycle_model as model
    from collector.events import CollectorEvents

    trace: list[str] = []
    model.event = lambda text, *a, **k: trace.append(f"model: {text}")  # hypothesis's works in a test only
    counted = CollectorEvents.bytes_lost

    def bytes_lost(self, reason, path, nbytes, identity):
        if nbytes > 0:
            trace.append(f"collector counted {nbytes} B {reason} {path} {identity}")
        counted(self, reason, path, nbytes, identity)

    CollectorEvents.bytes_lost = bytes_lost
    lose = model.LifecycleModel._lose

    def traced_lose(self, container, gens):
        before = {line.number: line.counted for line in self.lines}
        lose(self, container, gens)
        for gen in gens:
            mine = sum(line.counted - before.get(line.number, 0) for line in gen.lines)
            trace.append(f"model lost {gen!r} inodes={sorted(gen.inodes)} sized={gen.sized} expects {mine} B")

    model.LifecycleModel._lose = traced_lose
    def traced_step(name):
        method = getattr(model.LifecycleModel, name)

        def step(self):
            trace.append(f"model {name}")
            method(self)
        return step

    for name in ("_start", "_crash", "_stop"):
        setattr(model.LifecycleModel, name, traced_step(name))
    if "-v" in sys.argv or "--trace" in sys.argv:
        _trace_collector(trace)
    tries = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else default_tries
    for attempt in range(1, tries + 1):
        trace.clear()
        try:
            steps(model.LifecycleModel())
        except AssertionError as exc:
            print(f"MODEL FAILED on try {attempt}: {exc}")
            print("\n".join(trace))
            sys.exit(1)
    print(f"MODEL PASSED {tries} tries")
    if "-v" in sys.argv:
        print("\n".join(trace))


def _trace_collector(trace):
    """Recovery outcomes, losses and checkpoint writes, for a failure's story."""
    from collector.checkpoint import CheckpointStore as Checkpoints
    from collector.tracker import FileTracker as Tracker

    recover_entry = Tracker._recover_entry

    def traced_recover(self, entry, reused=None):
        trace.append(f"recover {entry.path} {entry.identity} off={entry.offset} spooled={entry.spooled} "
                     f"size={entry.size} final={entry.final_offset} past={entry.past}")
        recover_entry(self, entry, reused)

    Tracker._recover_entry = traced_recover
    lost = Checkpoints.lost

    def traced_lost(self, reason, path, nbytes, identity):
        trace.append(f"lost registered {nbytes} B {reason} {identity} seq={self._sequence + 1}")
        lost(self, reason, path, nbytes, identity)

    Checkpoints.lost = traced_lost
    write_bytes = Checkpoints.write_bytes

    def traced_write(self, sequence, data):
        done = write_bytes(self, sequence, data)
        trace.append(f"checkpoint write seq={sequence} ok={done} written={self._written} pending={len(self._losses)}")
        return done

    Checkpoints.write_bytes = traced_write
