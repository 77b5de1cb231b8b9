"""Reader paused mid-file (spool full), copytruncate, the file regrows past the read offset before
the next read: the truncation is never noticed and reading goes on inside the new content."""
import asyncio
import shutil

from common import Bed, cri, wait_until

LINE = b" " + b"x" * 80


def lines(start, count):
    return b"".join(cri(i, message=b"a-%d" % i + LINE) for i in range(start, start + count))


async def main():
    bed = Bed()
    bed.live.write_bytes(lines(0, 60))
    c, sink = await bed.start(refuse=10**9, batch_max_records=8, read_budget_bytes=512)  # spool full: pauses
    tailer = None
    await wait_until(lambda: c.tracker.tailers)
    tailer = next(iter(c.tracker.tailers.values()))
    await asyncio.sleep(0.3)
    print("paused at", tailer.read_offset, "of", bed.live.stat().st_size)
    shutil.copyfile(bed.live, bed.dir / "0.log.1")   # copytruncate
    with bed.live.open("r+b") as f:
        f.truncate(0)
    with bed.live.open("ab") as f:                   # the writer goes on, past the read offset
        f.write(lines(100, 40))
    print("regrown to", bed.live.stat().st_size)
    sink.refuse = 0
    await asyncio.sleep(1.5)
    messages = [m.split(" ")[0] for m in sink.messages()]
    written = {f"a-{i}" for i in [*range(60), *range(100, 140)]}
    odd = [m[:40] for m in sink.messages()
           if m.split(" ")[0] not in written or len(m) != len(m.split(" ")[0]) + len(LINE)]
    print("not written:", odd)
    print("missing:", len(written - set(messages)), "of", len(written))
    await bed.stop()

asyncio.run(main())
