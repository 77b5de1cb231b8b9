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

    model.event = lambda *a, **k: None  # hypothesis's event() works inside a test only
    tries = int(sys.argv[1]) if len(sys.argv) > 1 else default_tries
    for attempt in range(1, tries + 1):
        try:
            steps(model.LifecycleModel())
        except AssertionError as exc:
            print(f"MODEL FAILED on try {attempt}: {exc}")
            sys.exit(1)
    print(f"MODEL PASSED {tries} tries")
