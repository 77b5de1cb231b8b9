"""The demo log generator of ``podlog run --demo``: realistic container logs, live.

It writes what a node's ``/var/log/containers`` holds: one file per
container named ``<pod>_<namespace>_<container>-<id>.log``, some in the CRI
format (containerd, CRI-O) and some in Docker's json-file format, from a
handful of pods in several namespaces: an nginx access log, a JSON-logging Go
service, a Java service that now and then throws a stack trace to stderr,
PostgreSQL, Redis, CoreDNS and a logfmt-logging Prometheus.  Each file is
rotated (renamed to ``.log.1``, a new one created) every
``rotate_seconds``, one pod at a time, the way the kubelet does.

On start it writes a few minutes of history so the first search shows
results, then keeps writing at about ``lines_per_second``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from podlog.logging import get_logger
from podlog.record import format_timestamp_ns

__all__ = ["DEMO_PODS", "DemoPod", "DemoWriter", "render_line"]

log = get_logger("podlog.demo")


@dataclass(frozen=True, slots=True)
class DemoPod:
    """One demo container and how it logs."""

    namespace: str
    pod: str
    container: str
    runtime: str
    """``cri`` or ``docker``: the file format its runtime writes."""
    style: str
    """Which application it imitates (a key of :data:`_STYLES`)."""
    weight: float
    """Share of all demo lines this container writes."""

    @property
    def file_name(self) -> str:
        """``<pod>_<namespace>_<container>-<64 hex>.log`` as in ``/var/log/containers``."""
        digest = hashlib.sha256(f"{self.namespace}/{self.pod}/{self.container}".encode()).hexdigest()
        return f"{self.pod}_{self.namespace}_{self.container}-{digest}.log"


DEMO_PODS: tuple[DemoPod, ...] = (
    DemoPod("shop", "frontend-7d9f8b6c4-x2k9p", "nginx", "cri", "nginx", 3.0),
    DemoPod("shop", "checkout-5b7c9d8f6-q8w2n", "checkout", "docker", "json", 2.0),
    DemoPod("shop", "payments-6c8d7e9f5-m3n4b", "payments", "cri", "java", 1.5),
    DemoPod("data", "postgres-0", "postgres", "cri", "postgres", 1.0),
    DemoPod("data", "redis-7f8e9d6c5-h7j8k", "redis", "docker", "redis", 0.5),
    DemoPod("kube-system", "coredns-5d78c9869d-vx7lq", "coredns", "cri", "coredns", 1.0),
    DemoPod("monitoring", "prometheus-0", "prometheus", "docker", "logfmt", 0.5),
)
"""The demo's containers: four namespaces, two runtimes, seven kinds of logs."""

_PATHS = ("/", "/api/products", "/api/products/{n}", "/api/cart", "/api/orders", "/healthz")
_USERS = ("alice", "bob", "carol", "dave", "erin")
_TABLES = ("orders", "products", "users", "payments")


