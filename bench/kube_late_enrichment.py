"""Late enrichment: lines of pods the API has not reported yet, shipped as ``path`` or held.

Issue #31 asks whether records that leave with path metadata during an API
outage should be enriched later (an indexer update keyed by ``event.id``) or
held within a bound.  This runs the real agent (``build_enricher`` + the pod
watch + :class:`collector.pipeline.Collector`, default settings) in a fresh
child process against an in-process list/watch API server, once per
``kubernetes.hold_unknown_seconds`` in ``--holds`` (0 is the behaviour before
holding):

* ``--pods`` pods (default 50) write ``--rate`` lines/s each from the start;
* after ``--before`` seconds the API server goes away for ``--outage``
  seconds (stopped: connection refused), and ``--new`` pods are created
  meanwhile, one a second; their files get lines at the same rate;
* the API comes back (the watch reconnects after its backoff, default
  settings), writing goes on for ``--after`` seconds, then the child waits
  until every line was delivered.

Per run it prints: the new pods' lines shipped with ``path`` metadata (what an
indexer update would have to rewrite: one more write each), their delivery
latency (written -> handed to the sink; p50 and max) against the latency of
the lines of pods known before the outage, lines delivered twice or never,
the expired holds, the child's peak RSS and CPU seconds, and how long after
the API came back the watch reconnected (its backoff).

    python bench/kube_late_enrichment.py                 # holds 0, 5 and 30 s (about 2 min)
    python bench/kube_late_enrichment.py --holds 0 30 --outage 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NODE = "node-a"


def _high_water() -> int:
    """Peak resident set of this process (VmHWM, see bench/kube_watch_rss.py)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# -- the child: the agent ---------------------------------------------------------------------


