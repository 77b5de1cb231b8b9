"""Shipper throughput: spool -> Kafka, against a bare aiokafka loop sending the same bytes.

Prints records/s, MB/s (encoded JSON, before compression), CPU seconds and peak
RSS of each variant, the median of several runs, each run in a fresh process:

* ``shipper``: the spool is pre-filled with batches (not timed), then a
  Shipper with a KafkaTransport drains it; timed from start to the last ack.
* ``bare``: the ceiling. The same messages (grouped and encoded exactly as the
  transport does) are produced by a plain ``AIOKafkaProducer`` loop with the
  same settings, and awaited.
* ``per-record`` (``--wire``): one message per record instead of one per
  stream group: the alternative the wire format rejects.

Each child process does its variant's run twice, on two topics, and times
the second (``--cold`` times the first): a process's first run pays for
fresh memory (page faults on about 100 MB of batches per 100k records),
which put a cold bare loop at about half its warm speed (0.21 against 0.11
CPU s) and made the ceiling bimodal, while a running agent reuses its
memory.

Each child also runs with glibc's malloc thresholds fixed as every podlog
process fixes them (``podlog.allocator.tune_malloc_as_configured`` with
the ``podlog.malloc_*`` defaults; ``--default-malloc`` leaves them alone).  By
default glibc serves large buffers (compressed batches, joined values) with
fresh ``mmap`` calls until its adaptive threshold has grown past them, and
each fresh mapping is paid for in page faults.  Whether a child's warm-up
run moved the threshold far enough differed between runs: the same bare
loop measured about 500k records/s at 0.20 CPU s in one hour and 900k at
0.11 in another.  With the thresholds fixed both variants reuse their heap,
the ceiling stays at its fast mode, and the ratio compares code, not
allocator state.

Both use ``acks=all``, the configured compression and idempotence ``auto``
(on where the broker supports it; tansu does not, so both fall back).

    python bench/shipper.py                 # ~1-2 minutes, 100k records
    python bench/shipper.py --wire          # adds the per-record comparison
    python bench/shipper.py --codecs        # shipper vs bare for every codec
    python bench/shipper.py --full          # 1M records, 5 runs

Without ``--bootstrap`` a local broker is started (and stopped): tansu, which
has no InitProducerId, so both variants fall back to idempotence off; or with
``--broker noida`` noida-db's Kafka, which grants it, so both run with
idempotence on (the configuration the shipper's target names).  noida-db's
background work grows with the topics it holds (each run adds two): over
four back-to-back ``--runs 1`` commands on one noida it used 0.38, 0.78,
1.35 and 1.47 CPU s per command of about 8 s, beside both variants, so
each command starts a fresh one, and its figures scatter more than tansu's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.fixtures.servers import ManagedProcess

BATCH_RECORDS = 500
STREAMS = 40


def make_records(count: int) -> list[dict[str, Any]]:
    """Realistic records: ~40 containers, access-log-like messages, full k8s metadata."""
    from podlog.record import SourcePosition, make_record

    records = []
    for i in range(count):
        stream = i % STREAMS
        offset = (i // STREAMS) * 180
        records.append(
            make_record(
                position=SourcePosition("bench", "node-1", f"2049:{1000 + stream}:abcd", 0, offset),
                timestamp="2026-11-27T00:00:00.123456789Z",
                timestamp_ns=1_795_737_600_123_456_789 + i,
                message=(
                    f'10.1.{stream}.{i % 250} - - "GET /api/v1/items/{i} HTTP/1.1" 200 '
                    f'{i % 9000} "-" "curl/8.5.0" rt=0.{i % 1000:03d} request_id={i:016x}'
                ),
                stream="stdout",
                path=f"/var/log/containers/app-{stream}_shop_web-{stream:064x}.log",
                kubernetes={
                    "namespace": "shop",
                    "pod": {"name": f"web-7d9f8-{stream:05d}", "uid": f"uid-{stream:032x}"},
                    "container": {
                        "name": "web",
                        "id": f"containerd://{stream:064x}",
                        "image": "shop/web:1.4.2",
                        "restart_count": 0,
                    },
                    "node": {"name": "node-1"},
                    "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "7d9f8"},
                    "annotations": {},
                    "workload": {"kind": "Deployment", "name": "web"},
                },
                metadata="api",
            )
        )
    return records


def _tune_gc() -> None:
    """The GC setting ``podlog agent`` runs the shipper with, applied once the fixtures exist.

    Without it every collection in the timed loop scans the benchmark's own
    decoded records (millions of objects the agent never holds), which cost
    the shipper, which allocates more objects than the bare loop, about
    1.8 us per record at 300,000 records.
    """
    from collector.config import CollectorConfig
    from collector.pipeline import tune_gc

    tune_gc(CollectorConfig().gc_gen0_threshold)


def _usage() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


async def run_shipper(args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, Any]:
    from podlog.lifecycle import Health
    from podlog.protocols import Batch, FileMark
    from shipper.config import KafkaProducerConfig, ShipperConfig, SpoolConfig
    from shipper.kafka import KafkaTransport
    from shipper.shipper import Shipper
    from shipper.spool import Spool

    delivered = asyncio.Event()  # set by the last acknowledgement: the end of the timed window

    class Acks:
        def acknowledged(self, marks: Any) -> None:
            if shipper.delivered_seq >= spool.last_seq:
                delivered.set()

    config = ShipperConfig(
        kafka=KafkaProducerConfig(
            bootstrap_servers=args.bootstrap, topic=args.topic, compression=args.compression
        ),
        spool=SpoolConfig(max_bytes=8 << 30, fsync=args.fsync),
        **({"max_send_bytes": args.send_bytes} if args.send_bytes else {}),
        **({"max_in_flight_sends": args.in_flight} if args.in_flight else {}),
    )
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as directory:
        spool = Spool(config.spool, Path(directory))
        for start in range(0, len(records), BATCH_RECORDS):
            chunk = records[start : start + BATCH_RECORDS]
            mark = FileMark("/f", "k", 0, start + len(chunk))
            await spool.append(Batch(chunk, {"k": mark}))
        spooled = spool.disk_bytes
        _tune_gc()
        shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=Acks(), health=Health())
        await shipper.start()  # connecting is not timed, as for the bare loop
        cpu0, _ = _usage()
        started = time.perf_counter()
        runner = asyncio.create_task(shipper.run())
        await delivered.wait()
        elapsed = time.perf_counter() - started
        cpu1, rss = _usage()
        await shipper.stop()
        await runner
    return {"seconds": elapsed, "cpu": cpu1 - cpu0, "rss_kb": rss, "spool_bytes": spooled}


async def run_bare(args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from shipper.config import KafkaProducerConfig, ShipperConfig
    from shipper.kafka import KafkaTransport, encode_messages

    config = KafkaProducerConfig(
        bootstrap_servers=args.bootstrap, topic=args.topic, compression=args.compression
    )
    per_send = ShipperConfig().max_send_records  # the same grouping the shipper would send
    if args.mode == "per-record":
        from podlog.record import encode_batch, stream_key

        messages = [(args.topic, stream_key(r), encode_batch([r])) for r in records]
    else:
        messages = [
            (m.topic, m.key, m.value)
            for start in range(0, len(records), per_send)
            for m in encode_messages(
                records[start : start + per_send],
                topic=args.topic,
                default_retention="standard",
                max_message_bytes=config.max_message_bytes,
            )
        ]
    transport = KafkaTransport(config)
    await transport.start()  # settles idempotence exactly as the shipper would
    idempotent = transport.idempotent
    await transport.stop()
    producer: AIOKafkaProducer = transport._make_producer(idempotent)
    await producer.start()
    _tune_gc()
    cpu0, _ = _usage()
    started = time.perf_counter()
    futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    cpu1, rss = _usage()
    await producer.stop()
    return {
        "seconds": elapsed,
        "cpu": cpu1 - cpu0,
        "rss_kb": rss,
        "messages": len(messages),
        "bytes": sum(len(v) for _, _, v in messages),
    }


def child(args: argparse.Namespace) -> None:
    import logging

    from podlog.logging import configure_logging

    configure_logging("error", fmt="json")
    if not args.default_malloc:
        from podlog.allocator import tune_malloc_as_configured
        from podlog.config import CommonConfig

        tune_malloc_as_configured(CommonConfig())  # what every podlog process starts with
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    records = make_records(args.records)
    run = run_shipper if args.mode == "shipper" else run_bare
    if not args.cold:
        # The same run once untimed, on its own topic: the timed one then reuses
        # memory the process already has, as a long-running agent does.
        asyncio.run(run(argparse.Namespace(**{**vars(args), "topic": f"{args.topic}w"}), records))
    result = asyncio.run(run(args, records))
    from shipper.kafka import encode_messages

    result["json_bytes"] = sum(
        len(m.value)
        for m in encode_messages(records, topic="t", default_retention="s", max_message_bytes=1 << 30)
    )
    print(json.dumps(result))


def _topic() -> str:
    """A fresh, short topic name per run.

    Short on purpose: on one long-lived tansu, names of about 40 characters
    always put the bare aiokafka loop at about half its speed (the shipper did
    not change), which flattered the ratio.  Short names did not remove that
    slow mode everywhere: compare the per-run rates the benchmark prints.
    """
    return f"b{os.urandom(4).hex()}"


def _run_once(args: argparse.Namespace, mode: str, compression: str, i: int) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--child", mode, "--records", str(args.records),
        "--bootstrap", args.bootstrap, "--topic", _topic(),
        "--compression", compression, "--fsync", args.fsync,
        "--send-bytes", str(args.send_bytes), "--in-flight", str(args.in_flight),
        *(["--cold"] if args.cold else []),
        *(["--default-malloc"] if args.default_malloc else []),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class LocalBroker:
    """The broker started for a benchmark (tansu or noida-db's Kafka), restartable.

    Started and stopped by the test suite's own helpers (``tests/fixtures/servers.py``),
    which wait until it listens and stop it by its PID; their logs go to a temporary directory.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.data = tempfile.TemporaryDirectory(prefix="bench-broker-")
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> str:
        """Start a broker with empty storage; returns its bootstrap address."""
        from tests.fixtures.servers import start_noida_kafka, start_tansu

        self.starts += 1
        root = Path(self.data.name) / str(self.starts)
        if self.kind == "noida":
            self.proc = start_noida_kafka(root / "logs", root / "data")
        else:
            self.proc = start_tansu(root / "logs")
        return self.proc.url

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def close(self) -> None:
        """Stop the broker and remove its data."""
        self.stop()
        self.data.cleanup()


def measure(
    args: argparse.Namespace, modes: list[str], compression: str, broker: LocalBroker | None = None,
) -> dict[str, dict[str, float]]:
    """Median figures per mode; runs of the modes alternate so machine noise hits both.

    Which mode goes first flips every round: a broker slows as it collects
    topics (each run adds two), and a fixed order would always hand the
    second mode the fuller broker.  With ``--fresh-broker`` every round
    after the first gets a new one instead.
    """
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for i in range(args.runs):
        if args.fresh_broker and broker is not None and i > 0:
            broker.stop()
            args.bootstrap = broker.start()
        for mode in modes if i % 2 == 0 else modes[::-1]:
            runs[mode].append(_run_once(args, mode, compression, i))
    out = {}
    for mode, results in runs.items():
        each = " ".join(f"{args.records / r['seconds'] / 1000:.0f}k" for r in results)
        print(f"  {mode} [{compression}] runs, rec/s: {each}", flush=True)
        seconds = statistics.median(r["seconds"] for r in results)
        out[mode] = {
            "records_s": args.records / seconds,
            "mb_s": results[0]["json_bytes"] / seconds / 1e6,
            "cpu": statistics.median(r["cpu"] for r in results),
            "rss_mb": max(r["rss_kb"] for r in results) / 1024,
            "seconds": seconds,
        }
    return out


def report(name: str, m: dict[str, float]) -> None:
    print(
        f"{name:<24} {m['records_s']:>10.0f} rec/s {m['mb_s']:>8.1f} MB/s "
        f"cpu {m['cpu']:>6.2f} s  peak rss {m['rss_mb']:>6.0f} MB  (median {m['seconds']:.2f} s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="1M records, 5 runs")
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--broker", default="tansu", choices=["tansu", "noida"],
                        help="local broker to start without --bootstrap: tansu (no idempotence) "
                        "or noida-db's Kafka (idempotence on)")
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--fsync", default="batch", choices=["batch", "interval"])
    parser.add_argument("--wire", action="store_true", help="also per-record messages")
    parser.add_argument("--codecs", action="store_true", help="shipper and bare for every codec")
    parser.add_argument("--send-bytes", type=int, default=0, help="shipper max_send_bytes")
    parser.add_argument("--in-flight", type=int, default=0, help="shipper max_in_flight_sends")
    parser.add_argument("--cold", action="store_true",
                        help="time each variant's first run in its process (no untimed run before it)")
    parser.add_argument("--fresh-broker", action="store_true",
                        help="start a new local broker before every round of runs: noida-db's "
                        "background work grows with the topics each run adds")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's adaptive malloc thresholds alone in the children")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--topic", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return
    if args.full:
        args.records, args.runs = 1_000_000, 5
    broker = None
    kind = "given" if args.bootstrap else args.broker
    if not args.bootstrap:
        broker = LocalBroker(args.broker)
        args.bootstrap = broker.start()
    try:
        print(
            f"# {args.records} records, median of {args.runs} runs, broker {args.bootstrap} ({kind}), "
            f"acks=all, idempotence=auto, fsync={args.fsync}, {os.cpu_count()} CPUs, "
            f"malloc {'adaptive' if args.default_malloc else 'fixed thresholds'}"
            f"{', a fresh broker per round' if args.fresh_broker and broker else ''}",
            flush=True,
        )
        codecs = ["zstd", "lz4", "snappy", "gzip", "none"] if args.codecs else [args.compression]
        for codec in codecs:
            m = measure(args, ["bare", "shipper"], codec, broker)
            report(f"bare aiokafka [{codec}]", m["bare"])
            report(f"shipper [{codec}]", m["shipper"])
            ratio = m["shipper"]["records_s"] / m["bare"]["records_s"]
            print(f"ratio shipper/bare [{codec}]: {ratio:.2f} (target >= 0.70)", flush=True)
        if args.wire:
            m = measure(args, ["per-record"], args.compression, broker)
            report(f"bare per-record [{args.compression}]", m["per-record"])
    finally:
        if broker is not None:
            broker.close()


if __name__ == "__main__":
    main()
