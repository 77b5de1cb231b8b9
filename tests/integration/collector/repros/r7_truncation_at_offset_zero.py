"""A file opened but not read yet (offset 0: just started, or waiting behind a rotated file) is
copytruncated: size 0 is not below offset 0 and the head is compared only after an offset > 0,
so the truncation is never seen and the copy is never read."""
import asyncio
import shutil

from common import Bed, cri

from tests.integration.collector.harness import AckingSink
from tests.unit.collector.helpers import make_collector


async def main():
    bed = Bed()
    bed.live.write_bytes(b"".join(cri(i, message=b"a-%d" % i) for i in range(4)))
    sink = AckingSink()
    c = make_collector(bed.tmp, sink, include=bed.include, use_inotify=False)
    sink.listener = c.checkpoints
    await c.start()                                   # 0.log opened at offset 0, nothing read yet
    shutil.copyfile(bed.live, bed.dir / "0.log.1")    # copytruncate before the first read
    with bed.live.open("r+b") as f:
        f.truncate(0)
    with bed.live.open("ab") as f:
        f.write(cri(10, message=b"b-0"))
    task = asyncio.create_task(c.run())
    await asyncio.sleep(1.0)
    print("written: a-0..a-3 (now in 0.log.1), b-0; delivered:", sink.messages())
    await c.stop()
    await task

asyncio.run(main())
