"""Search API overhead: /api/search and /api/export against the same queries sent to
OpenSearch directly (the baseline), plus the cost of parsing and translating a query.

Starts a local OpenSearch emulator (osmem, or noida-db with --server noida), indexes
generated records with the indexer's templates, serves the API in-process, and prints
per-run figures and medians:

    /tmp/venv/bin/python bench/search_api.py            # 5,000 records, 3 runs
    /tmp/venv/bin/python bench/search_api.py --full     # 50,000 records

Lines: requests/s and median latency for search pages, records/s for export, the
ratio API/direct, CPU seconds of this process, and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from opensearchpy import OpenSearch  # noqa: E402

from podlog.lifecycle import Health  # noqa: E402
from search.backends.base import SearchRequest  # noqa: E402
from search.backends.opensearch import OpenSearchBackend  # noqa: E402
from search.backends.opensearch_dsl import NEWEST_FIRST, build_filter, query_from_tree  # noqa: E402
from search.config import AuthConfig, GuardConfig, SearchConfig  # noqa: E402
from search.query import parse_query  # noqa: E402
from search.service import SearchService  # noqa: E402
from tests.fixtures.records import BASE_NS, MS, corpus  # noqa: E402
from tests.fixtures.servers import start_noida, start_osmem  # noqa: E402
from tests.integration.search.loading import opensearch_add, opensearch_load  # noqa: E402

QUERIES = ["", "level:error", '"connection refused" AND namespace:a', "pod:web-* -stream:stderr"]
PREFIX = "bench"


def load(url: str, records: int) -> int:
    per_stream = max(1, records // 5)
    data = corpus(per_stream, start_ns=BASE_NS)
    opensearch_load(url, PREFIX, [])
    client = OpenSearch([url], timeout=120)
    try:
        for start in range(0, len(data), 5000):
            opensearch_add(client, PREFIX, data[start : start + 5000])
    finally:
        client.close()
    return len(data)


def direct_body(q: str, size: int, end_ns: int, cursor: list[Any] | None = None) -> dict[str, Any]:
    request = SearchRequest(query=parse_query(q), start_ns=BASE_NS - MS, end_ns=end_ns, size=size)
    body: dict[str, Any] = {
        "query": {"bool": {"must": [query_from_tree(request.query)], "filter": build_filter(request)}},
        "sort": NEWEST_FIRST,
        "size": size,
        "track_total_hits": 100_000,
    }
    if cursor:
        body["search_after"] = cursor
    return body


def bench_parse(rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        for q in QUERIES:
            query_from_tree(parse_query(q))
    return (time.perf_counter() - started) / (rounds * len(QUERIES)) * 1e6


def bench_direct_search(client: OpenSearch, requests: int, end_ns: int) -> tuple[float, float]:
    latencies = []
    for i in range(requests):
        body = direct_body(QUERIES[i % len(QUERIES)], 100, end_ns)
        started = time.perf_counter()
        client.search(index=f"{PREFIX}-logs-*", body=body)
        latencies.append(time.perf_counter() - started)
    return len(latencies) / sum(latencies), statistics.median(latencies) * 1000


def bench_direct_export(client: OpenSearch, end_ns: int) -> float:
    started = time.perf_counter()
    cursor = None
    count = 0
    while True:
        result = client.search(index=f"{PREFIX}-logs-*", body=direct_body("", 1000, end_ns, cursor))
        hits = result["hits"]["hits"]
        count += len(hits)
        if len(hits) < 1000:
            break
        cursor = hits[-1]["sort"]
    return count / (time.perf_counter() - started)


async def bench_api(base: str, requests: int, end_ns: int) -> tuple[float, float, float]:
    params_range = {"start": str(BASE_NS // MS - 1), "end": str(end_ns // MS + 1)}
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for i in range(requests):
            params = {**params_range, "q": QUERIES[i % len(QUERIES)], "size": 100}
            started = time.perf_counter()
            response = await client.get("/api/search", params=params)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        count = 0
        async with client.stream("GET", "/api/export", params=params_range) as response:
            async for line in response.aiter_lines():
                count += bool(line)
        export_rate = count / (time.perf_counter() - started)
    return len(latencies) / sum(latencies), statistics.median(latencies) * 1000, export_rate


async def run_once(url: str, requests: int, end_ns: int) -> dict[str, float]:
    config = dataclasses.replace(
        SearchConfig(),
        listen="127.0.0.1:0",
        ops_listen="",
        index_prefix=PREFIX,
        auth=AuthConfig(mode="none"),
        guards=GuardConfig(max_export_records=10_000_000),
    )
    service = SearchService(config, OpenSearchBackend([url], PREFIX), health=Health())
    await service.start()
    try:
        client = OpenSearch([url], timeout=120)
        direct_rps, direct_ms = await asyncio.to_thread(bench_direct_search, client, requests, end_ns)
        direct_export = await asyncio.to_thread(bench_direct_export, client, end_ns)
        client.close()
        api_rps, api_ms, api_export = await bench_api(f"http://127.0.0.1:{service.port}", requests, end_ns)
    finally:
        await service.stop()
    return {
        "direct_rps": direct_rps,
        "direct_ms": direct_ms,
        "api_rps": api_rps,
        "api_ms": api_ms,
        "direct_export": direct_export,
        "api_export": api_export,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--full", action="store_true", help="50,000 records")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--server", choices=["noida", "osmem"], default="osmem")
    args = parser.parse_args()
    records = 50_000 if args.full else args.records
    with tempfile.TemporaryDirectory() as tmp:
        server = (
            start_noida(Path(tmp) / "logs", Path(tmp) / "data")
            if args.server == "noida"
            else start_osmem(Path(tmp) / "logs")
        )
        try:
            loaded = load(server.url, records)
            end_ns = BASE_NS + (records // 5) * MS
            print(f"server={args.server} records={loaded} requests/run={args.requests} runs={args.runs}")
            print(f"query parse+translate: {bench_parse(2000):.1f} us/query")
            cpu0 = time.process_time()
            results = []
            for run in range(args.runs):
                r = asyncio.run(run_once(server.url, args.requests, end_ns))
                results.append(r)
                print(
                    f"run {run + 1}: search direct {r['direct_rps']:.0f} req/s ({r['direct_ms']:.1f} ms) "
                    f"api {r['api_rps']:.0f} req/s ({r['api_ms']:.1f} ms); export direct "
                    f"{r['direct_export']:.0f} rec/s api {r['api_export']:.0f} rec/s"
                )
            cpu = time.process_time() - cpu0
        finally:
            server.stop()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(
        f"median search: direct {med('direct_rps'):.0f} req/s ({med('direct_ms'):.1f} ms), "
        f"api {med('api_rps'):.0f} req/s ({med('api_ms'):.1f} ms), api/direct ratio "
        f"{med('api_rps') / med('direct_rps'):.2f}"
    )
    print(
        f"median export: direct {med('direct_export'):.0f} rec/s, api {med('api_export'):.0f} rec/s, "
        f"api/direct ratio {med('api_export') / med('direct_export'):.2f}"
    )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cpu {cpu:.1f} s (this process: client, API server, JSON) peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
