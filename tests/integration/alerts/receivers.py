"""In-test HTTP receivers for notifications: a webhook (checks nothing, records everything)
that can be told to fail, and a real Alertmanager process on a free port."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from podlog.ops import HttpServer
from tests.fixtures.servers import ManagedProcess, _ready, _spawn, free_port, get_json, wait_for


@dataclass
class Received:
    """One request a receiver took: headers and raw body."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the in-test receiver saw, and how it answers next."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    """Status codes to answer the next requests with (then 200)."""


@asynccontextmanager
async def http_receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server on a free port that records POSTs."""
    receiver = Receiver()

    async def take(request: Request) -> Response:
        body = await request.body()
        if receiver.fail_next:
            return Response("down for the test", status_code=receiver.fail_next.pop(0))
        receiver.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
        return JSONResponse({"ok": True})

    server = HttpServer("receiver", Starlette(routes=[Route("/hook", take, methods=["POST"])]), "127.0.0.1:0")
    await server.start()
    receiver.url = f"http://127.0.0.1:{server.port}/hook"
    try:
        yield receiver
    finally:
        await server.stop()


def alertmanager_binary() -> str | None:
    """Debian's prometheus-alertmanager, or an alertmanager on PATH."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@contextmanager
def alertmanager(workdir: Path) -> Iterator[ManagedProcess]:
    """A real Alertmanager on a free port, no clustering; stopped by its PID."""
    binary = alertmanager_binary()
    assert binary is not None
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n"
        "receivers:\n  - name: blackhole\n"
    )
    port = free_port()
    proc = _spawn(
        "alertmanager",
        [
            binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        ],
        workdir,
    )
    proc.url = f"http://127.0.0.1:{port}"
    _ready(proc, lambda: wait_for(lambda: get_json(f"{proc.url}/api/v2/status"), 30, "alertmanager"))
    try:
        yield proc
    finally:
        proc.stop()


def active_alerts(url: str) -> list[dict[str, Any]]:
    """Alertmanager's current (unresolved) alerts."""
    alerts: list[dict[str, Any]] = get_json(f"{url}/api/v2/alerts")
    return alerts
