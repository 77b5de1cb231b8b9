"""An open P fragment ends the rotated file; kubelet's new 0.log is still empty at rotate_wait: the line splits."""
import asyncio

from common import Bed, cri, wait_until

MESSAGE = b"m0 " + "é".encode() * 9


async def main():
    bed = Bed()
    cut = 6  # inside the second "é"
    bed.live.write_bytes(cri(1, tag="P", message=MESSAGE[:cut]))
    c, sink = await bed.start()
    await wait_until(lambda: any(t.read_offset > 0 for t in c.tracker.tailers.values()))
    bed.live.rename(bed.dir / "0.log.20261127-000000")
    bed.live.touch()                      # kubelet creates the new file empty
    await asyncio.sleep(0.5)              # rotate_wait is 0.2 s in this setup
    with bed.live.open("ab") as f:
        f.write(cri(2, tag="F", message=MESSAGE[cut:]))
    await wait_until(lambda: len(sink.records) >= 1, 3)
    await asyncio.sleep(0.5)
    print("written:  ", MESSAGE.decode())
    for r in sink.records:
        print("delivered:", r["message"], r["log"]["file"]["path"].rsplit("/", 1)[1], r["log"]["offset"])
    await bed.stop()

asyncio.run(main())
