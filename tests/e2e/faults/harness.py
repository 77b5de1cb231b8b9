"""End-to-end fault harness: numbered lines in, exactly-once out, faults in between.

:class:`LogWriter` writes numbered CRI lines into kubelet-style files
(``pods/<ns>_<pod>_<uid>/<container>/0.log`` with a ``containers/`` symlink)
and rotates them the way kubelet does (rename to ``0.log.<stamp>``, new
``0.log``) or by copytruncate.  :class:`Pipeline` runs ``podlog agent`` and
``podlog indexer`` as real processes against Kafka and OpenSearch and can
``kill -9`` either.  :func:`indexed_messages` reads the whole index back, so a
scenario compares what was written with what was indexed, line by line.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from opensearchpy import OpenSearch

from tests.fixtures.servers import ManagedProcess, free_port, start_podlog

__all__ = ["LogWriter", "Pipeline", "ProxyThread", "Report", "indexed_count", "indexed_messages", "read_metric"]


@dataclass
class ContainerLog:
    namespace: str
    pod: str
    container: str
    uid: str
    directory: Path
    link: Path
    seq: int = 0
    rotations: int = 0
    current: list[tuple[str, int]] = field(default_factory=list)
    """(message, bytes on disk) of every line in the current ``0.log``."""

    @property
    def path(self) -> Path:
        return self.directory / "0.log"


@dataclass
class LogWriter:
    """Writes numbered lines into many container logs and rotates them."""

    root: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    line_bytes: int = 160
    logs: list[ContainerLog] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    def add(self, namespace: str, pod: str, container: str = "app") -> ContainerLog:
        uid = secrets.token_hex(8)
        directory = self.root / "pods" / f"{namespace}_{pod}_{uid}" / container
        directory.mkdir(parents=True)
        self.containers_dir.mkdir(exist_ok=True)
        link = self.containers_dir / f"{pod}_{namespace}_{container}-{secrets.token_hex(32)}.log"
        log = ContainerLog(namespace, pod, container, uid, directory, link)
        log.path.touch()
        link.symlink_to(log.path)
        self.logs.append(log)
        return log

    def message(self, log: ContainerLog, seq: int) -> str:
        head = f"{self.run_id} {log.namespace}/{log.pod} seq={seq:08d} "
        return head + "x" * max(0, self.line_bytes - len(head))

    def write(self, log: ContainerLog, count: int) -> None:
        """Append ``count`` numbered lines to ``log`` in one write."""
        now = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1_000_000_000))
        stamp += f".{now % 1_000_000_000:09d}Z"
        chunk = []
        for _ in range(count):
            message = self.message(log, log.seq)
            log.seq += 1
            line = f"{stamp} stdout F {message}\n"
            chunk.append(line)
            log.current.append((message, len(line.encode())))
            self.written.append(message)
        with log.path.open("a") as out:
            out.write("".join(chunk))

    def rotate_rename(self, log: ContainerLog) -> None:
        """kubelet: rename 0.log to 0.log.<stamp> and start a new 0.log."""
        log.rotations += 1
        log.path.rename(log.directory / f"0.log.{time.strftime('%Y%m%d-%H%M%S')}-{log.rotations}")
        log.path.touch()
        log.current = []

    def rotate_away(self, log: ContainerLog, *, keep_gz: bool = False) -> dict[str, int]:
        """kubelet with compression: rename 0.log, gzip it (the plain file is gone), new 0.log.

        Without ``keep_gz`` the ``.gz`` is deleted too, as kubelet does once
        it is past ``containerLogMaxFiles``: no generation of the file is left.
        Returns the lines that were in the rotated file, with their size on
        disk: what a collector that never read them has lost when nothing is
        left (with the ``.gz`` kept, podlog reads them from it).
        """
        log.rotations += 1
        rotated = log.directory / f"0.log.{time.strftime('%Y%m%d-%H%M%S')}-{log.rotations}"
        log.path.rename(rotated)
        packed_path = rotated.with_name(rotated.name + ".gz")
        with rotated.open("rb") as plain, gzip.open(packed_path, "wb") as packed:
            shutil.copyfileobj(plain, packed)
        rotated.unlink()
        if not keep_gz:
            packed_path.unlink()
        log.path.touch()
        gone, log.current = dict(log.current), []
        return gone

    def copytruncate(self, log: ContainerLog) -> None:
        """logrotate copytruncate: copy the file aside, truncate it in place."""
        log.rotations += 1
        shutil.copyfile(log.path, log.directory / f"0.log.copy-{log.rotations}")
        with log.path.open("r+") as handle:
            handle.truncate(0)
        log.current = []

    def delete_pod(self, log: ContainerLog) -> None:
        """The pod is gone: its link and directory are removed (the file may still be open)."""
        log.link.unlink()
        shutil.rmtree(log.directory.parent)  # pods/<ns>_<pod>_<uid>
        self.logs.remove(log)

    def file_size(self, log: ContainerLog) -> int:
        try:
            return os.stat(log.path).st_size
        except FileNotFoundError:
            return 0


@dataclass
class Pipeline:
    """``podlog agent`` and ``podlog indexer`` as processes, restartable by role."""

    tmp: Path
    writer: LogWriter
    kafka: str
    opensearch: str
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    indexer_opensearch: str = ""
    """Where the indexer writes, when not ``opensearch`` itself (a faulty proxy in front of it)."""
    agent_port: int = field(default_factory=free_port)
    indexer_port: int = field(default_factory=free_port)
    procs: dict[str, ManagedProcess] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    mid_checkpoint_kills: int = 0
    agent_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra agent settings by section (``{"shipper": {"spool": {...}}}``), merged over the defaults."""

    @property
    def index_prefix(self) -> str:
        return f"faults{self.run_id}"

    def config(self, role: str) -> Path:
        port = self.agent_port if role == "agent" else self.indexer_port
        data: dict[str, Any] = {
            "podlog": {
                "cluster": "faults",
                "node_name": "node-1",
                "log_format": "json",
                "state_dir": str(self.tmp / f"state-{role}"),
                "http_listen": f"127.0.0.1:{port}",
                "shutdown_grace_seconds": 10,
            },
            "collector": {"include": [str(self.writer.containers_dir / "*.log")]},
            "kubernetes": {"enabled": False},
            "shipper": {"kafka": {"bootstrap_servers": self.kafka, "topic": f"faults-{self.run_id}"}},
            "indexer": {
                "kafka": {
                    "bootstrap_servers": self.kafka,
                    "topics": [f"faults-{self.run_id}"],
                    "group_id": f"faults-{self.run_id}",
                },
                "opensearch": {
                    "hosts": [self.indexer_opensearch or self.opensearch],
                    "index_prefix": self.index_prefix,
                },
            },
        }
        if role == "agent":
            for section, values in self.agent_settings.items():
                data.setdefault(section, {}).update(values)
        path = self.tmp / f"{role}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start(self, role: str) -> None:
        self.procs[role] = start_podlog(
            [role, "--config", str(self.config(role))], self.tmp / "process-logs", name=role
        )

    def sample_rss(self) -> None:
        for role, proc in self.procs.items():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                self.peak_rss_kib[role] = max(self.peak_rss_kib.get(role, 0), int(match.group(1)))

    def kill(self, role: str) -> None:
        """``kill -9`` one process, then start it again with the same state."""
        self.sample_rss()
        self.procs[role].kill()
        self.restarts[role] += 1
        self.start(role)

    def kill_agent_mid_checkpoint(self, timeout: float = 15.0) -> bool:
        """``kill -9`` the agent while its checkpoint temp file exists, then restart it.

        The store writes ``checkpoints.json.<pid>-<n>.tmp``, fsyncs and renames it; the
        file exists only for those milliseconds, so this polls for it in a
        tight loop and kills on sight.  Returns whether the kill landed inside
        a write (else it came at the deadline, a plain kill).
        """
        self.sample_rss()
        directory = self.tmp / "state-agent" / "checkpoints"
        proc = self.procs["agent"]
        deadline = time.monotonic() + timeout
        landed = False
        while time.monotonic() < deadline and not landed:
            landed = any(directory.glob("checkpoints.json*.tmp"))
            if not landed:
                time.sleep(0.0002)  # the polling interval of the search, not a synchronisation
        proc.kill()
        self.restarts["agent"] += 1
        self.mid_checkpoint_kills += landed
        self.start("agent")
        return landed

    def check_alive(self) -> None:
        for role, proc in self.procs.items():
            if proc.popen.poll() is not None:
                raise AssertionError(f"{role} exited with {proc.popen.returncode}:\n{proc.tail()}")

    def metric(self, role: str, name: str, labels: str = "") -> float:
        port = self.agent_port if role == "agent" else self.indexer_port
        return read_metric(f"http://127.0.0.1:{port}/metrics", name, labels)

    def stop(self) -> None:
        self.sample_rss()
        for proc in self.procs.values():
            proc.stop()