class _Sink:
    """Latency and metadata source per delivered line; nothing kept per record but a key."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()
        self.duplicates = 0
        self.latency: dict[str, list[float]] = {"old": [], "new": []}
        self.path = {"old": 0, "new": 0}

    async def append(self, batch: Any) -> None:
        now = time.time()
        for record in batch.records:
            pod, seq, written = record["message"].split(" ")
            key = (pod, int(seq))
            if key in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(key)
            group = "new" if pod.startswith("new-") else "old"
            self.latency[group].append(now - float(written))
            if record["podlog"]["metadata"] == "path":
                self.path[group] += 1


def child(url: str, logs: str, state: str, control: str, hold: float) -> None:
    """Run the agent until the control file says how many lines to expect and all came."""
    import dataclasses

    from collector.config import CollectorConfig
    from collector.kube.config import KubernetesConfig
    from collector.kube.enrich import KubeEnricher, build_enricher
    from collector.pipeline import Collector
    from podlog.config import CommonConfig
    from podlog.lifecycle import Health
    from podlog.logging import configure_logging
    from podlog.metrics import sample

    configure_logging("error")
    common = CommonConfig(cluster="bench", node_name=NODE, state_dir=state, http_listen="")
    kube = dataclasses.replace(KubernetesConfig(api_server=url), hold_unknown_seconds=hold)
    sink = _Sink()

    async def run() -> dict[str, Any]:
        enricher, services = build_enricher(common, kube, Health())
        assert isinstance(enricher, KubeEnricher)
        (watcher,) = services
        await watcher.start()
        watch_task = asyncio.create_task(watcher.run())
        collector = Collector(
            common, CollectorConfig(include=[f"{logs}/pods/*/*/*.log"]), sink=sink, enricher=enricher
        )
        await collector.start()
        collect_task = asyncio.create_task(collector.run())
        Path(control, "ready").touch()
        expected_file = Path(control, "expected")
        held_max = 0
        lost_at = back_at = 0.0
        while True:
            held_max = max(held_max, enricher.streams_held)
            if not watcher._api.connected and not lost_at:
                lost_at = time.time()
            elif watcher._api.connected and lost_at and not back_at:
                back_at = time.time()
            if expected_file.exists() and len(sink.seen) >= int(expected_file.read_text()):
                break
            await asyncio.sleep(0.05)
        await collector.stop()
        await collect_task
        await watcher.stop()
        await watch_task
        api_back = float(Path(control, "api_back").read_text())
        return {"held_max": held_max, "reconnect": back_at - api_back if back_at else None,
                "expired": sample("podlog_collector_kube_hold_expired_total")}

    figures = asyncio.run(run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        **figures,
        "delivered": len(sink.seen),
        "duplicates": sink.duplicates,
        "path": sink.path,
        "latency": sink.latency,
        "peak_rss": _high_water(),
        "cpu": usage.ru_utime + usage.ru_stime,
    }))


# -- the parent: API server, writers, the outage ------------------------------------------------


class _Writers:
    """One thread appending ``rate`` CRI lines a second to every started pod's file."""

    def __init__(self, logs: Path, rate: int) -> None:
        self._logs = logs
        self._interval = 1.0 / rate
        self._files: dict[str, Any] = {}
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writers", daemon=True)

    def add(self, pod: dict[str, Any]) -> None:
        md = pod["metadata"]
        directory = self._logs / "pods" / f"{md['namespace']}_{md['name']}_{md['uid']}" / "app"
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._files[md["name"]] = (directory / "0.log").open("ab", buffering=0)
            self._seq[md["name"]] = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        for handle in self._files.values():
            handle.close()
        return sum(self._seq.values())

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                stamp = time.time()
                for name, handle in self._files.items():
                    seq = self._seq[name]
                    handle.write(f"2026-11-27T00:00:00.000000000Z stdout F {name} {seq} {stamp:.6f}\n"
                                 .encode())
                    self._seq[name] = seq + 1
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def run_once(args: argparse.Namespace, hold: float) -> dict[str, Any]:
    from tests.fixtures.kube_api import FakeKubeApi, make_pod

    api = FakeKubeApi().start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        logs, state, control = root / "logs", root / "state", root / "control"
        control.mkdir()
        writers = _Writers(logs, args.rate)
        for i in range(args.pods):
            writers.add(api.add_pod(make_pod(f"old-{i}", labels={"app": f"old-{i % 5}"})))
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", api.url, str(logs), str(state), str(control), str(hold)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while not (control / "ready").exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the agent did not start")
                time.sleep(0.05)
            writers.start()
            time.sleep(args.before)
            api.stop()  # the API server goes away: connection refused
            outage_end = time.monotonic() + args.outage
            for i in range(args.new):
                time.sleep(min(1.0, max(0.0, outage_end - time.monotonic()) / max(1, args.new - i)))
                writers.add(api.add_pod(make_pod(f"new-{i}", labels={"app": "new"})))
            time.sleep(max(0.0, outage_end - time.monotonic()))
            api.start()  # back on the same port, with the new pods
            (control / "api_back").write_text(f"{time.time():.6f}")
            time.sleep(args.after)
            written = writers.stop()
            (control / "expected").write_text(str(written))
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
            api.stop()
    figures = dict(json.loads(out.strip().splitlines()[-1]))
    figures["written"] = written
    figures["new_written"] = len(figures["latency"]["new"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holds", type=float, nargs="+", default=[0.0, 5.0, 30.0],
                        help="hold_unknown_seconds per run (0: ship as path at once)")
    parser.add_argument("--pods", type=int, default=50, help="pods known before the outage")
    parser.add_argument("--new", type=int, default=10, help="pods created during the outage")
    parser.add_argument("--rate", type=int, default=20, help="lines/s per pod")
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--outage", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=15.0)
    parser.add_argument("--child", nargs=5, metavar=("URL", "LOGS", "STATE", "CONTROL", "HOLD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, logs, state, control, hold = args.child
        child(url, logs, state, control, float(hold))
        return
    print(f"{args.pods} pods at {args.rate} lines/s, API away {args.outage:.0f} s, "
          f"{args.new} pods created meanwhile; default agent settings")
    print(f"{'hold':>5}  {'new lines':>9} {'as path':>8} {'path %':>7}  {'new p50':>8} {'new max':>8}  "
          f"{'old p50':>8} {'old max':>8}  {'dup':>4} {'lost':>5} {'expired':>7} {'held max':>8}  "
          f"{'peak RSS':>9} {'CPU s':>6}  {'reconnect':>9}")
    for hold in args.holds:
        f = run_once(args, hold)
        new, old = f["latency"]["new"], f["latency"]["old"]
        lost = f["written"] - f["delivered"]
        share = 100.0 * f["path"]["new"] / max(1, len(new))
        print(f"{hold:>4.0f}s  {len(new):>9} {f['path']['new']:>8} {share:>6.1f}%  "
              f"{statistics.median(new):>7.3f}s {max(new):>7.3f}s  "
              f"{statistics.median(old):>7.3f}s {max(old):>7.3f}s  "
              f"{f['duplicates']:>4} {lost:>5} {f['expired']:>7.0f} {f['held_max']:>8}  "
              f"{f['peak_rss'] / 2**20:>7.1f}Mi {f['cpu']:>6.1f}  "
              + (f"{f['reconnect']:>8.1f}s" if f["reconnect"] is not None else f"{'not yet':>9}"))
        if f["path"]["old"]:
            print(f"       ({f['path']['old']} lines of pods known before the outage left as path)")
    print("An indexer update by event.id would rewrite each 'as path' line once more, after the "
          "window in which search shows it without labels.")


if __name__ == "__main__":
    main()
