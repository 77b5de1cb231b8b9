"""Resident memory of the pod watch per pod on the node, and its peak while listing.

For each node size (``--pods``, default 300, 3,000 and 10,000 realistic pods,
see ``tests.fixtures.kube_api.realistic_pods``), an in-process list/watch API
server holds the pods and a fresh child process runs podlog's real
:class:`collector.kube.watch.PodWatcher` against it until the first list is in
the cache.  The child reports:

* ``rss/pod``: resident memory added, per pod, once listed and idle (after the
  heap trim the agent does when it turns idle);
* ``peak/pod``: the list-time peak above the start, per pod;
* ``cache/pod``: what the compact cache itself holds (tracemalloc);
* ``stop peak/pod``: the peak once the watch stopped, which writes the snapshot.

The baseline, in the same run: the same child, but the list keeps every
decoded page before converting them (what the watch did before it streamed
pages).  Each figure is the median of ``--runs`` children.

    python bench/kube_watch_rss.py
    python bench/kube_watch_rss.py --pods 3000 10000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NODE = "node-a"


def _high_water() -> int:
    """This process's peak resident set (VmHWM).  Not ``ru_maxrss``: across ``exec`` that keeps
    the high-water mark of the parent it was forked from, here the API server with every pod."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child(url: str, pods: int, mode: str) -> None:
    """Run the watch until listed; print one JSON line of figures."""
    from collector.kube import client as client_module
    from collector.kube.cache import PodCache
    from collector.kube.config import KubernetesConfig
    from collector.kube.enrich import ApiState
    from collector.kube.watch import PodWatcher
    from podlog.allocator import _libc, resident_bytes
    from podlog.logging import configure_logging

    configure_logging("warning")
    if mode == "whole":
        streaming = client_module.KubeClient.list

        async def whole_list(self: Any, path: str, params: Any, keep: Any) -> tuple[list[Any], str]:
            raw, version = await streaming(self, path, params, lambda item: item)
            return [v for v in map(keep, raw) if v is not None], version

        client_module.KubeClient.list = whole_list  # type: ignore[method-assign]

    libc = _libc()
    gc.collect()
    before = resident_bytes()
    # A generous request timeout: the server is one Python process paging 10,000 pods, and a
    # shared machine can make a page slower than the agent's default 10 s.
    config = KubernetesConfig(api_server=url, watch_namespaces=False, snapshot_interval_seconds=3600.0,
                              max_pods=max(pods * 2, 10), request_timeout_seconds=120.0)
    cache = PodCache(grace_seconds=300, max_pods=config.max_pods)
    api = ApiState()
    peaks: list[int] = []

    async def listed() -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as state:
            watcher = PodWatcher(config, cache, api, node_name=NODE, state_dir=Path(state))
            await watcher.start()
            task = asyncio.create_task(watcher.run())
            await asyncio.wait_for(api.ready.wait(), 300)
            peaks.append(_high_water())
            await watcher.stop()  # writes the snapshot: its peak is reported apart
            await task

    asyncio.run(listed())
    peak, stop_peak = peaks[0], _high_water()
    gc.collect()
    if libc is not None:
        libc.malloc_trim(0)
    after = resident_bytes()
    assert len(cache) == pods, (len(cache), pods)
    print(json.dumps({"rss": (after - before) / pods, "peak": (peak - before) / pods,
                      "stop_peak": (stop_peak - before) / pods,
                      "cache": asyncio.run(_compact_bytes(config)) / pods, "total": after - before}))


async def _compact_bytes(config: Any) -> int:
    """What the compact pods of one list hold (tracemalloc), pages freed as they go."""
    import tempfile

    from collector.kube.cache import PodCache
    from collector.kube.client import KubeClient, load_api_config
    from collector.kube.enrich import ApiState
    from collector.kube.watch import PodWatcher

    client = KubeClient(config, load_api_config(config))
    with tempfile.TemporaryDirectory() as state:
        watcher = PodWatcher(config, PodCache(grace_seconds=300, max_pods=config.max_pods), ApiState(),
                             node_name=NODE, state_dir=Path(state))
        gc.collect()
        tracemalloc.start()
        pods, _ = await client.list("/api/v1/pods", {"fieldSelector": f"spec.nodeName={NODE}"},
                                    watcher._pod)
        cache = PodCache(grace_seconds=300, max_pods=config.max_pods)
        cache.replace(pods)
        del pods
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    await client.close()
    return held


def run_child(url: str, pods: int, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(pods), mode],
        check=False, capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child ({pods} pods, {mode}) exited {out.returncode}:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[300, 3_000, 10_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("URL", "PODS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, pods, mode = args.child
        child(url, int(pods), mode)
        return
    report(args.pods, args.runs)


def report(sizes: list[int], runs: int) -> None:
    """Print the table for each node size in ``sizes``, medians of ``runs`` children per mode."""
    from collector.kube.cache import BUDGET_BYTES_PER_POD
    from tests.fixtures.kube_api import FakeKubeApi, realistic_pods

    print(f"{'pods':>7}  {'mode':<9} {'rss/pod':>9} {'peak/pod':>9} {'cache/pod':>10} "
          f"{'stop peak/pod':>14}  (medians of {runs})")
    worst = 0.0
    totals: list[tuple[int, float]] = []
    for count in sizes:
        api = FakeKubeApi().start()
        try:
            for pod in realistic_pods(count):
                pod["spec"]["nodeName"] = NODE
                api.add_pod(pod)
            figures: dict[str, list[dict[str, float]]] = {"streamed": [], "whole": []}
            for _ in range(runs):
                for mode in ("streamed", "whole"):  # alternating, same server, same pods
                    figures[mode].append(run_child(api.url, count, mode))
        finally:
            api.stop()
        for mode in ("streamed", "whole"):
            med = {k: statistics.median(r[k] for r in figures[mode])
                   for k in ("rss", "peak", "cache", "stop_peak")}
            label = mode if mode == "streamed" else "baseline"
            print(f"{count:>7}  {label:<9} {med['rss'] / 1024:>7.1f}Ki {med['peak'] / 1024:>7.1f}Ki "
                  f"{med['cache'] / 1024:>8.1f}Ki {med['stop_peak'] / 1024:>12.1f}Ki")
            if mode == "streamed":
                worst = max(worst, med["rss"])
                totals.append((count, statistics.median(r["total"] for r in figures[mode])))
    # The client, its TLS and HTTP state and the first allocations cost the same at any size:
    # what each further pod adds is the slope between two sizes.
    for (small, rss_small), (large, rss_large) in itertools.pairwise(totals):
        slope = (rss_large - rss_small) / (large - small)
        verdict = "within" if slope <= BUDGET_BYTES_PER_POD else "OVER"
        print(f"per added pod, {small:,} -> {large:,}: {slope / 1024:.1f} KiB rss "
              f"({verdict} the documented {BUDGET_BYTES_PER_POD / 1024:.1f} KiB)")
    print(f"rss/pod at most {worst / 1024:.1f} KiB (fixed costs included)")


if __name__ == "__main__":
    main()
