"""A hypothesis state machine for the file lifecycle: every line once, or counted lost.

Real files in kubelet's layout (``<tmp>/pods/<ns>_<pod>_<uid>/<container>/0.log``,
two containers) are appended to, rotated (renamed, older generations
gzipped), copytruncated and deleted under a real in-process
:class:`~collector.pipeline.Collector`.  The collector runs on the machine's
own event loop, which turns only while a rule waits on it: the file
operations between two waits are atomic to it.  ``crash`` abandons it
without ``stop()`` (no last batch, no last checkpoint write), as ``kill -9``
would, and a new one starts on the same state directory.

Invariant, checked by ``read`` and at teardown once the collector is idle:
delivered records, de-duplicated by ``event.id``, are written lines only
(an ``event.id`` never names two messages), every written line is delivered
once (never under two ``event.id``), in written order per container stream;
a line is missing only when every file that held its bytes is gone, and
then ``podlog_collector_lost_bytes_total`` rose by exactly its bytes.

Some lines nobody can deliver or count, and the model keeps them apart as
*unseen*: bytes of a file the collector never opened (written, then deleted
or renamed out of the include glob before a stat pass saw it), content
written and copytruncated away before the collector fingerprinted it (it
looks for the copy by the head it knows), and bytes behind a first line
that never ended (no fingerprint, so no checkpoint).  An unseen line may
still be delivered (a renamed file or copy is read at the next start):
once, intact, in any order.  Unseen bytes whose size the collector did see
may be counted as lost, or not: the counter may exceed the lost bytes by
at most those.

``backlog_then_lose`` is the one rule that really loses lines: the spool
refuses, lines are written and the collector is waited for until it has
sized them, then every generation of the file is deleted around a crash.
Elsewhere a file is deleted only while the collector holds it open, and a
crash first lets it finish such files, so nothing else is lost.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from collector.fingerprint import HEAD_BYTES, fingerprint_head
from collector.pipeline import Collector
from collector.tailer import FRAGMENT_WAIT_SECONDS
from podlog.metrics import sample
from podlog.record import Record
from tests.integration.collector.harness import AckingSink
from tests.unit.collector.helpers import make_collector

POD_DIR = "shop_web-1_5f0c1b1e-8a2b-4c1e-9d0f-1234567890ab"
CONTAINERS = ("app", "sidecar")
LOST_REASONS = ("deleted_before_read", "truncated_before_read")
EXAMPLES = int(os.environ.get("PODLOG_MODEL_EXAMPLES", "50"))
"""Examples per run; raise it locally to search longer."""
SETTLE_SECONDS = 3.0 + FRAGMENT_WAIT_SECONDS
"""How long the collector gets to become idle before the invariant is checked anyway (a rotated
file ending in an open fragment waits up to FRAGMENT_WAIT_SECONDS for the next file)."""
WAIT_SECONDS = 3.0
"""How long a rule waits for the collector to open or size a file."""
REFUSE_ALL = 10**9
"""An AckingSink refusal count that lasts until it is reset."""


class LineSpec(NamedTuple):
    """A line to write, as hypothesis draws it."""

    stream: str
    text: str
    """Repeated after the line's number: multi-byte characters make the splits interesting."""
    repeat: int
    cuts: tuple[int, ...]
    """Where to split the message into P fragments, moved inside a multi-byte character if one follows."""
    held: int
    """Trailing fragments left unwritten until a later append: the line stays open meanwhile."""


class Generation:
    """One file's content as the model wrote it, under whatever name it has now."""

    def __init__(self, container: str, path: Path, ino: int) -> None:
        self.container = container
        self.path = path
        self.inodes = {ino}
        """Every inode that held this content: the plain file's, and its .gz or copy's."""
        self.data = bytearray()
        """The (uncompressed) bytes written."""
        self.lines: dict[Line, None] = {}
        """Lines with bytes here, in order."""
        self.exists = True
        self.rotated = False
        self.compressed = False
        self.sized = False
        """The collector had seen all of it (checkpoint entry ``size``) when it was lost."""

    @property
    def head(self) -> str | None:
        return fingerprint_head(bytes(self.data[:HEAD_BYTES]))

    def __repr__(self) -> str:
        return f"<{self.path.parent.name}/{self.path.name} {len(self.data)} bytes>"


class Line:
    """A line as written: its message, its CRI lines, and how many of its bytes each file got."""

    def __init__(self, number: int, container: str, stream: str, message: str, physical: list[bytes]) -> None:
        self.number = number
        self.container = container
        self.stream = stream
        self.message = message
        self.size = sum(map(len, physical))
        self.unwritten = physical
        """CRI lines not handed to a write yet."""
        self.written = 0
        self.parts: dict[Generation, int] = {}
        self.fate = "expected"
        """``expected`` (delivered once, in order), ``unseen`` (may be delivered), or ``lost``."""
        self.counted = 0
        """Bytes of it that the lost counter must include."""

    @property
    def complete(self) -> bool:
        return self.written == self.size


PAYLOADS = st.sampled_from(["", "é", "日本", "é日本", "naïve café", "ascii text"])
LINE = st.builds(
    LineSpec,
    stream=st.sampled_from(["stdout", "stdout", "stderr"]),
    text=PAYLOADS,
    repeat=st.integers(0, 40),
    cuts=st.lists(st.integers(0, 10_000), max_size=3).map(tuple),
    held=st.integers(0, 2),
)
LINES = st.lists(LINE, min_size=1, max_size=6)
TAIL = st.none() | st.integers(0, 10_000)
"""Where to cut the last CRI line of an append, leaving the rest for later (None: no cut)."""
CONTAINER = st.sampled_from(CONTAINERS)
WAIT = st.sampled_from([True, True, True, False])
"""Whether a rule waits until the collector has opened the file it is about to move."""


def lost_bytes() -> float:
    return sum(sample("podlog_collector_lost_bytes_total", {"reason": reason}) for reason in LOST_REASONS)


def inside_character(data: bytes, at: int) -> int:
    """``at``, moved forward into the next multi-byte UTF-8 character when there is one."""
    for index in range(at, len(data)):
        if data[index] & 0xC0 == 0x80:
            return index
    return at


