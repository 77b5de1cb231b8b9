"""Size the manifests: run agent, indexer and search as in docker-compose.yml, measure them.

No Docker here, so the compose topology runs natively: the same podlog
processes with the same config files (deploy/compose/*.yaml), Kafka and
OpenSearch replaced by the test servers (tansu, osmem-server or noida-db),
host names replaced through ``PODLOG_*`` overrides.  Each run writes a burst of
CRI log lines into container-style files, starts the three processes and
waits until OpenSearch holds every line, then prints, per process, CPU
seconds and peak RSS, and end to end lines/s and MB/s, with a baseline measured
in the same command: reading and splitting the same files in plain Python.

    /tmp/venv/bin/python deploy/sizing.py               # 3 runs of 50,000 lines
    /tmp/venv/bin/python deploy/sizing.py --full        # 3 runs of 500,000 lines
    /tmp/venv/bin/python deploy/sizing.py --agent-only --full   # the agent alone into Kafka

It is also the check that the compose configs work end to end: a run fails if
a process never becomes ready or the lines never all arrive.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.servers import (  # noqa: E402 - the repository root is put on the path first
    ManagedProcess,
    free_port,
    start_noida,
    start_osmem,
    start_podlog,
    start_tansu,
    wait_for,
)

COMPOSE = REPO / "deploy" / "compose"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NAMESPACES = ("shop", "data", "kube-system", "monitoring")


@dataclass
class Usage:
    """What one process used during a run."""

    cpu_seconds: float
    peak_rss_mb: float


@dataclass
class Run:
    """One run's figures."""

    lines: int
    megabytes: float
    seconds: float
    baseline_lines_per_second: float
    usage: dict[str, Usage]

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds


def usage(process: ManagedProcess) -> Usage:
    """CPU seconds (user + system) and peak RSS of a live process, from /proc."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    peak_kb = 0
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    return Usage(cpu_seconds=cpu, peak_rss_mb=peak_kb / 1024)


def write_logs(directory: Path, lines: int, files: int) -> int:
    """Write ``lines`` CRI lines over ``files`` container-style files; returns bytes."""
    directory.mkdir(parents=True)
    per_file = lines // files
    total = 0
    start_ns = time.time_ns() - lines * 1000
    for index in range(files):
        namespace = NAMESPACES[index % len(NAMESPACES)]
        pod = f"load-{index}-7d9f8b6c4-x2k9p"
        digest = hashlib.sha256(pod.encode()).hexdigest()
        path = directory / f"{pod}_{namespace}_app-{digest}.log"
        chunk = []
        for n in range(per_file):
            stamp = _rfc3339(start_ns + (index * per_file + n) * 1000)
            message = (
                f'{{"level":"info","msg":"request served","path":"/api/items/{n % 500}",'
                f'"status":200,"duration_ms":{n % 97},"line":{n}}}'
            )
            chunk.append(f"{stamp} stdout F {message}\n")
        data = "".join(chunk).encode()
        path.write_bytes(data)
        total += len(data)
    return total


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def baseline(directory: Path) -> float:
    """Lines/s of plain Python reading the files and splitting them into lines."""
    started = time.perf_counter()
    count = 0
    for path in sorted(directory.glob("*.log")):
        with path.open("rb") as handle:
            for _ in handle:
                count += 1
    return count / (time.perf_counter() - started)


def count_indexed(opensearch: str, prefix: str) -> int:
    """Documents in the run's log indices (searchable ones: refresh_interval is 1 s)."""
    try:
        body = _request("GET", f"{opensearch}/{prefix}-logs-*/_count")
    except OSError:
        return 0
    return int(body.get("count", 0))


