"""Schema 2 column encodings: CPU to encode and decode one per-stream batch, and its bytes.

Issue #22 puts one container stream's batch in one Kafka message: the
resource (``kubernetes``, ``log.file``, ``podlog``, the ``event.id`` prefix)
once, then one row per line in columns (offset, time_ns, stream, flags,
message), compressed per message.  This script measures the candidates on
the same batches, in the same process and run:

* ``schema 1``: today's value, ``{"schema":1,"records":[...]}``, one JSON map
  per record as the agent builds them (``RecordBuilder`` records, payloads
  parsed into ``json``/``level`` as ``KubeEnricher`` does), orjson, then zstd
  level 3 per message: the baseline;
* ``wire zstd`` / ``wire none``: ``podlog.wire.encode`` / ``decode`` (binary
  columns, codec zstd or none), the real module;
* ``json arrays``: ``{"schema":2,"resource":...,"offset":[...],"time_ns":[...],
  "stream":[...],"flags":[...],"message":[...]}`` with orjson, then zstd; the
  messages arrive as bytes (as the reader has them) and are decoded to ``str``
  inside the timed encode; ``json arrays (str in)`` is the same with the
  messages already ``str`` (the Docker json-file path, where the runtime's
  JSON is parsed anyway);
* ``msgpack``: the same column structure as a ``msgspec.Struct``, msgspec
  msgpack (messages as msgpack ``bin``), then zstd; decoded with a typed
  decoder (skipped when msgspec is not installed).

Columns of the table (CPU time of this process, ``time.process_time_ns``;
medians of ``--runs`` runs; within a run the candidates take turns on chunks of
about 10,000 lines, in a rotating order, so load from elsewhere on the machine
falls on all of them alike):

* encode µs/line: batch in memory -> message value;
* decode -> columns: value -> columns (the ``StreamBatch``, a dict of lists,
  the ``Struct``); schema 1 has no columns, its decode gives records;
* decode -> records: value -> schema-1-shaped records, as the indexer gets
  them: ``wire.to_records(wire.decode(v))`` (``level``/``json`` unset),
  schema 1 ``decode_message`` (payloads were parsed by the agent);
* decode_message: ``wire.decode_message`` as the indexer calls it: schema 2
  rows become records and their payloads are parsed there (the work the agent
  does for schema 1 today), so this column does the same work for both;
* bytes/line on the wire (after the per-message codec), and the compression
  ratio against the raw CRI lines the runtime wrote (``<time> <stream> F|P``
  prefix per physical line, 16 KiB partials, newlines).

Data: CRI container logs of 200 realistic pods (``tests.fixtures.kube_api.
realistic_pods``: 8 labels, 7 annotations, owner workload, image, enriched by
the real ``KubeEnricher`` into the record's ``kubernetes`` map), one log
flavour per workload: JSON app logs (zap style, some with a stacktrace field),
Spring Boot logback with multi-line stack traces, ingress-nginx access logs,
klog, Python logging with multi-line tracebacks; about 1 line in 1,500 is
over 16 KiB (joined CRI partials).  The same number of lines goes into
batches of 50, 500 and 2,000 lines (one table block each, and all together).

The generated inputs are frozen out of the garbage collector's view
(``gc.freeze``) so collections while timing scan only what the timed code
allocates.  No timing is asserted; each candidate's round trip is checked once,
untimed, before the runs.

    python bench/wire_encodings.py              # ~210k lines, 5 runs, about a minute
    python bench/wire_encodings.py --runs 3 --lines 90000
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import platform
import random
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cramjam
import orjson

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# Keep bench/ off the import path (bench/collector.py is named like the package).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

from collector.enrichment import PathMeta  # noqa: E402
from collector.kube.config import KubernetesConfig  # noqa: E402
from collector.kube.enrich import ApiState, KubeEnricher  # noqa: E402
from podlog import wire  # noqa: E402
from podlog.payload import PayloadLimits, parse_payloads  # noqa: E402
from podlog.record import (  # noqa: E402
    Record,
    RecordBuilder,
    SourcePosition,
    decode_batch,
    encode_batch,
    format_timestamp_ns,
    make_record,
)
from tests.fixtures.kube_api import filled_pod_cache, realistic_pods  # noqa: E402

try:
    import msgspec
except ImportError:  # the msgpack candidate is optional
    msgspec = None  # type: ignore[assignment]

ZSTD_LEVEL = 3
BATCH_SIZES = (50, 500, 2000)
PODS = 200
CHUNK_LINES = 10_000
"""Lines each candidate encodes and decodes before the next one takes its turn."""
CRI_PARTIAL = 16 * 1024
BASE_NS = 1_795_737_600_000_000_000
FLAVOURS = ("json", "logback", "nginx", "klog", "python")
FLAVOUR_WEIGHTS = (35, 20, 20, 10, 15)


# -- realistic lines -----------------------------------------------------------------


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _ip(rng: random.Random) -> str:
    return f"10.244.{rng.randrange(64)}.{rng.randrange(2, 250)}"


_PATHS = ("/api/v1/orders/{n}", "/api/v1/items/{n}", "/api/v1/cart", "/api/v2/search?q=item{n}&page={p}",
          "/api/v1/users/{n}/profile", "/healthz", "/metrics", "/static/js/app.{h}.js", "/api/v1/payments/{n}/capture")
_AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
           "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Mobile/15E148",
           "kube-probe/1.29", "okhttp/4.12.0", "Go-http-client/2.0", "python-requests/2.31.0")
_WORDS = ("order", "payment", "customer", "inventory", "cart", "session", "token", "upstream", "cache", "retry",
          "shipment", "invoice", "refund", "quota", "tenant", "webhook", "batch", "lock", "replica", "queue")
_JAVA_CLASSES = ("com.example.orders.web.OrderController", "com.example.orders.service.OrderService",
                 "com.example.payments.client.PaymentClient", "org.springframework.web.servlet.DispatcherServlet",
                 "org.hibernate.engine.jdbc.spi.SqlExceptionHelper", "com.zaxxer.hikari.pool.HikariPool",
                 "org.apache.catalina.core.ApplicationFilterChain", "io.netty.channel.nio.NioEventLoop")
_PY_FILES = ("/usr/local/lib/python3.11/site-packages/django/core/handlers/exception.py",
             "/usr/local/lib/python3.11/site-packages/django/core/handlers/base.py",
             "/usr/local/lib/python3.11/site-packages/celery/app/trace.py",
             "/app/shop/orders/views.py", "/app/shop/orders/services.py", "/app/shop/payments/gateway.py",
             "/usr/local/lib/python3.11/site-packages/requests/adapters.py")


def _path(rng: random.Random) -> str:
    return rng.choice(_PATHS).format(n=rng.randrange(1, 10_000_000), p=rng.randrange(1, 20), h=_hex(rng, 8))


def _clock(ns: int) -> tuple[int, int, int, int]:
    seconds = ns // 1_000_000_000
    return (seconds // 3600) % 24, (seconds // 60) % 60, seconds % 60, ns % 1_000_000_000


def json_line(rng: random.Random, ns: int) -> tuple[str, int, int]:
    """A zap/structlog-style JSON line; a few carry a multi-line ``stacktrace`` field."""
    h, m, s, frac = _clock(ns)
    status = rng.choices((200, 201, 204, 400, 404, 500, 503), (70, 8, 5, 6, 6, 3, 2))[0]
    doc: dict[str, Any] = {
        "level": "error" if status >= 500 else ("warn" if status >= 400 else "info"),
        "ts": f"2026-11-27T{h:02d}:{m:02d}:{s:02d}.{frac // 1000:06d}Z",
        "logger": f"{rng.choice(_WORDS)}.http",
        "caller": f"http/{rng.choice(_WORDS)}.go:{rng.randrange(20, 900)}",
        "msg": "request completed" if status < 400 else f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} failed",
        "method": rng.choice(("GET", "GET", "GET", "POST", "PUT", "DELETE")),
        "path": _path(rng),
        "status": status,
        "duration_ms": round(rng.lognormvariate(2.5, 1.0), 3),
        "bytes": rng.randrange(0, 60_000),
        "request_id": _uuid(rng),
        "trace_id": _hex(rng, 32),
        "span_id": _hex(rng, 16),
        "user_id": f"u-{rng.randrange(1, 2_000_000)}",
        "remote_addr": f"{_ip(rng)}:{rng.randrange(30000, 61000)}",
    }
    if status >= 500:
        doc["error"] = f"rpc error: code = Unavailable desc = connection refused to {rng.choice(_WORDS)}:8080"
        doc["stacktrace"] = "\n".join(
            f"github.com/example/shop/{rng.choice(_WORDS)}.(*Handler).Serve\n\t/src/{rng.choice(_WORDS)}/"
            f"handler.go:{rng.randrange(20, 600)}" for _ in range(rng.randrange(4, 12)))
    return orjson.dumps(doc).decode(), 0, 0


def logback_line(rng: random.Random, ns: int) -> tuple[str, int, int]:
    """A Spring Boot logback line; about 3% are ERROR events with a merged stack trace."""
    h, m, s, frac = _clock(ns)
    thread = f"nio-8080-exec-{rng.randrange(1, 200)}"
    stamp = f"2026-11-27 {h:02d}:{m:02d}:{s:02d}.{frac // 1_000_000:03d}"
    cls = rng.choice(_JAVA_CLASSES)
    short = ".".join(p[0] for p in cls.split(".")[:-1]) + "." + cls.rsplit(".", 1)[1]
    if rng.random() < 0.03:
        lines = [f"{stamp} ERROR 1 --- [{thread}] {short:<40} : Servlet.service() for servlet "
                 f"[dispatcherServlet] threw exception",
                 f"java.lang.IllegalStateException: {rng.choice(_WORDS)} {rng.randrange(1, 10**7)} not found"]
        for depth in range(rng.randrange(25, 70)):
            frame = rng.choice(_JAVA_CLASSES)
            lines.append(f"\tat {frame}.{rng.choice(_WORDS)}{depth % 7}({frame.rsplit('.', 1)[1]}.java:"
                         f"{rng.randrange(30, 900)}) ~[app.jar:1.{rng.randrange(20)}.0]")
            if depth == 20:
                lines.append(f"Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is "
                             f"not available, request timed out after {rng.randrange(1000, 30000)}ms.")
        lines.append(f"\t... {rng.randrange(10, 90)} common frames omitted")
        return "\n".join(lines), 1, wire.FLAG_MULTILINE
    level = rng.choices(("INFO", "DEBUG", "WARN"), (80, 12, 8))[0]
    text = rng.choice((
        f"Created {rng.choice(_WORDS)} {rng.randrange(1, 10**7)} for customer {rng.randrange(1, 10**6)} "
        f"in {rng.randrange(1, 400)} ms",
        f"HikariPool-1 - Pool stats (total={rng.randrange(5, 20)}, active={rng.randrange(0, 20)}, "
        f"idle={rng.randrange(0, 20)}, waiting={rng.randrange(0, 3)})",
        f"Completed {rng.choice(('GET', 'POST'))} {_path(rng)} with status {rng.choice((200, 200, 201, 404))} "
        f"traceId={_hex(rng, 32)} spanId={_hex(rng, 16)}",
        f"Cache {rng.choice(('hit', 'miss'))} for key {rng.choice(_WORDS)}:{_uuid(rng)}",
    ))
    return f"{stamp} {level:>5} 1 --- [{thread}] {short:<40} : {text}", 0, 0


_MONTH_DAY = "27/Nov/2026"


def nginx_line(rng: random.Random, ns: int) -> tuple[str, int, int]:
    """An ingress-nginx access line (its default log format); a few error-log lines on stderr."""
    h, m, s, _ = _clock(ns)
    if rng.random() < 0.01:
        return (f"2026/11/27 {h:02d}:{m:02d}:{s:02d} [error] {rng.randrange(20, 60)}#{rng.randrange(20, 60)}: "
                f"*{rng.randrange(10**6, 10**8)} upstream timed out (110: Operation timed out) while reading "
                f"response header from upstream, client: {_ip(rng)}, server: shop.example.com, request: "
                f"\"GET {_path(rng)} HTTP/1.1\", upstream: \"http://{_ip(rng)}:8080{_path(rng)}\"", 1, 0)
    status = rng.choices((200, 304, 301, 404, 499, 502), (80, 8, 3, 5, 2, 2))[0]
    size = rng.randrange(0, 80_000)
    upstream = f"{rng.random() * 0.3:.3f}"
    return (f"{_ip(rng)} - - [{_MONTH_DAY}:{h:02d}:{m:02d}:{s:02d} +0000] \"{rng.choice(('GET', 'GET', 'POST'))} "
            f"{_path(rng)} HTTP/{rng.choice(('1.1', '2.0'))}\" {status} {size} \"https://shop.example.com/"
            f"{rng.choice(_WORDS)}\" \"{rng.choice(_AGENTS)}\" {rng.randrange(200, 1500)} {upstream} "
            f"[shop-{rng.choice(_WORDS)}-8080] [] {_ip(rng)}:8080 {size} {upstream} {status} {_hex(rng, 32)}",
            0, 0)


def klog_line(rng: random.Random, ns: int) -> tuple[str, int, int]:
    """A klog structured line, as controllers and kubelet-like components write them (stderr)."""
    h, m, s, frac = _clock(ns)
    sev = rng.choices("IWE", (85, 10, 5))[0]
    pod = f"ns-{rng.randrange(50)}/service-{rng.randrange(200)}-{_hex(rng, 10)}-{_hex(rng, 5)}"
    text = rng.choice((
        f'"Reconciling" controller="deployment" key="{pod.rsplit("-", 2)[0]}" generation={rng.randrange(1, 400)}',
        f'"Reconciler error" err="Operation cannot be fulfilled on replicasets.apps \\"{pod}\\": the object has '
        f'been modified; please apply your changes to the latest version and try again" controller="replicaset"',
        f'"operationExecutor.VerifyControllerAttachedVolume started" volumeName="kubernetes.io/projected/'
        f'{_uuid(rng)}-kube-api-access-{_hex(rng, 5)}" pod="{pod}"',
        f'"Observed a panic in reconciler" duration="{rng.randrange(1, 900)}ms" pod="{pod}" podUID="{_uuid(rng)}"',
        f'"Event occurred" object="{pod}" kind="Pod" apiVersion="v1" type="Normal" reason="Scheduled"',
    ))
    source = f"{rng.choice(('controller', 'reconciler', 'leaderelection', 'cache'))}.go:{rng.randrange(50, 1200)}"
    return f"{sev}1127 {h:02d}:{m:02d}:{s:02d}.{frac // 1000:06d} {1:7d} {source}] {text}", 1, 0


def python_line(rng: random.Random, ns: int) -> tuple[str, int, int]:
    """Python logging (Django/Celery); about 4% are merged tracebacks on stderr."""
    h, m, s, frac = _clock(ns)
    stamp = f"2026-11-27 {h:02d}:{m:02d}:{s:02d},{frac // 1_000_000:03d}"
    if rng.random() < 0.04:
        lines = [f"{stamp} ERROR [django.request] Internal Server Error: {_path(rng)}",
                 "Traceback (most recent call last):"]
        for _ in range(rng.randrange(5, 16)):
            name = rng.choice(_PY_FILES)
            lines.append(f'  File "{name}", line {rng.randrange(10, 700)}, in {rng.choice(_WORDS)}_handler')
            lines.append(f"    response = {rng.choice(_WORDS)}.{rng.choice(_WORDS)}(request, *args, **kwargs)")
        lines.append(f"{rng.choice(('KeyError', 'ValueError', 'requests.exceptions.ConnectionError'))}: "
                     f"'{rng.choice(_WORDS)}_{rng.randrange(1, 10**6)}'")
        return "\n".join(lines), 1, wire.FLAG_MULTILINE
    text = rng.choice((
        f"[{stamp}: INFO/ForkPoolWorker-{rng.randrange(1, 9)}] Task shop.tasks.process_{rng.choice(_WORDS)}"
        f"[{_uuid(rng)}] succeeded in {rng.random():.6f}s: None",
        f"{stamp} INFO [shop.{rng.choice(_WORDS)}] {rng.choice(('GET', 'POST'))} {_path(rng)} "
        f"{rng.choice((200, 200, 302, 404))} {rng.randrange(1, 600)}ms user={rng.randrange(1, 10**6)}",
        f"{stamp} WARNING [shop.{rng.choice(_WORDS)}] retrying {rng.choice(_WORDS)} "
        f"{rng.randrange(1, 10**7)} (attempt {rng.randrange(1, 5)}/5) after {rng.random() * 3:.2f}s",
    ))
    return text, 0, 0


def huge_line(rng: random.Random, ns: int) -> tuple[str, int, int]:
    """A line over 16 KiB (a logged request body or a dump), joined from CRI partials."""
    if rng.random() < 0.5:
        blob = base64.b64encode(rng.randbytes(rng.randrange(12_500, 36_000))).decode()
        text = orjson.dumps({"level": "debug", "msg": "request body", "body_b64": blob}).decode()
    else:
        items = [{"sku": f"SKU-{rng.randrange(10**6)}", "qty": rng.randrange(1, 9), "price": rng.randrange(100, 99999),
                  "warehouse": rng.choice(_WORDS)} for _ in range(rng.randrange(250, 700))]
        text = orjson.dumps({"level": "info", "msg": "cart snapshot", "items": items}).decode()
    return text, 0, wire.FLAG_JOINED


GENERATORS: dict[str, Callable[[random.Random, int], tuple[str, int, int]]] = {
    "json": json_line, "logback": logback_line, "nginx": nginx_line, "klog": klog_line, "python": python_line,
}


# -- container streams and batches ---------------------------------------------------


@dataclass(slots=True)
class Container:
    """One container's log file: its record builder, flavour and position."""

    build: Callable[..., Record]
    flavour: str
    offset: int = 0
    ns: int = BASE_NS


