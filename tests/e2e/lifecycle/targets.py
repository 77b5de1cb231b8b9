"""podlog as real processes: ``podlog agent`` into Kafka, or ``podlog run`` on its embedded index.

A target starts podlog, is killed with SIGKILL and started again on the same
state directory (each start an *incarnation*, with its own log file), says
when its collector has opened files, how far it got (for the drain), and at
the end stops cleanly and hands back every delivered record and what it says
it lost.  Records are read by an independent client: librdkafka
(``confluent_kafka``) for the topic, the HTTP search API for ``podlog run``.

Lost bytes: each incarnation's Prometheus counters start at zero, so the
total is the sum of the ``bytes_lost`` JSON log events of every
incarnation's log; the last incarnation's ``podlog_collector_lost_bytes_total``,
scraped before its clean stop, is the cross-check.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported from cimpl

from tests.e2e.lifecycle.checker import Delivered, LostBytes
from tests.e2e.lifecycle.truth import GroundTruth, message_digest, parse_line_id
from tests.e2e.lifecycle.wire import decode_message, delivered
from tests.fixtures.servers import ManagedProcess, free_port, start_podlog, wait_for

__all__ = [
    "AgentTarget",
    "Readback",
    "RunTarget",
    "Target",
    "TopicReader",
    "bytes_lost_events",
    "is_written_line",
    "podlog_source",
    "poll_until",
    "scrape",
]

T = TypeVar("T")

STOP_TIMEOUT = 60.0
"""A clean stop (SIGTERM) that takes longer is a failure; the process is then killed."""


def poll_until(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """The first truthy value of ``predicate``; its exceptions propagate; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def podlog_source(env: dict[str, str] | None = None) -> str:
    """Where the ``collector`` package a started podlog imports lives (it follows cwd and PYTHONPATH)."""
    out = subprocess.run(
        [sys.executable, "-c", "import collector; print(collector.__file__)"],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    )  # fmt: skip
    return str(Path(out.stdout.strip()).parent)


def scrape(url: str, timeout: float = 2.0) -> dict[str, float]:
    """Prometheus text at ``url``, summed per metric name over every label set."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def bytes_lost_events(log_path: Path) -> list[tuple[float, int]]:
    """``(unix time, bytes)`` of each ``bytes_lost`` event in one incarnation's JSON log."""
    out: list[tuple[float, int]] = []
    try:
        lines = log_path.read_bytes().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        if not line.startswith(b"{"):
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut by SIGKILL
        if isinstance(event, dict) and event.get("event") == "bytes_lost":
            stamp = datetime.fromisoformat(str(event["timestamp"])).timestamp()
            out.append((stamp, int(event["bytes"])))
    return out


def is_written_line(truth: GroundTruth, message: str) -> str | None:
    """The id of the written line ``message`` is exactly, or None."""
    line_id = parse_line_id(message)
    line = truth.lines.get(line_id) if line_id is not None else None
    if line is None or message_digest(message) != line.digest:
        return None
    return line_id


@dataclass(slots=True)
class Readback:
    """What a target delivered, and what it says it lost."""

    delivered: list[Delivered]
    lost: LostBytes
    exit_code: int | None
    """Of the clean stop at the end (0 expected)."""
    incarnations: int


class _Processes:
    """Incarnations of one podlog command on one state directory."""

    kind: ClassVar[str]
    ordered: ClassVar[bool]
    keyed: ClassVar[bool]

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_dir = workdir / "process-logs"
        self.port = free_port()
        self.incarnations: list[ManagedProcess] = []
        self.down = True
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start a new incarnation on the same state (the checkpoints it starts from kept for a post-mortem)."""
        for n, found in enumerate(sorted(self.workdir.glob("**/checkpoints/checkpoints.json"))):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, self.log_dir / f"checkpoints-{len(self.incarnations)}-{n}.json")
        self.incarnations.append(start_podlog(self.args(), self.log_dir, name=self.kind))
        self.down = False

    def kill(self) -> None:
        """SIGKILL the running incarnation."""
        self.incarnations[-1].kill()
        self.down = True

    def check_alive(self) -> None:
        """Raise when the incarnation that should be running exited."""
        if self.down or not self.incarnations:
            return
        proc = self.incarnations[-1]
        if proc.popen.poll() is not None:
            raise RuntimeError(f"podlog {self.kind} exited with {proc.popen.returncode}:\n{proc.tail(3000)}")

    def metrics(self) -> dict[str, float]:
        return scrape(f"{self.url}/metrics")

    def ready(self) -> bool:
        """True once the running incarnation's collector has opened a file."""
        self.check_alive()
        try:
            opened = self.metrics().get("podlog_collector_file_events_total", 0.0)
        except OSError:
            return False
        return opened > 0

    def _read_bytes(self) -> float:
        try:
            return self.metrics().get("podlog_collector_read_bytes_total", -1.0)
        except OSError:
            return -1.0

    def _stop(self) -> tuple[int | None, float | None, float]:
        """Scrape the lost-bytes counter, then SIGTERM; (exit code, counter, scrape time)."""
        proc = self.incarnations[-1]
        try:
            metric: float | None = self.metrics().get("podlog_collector_lost_bytes_total", 0.0)
        except OSError:
            metric = None
        scraped = time.time()
        proc.stop(signal.SIGTERM, timeout=STOP_TIMEOUT)
        self.down = True
        return proc.popen.returncode, metric, scraped

    def _lost(self, metric: float | None, scraped: float) -> LostBytes:
        events = [bytes_lost_events(proc.log_path) for proc in self.incarnations]
        last = sum(n for stamp, n in events[-1] if stamp <= scraped) if events else None
        return LostBytes(events=sum(n for each in events for _, n in each), metric_last=metric, events_last=last)

    def close(self) -> None:
        """Stop every incarnation still running (by its PID)."""
        for proc in self.incarnations:
            proc.stop()
        self.down = True


