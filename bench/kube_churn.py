"""Pod metadata under churn, checked from outside on every shipped record.

Runs the real ``podlog agent`` process against the in-test list/watch API
server in a process of its own (:class:`tests.fixtures.kube_api.FakeKubeApi`
behind a small control port) and a memory Kafka broker (tansu), with a
kubelet-like writer creating ``var/log/pods/<ns>_<pod>_<uid>/app/0.log`` and
the ``var/log/containers/<pod>_<ns>_app-<container id>.log`` symlink to it.
Every line names the pod uid that wrote it, so each record read back from the
topic is checked against the pod that really wrote it.

Phases, in order, while every live pod keeps writing:

1. backlog: ``--pods`` pods (some ``podlog.io/exclude``, one namespace with
   ``podlog.io/retention``, a StatefulSet pod ``db-0``) write lines before the
   agent's fresh start;
2. churn: creations, relabels, deletions (files removed once read);
3. a dropped watch, then a compaction and a dropped watch (410 Gone, relist);
4. a ``--outage`` seconds API outage, during which ``db-0`` is deleted and
   recreated under its name (new uid, new container id), pods are created (one
   excluded) and the history is compacted (410 Gone on the way back);
5. agent SIGKILL; while it is down ``db-0`` is recreated again and pods are
   created; restart;
6. agent clean stop (SIGTERM), ``db-0`` recreated with the API down, restart
   (API back a few seconds later);
7. last lines, drain, clean stop.

Checks: 0 missing, 0 duplicate lines (by ``event.id``; raw duplicates from
the SIGKILL are reported apart); every record's pod uid, container id, image
and labels are the writing pod's (labels: any version it had); 0 lines of
excluded pods shipped; every record carries its retention class; records
marked ``path`` against the agent's own count; API requests (node-scoped, a
pod list per start and per 410 Gone, no more); agent RSS after the first
catch-up.  ``--rss`` only measures the agent caught up on ``--pods`` pods'
files, with pod metadata on and off.  Exit status 1 when a check fails.

    python bench/kube_churn.py --pods 300 --seed 1
    python bench/kube_churn.py --pods 3000 --seed 2 --token
    python bench/kube_churn.py --rss --pods 3000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NODE = "node-a"
RETENTION_NS = "archive"
RETENTION_CLASS = "long-term"
POD_RETENTION = "audit"
IMAGE = "registry.example/{app}:{version}"


# -- the API server process -------------------------------------------------------------------


def serve_api(port: int, control_port: int) -> None:
    """Run FakeKubeApi on ``port`` and a JSON control server on ``control_port`` until killed."""
    from tests.fixtures.kube_api import FakeKubeApi

    api = FakeKubeApi(port=port, gone_as_status=False).start()
    lock = threading.Lock()

    def call(method: str, args: list[Any]) -> Any:
        if method == "add_pods":
            for pod in args[0]:
                api.add_pod(pod)
            return len(args[0])
        if method == "requests":
            with api._lock:
                return [[path, params] for path, params in api.requests]
        if method == "set_token":
            api.required_token = args[0]
            return None
        if method == "start":
            api.start()
            return api.port
        if method in {"add_pod", "update_pod", "delete_pod", "add_namespace", "compact",
                      "drop_watches", "bookmark", "stop", "open_watches"}:
            return getattr(api, method)(*args)
        raise ValueError(f"no method {method}")

    class Control(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                result = call(body["method"], body.get("args", []))
            data = json.dumps({"result": result}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", control_port), Control)
    print("ready", flush=True)
    server.serve_forever()


class ApiProcess:
    """The API server as a separate process, driven over its control port."""

    def __init__(self, log_dir: Path) -> None:
        from tests.fixtures.servers import free_port, wait_for_port

        self.port = free_port()
        self.control = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = (log_dir / "api.log").open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--serve-api", str(self.port), str(self.control)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        wait_for_port(self.control, timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any) -> Any:
            data = json.dumps({"method": method, "args": list(args)}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{self.control}/", data=data, method="POST")
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["result"]

        return call

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()


# -- the node: kubelet-like files and the ground truth ---------------------------------------------


@dataclass
class PodTruth:
    """One pod (one uid) as written, and every version of its metadata."""

    uid: str
    namespace: str
    name: str
    container_id: str
    image: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: tuple[str, str] | None
    label_versions: list[dict[str, str]] = field(default_factory=list)
    written: int = 0
    alive: bool = True
    excluded: bool = False
    retention: str | None = None
    log_path: Path | None = None
    link_path: Path | None = None
    removed: bool = False

    def api_object(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                                    "labels": dict(self.labels), "annotations": dict(self.annotations)}
        if self.owner is not None:
            metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": self.owner[0],
                                            "name": self.owner[1], "controller": True}]
        return {
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": self.image}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "image": self.image, "containerID": f"containerd://{self.container_id}",
                 "restartCount": 0}]},
        }


class Node:
    """``var/log/pods`` and ``var/log/containers`` under ``root``, written as kubelet and containerd do."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.pods_dir = root / "var" / "log" / "pods"
        self.links_dir = root / "var" / "log" / "containers"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.links_dir.mkdir(parents=True, exist_ok=True)
        self.rng = rng
        self.by_uid: dict[str, PodTruth] = {}
        self.current: dict[tuple[str, str], PodTruth] = {}
        self._handles: dict[str, Any] = {}

    def new_pod(self, namespace: str, name: str, *, excluded: bool = False, pod_retention: bool = False,
                owner: tuple[str, str] | None = None) -> PodTruth:
        app = name.rsplit("-", 2)[0] if owner is None or owner[0] != "StatefulSet" else owner[1]
        version = f"1.{self.rng.randrange(20)}.0"
        labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/version": version,
                  "team": f"team-{self.rng.randrange(9)}", "pod-template-hash": "5d8f7c9b4"}
        annotations = {"prometheus.io/scrape": "true"}
        retention = None
        if excluded:
            annotations["podlog.io/exclude"] = "true"
        if pod_retention:
            annotations["podlog.io/retention"] = POD_RETENTION
            retention = POD_RETENTION
        elif namespace == RETENTION_NS:
            retention = RETENTION_CLASS
        pod = PodTruth(
            uid=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), namespace=namespace, name=name,
            container_id=f"{self.rng.getrandbits(256):064x}", image=IMAGE.format(app=app, version=version),
            labels=labels, annotations=annotations, owner=owner, excluded=excluded, retention=retention,
        )
        pod.label_versions.append(dict(labels))
        self.by_uid[pod.uid] = pod
        self.current[(namespace, name)] = pod
        return pod

    def start_container(self, pod: PodTruth) -> None:
        """The runtime creates 0.log, kubelet links it from var/log/containers."""
        directory = self.pods_dir / f"{pod.namespace}_{pod.name}_{pod.uid}" / "app"
        directory.mkdir(parents=True, exist_ok=True)
        pod.log_path = directory / "0.log"
        self._handles[pod.uid] = pod.log_path.open("ab", buffering=0)
        pod.link_path = self.links_dir / f"{pod.name}_{pod.namespace}_app-{pod.container_id}.log"
        pod.link_path.symlink_to(pod.log_path)

    def write(self, pod: PodTruth, lines: int) -> None:
        handle = self._handles.get(pod.uid)
        if handle is None or not pod.alive:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
        chunk = []
        for _ in range(lines):
            pod.written += 1
            pad = "x" * self.rng.randrange(10, 120)
            chunk.append(f"{now} stdout F kc {pod.uid} {pod.written} {pad}\n")
        handle.write("".join(chunk).encode())

    def stop_container(self, pod: PodTruth) -> None:
        pod.alive = False
        handle = self._handles.pop(pod.uid, None)
        if handle is not None:
            handle.close()

    def remove_files(self, pod: PodTruth) -> None:
        """kubelet's garbage collection of a deleted pod: the link and the pod directory."""
        if pod.removed or pod.log_path is None or pod.link_path is None:
            return
        pod.removed = True
        pod.link_path.unlink(missing_ok=True)
        pod.log_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            pod.log_path.parent.rmdir()
            pod.log_path.parent.parent.rmdir()

    def live(self) -> list[PodTruth]:
        return [p for p in self.current.values() if p.alive]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


