"""The search process: uvicorn serving :func:`search.app.create_app` as a Service.

Two listeners: the API and page on ``search.listen`` (what a Service and an
Ingress route to), and ``/metrics``, ``/healthz`` and ``/readyz`` on
``search.ops_listen``, a port for probes and Prometheus that no public route
reaches (:class:`podlog.ops.OpsServer`, as the agent and the indexer have it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from podlog.lifecycle import Health
from podlog.logging import get_logger
from podlog.ops import HttpServer, OpsServer
from podlog.settings import Settings
from search.alerts.api import RulesApi
from search.alerts.service import open_alert_service
from search.app import closing_event, create_app
from search.backends.base import SearchBackend
from search.config import SearchConfig

__all__ = ["SearchService", "open_backend"]

log = get_logger("search.service")

_PROBE_SECONDS = 10.0


def open_backend(settings: Settings) -> SearchBackend:
    """The OpenSearch backend named by ``settings.search``."""
    from search.backends.opensearch import OpenSearchBackend

    config = settings.search
    return OpenSearchBackend(
        config.opensearch_hosts,
        config.index_prefix,
        request_timeout=config.guards.timeout_seconds + 5,
        username=config.opensearch_username,
        password=config.opensearch_password,
        verify_certs=config.opensearch_verify_certs,
        ca_certs=config.opensearch_ca_certs,
    )


class SearchService:
    """Serves the search API and page, and its ops routes apart, until stopped; closes the backend on stop."""

    name = "search-http"

    def __init__(self, config: SearchConfig, backend: SearchBackend, *, health: Health) -> None:
        self.app = create_app(config, backend, health)
        self._backend = backend
        # The client address is the TCP peer: header mode trusts identity headers only from
        # search.auth.trusted_proxies, and a forwarding header must not change who the peer is.
        self._http = HttpServer(self.name, self.app, config.listen, graceful_seconds=3, proxy_headers=False)
        self._ops = OpsServer(config.ops_listen, health) if config.ops_listen else None
        self._probe: asyncio.Task[None] | None = None
        self._runs: list[asyncio.Task[None]] = []
        self._stopped = False
        # Alert rules run in this process, against the same backend (docs/alerts.md).
        self.alerts = open_alert_service(config, backend)
        if self.alerts is not None:
            self.app.state.api.alerts = RulesApi(self.alerts)

    @property
    def port(self) -> int:
        """The bound port of the API and page (useful with port 0)."""
        return self._http.port

    @property
    def ops_port(self) -> int:
        """The bound port of ``/metrics``, ``/healthz`` and ``/readyz``; 0 when disabled."""
        return self._ops.port if self._ops is not None else 0

    async def start(self) -> None:
        """Bind both listeners and start serving; raises if an address cannot be bound."""
        if self.alerts is not None:
            await self.alerts.start()
        if self._ops is not None:
            await self._ops.start()
        try:
            await self._http.start()
        except BaseException:
            if self._ops is not None:
                await self._ops.stop()
            if self.alerts is not None:
                await self.alerts.stop()
            raise
        log.info("search_started", port=self.port, ops_port=self.ops_port)
        ping = getattr(self._backend, "ping", None)
        if ping is not None:
            self._probe = asyncio.create_task(self._probe_backend(ping), name="search-backend-probe")

    async def _probe_backend(self, ping: Callable[[], Awaitable[bool]]) -> None:
        """Keep /readyz current: ready while the backend answers its ping."""
        api = self.app.state.api
        while not self._stopped:
            try:
                ok = await ping()
            except Exception as exc:  # noqa: BLE001 - a failing probe means not ready, never a crash
                ok = False
                log.warning("backend_probe_failed", error=repr(exc))
            reason = None if ok else f"{self._backend.name} does not answer"
            if reason != api.backend_error:
                log.info("backend_readiness_changed", ready=ok, backend=self._backend.name)
            api.backend_error = reason
            await asyncio.sleep(_PROBE_SECONDS)

    async def run(self) -> None:
        """Serve until stopped; returns, or raises, as soon as a listener or the alert evaluator ends."""
        servers = [self._http] if self._ops is None else [self._http, self._ops]
        self._runs = [asyncio.create_task(server.run(), name=f"{server.name}-run") for server in servers]
        if self.alerts is not None:
            self._runs.append(asyncio.create_task(self.alerts.run(), name="alerts-run"))
        done, _ = await asyncio.wait(self._runs, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def stop(self) -> None:
        """End live tails, stop accepting, finish requests, close the backend, then the ops port; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        serving = [task for task in self._runs if not task.done()]
        closing_event(self.app).set()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.alerts is not None:
            # Before the backend closes: an evaluation in flight still has its index.
            await self.alerts.stop()
        await self._http.stop()
        await self._backend.close()
        if self._ops is not None:
            # Last: /metrics answers a final scrape while the API drains.
            await self._ops.stop()
        # A listener still serving when stop() began has ended now; none fails unseen.
        for result in await asyncio.gather(*serving, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("listener_failed", error=repr(result))
        log.info("search_stopped")