class LifecycleModel(RuleBasedStateMachine):
    """Rules: append, rotate, copytruncate, delete, spool_full, tick, crash, restart,
    rotate_while_down, backlog_then_lose, read."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="podlog-lifecycle-"))
        self.dirs = {c: self.tmp / "pods" / POD_DIR / c for c in CONTAINERS}
        for directory in self.dirs.values():
            directory.mkdir(parents=True)
        self.include = [str(self.tmp / "pods" / "*" / "*" / "*.log")]
        self.loop = asyncio.new_event_loop()
        self.lines: list[Line] = []
        self.gens: list[Generation] = []
        self.live: dict[str, Generation | None] = dict.fromkeys(CONTAINERS)
        self.tails: dict[str, tuple[Line, bytes]] = {}
        """Per container: the rest of a CRI line whose start was written without its newline."""
        self.open_lines: dict[tuple[str, str], Line] = {}
        """Per (container, stream): a line with P fragments written and more to come."""
        self.deleted_open: list[Generation] = []
        """Deleted while the collector held them open: it still reads them to the end."""
        self.known_at_crash: set[Generation] = set()
        self.confirmed_at_crash: set[Generation] = set()
        self.rotations = dict.fromkeys(CONTAINERS, 0)
        self.copies = 0
        self.stamps = 0
        self.clock = 0
        self.freed: set[int] = set()
        self.unseen_bytes = 0
        self.lost_slack = 0
        """Unseen bytes whose size the collector saw: it may count them as lost, or not."""
        self.sinks: list[AckingSink] = []
        self.refusing = False
        self.collector: Collector | None = None
        self.task: asyncio.Task[None] | None = None
        self.lost_before = lost_bytes()
        self._start()

    # -- the collector's life ------------------------------------------------------

    def _start(self) -> None:
        sink = AckingSink()
        collector = make_collector(
            self.tmp, sink, include=self.include, use_inotify=False, checkpoint_interval_seconds=0.02,
            batch_max_records=8, read_chunk_bytes=256, read_budget_bytes=512,
        )
        sink.listener = collector.checkpoints
        self.sinks.append(sink)
        self.refusing = False
        self.collector = collector

        async def boot() -> asyncio.Task[None]:
            await collector.start()
            return asyncio.create_task(collector.run())

        self.task = self.loop.run_until_complete(boot())
        self.known_at_crash = set()
        self.confirmed_at_crash = set()

    def _stop(self) -> None:
        assert self.collector is not None and self.task is not None
        self.loop.run_until_complete(self.collector.stop())
        self.loop.run_until_complete(self.task)
        self.collector = self.task = None

    def _crash(self) -> None:
        """Cancel every task and close every descriptor, as the kernel does for a killed process."""
        assert self.collector is not None and self.task is not None
        collector, task = self.collector, self.task
        self.known_at_crash = {g for g in self.gens if g.exists and self._tailer_of(g)}
        self.confirmed_at_crash = {g for g in self.known_at_crash if self._confirmed(g)}
        for child in collector._tasks:
            child.cancel()
        task.cancel()
        self.loop.run_until_complete(asyncio.gather(task, *collector._tasks, return_exceptions=True))
        collector.tracker.close_all()
        self.collector = self.task = None

    def _run_until(self, predicate: Callable[[], bool], timeout: float, what: str = "", *,
                   fail: bool = True) -> bool:
        """Let the collector run until ``predicate`` holds (polled), or ``timeout`` passes."""

        async def waiting() -> bool:
            deadline = self.loop.time() + timeout
            while not predicate():
                if self.loop.time() > deadline:
                    return False
                await asyncio.sleep(0.005)
            return True

        held = self.loop.run_until_complete(waiting())
        if not held and fail:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        return held

    def _refuse(self, on: bool) -> None:
        self.sinks[-1].refuse = REFUSE_ALL if on else 0
        self.refusing = on

    def _tailer_of(self, gen: Generation) -> Any:
        if self.collector is None:
            return None
        for tailer in self.collector.tracker.tailers.values():
            if not tailer.closed and tailer.file.ino in gen.inodes:
                return tailer
        return None

    def _known(self, gen: Generation) -> bool:
        """True when the collector holds the file open (or did when it was killed)."""
        if self.collector is None:
            return gen in self.known_at_crash
        return self._tailer_of(gen) is not None

    def _confirmed(self, gen: Generation) -> bool:
        """True when the collector holds the file and has fingerprinted its content as it is now.

        Only then can it find copytruncate's copy: it looks for a copy by the head it
        knows.  Content written and copied away between two of its looks is unseen.
        """
        if self.collector is None:
            return gen in self.confirmed_at_crash
        tailer = self._tailer_of(gen)
        return tailer is not None and tailer.file.head == gen.head

    def _wait_open(self, gen: Generation, *, confirmed: bool = False) -> None:
        if gen.head is not None:
            check = self._confirmed if confirmed else lambda g: self._tailer_of(g) is not None
            self._run_until(lambda: check(gen), WAIT_SECONDS, f"the collector to open {gen}")

    def _entries(self, gen: Generation, entries: Any) -> list[Any]:
        """Checkpoint entries of ``gen``: its inode, and its head or an unknown one."""
        head = gen.head or ""
        return [e for e in entries if e.ino in gen.inodes and e.head in (head, "")]

    def _disk_entries(self) -> list[Any]:
        """The checkpoint entries on disk, as attribute objects."""
        path = self.tmp / "state" / "checkpoints" / "checkpoints.json"
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        return [_Entry(item) for item in doc.get("files", [])]

    # -- writing -------------------------------------------------------------------

    def _cri(self, stream: str, tag: bytes, message: bytes) -> bytes:
        self.clock += 1
        return b"2026-11-27T00:00:00.%09dZ %s %s %s\n" % (self.clock, stream.encode(), tag, message)

    def _new_line(self, container: str, spec: LineSpec) -> Line:
        number = len(self.lines)
        message = f"m{number}" + (f" {spec.text * spec.repeat}" if spec.text and spec.repeat else "")
        data = message.encode()
        points = sorted({inside_character(data, 1 + cut % (len(data) - 1)) for cut in spec.cuts})
        if len(points) and any(data[p] & 0xC0 == 0x80 for p in points):
            event("a P fragment ends inside a UTF-8 character")
        pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
        physical = [self._cri(spec.stream, b"P", piece) for piece in pieces[:-1]]
        physical.append(self._cri(spec.stream, b"F", pieces[-1]))
        line = Line(number, container, spec.stream, message, physical)
        self.lines.append(line)
        return line

    def _compose(self, container: str, specs: list[LineSpec], cut: int | None) -> list[tuple[Line, bytes]]:
        """The CRI lines an append writes: what was pending first, then ``specs``."""
        out: list[tuple[Line, bytes]] = []
        self._take_tail(container, out)
        for spec in specs:
            open_line = self.open_lines.get((container, spec.stream))
            if open_line is not None:
                self._finish_line(open_line, out)
            line = self._new_line(container, spec)
            keep = min(spec.held, len(line.unwritten) - 1)
            send = line.unwritten[: len(line.unwritten) - keep]
            line.unwritten = line.unwritten[len(send) :]
            out.extend((line, piece) for piece in send)
            if line.unwritten:
                self.open_lines[(container, spec.stream)] = line
        if cut is not None and out and len(out[-1][1]) > 1:
            line, data = out[-1]
            at = 1 + cut % (len(data) - 1)
            out[-1] = (line, data[:at])
            self.tails[container] = (line, data[at:])
        return out

    def _take_tail(self, container: str, out: list[tuple[Line, bytes]]) -> None:
        held = self.tails.pop(container, None)
        if held is not None:
            out.append(held)

    def _finish_line(self, line: Line, out: list[tuple[Line, bytes]]) -> None:
        out.extend((line, piece) for piece in line.unwritten)
        line.unwritten = []
        del self.open_lines[(line.container, line.stream)]

    def _complete(self, container: str, *, open_lines: bool = True) -> None:
        """The writer finishes its unterminated line (and, with ``open_lines``, its open P..F lines)."""
        out: list[tuple[Line, bytes]] = []
        self._take_tail(container, out)
        if open_lines:
            for (owner, _), line in list(self.open_lines.items()):
                if owner == container:
                    self._finish_line(line, out)
        self._write(container, out)

    def _write(self, container: str, pieces: list[tuple[Line, bytes]]) -> None:
        if not pieces:
            return
        gen = self.live[container] or self._create_live(container)
        data = b"".join(piece for _, piece in pieces)
        with gen.path.open("ab") as f:
            f.write(data)
        gen.data += data
        for line, piece in pieces:
            line.parts[gen] = line.parts.get(gen, 0) + len(piece)
            line.written += len(piece)
            gen.lines[line] = None
            if len(line.parts) > 1:
                event("a line continues in the next file")

    def _create_live(self, container: str) -> Generation:
        path = self.dirs[container] / "0.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        ino = os.fstat(fd).st_ino
        os.close(fd)
        if ino in self.freed:
            event("a new 0.log reused a freed inode")
        gen = Generation(container, path, ino)
        self.gens.append(gen)
        self.live[container] = gen
        return gen

    def _spans(self, gen: Generation) -> bool:
        """True when a line has bytes both here and elsewhere, or is still being written."""
        return any(len(line.parts) > 1 or not line.complete for line in gen.lines)

    def _unseen(self, gen: Generation) -> None:
        """Lines of a file the collector never opened, moved or deleted: nobody can count them."""
        for line in gen.lines:
            if line.fate == "expected":
                line.fate = "unseen"
                self.unseen_bytes += line.parts[gen]
                event("a line moved or deleted before the collector saw it")

    # -- file operations -----------------------------------------------------------

    def _rotate(self, container: str, *, compress: bool) -> None:
        """kubelet: gzip the older rotated files (.gz, then unlink), rename 0.log, create a new 0.log."""
        gen = self.live[container]
        assert gen is not None
        if compress:
            for older in self.gens:
                if older.container == container and older.rotated and older.exists and not older.compressed \
                        and older.path.name.startswith("0.log.") and "copy" not in older.path.name:
                    self._compress(older)
        known = self._known(gen)
        self.rotations[container] += 1
        target = self.dirs[container] / f"0.log.{self._stamp()}"  # kubelet: a timestamp, newer sorts later
        gen.path.rename(target)
        gen.path, gen.rotated = target, True
        self._create_live(container)
        if not known:
            self._unseen(gen)

    def _stamp(self) -> str:
        """The next name suffix: rotations and copies of every container in the order they happen."""
        self.stamps += 1
        return f"20261127-{self.stamps:06d}"

    def _compress(self, gen: Generation) -> None:
        packed = gen.path.with_name(gen.path.name + ".gz")
        packed.write_bytes(gzip.compress(gen.path.read_bytes(), mtime=0))
        self.freed.add(gen.path.stat().st_ino)
        gen.path.unlink()
        gen.path, gen.compressed = packed, True
        gen.inodes.add(packed.stat().st_ino)

    def _copytruncate(self, container: str) -> None:
        """logrotate-style copytruncate: copy 0.log to 0.log.<stamp>-copy, truncate 0.log in place."""
        gen = self.live[container]
        assert gen is not None
        known, sized = self._confirmed(gen), self._known(gen)
        self.copies += 1
        target = self.dirs[container] / f"0.log.{self._stamp()}-copy"
        shutil.copyfile(gen.path, target)
        with gen.path.open("r+b") as f:
            f.truncate(0)
        fresh = Generation(container, gen.path, gen.path.stat().st_ino)
        self.gens.append(fresh)
        self.live[container] = fresh
        gen.path, gen.inodes, gen.rotated = target, {target.stat().st_ino}, True
        if not known:
            unseen = self.unseen_bytes
            self._unseen(gen)
            if sized:  # it may have seen the size, and count what it never read as truncated
                self.lost_slack += self.unseen_bytes - unseen

    def _delete_all(self, gens: list[Generation]) -> None:
        for gen in gens:
            self.freed.update(gen.inodes)
            gen.path.unlink()
            gen.exists = False
            if self.live[gen.container] is gen:
                self.live[gen.container] = None

    # -- rules -------------------------------------------------------------------------

    @rule(container=CONTAINER, specs=LINES, cut=TAIL)
    def append(self, container: str, specs: list[LineSpec], cut: int | None) -> None:
        """Append CRI lines: some split into P fragments, some left open, the last maybe unterminated."""
        self._write(container, self._compose(container, specs, cut))

    @rule(container=CONTAINER, compress=st.booleans(), wait=WAIT)
    def rotate(self, container: str, compress: bool, wait: bool) -> None:
        """kubelet's rotation; an open P..F line continues in the new file.

        The runtime writes the rest of a split line straight after its start,
        so the rest lands in the new file at once: the collector holds a
        fragment at a rotation only ``FRAGMENT_WAIT_SECONDS`` for it, then
        ships what it has (a line open across a rotation for longer is
        shipped in parts, which this model would take for strays).
        """
        gen = self.live[container]
        if gen is None:
            return
        self._complete(container, open_lines=False)
        if wait or self._spans(gen):
            self._wait_open(gen)
        self._rotate(container, compress=compress)
        self._complete(container)

    @rule(container=CONTAINER, wait=WAIT)
    def copytruncate(self, container: str, wait: bool) -> None:
        """logrotate's copytruncate, between two whole lines of the writer."""
        gen = self.live[container]
        if gen is None:
            return
        self._complete(container)
        if wait or self._spans(gen):
            self._wait_open(gen, confirmed=True)
        self._copytruncate(container)

    @rule(container=CONTAINER, wait=WAIT)
    def delete(self, container: str, wait: bool) -> None:
        """The live file is unlinked; if the collector holds it open it still reads it to the end."""
        gen = self.live[container]
        if gen is None:
            return
        self._complete(container)
        if wait or self._spans(gen):
            self._wait_open(gen)
        known = self._known(gen)
        self._delete_all([gen])
        if known:
            self.deleted_open.append(gen)
        else:
            self._unseen(gen)

    @rule(on=st.booleans())
    def spool_full(self, on: bool) -> None:
        """The spool refuses appends (reading pauses once a batch is full), or takes them again."""
        self._refuse(on)

    @rule()
    def tick(self) -> None:
        """Let the collector run until it hands the sink a batch or reads more, or briefly."""
        assert self.collector is not None
        collector = self.collector

        def progress() -> tuple[int, int]:
            return (len(self.sinks[-1].batches),
                    sum(t.read_offset for t in collector.tracker.tailers.values()))

        before = progress()
        self._run_until(lambda: progress() != before, 0.2, fail=False)

    @rule()
    def crash(self) -> None:
        """kill -9, and a new collector on the same state directory."""
        self._drain_deleted()
        self._crash()
        self._start()

    @rule()
    def restart(self) -> None:
        """A clean stop (last batch, checkpoints) and a new collector on the same state directory."""
        self._drain_deleted()
        self._stop()
        self._start()

    @rule(container=CONTAINER, before=st.lists(LINE, max_size=4),
          how=st.sampled_from(["rename", "rename+gzip", "copytruncate"]), after=st.lists(LINE, max_size=4))
    def rotate_while_down(self, container: str, before: list[LineSpec], how: str,
                          after: list[LineSpec]) -> None:
        """Killed; lines written, the file rotated (older ones gzipped) or copytruncated, more lines; restart."""
        self._drain_deleted()
        self._crash()
        self._write(container, self._compose(container, before, None))
        gen = self.live[container]
        if gen is not None:
            self._complete(container, open_lines=how == "copytruncate")
            if self._known(gen) or not self._spans(gen):
                if how == "copytruncate":
                    self._copytruncate(container)
                else:
                    self._rotate(container, compress=how == "rename+gzip")
                    self._complete(container)  # the rest of a split line follows at once (see rotate)
        self._write(container, self._compose(container, after, None))
        self._start()

    @rule(container=CONTAINER, specs=LINES, cut=TAIL, rotate=st.booleans(), delete_first=st.booleans(),
          recreate=st.booleans())
    def backlog_then_lose(self, container: str, specs: list[LineSpec], cut: int | None, rotate: bool,
                          delete_first: bool, recreate: bool) -> None:
        """The spool is full, so lines written now are sized but not delivered; then every generation
        of the file is deleted around a crash: those bytes are gone, and counted as lost."""
        self._drain_deleted()
        self._settle()
        self._refuse(True)
        self._write(container, self._compose(container, specs, None if rotate else cut))
        if rotate:
            self._wait_sized(container)
            self._rotate(container, compress=False)
            self._write(container, self._compose(container, specs[-1:], cut))
        self._wait_sized(container)
        gens = [g for g in self.gens if g.container == container and g.exists]
        if delete_first:
            self._delete_all(gens)  # the paused collector still holds them: gone with it
        self._crash()
        if not delete_first:
            self._delete_all(gens)
        self._lose(container, gens)
        if recreate:
            self._write(container, self._compose(container, [LineSpec("stdout", "", 0, (), 0)] * 2, None))
        self._start()

    @rule()
    def read(self) -> None:
        """Catch up, then check the invariant."""
        self._settle()

    def teardown(self) -> None:
        try:
            if self.collector is not None:
                for container in CONTAINERS:
                    self._complete(container)
                self._settle()
                self._stop()
        finally:
            if self.collector is not None:
                self._crash()
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- loss ----------------------------------------------------------------------

    def _undelivered(self, gen: Generation, delivered: set[int]) -> bool:
        return any(line.fate == "expected" and (not line.complete or line.number not in delivered)
                   for line in gen.lines)

    def _wait_sized(self, container: str) -> None:
        """Wait until the collector's checkpoint entries cover every byte not delivered yet.

        A file without a complete first line has no fingerprint, so no entry:
        its bytes are unseen.  Then wait for the sizes to reach the disk (the
        crash comes next); if they do not, the lost counter will show it.  The
        write comes every 20 ms, but a loaded machine can hold it back for more
        than a second: the wait is as long as the one for the sizes themselves.
        """
        assert self.collector is not None
        checkpoints = self.collector.checkpoints
        delivered = self._delivered_numbers()
        gens = [g for g in self.gens if g.container == container and g.exists and self._undelivered(g, delivered)]
        wanted = [g for g in gens if g.head is not None or self._entries(g, checkpoints.entries.values())]

        def sized(gen: Generation, entries: Any) -> bool:
            return any(max(e.size, e.final_offset or 0) >= len(gen.data) for e in self._entries(gen, entries))

        self._run_until(lambda: all(sized(g, checkpoints.entries.values()) for g in wanted), WAIT_SECONDS,
                        f"the collector to size {wanted}")
        for gen in wanted:
            gen.sized = True
        if not self._run_until(lambda: not checkpoints.dirty
                               and all(sized(g, self._disk_entries()) for g in wanted), WAIT_SECONDS, fail=False):
            event("sizes the collector saw were not written to its checkpoint")

    def _lose(self, container: str, gens: list[Generation]) -> None:
        """Every file of ``container`` is gone: what was not delivered is lost, counted if it was sized."""
        for key in [k for k in self.open_lines if k[0] == container]:
            del self.open_lines[key]
        self.tails.pop(container, None)
        self.deleted_open = [g for g in self.deleted_open if g.container != container]
        delivered = self._delivered_numbers()
        for gen in gens:
            for line in gen.lines:
                if line.fate != "expected" or (line.complete and line.number in delivered):
                    continue
                line.fate = "lost"
                for part, size in line.parts.items():
                    if part.sized:
                        line.counted += size
                    else:
                        self.unseen_bytes += size
                event("lines lost with every generation of their file")

    def _drain_deleted(self) -> None:
        """Before a crash: let the collector finish files deleted under it (their checkpoints too).

        Killed before that, their unread bytes would be gone, and bytes it read
        but had not checkpointed yet would count as lost though delivered.
        """
        if not self.deleted_open:
            return
        self._refuse(False)
        gens = self.deleted_open

        def drained() -> bool:
            delivered = self._delivered_numbers()
            if any(self._undelivered(g, delivered) or self._tailer_of(g) for g in gens):
                return False
            entries = self._disk_entries()
            return not any(max(e.size, e.final_offset or 0) > max(e.offset, e.spooled)
                           for g in gens for e in self._entries(g, entries))

        self._run_until(drained, SETTLE_SECONDS, f"the collector to finish deleted files {gens}")
        self.deleted_open = []

    # -- the invariant -----------------------------------------------------------------

    def _records(self) -> list[Record]:
        return [r for sink in self.sinks for r in sink.records]

    def _delivered_numbers(self) -> set[int]:
        numbers = set()
        for record in self._records():
            line = self._line_of(record)
            if line is not None:
                numbers.add(line.number)
        return numbers

    def _line_of(self, record: Record) -> Line | None:
        """The written line ``record`` is, or None when it is none of them."""
        message = record["message"]
        number = message[1:].split(" ", 1)[0]
        if not message.startswith("m") or not number.isdigit() or int(number) >= len(self.lines):
            return None
        line = self.lines[int(number)]
        container = Path(record["log"]["file"]["path"]).parent.name
        if (line.message, line.stream, line.container) != (message, record["stream"], container):
            return None
        return line

    def _expected_lost(self) -> int:
        return sum(line.counted for line in self.lines)

    def _lost_as_expected(self) -> bool:
        counted = lost_bytes() - self.lost_before
        return self._expected_lost() <= counted <= self._expected_lost() + self._lost_allowance()

    def _lost_allowance(self) -> int:
        """What may count as lost beyond the lost lines: bytes sized but never fingerprinted, and
        lines of a file the collector had not opened when it moved (it may find the file later,
        under its new name, and count what it could not read of it), never delivered."""
        delivered = self._delivered_numbers()
        unseen = sum(line.written for line in self.lines if line.fate == "unseen" and line.number not in delivered)
        return self.lost_slack + unseen

    def _idle(self) -> bool:
        """Every line due is delivered, the loss counted, and this collector caught up: every
        open file read to its end and acknowledged up to its mark, none left draining.

        Also True as soon as a record is no written line or a line came twice:
        waiting longer would not mend that.
        """
        assert self.collector is not None
        delivered: set[int] = set()
        ids: set[str] = set()
        for record in self._records():
            if record["event"]["id"] in ids:
                continue
            ids.add(record["event"]["id"])
            line = self._line_of(record)
            if line is None or line.number in delivered:
                return True
            delivered.add(line.number)
        if any(line.fate == "expected" and line.complete and line.number not in delivered
               for line in self.lines):
            return False
        if not self._lost_as_expected():
            return False
        collector = self.collector
        if not collector._queue.empty() or collector._records or collector._marks:
            return False
        entries = collector.checkpoints.entries
        for tailer in collector.tracker.tailers.values():
            file = tailer.file
            if file.draining or file.predecessor is not None or not file.at_eof:
                return False
            entry = entries.get(tailer.identity)
            if entry is None or (entry.generation, entry.offset) != (file.generation, tailer.mark().offset):
                return False  # read, but not acknowledged up to its mark yet
        return True

    def _settle(self) -> None:
        self._refuse(False)
        idle = self._run_until(self._idle, SETTLE_SECONDS, fail=False)
        self.check()
        assert idle, "the collector did not become idle: a file is still draining, or records are queued"

    def check(self) -> None:
        """The invariant over everything delivered so far."""
        by_id: dict[str, str] = {}
        ids_of: dict[int, list[str]] = {}
        last: dict[tuple[str, str], int] = {}
        stray = []
        for record in self._records():
            event_id, message = record["event"]["id"], record["message"]
            if event_id in by_id:
                assert by_id[event_id] == message, (
                    f"event.id {event_id} delivered as {by_id[event_id][:60]!r} and as {message[:60]!r}")
                continue
            by_id[event_id] = message
            line = self._line_of(record)
            if line is None:
                stray.append((message[:80], record["log"]["file"]["path"], record["log"]["offset"]))
                continue
            ids = ids_of.setdefault(line.number, [])
            ids.append(event_id)
            if line.fate != "expected" or len(ids) > 1:
                continue  # a line delivered twice is reported below, in full
            key = (line.container, line.stream)
            previous = last.get(key, -1)
            assert previous < line.number, (
                f"{key}: line m{line.number} delivered after m{previous}, out of written order")
            last[key] = line.number
        assert not stray, f"delivered records that are no written line: {stray[:5]}"
        twice = {f"m{n}": ids for n, ids in ids_of.items() if len(ids) > 1}
        assert not twice, f"lines delivered under two event.ids: {dict(list(twice.items())[:5])}"
        missing = [f"m{line.number}" for line in self.lines
                   if line.fate == "expected" and line.complete and line.number not in ids_of]
        assert not missing, f"written lines never delivered: {missing[:20]} (of {len(missing)})"
        gone = [f"m{line.number}" for line in self.lines if line.fate == "lost" and line.number in ids_of]
        assert not gone, f"lines delivered after every file holding them was deleted: {gone[:20]}"
        counted = lost_bytes() - self.lost_before
        expected = self._expected_lost()
        assert self._lost_as_expected(), (
            f"podlog_collector_lost_bytes_total rose by {counted:.0f}, but {expected} bytes of lines "
            f"were lost (up to {self._lost_allowance()} more may count: sized but never fingerprinted, "
            f"or in files the collector had not opened; {self.unseen_bytes} bytes were never seen by it)")


