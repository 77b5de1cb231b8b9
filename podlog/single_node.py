"""Single-node mode (``podlog run``): the settings and the extra services it needs.

``podlog run`` is the agent, an indexer and the search page in one process,
with the embedded index in place of Kafka and OpenSearch.
:func:`prepare_run` turns a normal configuration into that one: state and
index under one directory, files from ``--logs`` (or ``/var/log/containers``),
the embedded transport and backend, the search page on ``127.0.0.1:8080`` and
``/metrics``, ``/healthz`` and ``/readyz`` on a loopback port of their own.
Moving to Kafka and OpenSearch later is a matter of running ``podlog agent``,
``indexer`` and ``search`` with the same file: nothing here changes code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from podlog.lifecycle import Service
from podlog.logging import get_logger
from podlog.ops import parse_listen
from podlog.settings import Settings

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_LISTEN",
    "DEFAULT_OPS_LISTEN",
    "SearchPageAnnouncer",
    "in_cluster",
    "kube_api_source",
    "log_patterns",
    "prepare_run",
    "run_extras",
]

log = get_logger("podlog.single_node")

DEFAULT_DATA_DIR = Path(".podlog")
"""State and index directory of ``podlog run`` when ``--data-dir`` is not given."""

DEFAULT_LISTEN = "127.0.0.1:8080"
"""Search page address of ``podlog run``: loopback, so nothing is exposed by default."""

DEFAULT_OPS_LISTEN = "127.0.0.1:0"
"""Ops address of ``podlog run`` (``/metrics``, ``/healthz``, ``/readyz``): loopback, on a
free port that the start line prints, so a Prometheus already on 9090 is no conflict."""

_SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def in_cluster() -> bool:
    """True inside a Kubernetes pod (service environment and a service-account token)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and _SERVICE_ACCOUNT_TOKEN.exists()


def kube_api_source(kubernetes: Any) -> str:
    """How ``podlog run`` can reach the Kubernetes API, or "" when it cannot.

    ``api_server`` or ``kubeconfig`` when configured, ``in-cluster`` inside a
    pod, else ``$KUBECONFIG`` or ``~/.kube/config`` when such a file exists
    (the order the API client loads them in).  With access, ``podlog run``
    watches pods and namespaces like the agent does, so the
    ``podlog.io/retention`` annotation (pod, then namespace) chooses the
    retention class there too.
    """
    if getattr(kubernetes, "api_server", ""):
        return "api_server"
    if getattr(kubernetes, "kubeconfig", ""):
        return "kubeconfig"  # a missing file is reported by the client, naming it
    if in_cluster():
        return "in-cluster"
    configured = os.environ.get("KUBECONFIG", "")
    if any(Path(part).is_file() for part in configured.split(os.pathsep) if part):
        return "$KUBECONFIG"
    with_home = os.environ.get("HOME")
    if with_home and (Path(with_home) / ".kube" / "config").is_file():
        return "~/.kube/config"
    return ""


def log_patterns(directory: Path) -> list[str]:
    """Globs for the ``*.log`` files under ``directory``.

    The directory itself (``/var/log/containers`` layout, a flat folder) and
    two levels below (``/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log``).
    Each depth is its own pattern, so no file is matched twice.
    """
    base = str(directory.absolute()).rstrip("/") or "/"
    return [f"{base}/*.log", f"{base}/*/*.log", f"{base}/*/*/*.log"]


def _is_loopback(listen: str) -> bool:
    host, _ = parse_listen(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _replace(obj: Any, **changes: Any) -> Any:
    known = {f.name for f in dataclasses.fields(obj)}
    return dataclasses.replace(obj, **{k: v for k, v in changes.items() if k in known})


def prepare_run(
    settings: Settings,
    *,
    logs: Path | None,
    data_dir: Path | None,
    listen: str | None,
    demo: bool,
) -> Settings:
    """The settings of one ``podlog run`` process, from the configured ones and the flags."""
    data = (data_dir if data_dir is not None else DEFAULT_DATA_DIR).absolute()
    if demo:
        logs = data / "demo-logs"
    collector = settings.collector
    if logs is not None:
        collector = _replace(collector, include=log_patterns(logs))
    if demo and getattr(collector, "multiline", None) == "none":
        # The demo's Java service writes stack traces; join them into one event.
        collector = _replace(collector, multiline="java")
    search = settings.search
    defaults = type(search)()
    address = listen or (search.listen if search.listen != defaults.listen else DEFAULT_LISTEN)
    parse_listen(address)  # a bad --listen fails here, naming the address
    ops_address = search.ops_listen if search.ops_listen != defaults.ops_listen else DEFAULT_OPS_LISTEN
    if ops_address:
        parse_listen(ops_address)
    search = _replace(search, backend="embedded", listen=address, ops_listen=ops_address)
    auth = getattr(search, "auth", None)
    if auth is not None and _is_loopback(address) and auth == type(auth)():
        # Loopback only and no authentication configured: the local user sees everything.
        search = _replace(search, auth=_replace(auth, mode="none"))
    kubernetes = False
    if getattr(settings.kubernetes, "enabled", False):
        source = kube_api_source(settings.kubernetes)
        kubernetes = bool(source)
        if kubernetes:
            log.info("kubernetes_api_used", source=source, node=settings.podlog.resolved_node_name())
    return dataclasses.replace(
        settings,
        podlog=_replace(settings.podlog, state_dir=str(data), http_listen=""),
        collector=collector,
        kubernetes=_replace(settings.kubernetes, enabled=kubernetes),
        shipper=_replace(settings.shipper, transport="embedded"),
        search=search,
        embedded=_replace(settings.embedded, demo_logs=str(logs) if demo else ""),
    )


class _Listening(Protocol):
    @property
    def port(self) -> int: ...


def _url(listen: str, bound_port: int) -> str:
    """``http://host:port/`` of a listen address, with the port really bound when known."""
    host, port = parse_listen(listen)
    if bound_port:
        port = bound_port
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - describing the bind address, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class SearchPageAnnouncer:
    """Prints the search page's URL, and the metrics URL, once the search server listens (started after it)."""

    name = "search-page-url"

    def __init__(self, listen: str, server: _Listening | None = None, ops_listen: str = "") -> None:
        self.listen = listen
        self.server = server
        self.ops_listen = ops_listen
        self.url = ""
        self.metrics_url = ""
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self.url = _url(self.listen, self.server.port if self.server is not None else 0)
        log.info("search_page_ready", url=self.url)
        print(f"podlog: search page at {self.url}", file=sys.stdout, flush=True)
        if self.ops_listen:
            ops_port = int(getattr(self.server, "ops_port", 0))
            self.metrics_url = _url(self.ops_listen, ops_port) + "metrics"
            log.info("metrics_ready", url=self.metrics_url)
            print(f"podlog: metrics at {self.metrics_url}", file=sys.stdout, flush=True)

    async def run(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()


def run_extras(settings: Settings, search: _Listening | None = None) -> list[Service]:
    """Services ``podlog run`` adds after the search server: the URL line, the demo writer."""
    services: list[Service] = [SearchPageAnnouncer(settings.search.listen, search, settings.search.ops_listen)]
    if settings.embedded.demo_logs:
        from podlog.demo import DemoWriter

        services.append(DemoWriter(Path(settings.embedded.demo_logs)))
    return services
