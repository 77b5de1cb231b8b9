"""copytruncate while podlog is down, the container writes nothing after: the copy is never read."""
import asyncio
import shutil

from common import Bed, cri, wait_until


async def main():
    bed = Bed()
    bed.live.write_bytes(b"".join(cri(i, message=b"a-%d" % i) for i in range(3)))
    c, _ = await bed.start(refuse=10**9)            # spool full: nothing acknowledged yet
    await wait_until(lambda: bed.disk() and bed.disk()[0]["head"])
    await bed.kill()
    shutil.copyfile(bed.live, bed.dir / "0.log.1")  # logrotate copytruncate while down
    with bed.live.open("r+b") as f:
        f.truncate(0)
    c, sink = await bed.start()
    await asyncio.sleep(1.0)
    print("delivered after restart:", sink.messages(), " open files:",
          [t.file.real_path.rsplit("/", 1)[1] for t in c.tracker.tailers.values()],
          " unopened:", [p.rsplit("/", 1)[1] for p in c.tracker.unopened])
    with bed.live.open("ab") as f:                  # only the next line written to 0.log releases them
        f.write(cri(9, message=b"b-0"))
    await wait_until(lambda: len(sink.records) >= 4, 3)
    print("after a new line in 0.log:", sink.messages())
    await bed.stop()

asyncio.run(main())