class _Entry:
    """A checkpoint entry as read from the file, fields as attributes."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.ino: int = item["ino"]
        self.head: str = item["head"]
        self.size: int = item.get("size", 0)
        self.offset: int = item["offset"]
        self.spooled: int = item.get("spooled", 0)
        self.final_offset: int | None = item.get("final_offset")


LifecycleModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    # Every test run replays the same examples (a failure there is a regression); PODLOG_MODEL_EXPLORE=1
    # draws new ones, as a search for what the fixed ones do not reach.
    derandomize=os.environ.get("PODLOG_MODEL_EXPLORE") != "1",
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # PODLOG_MODEL_SHRINK=0: report the first failure as found (shrinking can take many minutes).
    phases=[p for p in Phase if p is not Phase.shrink or os.environ.get("PODLOG_MODEL_SHRINK", "1") != "0"],
)
test_lifecycle_model = LifecycleModel.TestCase


# -- what the model found, replayed step by step (each failed before its fix) -----------------


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> LifecycleModel:
    monkeypatch.setattr(f"{__name__}.event", lambda *args, **kwargs: None)  # hypothesis' event() needs its test
    return LifecycleModel()


def test_two_copytruncates_before_the_new_generation_was_read_lose_nothing(model: LifecycleModel) -> None:
    """copytruncate, a line written, copytruncate again while the first copy is still drained: the
    generation in between was never read from the file, and is read from the second copy."""
    model.rotate_while_down(
        container="app", how="copytruncate", before=[],
        after=[LineSpec("stderr", "é", 34, (1942, 1037, 9742), 1),
               LineSpec("stderr", "é日本", 19, (4797, 4099, 165), 2)],
    )  # fmt: skip
    model.spool_full(on=False)
    model.append(container="app", cut=127, specs=[
        LineSpec("stderr", "é日本", 40, (1914,), 2), LineSpec("stdout", "", 25, (1934, 966), 0),
        LineSpec("stdout", "é", 1, (374,), 0),
    ])  # fmt: skip
    model.copytruncate(container="app", wait=True)
    model.append(container="app", cut=5, specs=[LineSpec("stdout", "", 0, (), 0)])
    model.copytruncate(container="app", wait=True)
    model.teardown()


def test_a_copy_drained_at_a_fragment_with_the_spool_refusing_survives_sigkills(model: LifecycleModel) -> None:
    """r9: the copy's checkpoint keeps where the other stream resumes across SIGKILLs."""
    model.spool_full(on=True)
    model.crash()
    model.crash()
    model.append(container="sidecar", cut=2327, specs=[
        LineSpec("stdout", "naïve café", 10, (), 2), LineSpec("stderr", "ascii text", 14, (), 0),
        LineSpec("stdout", "日本", 19, (9770, 5851, 926), 1), LineSpec("stderr", "é日本", 4, (18, 1853, 3271), 1),
        LineSpec("stdout", "日本", 22, (1617, 440, 664), 2), LineSpec("stderr", "", 24, (155, 27, 114), 0),
    ])  # fmt: skip
    model.rotate(compress=True, container="app", wait=False)
    model.spool_full(on=False)
    model.crash()
    model.append(container="sidecar", cut=None, specs=[LineSpec("stderr", "", 14, (), 0)])
    model.copytruncate(container="sidecar", wait=True)
    model.tick()
    model.copytruncate(container="app", wait=True)
    model.spool_full(on=True)
    model.rotate(compress=True, container="sidecar", wait=True)
    model.append(container="sidecar", cut=None, specs=[LineSpec("stderr", "ascii text", 21, (192, 7752), 0)])
    model.rotate_while_down(container="sidecar", how="rename+gzip", before=[], after=[
        LineSpec("stdout", "é日本", 31, (2204, 907, 2951), 2), LineSpec("stderr", "é日本", 22, (336,), 1),
        LineSpec("stdout", "é日本", 32, (), 0), LineSpec("stdout", "naïve café", 12, (8732,), 2),
    ])  # fmt: skip
    model.tick()
    model.append(container="app", cut=None, specs=[
        LineSpec("stdout", "日本", 17, (9362,), 0), LineSpec("stdout", "ascii text", 33, (), 1),
        LineSpec("stderr", "", 13, (3410, 1124, 494), 1), LineSpec("stderr", "日本", 0, (96, 2798), 1),
        LineSpec("stdout", "naïve café", 6, (), 2),
    ])  # fmt: skip
    model.crash()
    model.teardown()


