"""Sizes seen while the spool refuses are never written to the checkpoint: loss under-counted."""
import asyncio

from common import Bed, cri, lost, wait_until


async def main():
    bed = Bed()
    bed.live.write_bytes(cri(0, message=b"a-0"))
    await bed.start()
    await wait_until(lambda: len(bed.sink.records) == 1)
    await wait_until(lambda: bed.disk()[0]["offset"] == bed.live.stat().st_size)   # ack written
    bed.sink.refuse = 10**9                        # the spool is full from here on
    with bed.live.open("ab") as f:
        f.write(cri(1, message=b"a-1") + cri(2, message=b"a-2") + cri(3, message=b"a-3"))
    size = bed.live.stat().st_size
    entry = next(iter(bed.collector.checkpoints.entries.values()))
    await wait_until(lambda: entry.size == size)  # the collector has seen them (in memory)
    await asyncio.sleep(0.3)                       # 15 checkpoint intervals
    print("size in memory:", entry.size, " on disk:", bed.disk()[0]["size"], " dirty:", bed.collector.checkpoints.dirty)
    await bed.kill()
    before = lost()
    bed.live.unlink()                              # every generation gone while down
    await bed.start()
    print("lost counted:", lost() - before, " unread bytes the collector had seen:", size - len(cri(0, message=b"a-0")))
    await bed.stop()

asyncio.run(main())
