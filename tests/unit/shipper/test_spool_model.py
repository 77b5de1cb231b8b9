"""A model test of the spool: random appends, acks, restarts and torn tails never lose a batch."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shipper.config import SpoolConfig
from shipper.spool import Spool
from tests.unit.shipper.helpers import batch, crash, lines

CONFIG = SpoolConfig(max_bytes=1 << 20, segment_bytes=4096)


class SpoolModel(RuleBasedStateMachine):
    """The spool against a list: what was appended and not acknowledged is what reads back."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.spool = Spool(CONFIG, self.directory)
        self.appended: list[tuple[int, list[Any]]] = []  # (seq, records)
        self.acked = 0
        self.offset = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @rule(count=st.integers(1, 30), stream=st.sampled_from(["a", "b", "c"]))
    def append(self, count: int, stream: str) -> None:
        b = batch(stream, self.offset, count)
        self.offset += count
        self.run(self.spool.append(b))
        self.appended.append((self.spool.last_seq, list(b.records)))

    @precondition(lambda self: self.appended and self.appended[-1][0] > self.acked)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        open_seqs = [seq for seq, _ in self.appended if seq > self.acked]
        upto = data.draw(st.sampled_from(open_seqs))
        self.run(self.spool.ack(upto))
        self.acked = upto

    @rule(clean=st.booleans())
    def restart(self, clean: bool) -> None:
        if clean:
            self.run(self.spool.close())
        else:
            crash(self.spool)
        self.spool = Spool(CONFIG, self.directory)

    @rule(garbage=st.binary(min_size=1, max_size=40))
    def crash_mid_write(self, garbage: bytes) -> None:
        segments = sorted(self.directory.glob("*.seg"))
        if segments:
            with segments[-1].open("ab") as handle:
                handle.write(b"PLSF" + garbage)
        crash(self.spool)
        self.spool = Spool(CONFIG, self.directory)

    @invariant()
    def unacknowledged_batches_read_back_in_order(self) -> None:
        got = self.run(self.spool.read(self.spool.acked_seq, max_records=10**6, max_bytes=1 << 30))
        expected = [(seq, records) for seq, records in self.appended if seq > self.acked]
        assert [b.seq for b in got] == [seq for seq, _ in expected]
        for b, (_, records) in zip(got, expected, strict=True):
            assert lines(b.records) == lines(records)
        assert self.spool.records == sum(len(r) for _, r in expected)

    def teardown(self) -> None:
        self.run(self.spool.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)


TestSpoolModel = SpoolModel.TestCase
TestSpoolModel.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