def test_a_truncated_generation_read_but_not_acknowledged_is_read_again_from_its_copy(model: LifecycleModel) -> None:
    """Read to its end (a line joined with the fragment an earlier file handed over), then copytruncated
    while the spool refused it, then SIGKILLed: the copy keeps that generation until acknowledged."""
    model.append(container="app", cut=16, specs=[LineSpec("stdout", "日本", 26, (474, 592, 113), 0),
     LineSpec("stdout", "naïve café", 26, (183,), 2)])
    model.rotate_while_down(after=[LineSpec("stdout", "ascii text", 7, (401,), 0),
     LineSpec("stdout", "naïve café", 27, (4243, 15), 1),
     LineSpec("stderr", "é日本", 1, (74,), 2)], before=[LineSpec("stdout", "日本", 32, (615, 5339), 0),
     LineSpec("stderr", "ascii text", 0, (31,), 1),
     LineSpec("stdout", "", 17, (274, 62, 3664), 2),
     LineSpec("stdout", "ascii text", 11, (), 1)], container="app", how="copytruncate")
    model.copytruncate(container="app", wait=False)
    model.copytruncate(container="sidecar", wait=True)
    model.copytruncate(container="app", wait=True)
    model.tick()
    model.copytruncate(container="app", wait=True)
    model.spool_full(on=True)
    model.append(container="sidecar", cut=None, specs=[LineSpec("stderr", "naïve café", 36, (2577,), 2)])
    model.append(container="sidecar", cut=None, specs=[LineSpec("stdout", "é", 35, (310, 435, 19), 2),
     LineSpec("stderr", "日本", 6, (65, 1078), 1)])
    model.copytruncate(container="app", wait=True)
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "ascii text", 19, (4157,), 2),
     LineSpec("stderr", "é", 24, (), 2),
     LineSpec("stderr", "naïve café", 5, (187,), 0)], container="app", how="rename+gzip")
    model.spool_full(on=True)
    model.tick()
    model.copytruncate(container="app", wait=True)
    model.tick()
    model.spool_full(on=True)
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "日本", 7, (), 2),
     LineSpec("stderr", "é", 7, (), 2),
     LineSpec("stdout", "é日本", 9, (6384,), 1),
     LineSpec("stdout", "", 29, (6802,), 2)], container="app", how="copytruncate")
    model.append(container="sidecar", cut=None, specs=[LineSpec("stdout", "日本", 23, (363, 644), 0)])
    model.tick()
    model.teardown()