@dataclass(slots=True)
class Batch:
    """One per-stream batch in every candidate's input form."""

    records: list[Record]
    stream_batch: wire.StreamBatch
    messages_str: list[str]
    raw_bytes: int
    physical_lines: int


def _containers(rng: random.Random) -> list[Container]:
    """One container per realistic pod, its ``kubernetes`` map made by the real enricher."""
    config = KubernetesConfig()
    cache = filled_pod_cache([orjson.dumps(p) for p in realistic_pods(PODS)], config)
    api = ApiState()
    api.synced = api.connected = True
    enricher = KubeEnricher(config, "node-a", cache, api)
    containers = []
    for n, entry in enumerate(sorted(cache.entries(), key=lambda e: e.pod.name)):
        pod = entry.pod
        path = f"/var/log/pods/{pod.namespace}_{pod.name}_{pod.uid}/app/0.log"
        identity = f"2049:{rng.randrange(10**6, 10**8)}:{_hex(rng, 16)}"
        probe = make_record(position=SourcePosition("prod-eu-1", "node-a", identity, 0, 0),
                            timestamp=format_timestamp_ns(BASE_NS), timestamp_ns=BASE_NS, message="x",
                            stream="stdout", path=path)
        enricher.enrich(PathMeta(pod.namespace, pod.name, "app", pod_uid=pod.uid), [probe])
        if probe["podlog"].get("metadata") != "api":
            raise SystemExit(f"the enricher did not know pod {pod.name}: {probe['podlog']}")
        builder = RecordBuilder(cluster="prod-eu-1", node="node-a", identity=identity, generation=0, path=path,
                                kubernetes=probe["kubernetes"], podlog=probe["podlog"])
        workload = n // 10  # realistic_pods: ten replicas per workload
        flavour = random.Random(workload).choices(FLAVOURS, FLAVOUR_WEIGHTS)[0]
        containers.append(Container(builder.build, flavour))
    return containers


