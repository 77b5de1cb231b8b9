"""Single-node mode: embedded index throughput, query latency and disk per line.

Each run is a fresh process that generates realistic records (not timed) and
writes them in batches of 2048, as the shipper does, into:

* ``embedded``: :class:`search.backends.embedded.EmbeddedIndex` (FTS5, the
  unique event.id index, the file-order links, dictionary tokens), fed as
  the shipper feeds it: each batch as the spool reads it (JSON encodings,
  not yet decoded; encoding them is not timed) through
  :class:`shipper.embedded.EmbeddedTransport`, ``shipper.max_in_flight_sends``
  batches in flight; then,
  on the last run, it answers timed queries;
* ``baseline``: the floor: the same records encoded with orjson into a plain
  SQLite table (no full-text, no indexes), same WAL and fsync settings.

Printed per variant: lines/s, MB/s (record JSON), CPU s, peak RSS, the median
of the runs, and the ratio embedded/baseline.  Then query latency p50/p95 of a
filtered full-text query (newest 100 of ``<word>`` in one namespace, with its
total) and of a histogram of the same query (60 buckets), over the whole data
set with nanosecond bounds as the API sends them, and disk bytes per line.

    python bench/single_node.py              # 300k lines, 3 runs (~1-2 minutes)
    python bench/single_node.py --full       # 5M lines, 3 runs (targets: 50k lines/s, p95 < 300 ms)
    python bench/single_node.py --lines 1000000 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 2048
NAMESPACES = [f"team-{i:02d}" for i in range(16)]
PODS_PER_NAMESPACE = 12
SPAN_NS = 24 * 3600 * 1_000_000_000
T0 = 1_795_737_600_000_000_000
WORDS = ("error", "timeout", "refused")
_TEMPLATES = (
    ("info", "GET /api/items/{n} 200 {ms}ms user={user}"),
    ("info", "POST /api/orders 201 {ms}ms user={user} items={k}"),
    ("info", "cache hit ratio 0.{n} for key items:{k}"),
    ("warning", "slow query took {ms}ms on table orders shard {k}"),
    ("error", "connection refused to db-{k}:5432 attempt {n}"),
    ("error", "timeout waiting for lock order-{n} after {ms}ms"),
    ("info", "healthz ok"),
    ("debug", "request id {n} routed to backend {k}"),
)
_WEIGHTS = (30, 15, 15, 6, 2, 2, 20, 10)


def generate(count: int, seed: int = 1, size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    """Batches of records over one day: 16 namespaces, 192 pods, ~4% errors."""
    from podlog.record import SourcePosition, format_timestamp_ns, make_record

    rnd = random.Random(seed)
    offsets: dict[int, int] = {}
    step = SPAN_NS // max(1, count)
    batch: list[dict[str, Any]] = []
    for i in range(count):
        pod_index = rnd.randrange(len(NAMESPACES) * PODS_PER_NAMESPACE)
        namespace = NAMESPACES[pod_index // PODS_PER_NAMESPACE]
        level, template = rnd.choices(_TEMPLATES, _WEIGHTS)[0]
        message = template.format(
            n=rnd.randrange(100_000), ms=rnd.randrange(1, 900), user=rnd.choice(("alice", "bob", "carol")),
            k=rnd.randrange(16),
        )
        ts = T0 + i * step + rnd.randrange(step or 1)
        offset = offsets.get(pod_index, 0)
        offsets[pod_index] = offset + len(message) + 40
        pod = f"{namespace}-api-7d9f8b6c4-{pod_index:05d}"
        batch.append(
            make_record(
                position=SourcePosition("bench", "node-1", f"2049:{10_000 + pod_index}:abcd", 0, offset),
                timestamp=format_timestamp_ns(ts),
                timestamp_ns=ts,
                message=message,
                stream="stderr" if level == "error" else "stdout",
                path=f"/var/log/containers/{pod}_{namespace}_api-{pod_index:064x}.log",
                level=level,
                kubernetes={
                    "namespace": namespace,
                    "pod": {"name": pod, "uid": f"uid-{pod_index}"},
                    "container": {"name": "api", "id": f"{pod_index:064x}", "image": "shop/api:1.4.2",
                                  "restart_count": 0},
                    "node": {"name": "node-1"},
                    "labels": {"app": "api", "team": namespace},
                    "workload": {"kind": "Deployment", "name": f"{namespace}-api"},
                },
                metadata="api",
            )
        )
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _tune_gc() -> None:
    """The GC setting ``podlog run`` has (the collector's ``gc_gen0_threshold``, heap frozen)."""
    from collector.config import CollectorConfig
    from collector.pipeline import tune_gc

    tune_gc(CollectorConfig().gc_gen0_threshold)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


async def child_embedded(
    lines: int, directory: Path, queries: int, synchronous: str, batch_size: int
) -> dict[str, Any]:
    from podlog.retention import RetentionConfig
    from search.backends.embedded import EmbeddedIndex
    from search.config import EmbeddedConfig
    from shipper.config import ShipperConfig
    from shipper.embedded import EmbeddedTransport
    from shipper.records import EncodedRecords

    window = ShipperConfig().max_in_flight_sends
    index = EmbeddedIndex(EmbeddedConfig(synchronous=synchronous), RetentionConfig(), directory)
    transport = EmbeddedTransport(index)
    await index.start()
    wall = cpu = 0.0
    size = 0
    batches = generate(lines, size=batch_size)
    while True:
        # Generate and encode a chunk (not timed), as the spool holds it: encodings only,
        # decoded by the receiver.  Then send it with as many batches in flight as
        # the shipper keeps (shipper.max_in_flight_sends), commits in order.
        chunk: list[EncodedRecords] = []
        for _, batch in zip(range(25), batches, strict=False):
            encoded = EncodedRecords.from_records(batch)
            chunk.append(EncodedRecords(encoded.runs, encoded.groups))
        if not chunk:
            break
        size += sum(len(run.data) - len(run.lengths) + 1 for b in chunk for run in b.runs)
        c0, t0 = _cpu(), time.perf_counter()
        in_flight: list[asyncio.Task[None]] = []
        for encoded_batch in chunk:
            if len(in_flight) == window:
                await in_flight.pop(0)
            in_flight.append(asyncio.create_task(transport.send(encoded_batch)))
        await asyncio.gather(*in_flight)
        wall += time.perf_counter() - t0
        cpu += _cpu() - c0
    result: dict[str, Any] = {
        "lines_s": lines / wall, "mb_s": size / wall / 1e6, "cpu_s": cpu, "rss_mb": _rss_mb(),
        "bytes_per_line": _disk(directory) / lines,
    }
    if queries:
        result.update(await time_queries(index, queries))
    await index.stop()
    result["bytes_per_line"] = _disk(directory) / lines
    return result


async def time_queries(index: Any, count: int) -> dict[str, Any]:
    from search.backends.base import SearchRequest
    from search.query import parse_query

    start, end = T0 - 1_234_567, T0 + SPAN_NS + 7_654_321  # API-like, not millisecond aligned
    interval = (end - start) // 60 // 1_000_000 * 1_000_000
    search_ms: list[float] = []
    histogram_ms: list[float] = []
    everything_ms: list[float] = []
    totals: list[int] = []
    for i in range(count):
        request = SearchRequest(
            query=parse_query(WORDS[i % len(WORDS)]),
            start_ns=start,
            end_ns=end,
            filters={"namespace": [NAMESPACES[i % len(NAMESPACES)]]},
            size=100,
        )
        t0 = time.perf_counter()
        page = await index.search(request)
        search_ms.append((time.perf_counter() - t0) * 1000)
        totals.append(page.total)
        t0 = time.perf_counter()
        await index.histogram(request, interval)
        histogram_ms.append((time.perf_counter() - t0) * 1000)
        if i < 5:
            t0 = time.perf_counter()
            await index.histogram(SearchRequest(query=None, start_ns=start, end_ns=end), interval)
            everything_ms.append((time.perf_counter() - t0) * 1000)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "search_p50_ms": pct(search_ms, 0.5), "search_p95_ms": pct(search_ms, 0.95),
        "histogram_p50_ms": pct(histogram_ms, 0.5), "histogram_p95_ms": pct(histogram_ms, 0.95),
        "histogram_all_p50_ms": pct(everything_ms, 0.5), "median_total": statistics.median(totals),
    }


