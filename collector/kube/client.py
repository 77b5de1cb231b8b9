"""List and watch over the Kubernetes API, with lightkube's configuration and auth.

lightkube loads the connection settings (in-cluster service account with its
rotating token file, a kubeconfig with any of its auth methods, or a bare
server URL) and builds the authenticated HTTP client.  The list/watch
protocol itself is spoken here, on that client, because the agent needs what
lightkube's watch helper hides: watch bookmarks (``allowWatchBookmarks``),
the resource version of every event including bookmarks, and a *visible*
``410 Gone`` so the cache can relist and learn which pods disappeared
meanwhile (a silent rewatch from "now" would never report them deleted).

Objects stay decoded JSON dicts: the cache keeps only a compact extract.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import httpx2
import orjson
from lightkube.config.client_adapter import AsyncClient, ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.config.models import Cluster, User
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from collector.kube.config import KubernetesConfig
from podlog.errors import ConfigError, PodlogError

__all__ = [
    "KubeApiError",
    "KubeClient",
    "ResourceGoneError",
    "WatchEvent",
    "load_api_config",
]

T = TypeVar("T")

WatchEvent = tuple[str, Mapping[str, Any]]
"""``(type, object)``: ADDED, MODIFIED, DELETED or BOOKMARK and the object."""

_MAX_WATCH_LINE = 16 * 1024 * 1024


class KubeApiError(PodlogError):
    """A list or watch request failed; retriable unless the API refused us for good."""

    retriable = True

    def __init__(self, message: str, *, status: int | None = None, error_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class ResourceGoneError(KubeApiError):
    """``410 Gone``: the resource version is too old; list again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=410, error_code="gone")


def load_api_config(config: KubernetesConfig) -> SingleConfig:
    """Where the API is and how to authenticate: ``api_server``, else ``kubeconfig``,
    else the in-cluster service account, ``$KUBECONFIG`` or ``~/.kube/config``.

    Raises :class:`podlog.errors.ConfigError` naming what is missing.
    """
    try:
        if config.api_server:
            loaded = _from_server(config)
        elif config.kubeconfig:
            loaded = KubeConfig.from_file(config.kubeconfig)
        else:
            loaded = KubeConfig.from_env(service_account=config.service_account_dir)
        single = loaded.get(context_name=config.context or None)
    except (LightkubeConfigError, OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"kubernetes: cannot load API configuration: {exc} (set kubernetes.api_server or "
            "kubernetes.kubeconfig, or kubernetes.enabled: false for path metadata only)"
        ) from exc
    if single is None:
        raise ConfigError("kubernetes: the kubeconfig has no usable context")
    return single


def _from_server(config: KubernetesConfig) -> KubeConfig:
    """``api_server``, with its token file and CA bundle when given (lightkube's own
    ``from_server`` has no user, which its client refuses)."""
    if config.api_token_file and not os.path.isfile(config.api_token_file):  # noqa: PTH113
        raise ConfigError(f"kubernetes.api_token_file: {config.api_token_file} is not a file")
    if config.api_ca_file and not os.path.isfile(config.api_ca_file):  # noqa: PTH113
        raise ConfigError(f"kubernetes.api_ca_file: {config.api_ca_file} is not a file")
    cluster = Cluster(server=config.api_server, certificate_auth=config.api_ca_file or None)
    return KubeConfig.from_one(cluster=cluster, user=User(token_file=config.api_token_file or None))