def read_metric(url: str, name: str, labels: str = "") -> float:
    """Sum of the samples of ``name`` whose labels contain ``labels`` (all when empty) at a /metrics URL."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _log_indices(client: OpenSearch, index_prefix: str) -> list[str]:
    """Concrete index names from _cat, refreshed.

    Not a wildcard: one emulator answers 404 to wildcard refreshes and False
    to wildcard exists().
    """
    names = sorted(
        row["index"] for row in client.cat.indices(format="json") if row["index"].startswith(f"{index_prefix}-logs-")
    )
    for name in names:
        client.indices.refresh(index=name)
    return names


def indexed_count(opensearch: str, index_prefix: str) -> int:
    """How many documents the log indices hold: the cheap poll while draining.

    Reading every message back (:func:`indexed_messages`) once a second would
    load the test server as much as the indexer does, and slow the drain it
    measures.
    """
    client = OpenSearch(opensearch, timeout=30)
    names = _log_indices(client, index_prefix)
    if not names:
        return 0
    return int(client.count(index=",".join(names))["count"])


def indexed_messages(opensearch: str, index_prefix: str) -> Counter[str]:
    """Every indexed message (with multiplicity), read page by page."""
    client = OpenSearch(opensearch, timeout=30)
    names = _log_indices(client, index_prefix)
    if not names:
        return Counter()
    pattern = ",".join(names)
    seen: Counter[str] = Counter()
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": 5000,
            "sort": [{"event.id": "asc"}],
            "_source": ["message"],
            "query": {"match_all": {}},
        }
        if after is not None:
            body["search_after"] = after
        page = client.search(index=pattern, body=body)
        hits = page["hits"]["hits"]
        if not hits:
            return seen
        for hit in hits:
            seen[hit["_source"]["message"]] += 1
        after = hits[-1]["sort"]


@dataclass
class Report:
    """The figures printed at the end of a scenario."""

    scenario: str
    written: int
    indexed: int
    duplicates: int
    missing: int
    lost_bytes: float
    drain_seconds: float
    peak_rss_mib: dict[str, float]
    missing_lines: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(self.peak_rss_mib.items()))
        return (
            f"[{self.scenario}] written={self.written} indexed={self.indexed} "
            f"duplicates={self.duplicates} missing={self.missing} lost_bytes={self.lost_bytes:.0f} "
            f"drain={self.drain_seconds:.1f}s peak_rss: {rss}"
        )


class ProxyThread:
    """The indexer tests' :class:`FaultyProxy` on its own event loop thread, for sync tests."""

    def __init__(self, upstream: str) -> None:
        from tests.integration.indexer.proxy import FaultyProxy

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty-proxy", daemon=True)
        self._thread.start()

        async def make() -> FaultyProxy:
            return await FaultyProxy(upstream).start()

        self.proxy = asyncio.run_coroutine_threadsafe(make(), self._loop).result(10)

    @property
    def url(self) -> str:
        return str(self.proxy.url)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