def test_a_generation_older_than_the_first_file_read_is_not_put_between_it_and_the_next(
    model: LifecycleModel,
) -> None:
    """A first start found only the live file (its rotated predecessor never opened, then compressed):
    when the live file rotates, that predecessor is no generation between the two, and the line the
    live file left open joins its end in the new file, not the predecessor's first line."""
    model.read()
    model.tick()
    model.append(container="sidecar", cut=818, specs=[LineSpec("stdout", "日本", 6, (), 1)])
    model.spool_full(on=False)
    model.spool_full(on=True)
    model.read()
    model.read()
    model.rotate_while_down(container="sidecar", how="rename", before=[LineSpec("stdout", "日本", 6, (), 1)], after=[
        LineSpec("stderr", "", 6, (), 0), LineSpec("stdout", "ascii text", 11, (4247, 420), 2),
        LineSpec("stderr", "ascii text", 0, (89,), 1), LineSpec("stderr", "ascii text", 21, (250, 220), 1),
    ])  # fmt: skip
    model.rotate(compress=True, container="sidecar", wait=True)
    model.read()
    model.teardown()


def test_a_generation_found_again_by_inode_alone_is_not_read_again_as_a_new_file(model: LifecycleModel) -> None:
    """copytruncated, written, renamed while down: found again by its inode (its new head unknown to the
    checkpoint), read from the checkpoint, and later never read whole again as a file nobody knew."""
    model.copytruncate(container="sidecar", wait=True)
    model.crash()
    model.read()
    model.rotate(compress=True, container="app", wait=False)
    model.crash()
    model.append(container="app", cut=None, specs=[LineSpec("stdout", "日本", 31, (145, 8870, 1), 0)])
    model.rotate(compress=True, container="sidecar", wait=True)
    model.tick()
    model.rotate_while_down(after=[LineSpec("stdout", "naïve café", 36, (), 0)], before=[], container="sidecar",
                            how="copytruncate")
    model.copytruncate(container="app", wait=True)
    model.crash()
    model.copytruncate(container="sidecar", wait=False)
    model.rotate_while_down(after=[LineSpec("stderr", "ascii text", 0, (), 2),
     LineSpec("stdout", "é", 36, (681, 335, 4923), 1),
     LineSpec("stderr", "", 18, (581,), 2),
     LineSpec("stdout", "é", 31, (200, 1169, 6373), 0)],
     before=[LineSpec("stdout", "é日本", 22, (364, 128, 207), 2),
     LineSpec("stdout", "naïve café", 40, (), 1),
     LineSpec("stdout", "é日本", 15, (581,), 1),
     LineSpec("stdout", "日本", 19, (), 0)], container="app", how="rename")
    model.read()
    model.crash()
    model.read()
    model.tick()
    model.rotate_while_down(after=[LineSpec("stdout", "日本", 19, (), 0),
     LineSpec("stdout", "", 34, (4318, 128), 1)], before=[LineSpec("stdout", "é", 20, (3637, 8192), 0),
     LineSpec("stdout", "é日本", 37, (1160, 221), 2),
     LineSpec("stderr", "naïve café", 24, (0,), 0),
     LineSpec("stderr", "ascii text", 11, (0,), 0)], container="app", how="copytruncate")
    model.spool_full(on=True)
    model.delete(container="sidecar", wait=False)
    model.teardown()


