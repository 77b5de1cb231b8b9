"""kubelet gzips the older rotation (its inode freed) and the new 0.log reuses that inode while podlog is down:
the older generation is skipped at start, read only once 0.log has a line, after newer lines."""
import asyncio
import gzip
import os

from common import Bed, cri, wait_until


async def main():
    bed = Bed()
    bed.live.write_bytes(b"".join(cri(i, message=b"a-%d" % i) for i in range(3)))
    await bed.start(refuse=10**9)
    await wait_until(lambda: bed.disk() and bed.disk()[0]["head"])
    await bed.kill()
    first = bed.dir / "0.log.20261127-000000"
    bed.live.rename(first)                          # rotation 1 while down
    bed.live.write_bytes(b"".join(cri(10 + i, message=b"b-%d" % i) for i in range(2)))
    await bed.start(refuse=10**9)                   # both known now, nothing acknowledged
    await wait_until(lambda: len(bed.disk()) == 2)
    await bed.kill()
    freed = first.stat().st_ino
    (first.parent / (first.name + ".gz")).write_bytes(gzip.compress(first.read_bytes()))
    first.unlink()                                  # kubelet's compressLog: .gz, then unlink
    bed.live.rename(bed.dir / "0.log.20261127-000100")   # rotation 2 while down
    fd = os.open(bed.live, os.O_WRONLY | os.O_CREAT)  # the runtime's new, empty 0.log
    os.close(fd)
    print("new 0.log reused the freed inode:", bed.live.stat().st_ino == freed)
    _c, sink = await bed.start()
    await asyncio.sleep(1.0)
    print("delivered after restart:", sink.messages())
    with bed.live.open("ab") as f:
        f.write(cri(20, message=b"c-0"))
    await wait_until(lambda: len(sink.records) >= 6, 3)
    print("after a line in the new 0.log:", sink.messages())
    await bed.stop()

asyncio.run(main())