def _nginx(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    path = rnd.choice(_PATHS).format(n=rnd.randrange(1, 500))
    status = rnd.choices((200, 201, 304, 404, 500, 502), (80, 5, 5, 6, 2, 2))[0]
    method = "POST" if path in ("/api/cart", "/api/orders") else "GET"
    stamp = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return [
        (
            "stdout",
            f'10.244.{rnd.randrange(4)}.{rnd.randrange(2, 250)} - - [{stamp}] "{method} {path} HTTP/1.1" '
            f'{status} {rnd.randrange(120, 40000)} "-" "Mozilla/5.0" {rnd.random() / 4:.3f}',
        )
    ]


def _json(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    order = rnd.randrange(10_000, 99_999)
    user = rnd.choice(_USERS)
    roll = rnd.random()
    if roll < 0.06:
        doc = {"level": "error", "msg": "payment declined", "order_id": order, "user": user,
               "error": "card_declined", "attempt": rnd.randrange(1, 4)}
    elif roll < 0.15:
        doc = {"level": "warn", "msg": "inventory service slow", "order_id": order,
               "duration_ms": rnd.randrange(800, 3000)}
    else:
        doc = {"level": "info", "msg": "order created", "order_id": order, "user": user,
               "items": rnd.randrange(1, 6), "total_cents": rnd.randrange(500, 90_000),
               "duration_ms": rnd.randrange(3, 120)}
    doc["ts"] = now.isoformat().replace("+00:00", "Z")
    return [("stdout", orjson.dumps(doc).decode())]


def _java(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}"
    thread = f"http-nio-8080-exec-{rnd.randrange(1, 10)}"
    if rnd.random() < 0.05:
        order = rnd.randrange(10_000, 99_999)
        return [
            ("stderr", f"{stamp} ERROR 1 --- [{thread}] c.e.payments.PaymentService      : "
                       f"Charge failed for order {order}"),
            ("stderr", "java.lang.IllegalStateException: upstream gateway returned 503"),
            ("stderr", "\tat com.example.payments.GatewayClient.charge(GatewayClient.java:118)"),
            ("stderr", "\tat com.example.payments.PaymentService.pay(PaymentService.java:64)"),
            ("stderr", "\tat com.example.payments.api.PaymentController.create(PaymentController.java:41)"),
            ("stderr", "Caused by: java.net.SocketTimeoutException: Read timed out"),
            ("stderr", "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)"),
            ("stderr", "\t... 42 common frames omitted"),
        ]
    amount = rnd.randrange(100, 50_000) / 100
    return [
        ("stdout", f"{stamp}  INFO 1 --- [{thread}] c.e.payments.PaymentService      : "
                   f"Charged {amount:.2f} EUR to card ending {rnd.randrange(1000, 9999)}")
    ]


def _postgres(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d} UTC"
    pid = rnd.randrange(100, 9000)
    if rnd.random() < 0.04:
        return [
            ("stderr", f"{stamp} [{pid}] ERROR:  deadlock detected"),
            ("stderr", f"{stamp} [{pid}] DETAIL:  Process {pid} waits for ShareLock on transaction "
                       f"{rnd.randrange(10**5, 10**6)}."),
        ]
    table = rnd.choice(_TABLES)
    return [
        ("stderr", f"{stamp} [{pid}] LOG:  duration: {rnd.random() * 300:.3f} ms  statement: "  # noqa: S608 - a log line that shows SQL, never executed
                   f"SELECT * FROM {table} WHERE id = {rnd.randrange(1, 10**6)}")
    ]


def _redis(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    stamp = now.strftime("%d %b %Y %H:%M:%S.") + f"{now.microsecond // 1000:03d}"
    message = rnd.choice(
        (
            "Background saving started by pid {n}",
            "DB saved on disk",
            "{n} changes in 60 seconds. Saving...",
            "Background saving terminated with success",
        )
    ).format(n=rnd.randrange(10, 999))
    return [("stdout", f"1:M {stamp} * {message}")]


def _coredns(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    del now
    name = rnd.choice(("api.shop.svc.cluster.local.", "postgres.data.svc.cluster.local.", "example.com."))
    code = "NXDOMAIN" if rnd.random() < 0.1 else "NOERROR"
    return [
        ("stdout", f'[INFO] 10.244.0.{rnd.randrange(2, 250)}:{rnd.randrange(30000, 60000)} - '
                   f'{rnd.randrange(1, 65535)} "A IN {name} udp 50 false 512" {code} qr,aa,rd 120 '
                   f"{rnd.random() / 1000:.6f}s")
    ]


def _logfmt(rnd: random.Random, now: datetime) -> list[tuple[str, str]]:
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if rnd.random() < 0.1:
        return [("stderr", f'ts={stamp} caller=scrape.go:1292 level=warn component="scrape manager" '
                           f'target=http://10.244.1.{rnd.randrange(2, 250)}:9100/metrics '
                           'msg="Append failed" err="context deadline exceeded"')]
    return [("stderr", f"ts={stamp} caller=compact.go:519 level=info component=tsdb "
                       f'msg="write block" mint={rnd.randrange(10**12)} duration={rnd.randrange(5, 900)}ms')]


_STYLES: dict[str, Callable[[random.Random, datetime], list[tuple[str, str]]]] = {
    "nginx": _nginx,
    "json": _json,
    "java": _java,
    "postgres": _postgres,
    "redis": _redis,
    "coredns": _coredns,
    "logfmt": _logfmt,
}


def render_line(runtime: str, stream: str, timestamp_ns: int, message: str) -> bytes:
    """One line of a container log file as ``runtime`` writes it (newline included)."""
    stamp = format_timestamp_ns(timestamp_ns)
    if runtime == "docker":
        return orjson.dumps({"log": message + "\n", "stream": stream, "time": stamp}) + b"\n"
    return f"{stamp} {stream} F {message}\n".encode()


class DemoWriter:
    """A :class:`podlog.lifecycle.Service` that writes demo container logs into a directory."""

    name = "demo-logs"

    def __init__(
        self,
        directory: Path,
        *,
        lines_per_second: float = 25.0,
        rotate_seconds: float = 180.0,
        history_seconds: float = 300.0,
        seed: int | None = None,
        pods: tuple[DemoPod, ...] = DEMO_PODS,
    ) -> None:
        self.directory = Path(directory)
        self.lines_per_second = lines_per_second
        self.rotate_seconds = rotate_seconds
        self.history_seconds = history_seconds
        self.pods = pods
        self._random = random.Random(seed)  # noqa: S311 - demo content, not security
        self._files: dict[DemoPod, IO[bytes]] = {}
        self._stopping = asyncio.Event()
        self._next_rotation = 0
        self.lines_written = 0
        """Lines written so far (a multi-line stack trace counts each line)."""
        self.rotations = 0

    async def start(self) -> None:
        """Create the directory, open each container's file and write the history."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for pod in self.pods:
            self._files[pod] = self._open(pod)
        now = time.time_ns()
        count = int(self.lines_per_second * self.history_seconds / 10)
        start = now - int(self.history_seconds * 1e9)
        step = max(1, (now - start) // max(1, count))
        for i in range(count):
            self._emit(start + i * step)
        self._flush()
        log.info("demo_started", directory=str(self.directory), history_lines=self.lines_written)

    def _open(self, pod: DemoPod) -> IO[bytes]:
        return (self.directory / pod.file_name).open("ab")

    def _emit(self, timestamp_ns: int) -> None:
        pod = self._random.choices(self.pods, [p.weight for p in self.pods])[0]
        moment = datetime.fromtimestamp(timestamp_ns / 1e9, tz=UTC)
        lines = _STYLES[pod.style](self._random, moment)
        out = self._files[pod]
        for offset, (stream, message) in enumerate(lines):
            out.write(render_line(pod.runtime, stream, timestamp_ns + offset * 1000, message))
        self.lines_written += len(lines)

    def _flush(self) -> None:
        for out in self._files.values():
            out.flush()

    def rotate(self, pod: DemoPod) -> None:
        """Rename the pod's file to ``.log.1`` (replacing the previous one) and start a new one."""
        path = self.directory / pod.file_name
        self._files[pod].close()
        path.rename(path.with_name(path.name + ".1"))
        self._files[pod] = self._open(pod)
        self.rotations += 1
        log.info("demo_file_rotated", path=str(path))

    def _ticks(self, tick: float) -> Iterator[int]:
        """Lines due per tick: a Poisson-like count around the configured rate."""
        while True:
            mean = self.lines_per_second * tick
            yield int(mean) + (1 if self._random.random() < mean - int(mean) else 0)

    async def run(self) -> None:
        """Write lines until stopped; rotate one file every ``rotate_seconds / len(pods)``."""
        tick = 0.2
        rotation_every = self.rotate_seconds / max(1, len(self.pods))
        next_rotation = time.monotonic() + rotation_every
        for due in self._ticks(tick):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            now = time.time_ns()
            for i in range(due):
                self._emit(now + i * 1000)
            self._flush()
            if time.monotonic() >= next_rotation:
                self.rotate(self.pods[self._next_rotation % len(self.pods)])
                self._next_rotation += 1
                next_rotation = time.monotonic() + rotation_every

    async def stop(self) -> None:
        """Close the files; safe to call twice."""
        self._stopping.set()
        for out in self._files.values():
            with contextlib.suppress(OSError):
                out.close()
        self._files.clear()
