"""Pod metadata cache: memory for N pods, and enrichment throughput.

Prints, for ``--pods`` realistic pods (8 labels, 7 annotations including a
~2 KB last-applied-configuration and an Istio status, 2 containers; ten
replicas per workload so label values repeat as in a real cluster):

* bytes per pod held by podlog's cache (tracemalloc, after the API objects
  are freed, each pod enriched once), against a baseline cache that keeps the decoded Pod objects
  as they arrive (what a naive watch cache holds), and the ratio;
* enrich lines/s for JSON application lines with API metadata, against a
  baseline that only ``orjson.loads`` each message, and the ratio;
* CPU seconds and peak RSS of the whole run.

Each figure is the median of ``--runs`` runs.  The documented budget is
checked at the end: ``collector.kube.cache.BUDGET_BYTES_PER_POD``.

Then, for each of ``--rss-pods`` (default 3,000 and 10,000), the resident
memory of the real pod watch in a child process against an in-process
list/watch server (``bench/kube_watch_rss.py``): RSS per pod once listed and
idle, the list-time peak per pod, and the compact cache size beside them,
against a baseline that keeps every decoded page of the list.

    python bench/kube_cache.py            # 10,000 pods, 3 runs (about 30 s)
    python bench/kube_cache.py --full     # 50,000 pods, 5 runs
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.enrichment import PathMeta
from collector.kube.cache import BUDGET_BYTES_PER_POD, PodCache
from collector.kube.config import KubernetesConfig
from collector.kube.enrich import ApiState, KubeEnricher
from collector.kube.metadata import KeyFilter, pod_from_api
from podlog.record import SourcePosition, make_record
from tests.fixtures.kube_api import filled_pod_cache, realistic_pods


def _traced(build: Any) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        held = build()
        gc.collect()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, held


def measure_cache_bytes(count: int) -> tuple[float, float]:
    """Bytes per pod: podlog's cache, and the baseline holding decoded objects."""
    config = KubernetesConfig()
    raw = [orjson.dumps(p) for p in realistic_pods(count)]  # what arrives on the wire

    def podlog_cache() -> PodCache:
        return filled_pod_cache(raw, config)

    def baseline_cache() -> dict[str, Any]:
        store: dict[str, Any] = {}
        for data in raw:
            obj = orjson.loads(data)
            store[obj["metadata"]["uid"]] = obj
        return store

    ours, cache = _traced(podlog_cache)
    base, store = _traced(baseline_cache)
    del cache, store
    return ours / count, base / count


def _record(message: str, offset: int = 0) -> dict[str, Any]:
    return make_record(
        position=SourcePosition("c", "node-a", "1:2:ff", 0, offset),
        timestamp="2026-11-27T00:00:00.000000000Z",
        timestamp_ns=0,
        message=message,
        stream="stdout",
        path="/var/log/pods/x/app/0.log",
    )


def measure_enrich(lines: int) -> tuple[float, float]:
    """Lines/s through enrich (API metadata + JSON payloads) and the orjson-only baseline."""
    config = KubernetesConfig()
    cache = PodCache(grace_seconds=300, max_pods=100)
    pods = realistic_pods(50)
    for obj in pods:
        pod = pod_from_api(
            obj,
            annotations=KeyFilter(config.annotations_allow, config.annotations_deny),
            labels=KeyFilter(["*"], []),
            max_annotation_value_bytes=4096,
        )
        assert pod is not None
        cache.upsert(pod)
    api = ApiState()
    api.synced = api.connected = True
    enricher = KubeEnricher(config, "node-a", cache, api)
    metas = [
        PathMeta(p["metadata"]["namespace"], p["metadata"]["name"], "app",
                 pod_uid=p["metadata"]["uid"], restart_count=0)
        for p in pods
    ]
    message = (
        '{"level":"info","ts":"2026-11-27T00:00:00Z","msg":"request served",'
        '"method":"GET","path":"/api/v1/items","status":200,"duration_ms":12.5,'
        '"user":{"id":42,"roles":["reader"]}}'
    )
    batch_size = 500
    batches = []
    for b in range(lines // batch_size):
        batches.append(
            (
                metas[b % len(metas)],
                [
                    _record(message, i)
                    for i in range(batch_size)
                ],
            )
        )
    total = len(batches) * batch_size
    started = time.perf_counter()
    for meta, records in batches:
        enricher.enrich(meta, records)
    ours = total / (time.perf_counter() - started)
    started = time.perf_counter()
    for _, records in batches:
        for record in records:
            orjson.loads(record["message"])
    base = total / (time.perf_counter() - started)
    return ours, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="50,000 pods, 500,000 lines, 5 runs")
    parser.add_argument("--rss-pods", type=int, nargs="*", default=[3_000, 10_000],
                        help="node sizes for the watch's RSS table (none: skip it)")
    args = parser.parse_args()
    if args.full:
        args.pods, args.lines, args.runs = 50_000, 500_000, 5
    cpu0 = time.process_time()
    cache_runs = [measure_cache_bytes(args.pods) for _ in range(args.runs)]
    ours = statistics.median(r[0] for r in cache_runs)
    base = statistics.median(r[1] for r in cache_runs)
    print(
        f"cache: {args.pods} pods  podlog {ours:,.0f} B/pod ({ours * args.pods / 2**20:.1f} MiB)"
        f"  baseline (decoded objects) {base:,.0f} B/pod ({base * args.pods / 2**20:.1f} MiB)"
        f"  ratio {ours / base:.3f}"
    )
    enrich_runs = [measure_enrich(args.lines) for _ in range(args.runs)]
    lps = statistics.median(r[0] for r in enrich_runs)
    base_lps = statistics.median(r[1] for r in enrich_runs)
    print(
        f"enrich: {args.lines} JSON lines  podlog {lps:,.0f} lines/s"
        f"  baseline (orjson.loads only) {base_lps:,.0f} lines/s  ratio {lps / base_lps:.3f}"
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cpu {time.process_time() - cpu0:.1f} s  peak rss {peak_mib:.0f} MiB  runs {args.runs}")
    verdict = "within" if ours <= BUDGET_BYTES_PER_POD else "OVER"
    print(f"budget: {BUDGET_BYTES_PER_POD} B/pod -> {verdict} ({ours:,.0f} B/pod)")
    if args.rss_pods:
        print("\nwatch RSS per pod on the node, list-time peak, compact cache (baseline: whole list kept)")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from kube_watch_rss import report

        report(args.rss_pods, args.runs)


if __name__ == "__main__":
    main()