def child_baseline(lines: int, directory: Path, synchronous: str, batch_size: int) -> dict[str, Any]:
    import orjson

    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(directory / "plain.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("CREATE TABLE t (doc TEXT NOT NULL)")
    wall = cpu = 0.0
    size = 0
    for batch in generate(lines, size=batch_size):
        c0, t0 = _cpu(), time.perf_counter()
        rows = [(orjson.dumps(r).decode(),) for r in batch]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (doc) VALUES (?)", rows)
        conn.execute("COMMIT")
        wall += time.perf_counter() - t0
        cpu += _cpu() - c0
        size += sum(len(r[0]) for r in rows)
    conn.close()
    return {"lines_s": lines / wall, "mb_s": size / wall / 1e6, "cpu_s": cpu, "rss_mb": _rss_mb(),
            "bytes_per_line": _disk(directory) / lines}


def run_child(
    variant: str, lines: int, directory: Path, queries: int, synchronous: str, batch_size: int
) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--lines", str(lines), "--dir", str(directory),
         "--queries", str(queries), "--synchronous", synchronous, "--batch", str(batch_size)],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--full", action="store_true", help="5 million lines")
    parser.add_argument("--child", choices=("embedded", "baseline"))
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--batch", type=int, default=BATCH,
                        help=f"records per send (default {BATCH}; the shipper sends up to "
                             "shipper.max_send_records / max_send_bytes when it has a backlog)")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full",
                        help="embedded.synchronous for both variants (default full, as shipped)")
    args = parser.parse_args()
    lines = args.lines or (5_000_000 if args.full else 300_000)
    if args.child:
        _tune_gc()
    if args.child == "embedded":
        print(json.dumps(asyncio.run(child_embedded(lines, args.dir, args.queries, args.synchronous, args.batch))))
        return
    if args.child == "baseline":
        print(json.dumps(child_baseline(lines, args.dir, args.synchronous, args.batch)))
        return
    results: dict[str, list[dict[str, Any]]] = {"embedded": [], "baseline": []}
    root = Path(tempfile.mkdtemp(prefix="podlog-bench-"))
    try:
        for run in range(args.runs):
            for variant in ("baseline", "embedded"):
                directory = root / f"{variant}-{run}"
                last = variant == "embedded" and run == args.runs - 1
                results[variant].append(
                    run_child(
                        variant, lines, directory, args.queries if last else 0, args.synchronous, args.batch
                    )
                )
                shutil.rmtree(directory, ignore_errors=True)
                print(f"  run {run + 1} {variant}: {results[variant][-1]['lines_s']:,.0f} lines/s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nsingle-node index, {lines:,} lines, median of {args.runs} runs (batches of {args.batch}, "
          f"synchronous={args.synchronous})")
    medians: dict[str, dict[str, float]] = {}
    for variant, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("lines_s", "mb_s", "cpu_s", "rss_mb",
                                                                    "bytes_per_line")}
        medians[variant] = med
        print(f"  {variant:9} {med['lines_s']:>10,.0f} lines/s {med['mb_s']:7.1f} MB/s "
              f"{med['cpu_s']:7.1f} CPU s {med['rss_mb']:7.0f} MB peak RSS {med['bytes_per_line']:6.0f} B/line")
    ratio = medians["embedded"]["lines_s"] / medians["baseline"]["lines_s"]
    print(f"  ratio embedded/baseline: {ratio:.2f}  (target: >= 50,000 lines/s)")
    q = results["embedded"][-1]
    if "search_p50_ms" in q:
        print(f"  filtered full-text (word + namespace, newest 100 + total ~{q['median_total']:,.0f}): "
              f"p50 {q['search_p50_ms']:.1f} ms  p95 {q['search_p95_ms']:.1f} ms  (target p95 < 300 ms)")
        print(f"  histogram of that query (60 buckets): p50 {q['histogram_p50_ms']:.1f} ms  "
              f"p95 {q['histogram_p95_ms']:.1f} ms  (target p95 < 300 ms)")
        print(f"  histogram of everything (60 buckets): p50 {q['histogram_all_p50_ms']:.1f} ms")


if __name__ == "__main__":
    main()