def test_a_copy_found_at_start_under_a_name_of_its_own_is_read_before_the_live_file(model: LifecycleModel) -> None:
    """copytruncate while down to a copy named by logrotate's own rule: the copy is the same container's
    (its directory says so, whatever its name), so it is read before what the live file holds now."""
    model.read()
    model.backlog_then_lose(container="sidecar", cut=1184, delete_first=False, recreate=False, rotate=True,
                            specs=[LineSpec("stdout", "naïve café", 11, (639, 254), 2)])
    model.spool_full(on=False)
    model.spool_full(on=True)
    model.spool_full(on=False)
    model.read()
    model.tick()
    model.rotate(compress=False, container="sidecar", wait=False)
    model.rotate_while_down(after=[], before=[LineSpec("stderr", "naïve café", 39, (), 2),
     LineSpec("stderr", "é", 32, (92, 19), 2),
     LineSpec("stdout", "日本", 32, (1046, 10000, 9412), 0),
     LineSpec("stderr", "日本", 15, (583, 305, 8018), 1)], container="app", how="rename+gzip")
    model.read()
    model.backlog_then_lose(container="sidecar", cut=None, delete_first=True, recreate=True, rotate=False,
                            specs=[LineSpec("stdout", "naïve café", 11, (8045, 463), 1),
     LineSpec("stderr", "ascii text", 18, (475, 320, 4272), 2),
     LineSpec("stdout", "é日本", 24, (993, 200), 0),
     LineSpec("stdout", "ascii text", 26, (1, 999), 2)])
    model.rotate(compress=True, container="app", wait=True)
    model.backlog_then_lose(container="app", cut=None, delete_first=False, recreate=True, rotate=False,
                            specs=[LineSpec("stderr", "é日本", 20, (), 0)])
    model.tick()
    model.copytruncate(container="sidecar", wait=True)
    model.tick()
    model.spool_full(on=False)
    model.rotate_while_down(after=[LineSpec("stdout", "日本", 35, (830, 20), 2)],
                            before=[LineSpec("stdout", "", 26, (), 2)], container="sidecar", how="copytruncate")
    model.crash()
    model.crash()
    model.teardown()