class KubeClient:
    """Paginated lists and streaming watches of one API server."""

    def __init__(self, config: KubernetesConfig, api: SingleConfig) -> None:
        self._config = config
        timeout = httpx2.Timeout(config.request_timeout_seconds)
        try:
            self._http = AsyncClient(api, ConnectionParams(timeout=timeout, trust_env=False))
        except (LightkubeConfigError, AssertionError, OSError, ValueError) as exc:
            # lightkube checks the configuration here, partly with asserts.
            raise ConfigError(f"kubernetes: unusable API configuration: {exc or type(exc).__name__}") from exc
        # A watch is idle between events; the server ends it after timeoutSeconds,
        # so a read that waits much longer than that is a dead connection.
        self._watch_timeout = httpx2.Timeout(
            config.request_timeout_seconds, read=config.watch_timeout_seconds + 60.0
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def list(
        self, path: str, params: Mapping[str, str] | None, keep: Callable[[Mapping[str, Any]], T | None]
    ) -> tuple[list[T], str]:
        """Every item at ``path`` (following ``continue``) as ``keep`` makes it (None: left
        out), and the list's resource version.  Each page is decoded, kept and dropped before
        the next is fetched: the decoded objects of a whole node never exist at once."""
        kept: list[T] = []
        query = dict(params or {})
        query["limit"] = str(self._config.list_page_size)
        while True:
            try:
                response = await self._http.get(path, params=query)
            except httpx2.HTTPError as exc:
                raise _transport_error(exc) from exc
            _raise_for_status(response.status_code, response.content)
            try:
                doc = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise KubeApiError(
                    f"list {path}: response is not JSON", error_code="invalid_response"
                ) from exc
            del response
            if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
                raise KubeApiError(f"list {path}: response has no items", error_code="invalid_response")
            for item in doc["items"]:
                if isinstance(item, dict) and (value := keep(item)) is not None:
                    kept.append(value)
            metadata = doc.get("metadata") or {}
            token = metadata.get("continue")
            version = str(metadata.get("resourceVersion") or "")
            del doc
            if not token:
                return kept, version
            query["continue"] = str(token)

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events at ``path`` after ``resource_version``, with bookmarks, until the
        server ends the watch.  Raises :class:`ResourceGoneError` on 410 (status or
        ERROR event) and :class:`KubeApiError` on anything else that went wrong.
        ``on_open`` is called once the server accepted the watch."""
        query = dict(params or {})
        query.update(
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=resource_version,
            timeoutSeconds=str(self._config.watch_timeout_seconds),
        )
        try:
            async with self._http.stream(
                "GET", path, params=query, timeout=self._watch_timeout
            ) as response:
                if response.status_code != 200:
                    _raise_for_status(response.status_code, await response.aread())
                if on_open is not None:
                    on_open()
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    if len(line) > _MAX_WATCH_LINE:
                        raise KubeApiError(
                            f"watch {path}: event larger than {_MAX_WATCH_LINE} bytes",
                            error_code="invalid_response",
                        )
                    yield _decode_event(path, line)
        except httpx2.HTTPError as exc:
            raise _transport_error(exc) from exc


def _decode_event(path: str, line: str) -> WatchEvent:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise KubeApiError(
            f"watch {path}: event is not JSON", error_code="invalid_response"
        ) from exc
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise KubeApiError(f"watch {path}: malformed event", error_code="invalid_response")
    kind = str(event.get("type") or "")
    obj = event["object"]
    if kind == "ERROR":
        code = obj.get("code")
        message = str(obj.get("message") or obj.get("reason") or "watch error")
        if code == 410:
            raise ResourceGoneError(f"watch {path}: {message}")
        raise KubeApiError(
            f"watch {path}: {message}",
            status=code if isinstance(code, int) else None,
            error_code=f"http_{code}" if isinstance(code, int) else "watch_error",
        )
    return kind, obj


def _raise_for_status(status: int, body: bytes) -> None:
    if status == 200:
        return
    message = body[:300].decode(errors="replace")
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict) and doc.get("message"):
            message = str(doc["message"])
    except orjson.JSONDecodeError:
        pass
    if status == 410:
        raise ResourceGoneError(message)
    raise KubeApiError(f"HTTP {status}: {message}", status=status, error_code=f"http_{status}")


def _transport_error(exc: httpx2.HTTPError) -> KubeApiError:
    if isinstance(exc, httpx2.ConnectError):
        code = "connect"
    elif isinstance(exc, httpx2.TimeoutException):
        code = "timeout"
    elif isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        code = "connection_dropped"
    else:
        code = "transport"
    return KubeApiError(f"{type(exc).__name__}: {exc}", error_code=code)
