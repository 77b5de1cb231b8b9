"""A file read to its end and acknowledged, renamed by kubelet while podlog is down: read again whole."""
import asyncio

from common import Bed, cri, wait_until


async def main():
    bed = Bed()
    bed.live.write_bytes(b"".join(cri(i, message=b"a-%d" % i) for i in range(3)))
    await bed.start()
    await wait_until(lambda: len(bed.sink.records) == 3)
    await wait_until(lambda: bed.disk()[0]["offset"] == bed.live.stat().st_size)   # acked and written
    await bed.kill()
    bed.live.rename(bed.dir / "0.log.20261127-000000")   # kubelet's rotation while down
    bed.live.touch()
    await bed.start()
    await asyncio.sleep(0.5)
    for r in bed.records():
        print(r["message"], r["event"]["id"], "generation", r["log"]["generation"])
    await bed.stop()

asyncio.run(main())