def test_a_line_shipped_joined_before_a_sigkill_does_not_join_again_at_the_restart(model: LifecycleModel) -> None:
    """A line begun in a rotated file and ended in the next one shipped joined; the rotated file's own mark
    was not acknowledged yet when podlog was killed.  At the restart the rotated file hands its fragment
    over again, and the next file, resumed past that line's end, is read from its start so the end is
    seen: the fragment is dropped, not joined to the next line of its stream."""
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "é日本", 28, (), 2),
        LineSpec("stderr", "é", 10, (302, 478, 293), 2), LineSpec("stdout", "日本", 26, (1, 9611, 1233), 2),
        LineSpec("stdout", "é日本", 17, (50,), 2)], container="app", how="rename+gzip")
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "naïve café", 18, (1384, 478, 968), 1),
        LineSpec("stdout", "ascii text", 39, (2513, 4421, 100), 2)], container="app", how="rename+gzip")
    model.delete(container="app", wait=True)
    model.delete(container="sidecar", wait=False)
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "é", 29, (), 1),
        LineSpec("stdout", "é", 35, (3176,), 0), LineSpec("stdout", "naïve café", 36, (975, 6209, 320), 2)],
        container="app", how="copytruncate")
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "naïve café", 18, (1384, 478, 968), 1),
        LineSpec("stdout", "é日本", 36, (), 0)], container="app", how="rename+gzip")
    model.rotate_while_down(after=[LineSpec("stderr", "é", 15, (667, 500, 23), 2),
        LineSpec("stdout", "é日本", 2, (3067,), 0), LineSpec("stdout", "naïve café", 25, (7075, 0, 1043), 2),
        LineSpec("stdout", "naïve café", 32, (1,), 1)], before=[LineSpec("stdout", "é", 24, (437,), 0)],
        container="app", how="copytruncate")
    model.rotate_while_down(after=[LineSpec("stdout", "ascii text", 22, (236,), 1),
        LineSpec("stderr", "naïve café", 25, (1,), 1)], before=[LineSpec("stdout", "é日本", 15, (), 0)],
        container="sidecar", how="copytruncate")
    model.delete(container="app", wait=True)
    model.rotate_while_down(after=[LineSpec("stdout", "日本", 40, (), 1)],
        before=[LineSpec("stdout", "é日本", 31, (455, 138, 2387), 2)], container="app", how="copytruncate")
    model.rotate_while_down(after=[], before=[LineSpec("stdout", "日本", 28, (299,), 2)],
        container="app", how="rename+gzip")
    model.rotate_while_down(after=[LineSpec("stderr", "", 11, (247,), 0),
        LineSpec("stderr", "é日本", 38, (154, 5294, 991), 0),
        LineSpec("stdout", "ascii text", 22, (1795, 1159, 611), 2), LineSpec("stdout", "", 10, (134, 847, 353), 2)],
        before=[], container="sidecar", how="rename+gzip")
    model.restart()
    model.rotate_while_down(after=[], before=[LineSpec("stderr", "naïve café", 8, (343, 291, 6653), 2),
        LineSpec("stderr", "é", 0, (2699, 5842, 39), 1), LineSpec("stdout", "é日本", 24, (559, 972, 862), 0)],
        container="sidecar", how="copytruncate")
    model.rotate_while_down(after=[LineSpec("stderr", "é", 24, (140,), 2), LineSpec("stdout", "日本", 13, (), 2),
        LineSpec("stdout", "ascii text", 28, (), 0), LineSpec("stderr", "", 20, (2380, 9999), 2)],
        before=[LineSpec("stdout", "日本", 2, (878,), 2), LineSpec("stdout", "é日本", 36, (), 0),
        LineSpec("stderr", "ascii text", 8, (417, 775, 2046), 0), LineSpec("stdout", "ascii text", 40, (8768,), 0)],
        container="app", how="copytruncate")
    model.rotate_while_down(after=[LineSpec("stderr", "naïve café", 34, (), 1),
        LineSpec("stdout", "ascii text", 17, (825,), 1), LineSpec("stderr", "naïve café", 25, (901,), 0)],
        before=[LineSpec("stdout", "é", 14, (), 2), LineSpec("stderr", "", 8, (), 1)],
        container="app", how="copytruncate")
    model.rotate_while_down(after=[LineSpec("stderr", "naïve café", 13, (), 2),
        LineSpec("stdout", "ascii text", 16, (), 0)], before=[], container="app", how="rename+gzip")
    model.delete(container="app", wait=True)
    model.delete(container="sidecar", wait=True)
    model.rotate_while_down(after=[LineSpec("stdout", "日本", 33, (2529,), 2)],
        before=[LineSpec("stdout", "é日本", 1, (), 2), LineSpec("stderr", "naïve café", 40, (313, 1525, 2174), 1)],
        container="sidecar", how="rename+gzip")
    model.teardown()


def test_a_copy_drained_past_lines_in_flight_reads_them_again_after_a_restart(model: LifecycleModel) -> None:
    """The sidecar's file was read past what the refusing spool took, then copytruncated: its copy's drain
    reads on from there.  Stopped before those lines were acknowledged, podlog must read them again from the
    copy: its checkpoint starts where the generation was acknowledged (r10)."""
    model.backlog_then_lose(container="app", cut=None, delete_first=True, recreate=False, rotate=True,
                            specs=[LineSpec("stdout", "é日本", 30, (), 0)])
    model.rotate(compress=False, container="sidecar", wait=True)
    model.crash()
    model.read()
    model.backlog_then_lose(container="app", cut=3467, delete_first=False, recreate=True, rotate=True,
                            specs=[LineSpec("stdout", "é日本", 20, (), 2)])
    model.append(container="sidecar", cut=None, specs=[LineSpec("stdout", "é日本", 36, (40,), 2)])
    model.append(container="sidecar", cut=180, specs=[LineSpec("stdout", "é日本", 18, (2585, 247, 501), 0),
        LineSpec("stderr", "naïve café", 25, (676, 489, 3243), 1), LineSpec("stderr", "é", 14, (), 1),
        LineSpec("stdout", "", 22, (569,), 2), LineSpec("stdout", "ascii text", 16, (), 2)])
    model.crash()
    model.append(container="sidecar", cut=522, specs=[LineSpec("stdout", "", 35, (), 1),
        LineSpec("stdout", "日本", 10, (3930,), 1), LineSpec("stderr", "é", 25, (), 0),
        LineSpec("stderr", "ascii text", 9, (2081, 2074, 6801), 2), LineSpec("stdout", "ascii text", 20, (), 0)])
    model.tick()
    model.spool_full(on=False)
    model.append(container="app", cut=313, specs=[LineSpec("stdout", "naïve café", 15, (141, 3593, 722), 2)])
    model.spool_full(on=True)
    model.copytruncate(container="sidecar", wait=False)
    model.restart()
    model.copytruncate(container="app", wait=True)
    model.read()
    model.teardown()