class TopicReader:
    """Reads a topic from the beginning with librdkafka, keeping every record with its key and partition.

    Caught up means: every partition's position at the high watermark of the
    latest fetch response (tansu answers ListOffsets short, fetches right).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"lifecycle-readback-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 200,
        })  # fmt: skip
        meta = wait_for(lambda: self._partitions(), 30, f"topic {topic} metadata")
        self.partitions: list[int] = meta
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.next_offset = dict.fromkeys(self.partitions, 0)
        self.delivered: list[Delivered] = []
        self.messages = 0

    def _partitions(self) -> list[int] | None:
        found = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return sorted(found.partitions)

    def poll(self, seconds: float) -> int:
        """Consume for up to ``seconds``; returns the messages read."""
        deadline = time.monotonic() + seconds
        read = 0
        while time.monotonic() < deadline:
            batch = self.consumer.consume(num_messages=1000, timeout=0.1)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume failed: {error}")
                value, key = message.value(), message.key()
                assert value is not None
                partition = message.partition()
                offset = message.offset()
                assert partition is not None and offset is not None
                self.next_offset[partition] = offset + 1
                lane = str(partition)
                shown_key = key.decode(errors="replace") if key is not None else ""
                self.delivered.extend(delivered(record, shown_key, lane) for record in decode_message(value))
                read += 1
            if not batch:
                break
        self.messages += read
        return read

    def caught_up(self) -> bool:
        """Every partition read to the high watermark its latest fetch response reported."""
        for partition in self.partitions:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high < 0 or (self.next_offset[partition] < high and high > low):
                return False
        return True

    def drain(self, quiet_seconds: float = 1.5, timeout: float = 120.0) -> None:
        """Read until caught up and nothing new came for ``quiet_seconds`` (fetches keep refreshing the marks)."""
        state = {"since": time.monotonic()}

        def quiet() -> bool:
            if self.poll(0.3) or not self.caught_up():
                state["since"] = time.monotonic()
            return time.monotonic() - state["since"] >= quiet_seconds

        try:
            poll_until(quiet, timeout, f"topic {self.topic} read to its high watermarks", interval=0.0)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.lag()}") from None

    def lag(self) -> str:
        """Per partition behind its high watermark: where reading is, and the marks."""
        behind = []
        for partition in self.partitions:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high < 0 or (self.next_offset[partition] < high and high > low):
                behind.append(f"p{partition} at {self.next_offset[partition]} of [{low}, {high})")
        return f"{self.messages} messages read; behind: {', '.join(behind) or 'none'}"

    def close(self) -> None:
        self.consumer.close()


class AgentTarget(_Processes):
    """``podlog agent --config FILE`` shipping to a Kafka topic, read back by :class:`TopicReader`."""

    kind = "agent"
    ordered = True
    keyed = True

    def __init__(self, workdir: Path, include: list[str], bootstrap: str, topic: str, *, partitions: int = 4,
                 settings: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(workdir)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.reader: TopicReader | None = None
        self._correct: set[str] = set()
        self._checked = 0
        config: dict[str, Any] = {
            "podlog": {
                "cluster": "lifecycle",
                "node_name": "node-1",
                "log_format": "json",
                "state_dir": str(workdir / "state"),
                "http_listen": f"127.0.0.1:{self.port}",
                "shutdown_grace_seconds": 30,
            },
            "collector": {"include": include},
            "kubernetes": {"enabled": False},
            "shipper": {"kafka": {"bootstrap_servers": bootstrap, "topic": topic}},
        }
        for section, values in (settings or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config))

    def args(self) -> list[str]:
        return ["agent", "--config", str(self.config_path)]

    def start(self) -> None:
        if not self.incarnations:
            self._create_topic()
        super().start()

    def _create_topic(self) -> None:
        """Create the topic with several partitions, so that one key per container means something."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(self.topic, num_partitions=self.partitions,
                                                    replication_factor=1)]).values():
            future.result(30)

    def _reader(self) -> TopicReader:
        if self.reader is None:
            self.reader = TopicReader(self.bootstrap, self.topic)
        return self.reader

    def progress(self) -> tuple[float, ...]:
        """Changes while the agent still reads or ships: messages read back, bytes the collector read."""
        reader = self._reader()
        reader.poll(0.5)
        return (reader.messages, self._read_bytes())

    def complete(self, truth: GroundTruth) -> bool:
        """Every written line has arrived exactly as written."""
        delivered = self._reader().delivered
        for record in delivered[self._checked :]:
            line_id = is_written_line(truth, record.message)
            if line_id is not None:
                self._correct.add(line_id)
        self._checked = len(delivered)
        return len(self._correct) >= len(truth.lines)

    def finish(self) -> Readback:
        """Stop cleanly, then read the topic to its end."""
        code, metric, scraped = self._stop()
        reader = self._reader()
        reader.drain()
        return Readback(list(reader.delivered), self._lost(metric, scraped), code, len(self.incarnations))

    def close(self) -> None:
        super().close()
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class RunTarget(_Processes):
    """``podlog run --logs DIR --data-dir DIR``: records read back page by page from the search API."""

    kind = "run"
    ordered = False
    """The embedded index keeps records by time, not by arrival: delivery order is not observable."""
    keyed = False

    def __init__(self, workdir: Path, logs: Path, since_ns: int,
                 settings: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(workdir)
        self.logs = logs
        self.since_ms = since_ns // 1_000_000 - 600_000
        self._counted = -1
        self.ops_port = free_port()
        config: dict[str, Any] = {
            "podlog": {"cluster": "lifecycle", "node_name": "node-1", "log_format": "json",
                       "shutdown_grace_seconds": 30},
            "kubernetes": {"enabled": False},
            # /metrics of `podlog run` is on its ops port, never on the search page's.
            "search": {"ops_listen": f"127.0.0.1:{self.ops_port}"},
        }
        for section, values in (settings or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path = workdir / "run.yaml"
        self.config_path.write_text(yaml.safe_dump(config))

    def args(self) -> list[str]:
        return [
            "run", "--config", str(self.config_path), "--logs", str(self.logs),
            "--data-dir", str(self.workdir / "data"), "--listen", f"127.0.0.1:{self.port}",
        ]  # fmt: skip

    def metrics(self) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.ops_port}/metrics")

    def _get(self, path: str, **params: object) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            return json.loads(response.read())

    def _range(self) -> dict[str, int]:
        return {"start": self.since_ms, "end": time.time_ns() // 1_000_000 + 3_600_000}

    def count(self) -> int:
        """Records in the index (the histogram's exact total)."""
        return int(self._get("/api/histogram", buckets=1, **self._range())["total"])

    def read_all(self) -> list[Delivered]:
        """Every record in the index, page by page (newest first: the index keeps no arrival order)."""
        out: list[Delivered] = []
        cursor: str | None = None
        bounds = self._range()
        while True:
            page = self._get("/api/search", size=5000, cursor=cursor, **bounds)
            out.extend(delivered(hit) for hit in page["hits"])
            cursor = page.get("next_cursor")
            if not page["hits"] or not cursor:
                return out

    def progress(self) -> tuple[float, ...]:
        """Changes while podlog still reads or indexes: records indexed, bytes the collector read."""
        return (self.count(), self._read_bytes())

    def complete(self, truth: GroundTruth) -> bool:
        """Every written line is in the index exactly as written (read in full only once the count allows it)."""
        counted = self.count()
        if counted < len(truth.lines) or counted == self._counted:
            return False
        self._counted = counted
        correct = {is_written_line(truth, record.message) for record in self.read_all()}
        return all(line_id in correct for line_id in truth.lines)

    def finish(self) -> Readback:
        """Read the index back, then stop cleanly."""
        delivered = self.read_all()
        code, metric, scraped = self._stop()
        return Readback(delivered, self._lost(metric, scraped), code, len(self.incarnations))


Target = AgentTarget | RunTarget
"""The ways this suite runs podlog."""