# -- reading the topic back ---------------------------------------------------------------------


@dataclass(slots=True)
class Seen:
    """What the checker keeps of a shipped record."""

    event_id: str
    uid: str
    seq: int
    pod_uid: str | None
    pod_name: str | None
    container_id: str | None
    image: str | None
    labels: dict[str, str] | None
    metadata: str | None
    retention: str | None


class Reader:
    """Every record of the topic, from the beginning, with librdkafka."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from tests.fixtures.servers import wait_for

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"kube-churn-{time.monotonic_ns()}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "fetch.wait.max.ms": 200})
        self.topic = topic

        def partitions() -> list[int] | None:
            found = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                return None
            return sorted(found.partitions)

        parts = wait_for(partitions, 30, "topic metadata")
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.records: list[Seen] = []
        self.by_uid: Counter[str] = Counter()
        self.unparsed = 0

    def poll(self, seconds: float) -> int:
        from confluent_kafka import KafkaError

        from podlog.wire import decode_message

        deadline = time.monotonic() + seconds
        read = 0
        while time.monotonic() < deadline:
            batch = self.consumer.consume(num_messages=1000, timeout=0.2)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume failed: {error}")
                for record in decode_message(message.value()).records:
                    self._keep(record)
                read += 1
            if not batch:
                break
        return read

    def _keep(self, record: dict[str, Any]) -> None:
        parts = str(record.get("message", "")).split(" ")
        if len(parts) < 3 or parts[0] != "kc":
            self.unparsed += 1
            return
        k8s = record.get("kubernetes") or {}
        pod = k8s.get("pod") or {}
        container = k8s.get("container") or {}
        podlog = record.get("podlog") or {}
        seen = Seen(
            event_id=str((record.get("event") or {}).get("id")), uid=parts[1], seq=int(parts[2]),
            pod_uid=pod.get("uid"), pod_name=pod.get("name"), container_id=container.get("id"),
            image=container.get("image"), labels=k8s.get("labels"), metadata=podlog.get("metadata"),
            retention=podlog.get("retention"),
        )
        self.records.append(seen)
        self.by_uid[seen.uid] += 1

    def received(self, uid: str) -> set[int]:
        return {r.seq for r in self.records if r.uid == uid}

    def close(self) -> None:
        self.consumer.close()


# -- the agent ---------------------------------------------------------------------------------------


class Agent:
    """``podlog agent`` incarnations on one state directory."""

    def __init__(self, workdir: Path, node: Node, api_url: str, bootstrap: str, topic: str,
                 token_file: Path | None, *, kube_enabled: bool = True) -> None:
        from tests.fixtures.servers import free_port

        self.workdir = workdir
        self.port = free_port()
        self.log_dir = workdir / "process-logs"
        self.procs: list[Any] = []
        self.path_counted = 0.0
        kube: dict[str, Any] = {"api_server": api_url, "snapshot_interval_seconds": 2.0}
        if token_file is not None:
            kube["api_token_file"] = str(token_file)
        if not kube_enabled:
            kube = {"enabled": False}
        config = {
            "podlog": {"cluster": "churn", "node_name": NODE, "log_format": "json",
                       "state_dir": str(workdir / "state"), "http_listen": f"127.0.0.1:{self.port}",
                       "shutdown_grace_seconds": 30},
            "collector": {"include": [str(node.links_dir / "*.log")]},
            "kubernetes": kube,
            "shipper": {"kafka": {"bootstrap_servers": bootstrap, "topic": topic}},
        }
        import yaml

        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self) -> None:
        from tests.fixtures.servers import start_podlog

        self.procs.append(start_podlog(["agent", "--config", str(self.config_path)], self.log_dir, name="agent"))

    @property
    def pid(self) -> int:
        return int(self.procs[-1].pid)

    def metrics(self) -> dict[str, float]:
        from tests.e2e.lifecycle.targets import scrape

        return scrape(f"http://127.0.0.1:{self.port}/metrics")

    def _count_path(self) -> None:
        with contextlib.suppress(OSError):
            self.path_counted += self.metrics().get("podlog_collector_kube_path_only_records_total", 0.0)

    def kill(self) -> None:
        self._count_path()
        self.procs[-1].kill()

    def stop(self) -> int | None:
        self._count_path()
        self.procs[-1].stop(signal.SIGTERM, timeout=60)
        return self.procs[-1].popen.returncode

    def alive(self) -> bool:
        return bool(self.procs) and self.procs[-1].popen.poll() is None

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_events(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for proc in self.procs:
            for line in proc.log_path.read_bytes().splitlines():
                if line.startswith(b"{"):
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        counts[str(event.get("event"))] += 1
                        if event.get("event") == "kube_watch_expired":
                            counts[f"kube_watch_expired:{event.get('resource')}"] += 1
                elif b"Traceback" in line or b"AssertionError" in line:
                    counts["TRACEBACK"] += 1
        return counts


# -- the scenario ----------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = Path(args.workdir) / f"pods{args.pods}-seed{args.seed}"
        self.node = Node(self.workdir / "node", self.rng)
        self.serial = 0
        self.phase_log: list[str] = []

    def note(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.phase_log.append(line)
        print(line, flush=True)

    def name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial:05d}-{self.rng.getrandbits(20):05x}"

    def create(self, *, in_api: bool = True, excluded: bool = False) -> PodTruth:
        namespace = self.rng.choice(["default", "shop", "payments", RETENTION_NS])
        pod = self.node.new_pod(namespace, self.name("web"), excluded=excluded,
                                pod_retention=self.rng.random() < 0.03,
                                owner=("ReplicaSet", "web-5d8f7c9b4"))
        if in_api:
            self.api.add_pod(pod.api_object())
        self.node.start_container(pod)
        return pod

    def recreate_db0(self) -> PodTruth:
        old = self.node.current[("data", "db-0")]
        self.node.stop_container(old)
        self.api.delete_pod("data", "db-0")
        self.deleted.append(old)
        new = self.node.new_pod("data", "db-0", owner=("StatefulSet", "db"))
        self.api.add_pod(new.api_object())
        self.node.start_container(new)
        self.node.write(new, 20)
        return new

    def tick(self, lines_per_pod: float = 0.05) -> None:
        live = self.node.live()
        count = max(1, int(len(live) * lines_per_pod))
        for pod in self.rng.sample(live, min(count, len(live))):
            self.node.write(pod, self.rng.randrange(1, 4))
        db0 = self.node.current.get(("data", "db-0"))
        if db0 is not None:
            self.node.write(db0, 2)
        self.reader.poll(0.05)
        if self.agent.procs and not self.agent_down and not self.agent.alive():
            raise RuntimeError(f"agent exited: {self.agent.procs[-1].tail(3000)}")
        self.gc_deleted()

    def gc_deleted(self) -> None:
        """Remove a deleted pod's files once everything it wrote was read (kubelet's GC, late)."""
        if self.agent_down:
            return
        for pod in self.deleted:
            if not pod.removed and self.reader.by_uid[pod.uid] >= pod.written and (
                pod.excluded or len(self.reader.received(pod.uid)) >= pod.written
            ):
                self.node.remove_files(pod)

    def churn(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            roll = self.rng.random()
            live = [p for p in self.node.live() if p.name != "db-0"]
            if roll < 0.3:
                self.node.write(self.create(excluded=self.rng.random() < 0.05), 5)
            elif roll < 0.6 and live:
                pod = self.rng.choice(live)
                pod.labels = {**pod.labels, "release": f"r{self.rng.randrange(1000)}"}
                pod.label_versions.append(dict(pod.labels))
                self.api.update_pod(pod.api_object())
            elif live:
                pod = self.rng.choice(live)
                self.node.write(pod, 3)
                self.node.stop_container(pod)
                self.api.delete_pod(pod.namespace, pod.name)
                self.deleted.append(pod)
            for _ in range(3):
                self.tick()
                time.sleep(0.1)

    def wait_quiet(self, what: str, timeout: float = 240.0) -> None:
        """Until every line written so far by every pod not excluded has been read back."""
        deadline = time.monotonic() + timeout
        while True:
            self.reader.poll(0.5)
            self.gc_deleted()
            behind = [p for p in self.node.by_uid.values()
                      if not p.excluded and self.reader.by_uid[p.uid] < p.written]
            if not behind:
                return
            if time.monotonic() > deadline:
                self.note(f"{what}: {len(behind)} pods still behind, e.g. "
                          f"{[(p.name, p.uid[:8], p.written, self.reader.by_uid[p.uid]) for p in behind[:5]]}")
                return
            if not self.agent.alive():
                raise RuntimeError(f"agent exited: {self.agent.procs[-1].tail(3000)}")

    def run(self) -> dict[str, Any]:
        from tests.fixtures.servers import start_tansu

        args = self.args
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.deleted: list[PodTruth] = []
        self.agent_down = True
        broker = start_tansu(self.workdir / "process-logs")
        self.api = ApiProcess(self.workdir / "process-logs")
        token_file = None
        try:
            if args.token:
                token_file = self.workdir / "token"
                token_file.write_text("s3cret-1\n")
                self.api.set_token("s3cret-1")
            topic = "churn"
            from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

            admin = AdminClient({"bootstrap.servers": broker.url})
            for future in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
                future.result(30)
            self.reader = Reader(broker.url, topic)
            self.agent = Agent(self.workdir, self.node, self.api.url, broker.url, topic, token_file)

            # 1. the backlog of a fresh start
            self.api.add_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": RETENTION_NS, "annotations": {"podlog.io/retention": RETENTION_CLASS}}})
            for ns in ("default", "shop", "payments", "data"):
                self.api.add_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            batch = []
            for i in range(args.pods - 1):
                pod = self.node.new_pod(self.rng.choice(["default", "shop", "payments", RETENTION_NS]),
                                        self.name("web"), excluded=i % 50 == 7,
                                        pod_retention=i % 40 == 3, owner=("ReplicaSet", "web-5d8f7c9b4"))
                batch.append(pod.api_object())
                if len(batch) == 500:
                    self.api.add_pods(batch)
                    batch = []
            self.api.add_pods(batch)
            db0 = self.node.new_pod("data", "db-0", owner=("StatefulSet", "db"))
            self.api.add_pod(db0.api_object())
            for pod in list(self.node.current.values()):
                self.node.start_container(pod)
                self.node.write(pod, self.rng.randrange(2, 6))
            backlog = sum(p.written for p in self.node.by_uid.values())
            self.note(f"backlog: {len(self.node.by_uid)} pods, {backlog} lines; fresh start")
            self.agent.start()
            self.agent_down = False
            self.wait_quiet("fresh start")
            rss_pods = len(self.node.live())
            rss = self.agent.rss()
            self.note(f"caught up; agent RSS {rss / 2**20:.1f} MiB for {rss_pods} pods")

            # 2. churn
            self.note("churn")
            self.churn(args.churn_seconds)
            # 3. a dropped watch; a compaction with a dropped watch: 410 Gone
            self.note("dropped watch")
            self.api.drop_watches()
            self.churn(3)
            self.note("compaction + dropped watch (410 Gone)")
            self.api.compact()
            self.api.drop_watches()
            self.churn(3)
            self.api.bookmark()
            # 4. outage, db-0 recreated meanwhile, pods created
            self.note(f"API outage {args.outage:.0f}s, db-0 recreated during it")
            self.api.stop()
            outage_end = time.monotonic() + args.outage
            self.recreate_db0()
            new_during_outage = [self.create() for _ in range(3)]
            new_during_outage.append(self.create(excluded=True))
            self.api.compact()  # the versions the watches resume from are gone: 410, relist
            while time.monotonic() < outage_end:
                self.tick()
                time.sleep(0.2)
            self.api.start()
            for pod in new_during_outage:
                self.node.write(pod, 2)
            self.churn(5)
            self.wait_quiet("after outage")
            # 5. SIGKILL; db-0 recreated and pods created while the agent is down
            self.note("agent SIGKILL; db-0 recreated while it is down")
            self.agent.kill()
            self.agent_down = True
            self.recreate_db0()
            for _ in range(3):
                self.node.write(self.create(), 4)
            for _ in range(10):
                self.tick()
                time.sleep(0.1)
            self.agent.start()
            self.agent_down = False
            self.churn(5)
            self.wait_quiet("after SIGKILL restart")
            # 6. clean stop; db-0 recreated while both the agent and the API are down
            self.note("agent stop; API down; db-0 recreated; restart; API back after 5s")
            code = self.agent.stop()
            self.agent_down = True
            self.api.stop()
            self.recreate_db0()
            for _ in range(10):
                self.tick()
                time.sleep(0.1)
            self.agent.start()
            self.agent_down = False
            for _ in range(25):
                self.tick()
                time.sleep(0.2)
            self.api.start()
            self.churn(5)
            # 7. last lines, drain, stop
            for pod in self.node.live():
                self.node.write(pod, 1)
            self.wait_quiet("final")
            final_code = self.agent.stop()
            self.agent_down = True
            self.reader.poll(3)
            events = self.agent.log_events()
            requests = self.api.requests()
            return self.check(rss, rss_pods, backlog, [code, final_code], events, requests)
        finally:
            with contextlib.suppress(Exception):
                if self.agent.alive():
                    self.agent.procs[-1].kill()
            self.api.close()
            broker.stop()
            with contextlib.suppress(Exception):
                self.reader.close()
            self.node.close()

    def check(self, rss: int, rss_pods: int, backlog: int, codes: list[int | None], events: Counter[str],
              requests: list[list[Any]]) -> dict[str, Any]:
        truth = self.node.by_uid
        ids: Counter[str] = Counter()
        lines: dict[tuple[str, int], set[str]] = defaultdict(set)
        problems: Counter[str] = Counter()
        examples: dict[str, str] = {}
        marked: Counter[str] = Counter()

        def bad(kind: str, text: str) -> None:
            problems[kind] += 1
            examples.setdefault(kind, text)

        for r in self.reader.records:
            ids[r.event_id] += 1
            lines[(r.uid, r.seq)].add(r.event_id)
            marked[str(r.metadata)] += 1
            pod = truth.get(r.uid)
            if pod is None:
                bad("unknown_line", f"{r}")
                continue
            if pod.excluded:
                bad("excluded_shipped", f"{pod.namespace}/{pod.name} seq {r.seq} as {r.metadata}")
            if r.pod_uid != pod.uid:
                bad("wrong_uid", f"{pod.namespace}/{pod.name} {pod.uid[:8]} seq {r.seq} got "
                                 f"{r.pod_name} {str(r.pod_uid)[:8]} ({r.metadata})")
            if r.container_id != pod.container_id:
                bad("wrong_container_id", f"{pod.name} seq {r.seq} {str(r.container_id)[:12]} "
                                          f"!= {pod.container_id[:12]} ({r.metadata})")
            if r.metadata in ("api", "cache"):
                if r.image != pod.image:
                    bad("wrong_image", f"{pod.name} seq {r.seq} {r.image} != {pod.image}")
                if r.labels not in pod.label_versions:
                    bad("wrong_labels", f"{pod.name} seq {r.seq} {r.labels}")
            if r.retention != pod.retention:
                bad("wrong_retention", f"{pod.namespace}/{pod.name} seq {r.seq} {r.retention!r} != "
                                       f"{pod.retention!r} ({r.metadata})")
        path_ids = {r.event_id for r in self.reader.records if r.metadata == "path"}
        if len(path_ids) > self.agent.path_counted:
            bad("path_uncounted", f"{len(path_ids)} records shipped as path, {self.agent.path_counted:.0f} counted")
        expected = {(p.uid, s) for p in truth.values() if not p.excluded for s in range(1, p.written + 1)}
        missing = expected - set(lines)
        duplicates = sum(1 for key, found in lines.items() if len(found) > 1)
        raw_dupes = sum(n - 1 for n in ids.values() if n > 1)
        # A pod list per start (3 incarnations) and one per 410 Gone; anything more is a relist
        # the API load does not owe.
        gone = events.get("kube_watch_expired:pods", 0)
        pod_requests = [params for path, params in requests if path.endswith("/pods")]
        not_scoped = [p for p in pod_requests if p.get("fieldSelector") != f"spec.nodeName={NODE}"]
        lists = Counter(path.rsplit("/", 1)[-1] for path, params in requests if params.get("watch") != "true"
                        and "continue" not in params)
        watches = Counter(path.rsplit("/", 1)[-1] for path, params in requests if params.get("watch") == "true")
        result = {
            "pods": self.args.pods, "seed": self.args.seed, "token": self.args.token,
            "uids": len(truth), "backlog_lines": backlog,
            "lines_written": sum(p.written for p in truth.values()),
            "lines_expected": len(expected), "records": len(self.reader.records),
            "missing": len(missing), "duplicate_lines": duplicates, "raw_duplicate_records": raw_dupes,
            "problems": dict(problems), "examples": examples, "metadata_marks": dict(marked),
            "path_shipped": len(path_ids), "path_counted_by_agent": self.agent.path_counted,
            "requests": len(requests), "lists": dict(lists), "watches": dict(watches),
            "pod_requests_not_node_scoped": len(not_scoped),
            "rss_mib": round(rss / 2**20, 1), "rss_pods": rss_pods,
            "stop_exit_codes": codes, "tracebacks": events.get("TRACEBACK", 0),
            "events": {k: v for k, v in events.items() if k.startswith(("kube_", "stream_"))},
        }
        result["pod_lists_expected"] = len(self.agent.procs) + gone
        if lists.get("pods", 0) > result["pod_lists_expected"]:
            problems["extra_pod_lists"] += 1
            result["problems"] = dict(problems)
        if missing:
            sample = sorted(missing)[:5]
            result["missing_examples"] = [(truth[u].namespace, truth[u].name, u[:8], s) for u, s in sample]
        return result


def measure_rss(args: argparse.Namespace) -> None:
    """Agent RSS once caught up on ``--pods`` pods' backlogs, with pod metadata and without."""
    from tests.fixtures.servers import start_tansu

    out: dict[str, float] = {}
    for mode in ("kube", "no-kube"):
        run = Run(args)
        run.workdir = Path(args.workdir) / f"rss-pods{args.pods}-{mode}"
        run.node = Node(run.workdir / "node", random.Random(args.seed))
        broker = start_tansu(run.workdir / "process-logs")
        run.api = ApiProcess(run.workdir / "process-logs")
        run.agent_down = True
        run.deleted = []
        try:
            from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

            admin = AdminClient({"bootstrap.servers": broker.url})
            for future in admin.create_topics([NewTopic("rss", num_partitions=4, replication_factor=1)]).values():
                future.result(30)
            run.reader = Reader(broker.url, "rss")
            run.agent = Agent(run.workdir, run.node, run.api.url, broker.url, "rss", None,
                              kube_enabled=mode == "kube")
            batch = []
            for i in range(args.pods):
                pod = run.node.new_pod(run.rng.choice(["default", "shop", "payments", RETENTION_NS]),
                                       run.name("web"), pod_retention=i % 40 == 3,
                                       owner=("ReplicaSet", "web-5d8f7c9b4"))
                batch.append(pod.api_object())
                if len(batch) == 500:
                    run.api.add_pods(batch)
                    batch = []
            run.api.add_pods(batch)
            for pod in run.node.live():
                run.node.start_container(pod)
                run.node.write(pod, 5)
            run.agent.start()
            run.agent_down = False
            run.wait_quiet("rss")
            for _ in range(20):  # a few idle rounds: the heap trim after the catch-up
                run.reader.poll(0.5)
            out[mode] = run.agent.rss()
            run.agent.stop()
        finally:
            with contextlib.suppress(Exception):
                if run.agent.alive():
                    run.agent.procs[-1].kill()
            run.api.close()
            broker.stop()
            with contextlib.suppress(Exception):
                run.reader.close()
            run.node.close()
    per_pod = (out["kube"] - out["no-kube"]) / args.pods
    print(json.dumps({"pods": args.pods, "rss_mib_kube": round(out["kube"] / 2**20, 1),
                      "rss_mib_no_kube": round(out["no-kube"] / 2**20, 1),
                      "kube_kib_per_pod": round(per_pod / 1024, 2),
                      "agent_kib_per_pod": round(out["kube"] / args.pods / 1024, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--token", action="store_true", help="the API demands a bearer token from a file")
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--churn-seconds", type=float, default=10.0)
    parser.add_argument("--workdir", default="/tmp/kube-churn")
    parser.add_argument("--rss", action="store_true",
                        help="only measure the agent's RSS on --pods pods, with and without pod metadata")
    parser.add_argument("--serve-api", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_api:
        serve_api(*args.serve_api)
        return
    if args.rss:
        measure_rss(args)
        return
    result = Run(args).run()
    failed = (result["missing"] or result["duplicate_lines"] or result["problems"]
              or result["pod_requests_not_node_scoped"] or result["tracebacks"]
              or any(c != 0 for c in result["stop_exit_codes"]))
    print(json.dumps(result, indent=1, default=str))
    print("RESULT", "FAIL" if failed else "PASS")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