def test_a_file_copytruncated_then_deleted_ends_at_its_end(model: LifecycleModel) -> None:
    """A copytruncate and the deletion of the pod's files, both seen in one pass: the file, deleted, was
    found truncated and went back to being read as a live file, never finished (r12).  Its copy is read,
    and then it ends at its end, deleted as it is."""
    model.spool_full(on=True)
    model.append(container="sidecar", cut=598, specs=[LineSpec("stdout", "ascii text", 36, (4096, 1012, 43), 0)])
    model.delete(container="sidecar", wait=True)
    model.rotate(compress=False, container="app", wait=False)
    model.delete(container="sidecar", wait=True)
    model.spool_full(on=True)
    model.copytruncate(container="app", wait=True)
    model.spool_full(on=True)
    model.copytruncate(container="sidecar", wait=False)
    model.append(container="app", cut=None, specs=[LineSpec("stderr", "naïve café", 14, (108, 5143, 180), 2),
        LineSpec("stderr", "日本", 36, (), 2)])
    model.append(container="sidecar", cut=None, specs=[LineSpec("stdout", "日本", 40, (), 1),
        LineSpec("stdout", "naïve café", 39, (), 0), LineSpec("stderr", "naïve café", 8, (371, 793, 235), 2),
        LineSpec("stdout", "ascii text", 34, (0, 115, 62), 2), LineSpec("stdout", "", 25, (445, 2586), 1)])
    model.copytruncate(container="sidecar", wait=True)
    model.spool_full(on=True)
    model.rotate(compress=False, container="app", wait=False)
    model.copytruncate(container="app", wait=True)
    model.spool_full(on=True)
    model.delete(container="sidecar", wait=True)
    model.append(container="app", cut=1749, specs=[LineSpec("stdout", "é", 24, (1295, 415, 9317), 2),
        LineSpec("stdout", "", 40, (), 2), LineSpec("stdout", "日本", 33, (242, 1641, 2133), 1),
        LineSpec("stdout", "", 29, (), 0), LineSpec("stdout", "ascii text", 1, (), 1),
        LineSpec("stderr", "ascii text", 27, (3379, 203, 5641), 1)])
    model.restart()
    model.teardown()


def test_a_generation_after_a_copytruncate_does_not_resume_where_the_last_one_did(model: LifecycleModel) -> None:
    """The file was held at an open stdout fragment while stderr went on (per-stream resume offsets),
    then copytruncated: the next generation's first stdout lines lay before the old stdout offset and
    were skipped as if emitted already (r13).  A truncation ends those offsets with the generation."""
    model.rotate(compress=False, container='sidecar', wait=True)
    model.rotate(compress=True, container='sidecar', wait=False)
    model.read()
    model.restart()
    model.rotate(compress=True, container='sidecar', wait=False)
    model.rotate_while_down(after=[LineSpec(stream='stderr', text='ascii text', repeat=11, cuts=(), held=0),
     LineSpec(stream='stdout', text='é日本', repeat=7, cuts=(69, 476, 161), held=0),
     LineSpec(
         stream='stdout',
         text='é日本',
         repeat=34,
         cuts=(557, 646, 661),
         held=2),
     LineSpec(stream='stdout', text='', repeat=13, cuts=(1048, 175, 713), held=2)], before=[LineSpec(stream='stderr',
         text='', repeat=20, cuts=(), held=2),
     LineSpec(stream='stdout', text='', repeat=26, cuts=(6324, 654, 195), held=2),
     LineSpec(stream='stdout', text='naïve café', repeat=40, cuts=(), held=2),
     LineSpec(stream='stdout', text='é', repeat=5, cuts=(1627, 306, 528), held=0)], container='app',
         how='rename+gzip')
    model.read()
    model.append(container='sidecar', cut=8763, specs=[LineSpec(stream='stdout', text='naïve café', repeat=10,
        cuts=(), held=2)])
    model.delete(container='sidecar', wait=True)
    model.rotate_while_down(after=[], before=[], container='sidecar', how='copytruncate')
    model.read()
    model.copytruncate(container='app', wait=True)
    model.append(container='sidecar', cut=None, specs=[LineSpec(stream='stderr', text='', repeat=30, cuts=(148,
        2731), held=1),
     LineSpec(stream='stdout', text='ascii text', repeat=16, cuts=(772, 7687), held=1),
     LineSpec(stream='stdout', text='', repeat=33, cuts=(), held=2),
     LineSpec(stream='stdout', text='', repeat=13, cuts=(), held=1)])
    model.spool_full(on=False)
    model.append(container='sidecar', cut=None, specs=[LineSpec(stream='stdout', text='naïve café', repeat=4,
        cuts=(), held=1),
     LineSpec(stream='stdout', text='é日本', repeat=22, cuts=(), held=1)])
    model.read()
    model.rotate_while_down(after=[LineSpec(stream='stdout', text='日本', repeat=37, cuts=(), held=2)],
        before=[LineSpec(stream='stdout', text='ascii text', repeat=12, cuts=(6049, 1095), held=0),
     LineSpec(stream='stderr', text='naïve café', repeat=33, cuts=(), held=1),
     LineSpec(
         stream='stdout',
         text='é日本',
         repeat=31,
         cuts=(478, 3855, 165),
         held=0,
     )], container='sidecar', how='copytruncate')
    model.rotate(compress=False, container='sidecar', wait=False)
    model.spool_full(on=True)
    model.append(container='app', cut=1, specs=[LineSpec(stream='stdout', text='ascii text', repeat=27, cuts=(4275,
        790, 107), held=2),
     LineSpec(
         stream='stdout',
         text='ascii text',
         repeat=6,
         cuts=(6373, 68),
         held=2,
     ),
     LineSpec(stream='stdout', text='', repeat=5, cuts=(), held=2)])
    model.teardown()


def test_a_known_generation_without_a_whole_first_line_is_sized_while_it_waits(model: LifecycleModel) -> None:
    """A generation podlog knows (copytruncated, its new head unknown) is not opened again after a
    restart until its first line is whole.  Its size is seen meanwhile: deleted with an unterminated
    line, those bytes are counted lost (r14)."""
    model.crash()
    model.rotate_while_down(after=[LineSpec(stream='stderr', text='', repeat=34, cuts=(7257, 904, 498), held=1),
     LineSpec(stream='stdout', text='naïve café', repeat=26, cuts=(1724,), held=1),
     LineSpec(stream='stderr', text='日本', repeat=9, cuts=(), held=2)], before=[], container='sidecar',
         how='rename+gzip')
    model.tick()
    model.copytruncate(container='sidecar', wait=True)
    model.crash()
    model.restart()
    model.restart()
    model.tick()
    model.restart()
    model.tick()
    model.restart()
    model.read()
    model.copytruncate(container='app', wait=True)
    model.rotate_while_down(after=[LineSpec(stream='stderr', text='ascii text', repeat=16, cuts=(), held=1)],
        before=[LineSpec(stream='stdout', text='é日本', repeat=26, cuts=(), held=1),
     LineSpec(stream='stderr', text='é', repeat=21, cuts=(), held=0)], container='app', how='copytruncate')
    model.read()
    model.tick()
    model.backlog_then_lose(container='sidecar', cut=1135, delete_first=False, recreate=False, rotate=False,
        specs=[LineSpec(stream='stderr', text='é', repeat=23, cuts=(), held=2)])
    model.teardown()