def _request(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method)  # noqa: S310 - local test servers only
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def one_run(index: int, work: Path, kafka: str, opensearch: str, lines: int, files: int) -> Run:
    """Write the load, start indexer, search and agent, wait for every line in the index."""
    run_dir = work / f"run-{index}"
    logs = run_dir / "containers"
    size = write_logs(logs, lines, files)
    lines = (lines // files) * files
    base = baseline(logs)
    prefix = f"sizing{index}"
    topic = f"sizing-{index}"
    ports = {"agent": free_port(), "indexer": free_port(), "search": free_port(), "search-ops": free_port()}
    common = {"PODLOG_PODLOG__LOG_LEVEL": "warning"}
    processes: dict[str, ManagedProcess] = {}
    try:
        processes["indexer"] = start_podlog(
            ["indexer", "--config", str(COMPOSE / "indexer.yaml")],
            run_dir / "out",
            {
                **common,
                "PODLOG_PODLOG__HTTP_LISTEN": f"127.0.0.1:{ports['indexer']}",
                "PODLOG_INDEXER__KAFKA__BOOTSTRAP_SERVERS": kafka,
                "PODLOG_INDEXER__KAFKA__TOPICS": f"[{topic}]",
                "PODLOG_INDEXER__KAFKA__GROUP_ID": f"sizing-{index}",
                "PODLOG_INDEXER__OPENSEARCH__HOSTS": f"[{opensearch}]",
                "PODLOG_INDEXER__OPENSEARCH__INDEX_PREFIX": prefix,
                "PODLOG_INDEXER__OPENSEARCH__REFRESH_INTERVAL": "1s",
            },
        )
        processes["search"] = start_podlog(
            ["search", "--config", str(COMPOSE / "search.yaml")],
            run_dir / "out",
            {
                **common,
                "PODLOG_SEARCH__LISTEN": f"127.0.0.1:{ports['search']}",
                "PODLOG_SEARCH__OPS_LISTEN": f"127.0.0.1:{ports['search-ops']}",
                "PODLOG_SEARCH__OPENSEARCH_HOSTS": f"[{opensearch}]",
                "PODLOG_SEARCH__INDEX_PREFIX": prefix,
            },
        )
        for name in ("indexer", "search-ops"):
            wait_for(lambda name=name: ready(ports[name]), 60, f"{name} ready", interval=0.2)
        started = time.perf_counter()
        processes["agent"] = start_podlog(
            ["agent", "--config", str(COMPOSE / "agent.yaml")],
            run_dir / "out",
            {
                **common,
                "PODLOG_PODLOG__HTTP_LISTEN": f"127.0.0.1:{ports['agent']}",
                "PODLOG_PODLOG__STATE_DIR": str(run_dir / "state"),
                "PODLOG_COLLECTOR__INCLUDE": f"[{logs}/*.log]",
                "PODLOG_SHIPPER__KAFKA__BOOTSTRAP_SERVERS": kafka,
                "PODLOG_SHIPPER__KAFKA__TOPIC": topic,
            },
        )
        timeout = 120 + lines / 500
        wait_for(lambda: count_indexed(opensearch, prefix) >= lines, timeout, "every line indexed", 1.0)
        seconds = time.perf_counter() - started
        url = f"http://127.0.0.1:{ports['search']}/api/search?q=served&size=100"
        with urllib.request.urlopen(url, timeout=10) as response:
            hits = json.loads(response.read())["hits"]
        assert hits, "the search API returned no hits"
        measured = {name: usage(process) for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.stop()
    return Run(lines, size / 1e6, seconds, base, measured)


def shipped(port: int, lines: int) -> bool:
    """Whether the agent's spool took every line and Kafka acknowledged all of it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    appended = values.get("podlog_shipper_spool_appended_records_total", 0.0)
    return appended >= lines and values.get("podlog_shipper_spool_records", 1.0) == 0.0


def agent_run(index: int, work: Path, kafka: str, lines: int, files: int) -> Run:
    """The agent alone: drain a backlog into Kafka until every record is acknowledged."""
    run_dir = work / f"agent-run-{index}"
    logs = run_dir / "containers"
    size = write_logs(logs, lines, files)
    lines = (lines // files) * files
    base = baseline(logs)
    port = free_port()
    started = time.perf_counter()
    agent = start_podlog(
        ["agent", "--config", str(COMPOSE / "agent.yaml")],
        run_dir / "out",
        {
            "PODLOG_PODLOG__LOG_LEVEL": "warning",
            "PODLOG_PODLOG__HTTP_LISTEN": f"127.0.0.1:{port}",
            "PODLOG_PODLOG__STATE_DIR": str(run_dir / "state"),
            "PODLOG_COLLECTOR__INCLUDE": f"[{logs}/*.log]",
            "PODLOG_SHIPPER__KAFKA__BOOTSTRAP_SERVERS": kafka,
            "PODLOG_SHIPPER__KAFKA__TOPIC": f"sizing-agent-{index}",
        },
    )
    try:
        wait_for(lambda: shipped(port, lines), 120 + lines / 500, "every line acknowledged", 0.5)
        seconds = time.perf_counter() - started
        measured = {"agent": usage(agent)}
    finally:
        agent.stop()
    return Run(lines, size / 1e6, seconds, base, measured)


def report(runs: list[Run]) -> None:
    """Print every run and the medians."""
    for number, run in enumerate(runs, 1):
        parts = ", ".join(f"{name} {u.cpu_seconds:.1f} CPU s / {u.peak_rss_mb:.0f} MB" for name, u in run.usage.items())
        print(
            f"run {number}: {run.lines} lines ({run.megabytes:.1f} MB) in {run.seconds:.1f} s: "
            f"{run.lines_per_second:,.0f} lines/s end to end; {parts}"
        )

    def median(values: list[float]) -> float:
        return statistics.median(values)

    lps = median([r.lines_per_second for r in runs])
    mbps = median([r.megabytes / r.seconds for r in runs])
    base = median([r.baseline_lines_per_second for r in runs])
    print(f"median end to end: {lps:,.0f} lines/s, {mbps:.2f} MB/s")
    print(f"baseline (plain Python read + split): {base:,.0f} lines/s; ratio {lps / base:.4f}")
    for name in runs[0].usage:
        cpu = median([r.usage[name].cpu_seconds for r in runs])
        rss = median([r.usage[name].peak_rss_mb for r in runs])
        per_line_ms = 1000 * median([r.usage[name].cpu_seconds / r.lines for r in runs])
        cores = per_line_ms  # ms of CPU per line == cores used per 1,000 lines/s
        print(
            f"{name}: median {cpu:.1f} CPU s, peak RSS {rss:.0f} MB, "
            f"{per_line_ms:.3f} CPU ms/line = {cores:.2f} cores per 1,000 lines/s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000, help="lines per run")
    parser.add_argument("--files", type=int, default=20, help="container log files per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="500,000 lines per run")
    parser.add_argument("--opensearch", choices=("osmem", "noida"), default="osmem")
    parser.add_argument("--agent-only", action="store_true", help="only the agent, into Kafka (no indexer, no search)")
    args = parser.parse_args()
    lines = 500_000 if args.full else args.lines
    with tempfile.TemporaryDirectory(prefix="podlog-sizing-") as tmp:
        work = Path(tmp)
        kafka = start_tansu(work / "servers")
        try:
            if args.agent_only:
                runs = [agent_run(i, work, kafka.url, lines, args.files) for i in range(args.runs)]
            else:
                opensearch = (
                    start_osmem(work / "servers")
                    if args.opensearch == "osmem"
                    else start_noida(work / "servers", work / "noida")
                )
                try:
                    runs = [one_run(i, work, kafka.url, opensearch.url, lines, args.files) for i in range(args.runs)]
                finally:
                    opensearch.stop()
        finally:
            kafka.stop()
    report(runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
