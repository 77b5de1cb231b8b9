"""stdout and stderr both split into P..F lines, interleaved (as CRI runtimes write them): the mark
stays at the open stderr fragment, so a restart re-reads the stdout F of a line already shipped
joined, and ships it again alone."""
import asyncio

from common import Bed, cri, wait_until


async def main():
    bed = Bed()
    bed.live.write_bytes(cri(1, "stdout", "P", b"out first half|") + cri(2, "stderr", "P", b"err first half|")
                         + cri(3, "stdout", "F", b"out second half") + cri(4, "stdout", "F", b"b-0"))
    c, sink = await bed.start()
    await wait_until(lambda: len(sink.records) == 2)
    print("first run: ", sink.messages(), " checkpoint offset:", next(iter(c.checkpoints.entries.values())).offset)
    await bed.stop()                                  # a clean stop; kill -9 does the same
    _, sink = await bed.start()
    await asyncio.sleep(0.5)
    print("after restart:", sink.messages(), [r["event"]["id"][-4:] for r in sink.records])
    await bed.stop()

asyncio.run(main())
