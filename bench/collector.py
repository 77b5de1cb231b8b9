"""Collector throughput: a realistic backlog drained into a null sink and into the spool.

Generates a mix across many files (mostly 80-300 byte lines, some multi-KB
lines, Java stack traces, JSON app logs; Docker json-file files plus CRI files
with P/F partials), then, each in a fresh subprocess so peak RSS is its own:

* ``bare``: read 1 MiB chunks, split lines, ``orjson.loads`` each json-file
  line (``split`` for CRI): the floor any Python reader pays;
* ``records``: the bare loop, plus only what every line costs to become a
  record: its fields, its timestamp in ns (the collector's parser and
  cache) and the record itself (``RecordBuilder.build``, freed per chunk,
  with the collector's GC settings).  No pipeline, no joins, no
  enrichment: the best a collector that builds these records in Python
  could do, so ``records/bare`` bounds the collector's ratio;
* ``null``: the collector with decoding, partial joins and path enrichment,
  into a sink that drops batches;
* ``spool``: the same into the real on-disk spool (``fsync: interval``).

Every child starts with the glibc malloc settings every podlog process has
(``podlog.allocator.tune_malloc_as_configured``), the bare loop too.

Prints lines/s, MB/s, CPU seconds, CPU s per million lines and peak RSS,
median of ``--runs`` runs, and the collector/bare ratio from the same command.

    python bench/collector.py            # ~400k lines, about a minute
    python bench/collector.py --full     # 3.6M lines (~1 GiB), the issue's backlog
    python bench/collector.py --profile  # where the null mode's time goes (cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

# This script is named like the package it measures: keep its own directory
# off the import path so ``import collector`` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

HEX = "0123456789abcdef"


def _container_file(directory: Path, i: int) -> Path:
    cid = (HEX * 4)[i % 16 :] + (HEX * 4)[: i % 16]
    return directory / f"app-{i}-7d9f_bench_c{i}-{cid}.log"


def generate(directory: Path, total_lines: int, files: int, seed: int = 7) -> tuple[int, int]:
    """Write the backlog; returns (lines written, bytes written)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    per_file = total_lines // files
    words = ["GET", "POST", "user", "order", "cart", "payment", "id", "status", "ok", "failed",
             "retry", "cache", "hit", "miss", "latency_ms", "upstream", "request", "response",
             "db", "query", "timeout"]
    trace = ["java.lang.IllegalStateException: order not found"] + [
        f"\tat com.shop.svc.Handler{k}.handle(Handler{k}.java:{k * 7})" for k in range(12)
    ]
    written = nbytes = 0
    for f in range(files):
        cri = f % 4 == 3  # a quarter of the files are CRI, the rest Docker json-file
        out = bytearray()
        ns = 1_795_737_600_000_000_000 + f
        i = 0
        while i < per_file:
            ns += 1_000_003
            minute, second = (ns // 60_000_000_000) % 60, (ns // 1_000_000_000) % 60
            stamp = f"2026-11-27T00:{minute:02d}:{second:02d}.{ns % 1_000_000_000:09d}Z"
            roll = rng.random()
            if roll < 0.15:
                msg = orjson.dumps({"level": rng.choice(["info", "warn", "error"]),
                                    "msg": " ".join(rng.choices(words, k=rng.randint(5, 20))),
                                    "user": rng.randint(1, 10_000),
                                    "latency_ms": rng.randint(1, 900)}).decode()
                lines = [msg]
            elif roll < 0.17:
                lines = trace
            elif roll < 0.19:
                lines = ["x" * rng.randint(2000, 6000)]
            else:
                lines = [" ".join(rng.choices(words, k=rng.randint(10, 45)))]
            for text in lines:
                if cri:
                    if len(text) > 1000 and rng.random() < 0.5:  # CRI P/F partials
                        out += f"{stamp} stdout P {text[:800]}\n".encode()
                        out += f"{stamp} stdout F {text[800:]}\n".encode()
                        i += 2
                    else:
                        out += f"{stamp} stdout F {text}\n".encode()
                        i += 1
                else:
                    out += orjson.dumps({"log": text + "\n", "stream": "stdout", "time": stamp})
                    out += b"\n"
                    i += 1
        _container_file(directory, f).write_bytes(out)
        written += i
        nbytes += len(out)
    return written, nbytes


def _line_chunks(path: Path) -> Iterator[tuple[list[bytes], bool]]:
    """Each 1 MiB read of ``path`` as its whole lines, and whether the file is Docker json-file."""
    leftover = b""
    docker = None
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            data = leftover + chunk
            cut = data.rfind(b"\n") + 1
            leftover = data[cut:]
            parts = data[:cut].split(b"\n")
            parts.pop()
            if not parts:
                continue
            if docker is None:
                docker = parts[0].startswith(b"{")
            yield parts, docker


def bare(directory: Path) -> dict[str, float]:
    """Read 1 MiB chunks, split, decode each line: the floor."""
    lines = 0
    start, cpu = time.perf_counter(), time.process_time()
    for path in sorted(directory.iterdir()):
        for parts, docker in _line_chunks(path):
            if docker:
                for line in parts:
                    orjson.loads(line)
            else:
                for line in parts:
                    line.split(b" ", 3)
            lines += len(parts)
    return {"lines": lines, "wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def records(directory: Path) -> dict[str, float]:
    """The bare loop, and each line built into a record: what no collector can skip."""
    from collector.config import CollectorConfig
    from collector.parsers.entry import timestamp_ns
    from collector.pipeline import tune_gc
    from podlog.record import RecordBuilder, SharedMap, podlog_fields

    tune_gc(CollectorConfig().gc_gen0_threshold)
    lines = 0
    start, cpu = time.perf_counter(), time.process_time()
    for path in sorted(directory.iterdir()):
        build = RecordBuilder(
            cluster="bench", node="node-1", identity=str(path.stat().st_ino), generation=0,
            path=str(path), kubernetes=SharedMap(namespace="bench"), podlog=podlog_fields("path"),
        ).build
        offset = 0
        for parts, docker in _line_chunks(path):
            out = []
            for line in parts:
                if docker:
                    doc = orjson.loads(line)
                    time_text, stream, message = doc["time"], doc["stream"], doc["log"][:-1]
                else:
                    time_raw, stream_raw, _, message_raw = line.split(b" ", 3)
                    time_text, stream = time_raw.decode("ascii"), stream_raw.decode("ascii")
                    message = message_raw.decode()
                out.append(build(offset, time_text, timestamp_ns(time_text), message, stream))
                offset += len(line) + 1
            lines += len(parts)
            del out
    return {"lines": lines, "wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


class NullSink:
    """Drops batches; counts records."""

    def __init__(self) -> None:
        self.records = 0

    async def append(self, batch: object) -> None:
        self.records += len(batch.records)  # type: ignore[attr-defined]


async def _collect(directory: Path, state: Path, mode: str, expected: int) -> dict[str, float]:
    from collector.config import CollectorConfig
    from collector.kube.config import KubernetesConfig
    from collector.kube.enrich import build_enricher
    from collector.pipeline import Collector
    from podlog.config import CommonConfig
    from podlog.lifecycle import Health

    common = CommonConfig(cluster="bench", node_name="node-1", state_dir=str(state), http_listen="")
    enricher, _ = build_enricher(common, KubernetesConfig(enabled=False), Health())
    config = CollectorConfig(include=[str(directory / "*.log")], use_inotify=False)
    if mode == "spool":
        from shipper.config import SpoolConfig
        from shipper.spool import Spool

        sink: object = Spool(SpoolConfig(max_bytes=8 << 30, fsync="interval"), state / "spool")
        counter = NullSink()
        inner = sink.append  # type: ignore[attr-defined]

        async def append(batch: object) -> None:
            await inner(batch)
            counter.records += len(batch.records)  # type: ignore[attr-defined]

        sink.append = append  # type: ignore[attr-defined]
    else:
        counter = NullSink()
        sink = counter
    collector = Collector(common, config, sink=sink, enricher=enricher)  # type: ignore[arg-type]
    start, cpu = time.perf_counter(), time.process_time()
    await collector.start()
    task = asyncio.create_task(collector.run())
    while counter.records < expected:
        await asyncio.sleep(0.005)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    await collector.stop()
    await task
    return {"lines": counter.records, "wall": wall, "cpu": used}


async def _latency(directory: Path, state: Path, lines: int) -> dict[str, float]:
    """Write one line every 5 ms across 10 files; time from write to the sink's append."""
    import threading

    from collector.config import CollectorConfig
    from collector.kube.config import KubernetesConfig
    from collector.kube.enrich import build_enricher
    from collector.pipeline import Collector
    from podlog.config import CommonConfig
    from podlog.lifecycle import Health
    from shipper.config import SpoolConfig
    from shipper.spool import Spool

    directory.mkdir(parents=True, exist_ok=True)
    files = [_container_file(directory, i) for i in range(10)]
    for path in files:
        path.write_bytes(b"")
    common = CommonConfig(cluster="bench", node_name="node-1", state_dir=str(state), http_listen="")
    enricher, _ = build_enricher(common, KubernetesConfig(enabled=False), Health())
    spool = Spool(SpoolConfig(fsync="batch"), state / "spool")
    delays: list[float] = []
    inner = spool.append

    async def append(batch: object) -> None:
        await inner(batch)  # type: ignore[arg-type]
        now = time.perf_counter_ns()
        for record in batch.records:  # type: ignore[attr-defined]
            delays.append((now - int(record["message"].split()[1])) / 1e6)

    spool.append = append  # type: ignore[method-assign]
    config = CollectorConfig(include=[str(directory / "*.log")])
    collector = Collector(common, config, sink=spool, enricher=enricher)
    await collector.start()
    task = asyncio.create_task(collector.run())

    def write() -> None:
        for i in range(lines):
            with files[i % len(files)].open("ab") as f:
                f.write(b'{"log":"tick %d\\n","stream":"stdout","time":"2026-11-27T00:00:00.1Z"}\n'
                        % time.perf_counter_ns())
            time.sleep(0.005)

    writer = threading.Thread(target=write)
    writer.start()
    while len(delays) < lines:
        await asyncio.sleep(0.05)
    writer.join()
    await collector.stop()
    await task
    delays.sort()
    return {"lines": lines, "p50_ms": delays[len(delays) // 2],
            "p99_ms": delays[int(len(delays) * 0.99) - 1], "max_ms": delays[-1]}


async def _idle(directory: Path, state: Path, files: int) -> dict[str, float]:
    """Open ``files`` one-line files, then idle: RSS and CPU of an agent with many files."""
    from collector.config import CollectorConfig
    from collector.kube.config import KubernetesConfig
    from collector.kube.enrich import build_enricher
    from collector.pipeline import Collector
    from podlog.config import CommonConfig
    from podlog.lifecycle import Health

    directory.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        _container_file(directory, i).write_bytes(
            b'{"log":"hello\\n","stream":"stdout","time":"2026-11-27T00:00:00.1Z"}\n')
    common = CommonConfig(cluster="bench", node_name="node-1", state_dir=str(state), http_listen="")
    enricher, _ = build_enricher(common, KubernetesConfig(enabled=False), Health())
    sink = NullSink()
    collector = Collector(common, CollectorConfig(include=[str(directory / "*.log")]),
                          sink=sink, enricher=enricher)
    await collector.start()
    task = asyncio.create_task(collector.run())
    while sink.records < files:
        await asyncio.sleep(0.05)
    cpu = time.process_time()
    await asyncio.sleep(10)
    idle_cpu = time.process_time() - cpu
    rss = _current_rss_mib()
    open_files = len(collector.tracker.tailers)
    await collector.stop()
    await task
    return {"files": open_files,
            "idle_cpu_per_s": idle_cpu / 10, "rss_now_mib": rss}


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def profile(directory: Path, expected: int, top: int = 30) -> None:
    """The null mode once in this process under cProfile: the functions with the most own time."""
    import cProfile
    import importlib
    import pstats

    for module in ("collector.pipeline", "collector.kube.enrich", "collector.config", "podlog.lifecycle"):
        importlib.import_module(module)  # imported before profiling, as the timed modes do
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="podlog-bench-state-") as state:
        profiler.enable()
        result = asyncio.run(_collect(directory, Path(state), "null", expected))
        profiler.disable()
    print(f"null mode under cProfile: {result['lines']:.0f} records, {result['cpu']:.2f} CPU s "
          "(profiling inflates Python calls)")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def child(args: argparse.Namespace) -> None:
    from podlog.allocator import tune_malloc_as_configured
    from podlog.config import CommonConfig

    # The allocator settings every podlog process starts with (``podlog agent`` and
    # ``podlog run`` apply them before anything else); the bare loop gets them too.
    tune_malloc_as_configured(CommonConfig())
    directory = Path(args.dir)
    if args.child == "bare":
        result = bare(directory)
    elif args.child == "records":
        result = records(directory)
    else:
        # The state directory holds the spool and the checkpoints: a spool run
        # leaves hundreds of MiB, so it goes with the child's run.
        with tempfile.TemporaryDirectory(prefix="podlog-bench-state-") as tmp:
            state = Path(tmp)
            if args.child == "latency":
                result = asyncio.run(_latency(directory / "latency", state, 400))
            elif args.child == "idle":
                result = asyncio.run(_idle(directory / "idle", state, 500))
            else:
                result = asyncio.run(_collect(directory, state, args.child, args.expected))
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(mode: str, directory: Path, expected: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--dir", str(directory),
         "--expected", str(expected)],
        check=False, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=400_000, help="lines in the backlog")
    parser.add_argument("--files", type=int, default=40, help="files the backlog is spread over")
    parser.add_argument("--runs", type=int, default=5, help="runs per mode (median reported)")
    parser.add_argument("--full", action="store_true", help="the issue's 3.6M-line backlog")
    parser.add_argument("--modes", default="bare,records,null,spool",
                        help="comma-separated: bare, records, null, spool, latency, idle")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing, profile the null mode once (cProfile, top functions)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.full:
        args.lines = 3_600_000
    with tempfile.TemporaryDirectory(prefix="podlog-bench-") as tmp:
        directory = Path(tmp) / "containers"
        lines, nbytes = generate(directory, args.lines, args.files)
        expected = _expected_records(directory)
        if args.profile:
            from podlog.logging import configure_logging

            configure_logging("warning")  # not the collector's per-file lines
            profile(directory, expected)
            return
        print(f"backlog: {lines} lines, {expected} records, {nbytes / 2**20:.1f} MiB, "
              f"{args.files} files; {args.runs} runs per mode (median)")
        results: dict[str, dict[str, float]] = {}
        modes = args.modes.split(",")
        if "latency" in modes:
            r = run_child("latency", Path(tmp), 0)
            print(f"latency: write -> spool append (fsync per batch), {r['lines']:.0f} lines at "
                  f"200/s: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                  f"max {r['max_ms']:.1f} ms")
        if "idle" in modes:
            r = run_child("idle", Path(tmp), 0)
            print(f"idle: {r['files']:.0f} files open: RSS {r['rss_now_mib']:.1f} MiB "
                  f"(peak {r['rss_mib']:.1f}), CPU {r['idle_cpu_per_s'] * 100:.1f}% of a core")
        for mode in [m for m in modes if m not in ("latency", "idle")]:
            runs = [run_child(mode, directory, expected) for _ in range(args.runs)]
            wall = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs)
            rss = statistics.median(r["rss_mib"] for r in runs)
            results[mode] = {"wall": wall}
            print(f"{mode:>6}: {lines / wall:>10,.0f} lines/s  {nbytes / 2**20 / wall:7.1f} MB/s  "
                  f"cpu {cpu:6.2f} s  ({cpu / lines * 1e6:5.2f} s per M lines)  "
                  f"peak RSS {rss:6.1f} MiB")
        if "bare" in results:
            for mode in ("records", "null", "spool"):
                if mode in results:
                    print(f"ratio {mode}/bare: {results['bare']['wall'] / results[mode]['wall']:.2f}x")


def _expected_records(directory: Path) -> int:
    count = 0
    for path in directory.iterdir():
        data = path.read_bytes()
        count += data.count(b"\n") - data.count(b" stdout P ")
    return count


if __name__ == "__main__":
    main()
