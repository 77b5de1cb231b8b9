"""A rotated file hands its open P fragment to the next file, and its end mark is acknowledged at once:
killed before the next file completes the line, the fragment is gone and the rest is shipped as a line."""
import asyncio

from common import Bed, cri, wait_until


async def main():
    bed = Bed()
    bed.live.write_bytes(cri(1, message=b"a-0") + cri(2, tag="P", message=b"m1 first half|"))
    c, sink = await bed.start()
    await wait_until(lambda: len(sink.records) == 1)
    rotated = bed.dir / "0.log.20261127-000000"
    bed.live.rename(rotated)
    bed.live.write_bytes(cri(3, "stderr", message=b"e-0"))   # the new file has a line (stderr)
    live_ino = bed.live.stat().st_ino
    await wait_until(lambda: [t.file.ino for t in c.tracker.tailers.values()] == [live_ino])  # rotated one closed
    await wait_until(lambda: len(sink.records) == 2)                                         # e-0 delivered
    await wait_until(lambda: not c.checkpoints.dirty)
    print("checkpoint on disk (the rotated file stays until its fragment ships):",
          [(e["path"].rsplit("/", 1)[1], e["ino"] == live_ino, e["offset"]) for e in bed.disk()])
    await bed.kill()
    with bed.live.open("ab") as f:                             # the runtime ends the line
        f.write(cri(4, tag="F", message=b"second half"))
    _, sink = await bed.start()
    await wait_until(lambda: len(sink.records) >= 1, 3)
    await asyncio.sleep(0.3)
    print("written:   m1 first half|second half")
    print("delivered:", [r["message"] for r in bed.records()])
    await bed.stop()

asyncio.run(main())
