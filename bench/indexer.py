"""Benchmark: Kafka -> podlog indexer -> OpenSearch, against a bare helpers.bulk loop.

Both write the same documents with the same template into a fresh index
family of the same server; the bare loop (``opensearchpy.helpers.bulk`` over
documents already in memory, no Kafka, no decoding, no per-item handling) is
the ceiling.  Prints docs/s, MB/s (of Kafka message values), client CPU
seconds and peak RSS, median of ``--runs`` runs, and the indexer/baseline
ratio.  The target is a ratio of at least 0.80.  Messages are schema 2, as
agents write them (the indexer decodes the columns and parses the payloads);
``--schema 1`` sends the records' JSON as agents of earlier releases did.

    python bench/indexer.py                 # 20k records x 3 runs, local tansu + noida-db
    python bench/indexer.py --full          # 200k records
    python bench/indexer.py --server osmem  # the other stand-in (far slower at bulk writes)

Servers are started here on free ports (``--kafka``/``--opensearch`` use
running ones instead) and stopped by their own PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402
from opensearchpy import OpenSearch, helpers  # noqa: E402

from indexer.config import IndexerConfig, KafkaConsumerConfig, OpenSearchConfig  # noqa: E402
from indexer.consumer import Indexer  # noqa: E402
from indexer.templates import ensure_templates, index_name  # noqa: E402
from podlog import metrics  # noqa: E402
from podlog.config import CommonConfig  # noqa: E402
from podlog.lifecycle import Health  # noqa: E402
from podlog.logging import configure_logging  # noqa: E402
from podlog.record import SourcePosition, encode_batch, make_record  # noqa: E402
from podlog.retention import RetentionConfig, retention_class  # noqa: E402
from podlog.wire import decode_message  # noqa: E402
from shipper.messages import build_messages  # noqa: E402

BASE_NS = 1_795_737_600 * 1_000_000_000


def make_records(count: int, run: int) -> list[dict[str, Any]]:
    """Realistic records: a few namespaces, labels, some JSON payloads."""
    out = []
    for i in range(count):
        ns = ("shop", "payments", "dev-alice", "monitoring")[i % 50 % 4]
        payload = (
            {"level": "info", "user": i % 1000, "path": f"/api/v1/items/{i}", "ms": i % 250} if i % 3 == 0 else None
        )
        out.append(
            make_record(
                position=SourcePosition("bench", f"node-{i % 50 % 3}", f"{run}:{i % 50}:ff", 0, i * 120),
                timestamp="2026-11-27T00:00:00Z",
                timestamp_ns=BASE_NS + i * 1000,
                message=orjson.dumps(payload).decode() if payload else
                f'10.0.{i % 255}.{i % 7} - - "GET /api/v1/items/{i} HTTP/1.1" 200 {i % 9000} '
                f'"-" "Mozilla/5.0" rt={i % 250}ms',
                stream="stdout" if i % 5 else "stderr",
                path=f"/var/log/containers/web-{i % 50}.log",
                kubernetes={
                    "namespace": ns,
                    "pod": {"name": f"web-{i % 50}", "uid": f"uid-{i % 50}"},
                    "container": {"name": "web", "image": "shop/web:1.2.3", "restart_count": 0},
                    "node": {"name": f"node-{i % 50 % 3}"},
                    "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "7f9c"},
                    "workload": {"kind": "Deployment", "name": "web"},
                },
                level="info" if payload else None,
                json=payload,
            )
        )
    return out


def encode(records: list[dict[str, Any]], schema: int, per_message: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Message values of ``records``, and the documents the baseline bulks (the same records the
    indexer gets out of them).  Schema 2: one message per file generation, ``per_message`` lines
    each at most, as the agent's spool builds them; payloads parsed by the reader."""
    if schema == 1:
        return [encode_batch(records[i : i + per_message]) for i in range(0, len(records), per_message)], records
    by_file: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_file.setdefault(record["log"]["file"]["identity"], []).append(record)
    values = [
        bytes(m.value)
        for lines in by_file.values()
        for i in range(0, len(lines), per_message)
        for m in build_messages(lines[i : i + per_message])
    ]
    return values, [r for value in values for r in decode_message(value).records]


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, partition=0) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def rss_mib() -> float:
    """This process's resident set now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_baseline(url: str, prefix: str, records: list[dict[str, Any]], bulk_bytes: int) -> tuple[float, float]:
    client = OpenSearch(url, timeout=120)
    config = OpenSearchConfig(hosts=[url], index_prefix=prefix, number_of_replicas=0)
    ensure_templates(client, config)
    retention = RetentionConfig()
    actions = (
        {
            "_op_type": "create",
            "_index": index_name(prefix, retention_class(retention, r), r["timestamp_ns"]),
            "_id": r["event"]["id"],
            "_source": r,
        }
        for r in records
    )
    c0, t0 = cpu(), time.perf_counter()
    ok, errors = helpers.bulk(client, actions, chunk_size=100_000, max_chunk_bytes=bulk_bytes, raise_on_error=False)
    seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
    if ok != len(records) or errors:
        raise SystemExit(f"baseline indexed {ok} of {len(records)}: {errors[:1]}")
    client.close()
    return seconds, cpu_s


async def run_indexer(
    bootstrap: str, url: str, topic: str, prefix: str, total: int, bulk_bytes: int, concurrency: int
) -> tuple[float, float, float]:
    """Seconds and CPU seconds to index ``total`` documents, and how far RSS rose meanwhile (MiB).

    The whole backlog waits in Kafka before the indexer starts, as after an
    outage: the RSS rise is what draining a backlog costs in memory.
    """
    config = IndexerConfig(
        kafka=KafkaConsumerConfig(
            bootstrap_servers=bootstrap, topics=[topic], group_id=f"{prefix}-g",
            batch_max_wait_seconds=0.5,
        ),
        opensearch=OpenSearchConfig(hosts=[url], index_prefix=prefix, number_of_replicas=0),
        bulk_max_bytes=bulk_bytes,
        bulk_concurrency=concurrency,
    )  # fmt: skip
    before = metrics.sample("podlog_indexer_documents_total", {"outcome": "indexed"})
    indexer = Indexer(CommonConfig(), config, RetentionConfig(), health=Health())
    await indexer.start()
    task = asyncio.create_task(indexer.run())
    # Joining the group is a one-off cost (tansu holds a new group for half
    # the rebalance timeout); time the indexing from the assignment on.
    while not indexer.assignment():
        await asyncio.sleep(0.005)
    c0, t0 = cpu(), time.perf_counter()
    start_rss = peak_rss = rss_mib()
    try:
        while metrics.sample("podlog_indexer_documents_total", {"outcome": "indexed"}) - before < total:
            if task.done():
                task.result()
                raise SystemExit("indexer stopped early")
            await asyncio.sleep(0.01)
            peak_rss = max(peak_rss, rss_mib())
        seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
    finally:
        await indexer.stop()
        await asyncio.wait({task}, timeout=10)
    return seconds, cpu_s, peak_rss - start_rss


def drop_indices(url: str, prefixes: list[str]) -> None:
    """Delete a run's indices, so every run starts from the same server size."""
    client = OpenSearch(url, timeout=120)
    for prefix in prefixes:
        for row in client.cat.indices(index=f"{prefix}-*", format="json"):
            client.indices.delete(index=row["index"])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--full", action="store_true", help="200k records")
    parser.add_argument("--per-message", type=int, default=500, help="records per Kafka message")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--schema", type=int, choices=[1, 2], default=2,
                        help="message schema: 2 as agents write it (the indexer parses payloads), or 1")
    parser.add_argument("--bulk-bytes", type=int, default=5 * 1024 * 1024)
    parser.add_argument("--concurrency", type=int, default=2, help="indexer bulk_concurrency")
    parser.add_argument("--server", choices=["noida", "osmem"], default="noida")
    parser.add_argument("--kafka", default=None, help="use this running broker")
    parser.add_argument("--opensearch", default=None, help="use this running OpenSearch")
    args = parser.parse_args()
    total = 200_000 if args.full else args.records
    configure_logging("warning", fmt="json")

    from tests.fixtures.servers import start_noida, start_osmem, start_tansu

    logs = Path(tempfile.mkdtemp(prefix="podlog-bench-"))
    started = []
    try:
        if args.kafka:
            bootstrap = args.kafka
        else:
            started.append(start_tansu(logs))
            bootstrap = started[-1].url
        if args.opensearch:
            url = args.opensearch
        else:
            server = start_osmem(logs) if args.server == "osmem" else start_noida(logs, logs / "data")
            started.append(server)
            url = server.url
        base_rows: list[tuple[float, float]] = []
        idx_rows: list[tuple[float, float]] = []
        growths: list[float] = []
        ratios: list[float] = []
        for run in range(args.runs):
            records = make_records(total, run)
            values, records = encode(records, args.schema, args.per_message)
            size_mb = sum(map(len, values)) / 1e6
            stamp = time.monotonic_ns() % 10**9
            asyncio.run(produce(bootstrap, f"bench-{stamp}", values))
            topic, base_prefix, idx_prefix = f"bench-{stamp}", f"base{stamp}", f"idx{stamp}"

            # Each phase's indices are dropped right after it, so both start
            # from the same (empty) server.
            def baseline(prefix: str = base_prefix, docs: list[Any] = records) -> tuple[float, float]:
                result = run_baseline(url, prefix, docs, args.bulk_bytes)
                drop_indices(url, [prefix])
                return result

            def podlog_indexer(topic: str = topic, prefix: str = idx_prefix) -> tuple[float, float]:
                seconds, cpu_s, growth = asyncio.run(
                    run_indexer(bootstrap, url, topic, prefix, total, args.bulk_bytes, args.concurrency)
                )
                growths.append(growth)
                drop_indices(url, [prefix])
                return seconds, cpu_s

            # Alternate which goes first, so a server slowing down hurts both alike.
            if run % 2 == 0:
                b_s, b_cpu = baseline()
                i_s, i_cpu = podlog_indexer()
            else:
                i_s, i_cpu = podlog_indexer()
                b_s, b_cpu = baseline()
            base_rows.append((b_s, b_cpu))
            idx_rows.append((i_s, i_cpu))
            ratios.append(b_s / i_s)
            print(
                f"run {run + 1}: baseline {total / b_s:,.0f} docs/s ({b_cpu:.2f} CPU s) | "
                f"indexer {total / i_s:,.0f} docs/s ({i_cpu:.2f} CPU s)  ratio {b_s / i_s:.2f}",
                flush=True,
            )
        b_s = statistics.median(r[0] for r in base_rows)
        i_s = statistics.median(r[0] for r in idx_rows)
        b_cpu = statistics.median(r[1] for r in base_rows)
        i_cpu = statistics.median(r[1] for r in idx_rows)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"records {total}, {size_mb:.1f} MB of Kafka values, server {args.server if not args.opensearch else url}"
        )
        print(
            f"baseline helpers.bulk: {total / b_s:,.0f} docs/s  {size_mb / b_s:.1f} MB/s  "
            f"CPU {b_cpu:.2f} s  (median of {args.runs})"
        )
        print(
            f"podlog indexer:        {total / i_s:,.0f} docs/s  {size_mb / i_s:.1f} MB/s  "
            f"CPU {i_cpu:.2f} s  (median of {args.runs})"
        )
        print(
            f"peak RSS of this process: {peak_mb:.0f} MB (it also holds the baseline's documents); "
            f"rise while the indexer drained the backlog: {statistics.median(growths):.0f} MiB (median)"
        )
        print(f"ratio indexer/baseline: {statistics.median(ratios):.2f} (median of per-run ratios; target >= 0.80)")
    finally:
        for proc in reversed(started):
            proc.stop()
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