def _cri_bytes(message: bytes, stream: int) -> tuple[int, int]:
    """Bytes the runtime wrote for one row, and its physical lines (CRI, 16 KiB partials)."""
    prefix = 31 + len(wire.STREAMS[stream]) + 3  # "<30-char time> <stream> F "
    size = lines = 0
    for line in message.split(b"\n"):
        pieces = max(1, -(-len(line) // CRI_PARTIAL))
        size += len(line) + pieces * (prefix + 1)
        lines += pieces
    return size, lines


def make_batch(rng: random.Random, container: Container, rows: int) -> Batch:
    """The next ``rows`` lines of ``container``, in every candidate's input form."""
    records: list[Record] = []
    flags_column: list[int] = []
    raw = physical = 0
    generate = GENERATORS[container.flavour]
    for _ in range(rows):
        container.ns += int(rng.expovariate(1 / 4_000_000)) if rng.random() < 0.7 else 0  # bursts share a tick
        if rng.random() < 1 / 1500:
            text, stream, flags = huge_line(rng, container.ns)
        else:
            text, stream, flags = generate(rng, container.ns)
        size, lines = _cri_bytes(text.encode(), stream)
        records.append(container.build(container.offset, format_timestamp_ns(container.ns), container.ns, text,
                                       wire.STREAMS[stream]))
        flags_column.append(flags)
        container.offset += size
        raw += size
        physical += lines
    columns = wire.batch_from_records(records)
    # batch_from_records knows only ``truncated``: the reader's join and multi-line flags go in here.
    stream_batch = wire.StreamBatch(columns.resource, columns.offsets, columns.times_ns, columns.streams,
                                    flags_column, columns.messages)
    messages_str = [r["message"] for r in records]
    # Schema 1 as the agent ships it today: payloads parsed into json/level by the enricher.
    parse_payloads(records, "json", PayloadLimits())
    return Batch(records, stream_batch, messages_str, raw, physical)


def make_groups(total_lines: int, seed: int) -> dict[int, list[Batch]]:
    """For each batch size the same number of lines (``total_lines / 3``), over all containers."""
    rng = random.Random(seed)
    containers = _containers(rng)
    groups: dict[int, list[Batch]] = {}
    at = 0
    for size in BATCH_SIZES:
        count = max(1, total_lines // len(BATCH_SIZES) // size)
        batches = []
        for _ in range(count):
            batches.append(make_batch(rng, containers[at % len(containers)], size))
            at += 7  # a stride coprime with 200: neighbouring batches come from different workloads
        groups[size] = batches
    return groups


# -- the candidates ------------------------------------------------------------------


def _zstd(data: bytes) -> bytes:
    return bytes(cramjam.zstd.compress(data, level=ZSTD_LEVEL))


def _unzstd(value: bytes) -> bytes:
    return bytes(cramjam.zstd.decompress(value))


def encode_schema1(batch: Batch) -> bytes:
    return _zstd(encode_batch(batch.records))


def decode_schema1(value: bytes) -> list[Record]:
    return decode_batch(_unzstd(value))


def encode_wire_zstd(batch: Batch) -> bytes:
    return wire.encode(batch.stream_batch, "zstd")


def encode_wire_none(batch: Batch) -> bytes:
    return wire.encode(batch.stream_batch, "none")


def decode_wire_records(value: bytes) -> list[Record]:
    return wire.to_records(wire.decode(value))


def decode_message(value: bytes) -> list[Record]:
    return wire.decode_message(value).records


def decode_message_schema1(value: bytes) -> list[Record]:
    """What the indexer does with a schema 1 value: Kafka's zstd undone, then ``decode_message``."""
    return wire.decode_message(_unzstd(value)).records


def _json_doc(columns: wire.StreamBatch, messages: Sequence[str]) -> bytes:
    return orjson.dumps({
        "schema": 2, "resource": columns.resource, "offset": columns.offsets, "time_ns": columns.times_ns,
        "stream": columns.streams, "flags": columns.flags, "message": messages,
    })


def encode_json_arrays(batch: Batch) -> bytes:
    columns = batch.stream_batch
    return _zstd(_json_doc(columns, [m.decode("utf-8", "replace") for m in columns.messages]))


def encode_json_arrays_str(batch: Batch) -> bytes:
    return _zstd(_json_doc(batch.stream_batch, batch.messages_str))


def decode_json_arrays(value: bytes) -> dict[str, Any]:
    doc = orjson.loads(_unzstd(value))
    rows = len(doc["offset"])
    if not (len(doc["time_ns"]) == len(doc["stream"]) == len(doc["flags"]) == len(doc["message"]) == rows):
        raise ValueError("columns of unequal length")
    return doc  # type: ignore[no-any-return]


if msgspec is not None:

    class Columns(msgspec.Struct):
        """The column structure for msgpack: the same keys as the JSON-array candidate."""

        schema: int
        resource: dict[str, Any]
        offset: list[int]
        time_ns: list[int]
        stream: list[int]
        flags: list[int]
        message: list[bytes]

    _MSGPACK_ENCODER = msgspec.msgpack.Encoder()
    _MSGPACK_DECODER = msgspec.msgpack.Decoder(Columns)

    def encode_msgpack(batch: Batch) -> bytes:
        c = batch.stream_batch
        columns = Columns(2, dict(c.resource), list(c.offsets), list(c.times_ns), list(c.streams), list(c.flags),
                          list(c.messages))
        return _zstd(_MSGPACK_ENCODER.encode(columns))

    def decode_msgpack(value: bytes) -> Columns:
        columns = _MSGPACK_DECODER.decode(_unzstd(value))
        rows = len(columns.offset)
        if not (len(columns.time_ns) == len(columns.stream) == len(columns.flags) == len(columns.message) == rows):
            raise ValueError("columns of unequal length")
        return columns


@dataclass(frozen=True, slots=True)
class Candidate:
    """One encoding: how it encodes a batch and how each decode column is measured."""

    name: str
    encode: Callable[[Batch], bytes]
    to_columns: Callable[[bytes], object] | None
    to_records: Callable[[bytes], object] | None
    message: Callable[[bytes], object] | None


def candidates() -> list[Candidate]:
    found = [
        Candidate("schema 1 (JSON maps)", encode_schema1, None, decode_schema1, decode_message_schema1),
        Candidate("wire zstd (podlog.wire)", encode_wire_zstd, wire.decode, decode_wire_records, decode_message),
        Candidate("wire none (podlog.wire)", encode_wire_none, wire.decode, decode_wire_records, decode_message),
        Candidate("JSON arrays (bytes in)", encode_json_arrays, decode_json_arrays, None, None),
        Candidate("JSON arrays (str in)", encode_json_arrays_str, decode_json_arrays, None, None),
    ]
    if msgspec is not None:
        found.append(Candidate("msgpack (msgspec)", encode_msgpack, decode_msgpack, None, None))
    return found


def check_round_trips(batches: Sequence[Batch], found: Sequence[Candidate]) -> None:
    """Each candidate gives back every batch's columns (untimed, once)."""
    for batch in batches:
        c = batch.stream_batch
        want = (list(c.offsets), list(c.times_ns), list(c.streams), list(c.flags), list(c.messages))
        for candidate in found:
            value = candidate.encode(batch)
            if candidate.to_columns is wire.decode:
                got = wire.decode(value)
                have = (list(got.offsets), list(got.times_ns), list(got.streams), list(got.flags),
                        list(got.messages))
            elif candidate.to_columns is not None:
                doc = candidate.to_columns(value)
                fields = doc if isinstance(doc, dict) else {k: getattr(doc, k) for k in Columns.__struct_fields__}
                have = (fields["offset"], fields["time_ns"], fields["stream"], fields["flags"],
                        [m.encode() if isinstance(m, str) else m for m in fields["message"]])
            else:
                records = decode_schema1(value)
                have = (want[0], want[1], want[2], want[3], [r["message"].encode() for r in records])
                if [r["json"] for r in records] != [r["json"] for r in batch.records]:
                    raise SystemExit(f"{candidate.name}: payloads differ after a round trip")
            if have != want:
                raise SystemExit(f"{candidate.name}: columns differ after a round trip")
            if candidate.message is not None:
                records = candidate.message(value)  # type: ignore[assignment]
                if [r["event"]["id"] for r in records] != [r["event"]["id"] for r in batch.records]:
                    raise SystemExit(f"{candidate.name}: event ids differ after decode_message")


# -- measuring -----------------------------------------------------------------------


Sample = dict[str, int]
"""Per (batch size, candidate): CPU ns of each measured step, and wire bytes."""


def _timed(step: Callable[[], object]) -> tuple[int, object]:
    gc.collect()
    cpu = time.process_time_ns()
    result = step()
    return time.process_time_ns() - cpu, result


def measure(batches: Sequence[Batch], candidate: Candidate) -> Sample:
    """One run of ``candidate`` over ``batches``: every step over all of them, CPU ns."""
    encode = candidate.encode
    spent, out = _timed(lambda: [encode(b) for b in batches])
    values: list[bytes] = out  # type: ignore[assignment]
    sample = {"encode": spent, "bytes": sum(map(len, values))}
    for step in ("to_columns", "to_records", "message"):
        decode: Callable[[bytes], object] | None = getattr(candidate, step)
        if decode is None:
            continue

        def run(decode: Callable[[bytes], object] = decode) -> None:
            for value in values:
                decode(value)

        sample[step], _ = _timed(run)
    return sample


def _chunks(batches: Sequence[Batch], count: int) -> list[Sequence[Batch]]:
    count = max(1, count)
    return [batches[at : at + count] for at in range(0, len(batches), count)]


def _fmt_us(ns: float | None, lines: int) -> str:
    return "—" if ns is None else f"{ns / lines / 1000:.2f}"


def _fmt_ratio(value: float | None, base: float | None) -> str:
    return "—" if value is None or not base else f"{value / base:.2f}"


def report(samples: dict[tuple[str, str], list[Sample]], lines: dict[str, int], raw: dict[str, int],
           names: list[str]) -> None:
    print("| batch | encoding | encode µs/line | x s1 | decode→columns µs/line | decode→records µs/line "
          "| decode_message µs/line | x s1 | wire B/line | x s1 | raw/wire |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base_name = names[0]
    for group in lines:
        medians: dict[str, dict[str, float]] = {}
        for name in names:
            runs = samples[(group, name)]
            medians[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        base = medians[base_name]
        n = lines[group]
        for name in names:
            m = medians[name]
            print(f"| {group} | {name} | {_fmt_us(m['encode'], n)} | {_fmt_ratio(m['encode'], base['encode'])} "
                  f"| {_fmt_us(m.get('to_columns'), n)} | {_fmt_us(m.get('to_records'), n)} "
                  f"| {_fmt_us(m.get('message'), n)} | {_fmt_ratio(m.get('message'), base['message'])} "
                  f"| {m['bytes'] / n:.1f} | {_fmt_ratio(m['bytes'], base['bytes'])} "
                  f"| {raw[group] / m['bytes']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs (medians reported)")
    parser.add_argument("--lines", type=int, default=210_000, help="lines in all batches, split over the sizes")
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args()
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("orjson", "cramjam", "msgspec")
                         if p != "msgspec" or msgspec is not None)
    print(f"# Python {platform.python_version()}, {versions}; zstd level {ZSTD_LEVEL}; "
          f"{len(os.sched_getaffinity(0))} CPUs; {args.runs} runs, medians")

    started = time.perf_counter()
    groups = make_groups(args.lines, args.seed)
    found = candidates()
    check_round_trips([b for batches in groups.values() for b in batches[:3]], found)
    gc.collect()
    gc.freeze()

    lines = {str(size): sum(len(b.stream_batch) for b in batches) for size, batches in groups.items()}
    raw = {str(size): sum(b.raw_bytes for b in batches) for size, batches in groups.items()}
    all_batches = [b for batches in groups.values() for b in batches]
    rows = sum(lines.values())
    physical = sum(b.physical_lines for b in all_batches)
    multiline = sum(1 for b in all_batches for f in b.stream_batch.flags if f & wire.FLAG_MULTILINE)
    huge = sum(1 for b in all_batches for m in b.stream_batch.messages if len(m) > CRI_PARTIAL)
    first = all_batches[0].records[0]
    resource_sizes = sorted(len(orjson.dumps(b.stream_batch.resource)) for b in all_batches)
    print(f"# data: {rows:,} lines ({physical:,} physical CRI lines; {multiline:,} multi-line events, "
          f"{huge} over 16 KiB), {sum(raw.values()) / 2**20:.1f} MiB raw CRI; {PODS} pods, flavours "
          f"{dict(zip(FLAVOURS, FLAVOUR_WEIGHTS, strict=True))} by workload; batches "
          + ", ".join(f"{len(v)} x {k}" for k, v in groups.items())
          + f"; resource {resource_sizes[len(resource_sizes) // 2]} B JSON (median); "
          f"a schema 1 record of a {len(first['message'])} B line is {len(orjson.dumps(first))} B; "
          f"generated in {time.perf_counter() - started:.1f} s")

    samples: dict[tuple[str, str], list[Sample]] = {}
    for run in range(args.runs):
        for size, batches in groups.items():
            totals: dict[str, Sample] = {c.name: {} for c in found}
            for n, chunk in enumerate(_chunks(batches, CHUNK_LINES // size)):
                # Candidates take turns chunk by chunk, in a rotating order, so what the rest of
                # the machine does meanwhile falls on all of them alike.
                shift = (run + n) % len(found)
                for candidate in found[shift:] + found[:shift]:
                    for key, value in measure(chunk, candidate).items():
                        totals[candidate.name][key] = totals[candidate.name].get(key, 0) + value
            for name, total in totals.items():
                samples.setdefault((str(size), name), []).append(total)
    for candidate in found:  # every size together, per run
        runs = zip(*(samples[(str(size), candidate.name)] for size in groups), strict=True)
        samples[("all", candidate.name)] = [{k: sum(s[k] for s in per_size) for k in per_size[0]}
                                            for per_size in runs]
    lines["all"], raw["all"] = rows, sum(raw.values())
    print()
    report(samples, lines, raw, [c.name for c in found])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\n# run: {usage.ru_utime + usage.ru_stime:.1f} CPU s, {time.perf_counter() - started:.1f} s wall, "
          f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB (inputs of every candidate held at once)")


if __name__ == "__main__":
    main()
