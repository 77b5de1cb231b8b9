"""The node-scoped pod watch: one list+watch per agent, like client-go's reflector.

Pods are listed and watched with ``fieldSelector=spec.nodeName=<node>``, so the
API load is one watch per node whatever the cluster size; namespaces (few,
small) are optionally watched too, for their labels and retention annotation.
Each resource runs the same loop:

1. list (paged) and replace the cache's view, which marks pods missing from
   the list as deleted;
2. watch from the list's resource version, with bookmarks, moving the version
   forward with every event;
3. when the server ends the watch, watch again from the last version; when
   the connection drops or the API errs, wait a jittered, doubling backoff and
   watch again from the last version; on ``410 Gone`` list again.

``start()`` restores the previous run's snapshot and starts the loops without
waiting for them: the API being down never delays the agent, and the collector,
started next, can wait in its own ``start()`` for the first list.  A background
loop writes the snapshot when the cache changed and expires deleted pods whose
grace period is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.kube.cache import PodCache
from collector.kube.client import KubeApiError, KubeClient, ResourceGoneError, load_api_config
from collector.kube.config import KubernetesConfig
from collector.kube.enrich import ApiState
from collector.kube.events import events
from collector.kube.metadata import KeyFilter, NamespaceMeta, PodMeta, namespace_from_api, pod_from_api
from collector.kube.snapshot import read_snapshot, snapshot_bytes, write_snapshot
from podlog.errors import ConfigError
from podlog.logging import get_logger

__all__ = ["Backoff", "PodWatcher"]

log = get_logger("collector.kube.watch")

_MIN_QUIET_WATCH_SECONDS = 1.0
"""A watch that ends sooner without any event is retried after a backoff delay."""


class Backoff:
    """Doubling delays with equal jitter: half fixed, half random."""

    def __init__(
        self, initial: float, maximum: float, rand: Callable[[], float] = random.random
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        self.failures += 1
        ceiling = min(self._maximum, self._initial * 2.0 ** min(self.failures - 1, 30))
        return ceiling / 2 + self._rand() * ceiling / 2

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0


@dataclass(frozen=True, slots=True)
class _Resource:
    """One list+watch loop: where, and how its objects reach the cache."""

    name: str
    path: str
    params: Mapping[str, str]
    compact: Callable[[Mapping[str, Any]], Any]
    """A listed object as the cache keeps it (None: rejected), applied page by page."""
    replace: Callable[[list[Any]], None]
    apply: Callable[[str, Mapping[str, Any]], None]
    primary: bool
    """The pod loop: its state is what :class:`ApiState` reports."""


class PodWatcher:
    """A :class:`podlog.lifecycle.Service` that keeps a :class:`PodCache` current."""

    name = "kube-watch"

    def __init__(
        self,
        config: KubernetesConfig,
        cache: PodCache,
        api: ApiState,
        *,
        node_name: str,
        state_dir: Path,
        client: KubeClient | None = None,
    ) -> None:
        self._config = config
        self._cache = cache
        self._api = api
        self._node = node_name
        self._state_dir = state_dir
        self._annotations = KeyFilter(config.annotations_allow, config.annotations_deny)
        self._labels = KeyFilter(["*"], config.labels_deny)
        self._stopping = asyncio.Event()
        self._started = False
        self._client = client
        """Made at the first request unless given (``build_enricher`` makes it at start, so
        that an unusable configuration stops the agent there)."""
        self._connecting = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._written_changes = -1
        self._stopped = False

    # -- Service ------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the previous snapshot and start listing; never waits for the API.

        The list and watch loops start here, not in :meth:`run`: the services started after
        this one (the collector) wait in their own ``start`` for the first list
        (``kubernetes.start_wait_seconds``), before any ``run`` is called."""
        snapshot, problems = await asyncio.to_thread(read_snapshot, self._state_dir)
        for problem in problems:
            events.snapshot_rejected(str(self._state_dir), problem)
        if snapshot is not None and snapshot.node not in ("", self._node):
            events.snapshot_rejected(
                str(self._state_dir), f"snapshot of node {snapshot.node!r}, not {self._node!r}"
            )
        elif snapshot is not None:
            self._cache.restore(snapshot.pods, snapshot.namespaces)
            events.snapshot_restored(
                str(self._state_dir), len(snapshot.pods), len(snapshot.namespaces)
            )
            self._written_changes = self._cache.changes
        events.pods_counted(self._cache.counts())
        self._started = True
        if not self._tasks and not self._stopping.is_set():
            resources = [self._pod_resource()]
            if self._config.watch_namespaces:
                resources.append(self._namespace_resource())
            self._tasks = [
                asyncio.create_task(self._reflect(r), name=f"kube-{r.name}") for r in resources
            ]
            self._tasks.append(asyncio.create_task(self._housekeep(), name="kube-snapshot"))

    async def run(self) -> None:
        """Keep watching pods (and namespaces) and writing the snapshot until stopped."""
        if not self._started:
            await self.start()
        stop = asyncio.create_task(self._stopping.wait(), name="kube-stop")
        try:
            done, _ = await asyncio.wait([*self._tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stop or task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    log.error("kube_watch_crashed", task=task.get_name(), error=repr(error))
                    raise error
        finally:
            stop.cancel()
            await self._cancel_tasks()

    async def stop(self) -> None:
        """Stop watching, write the last snapshot, close the connection; idempotent."""
        self._stopping.set()
        await self._cancel_tasks()
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            await self._write_snapshot(force=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._api.connected:
            self._api.connected = False
            events.api_connection_changed(False)

    def not_ready(self) -> str | None:
        """Readiness: only the snapshot restore gates it, never the API."""
        return None if self._started else "pod metadata snapshot not restored yet"

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- resources ------------------------------------------------------------------------

    def _pod_resource(self) -> _Resource:
        return _Resource(
            name="pods",
            path="/api/v1/pods",
            params={"fieldSelector": f"spec.nodeName={self._node}"},
            compact=self._pod,
            replace=self._replace_pods,
            apply=self._apply_pod,
            primary=True,
        )

    def _namespace_resource(self) -> _Resource:
        return _Resource(
            name="namespaces",
            path="/api/v1/namespaces",
            params={},
            compact=self._namespace,
            replace=self._replace_namespaces,
            apply=self._apply_namespace,
            primary=False,
        )

    def _pod(self, obj: Mapping[str, Any]) -> PodMeta | None:
        try:
            pod = pod_from_api(
                obj,
                annotations=self._annotations,
                labels=self._labels,
                max_annotation_value_bytes=self._config.max_annotation_value_bytes,
            )
        except (TypeError, ValueError, AttributeError):  # a malformed object is data too
            pod = None
        if pod is None:
            events.object_rejected("pods")
        return pod

    def _namespace(self, obj: Mapping[str, Any]) -> NamespaceMeta | None:
        return namespace_from_api(obj, self._labels)

    def _replace_pods(self, pods: list[PodMeta]) -> None:
        self._cache.replace(pods)
        if not pods and not self._api.synced:
            # The agent's own pod runs here, so an empty first list usually means
            # a wrong node name (NODE_NAME not passed through the downward API).
            events.node_has_no_pods(self._node)
        self._api.listed("pods")

    def _apply_pod(self, event_type: str, obj: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            uid = _metadata(obj).get("uid")
            if isinstance(uid, str):
                self._cache.delete(uid)
            else:
                events.object_rejected("pods")
            return
        pod = self._pod(obj)
        if pod is not None:
            self._cache.upsert(pod)

    def _replace_namespaces(self, found: list[NamespaceMeta]) -> None:
        self._cache.replace_namespaces(found)
        self._api.listed("namespaces")

    def _apply_namespace(self, event_type: str, obj: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            name = _metadata(obj).get("name")
            if isinstance(name, str):
                self._cache.delete_namespace(name)
            return
        ns = namespace_from_api(obj, self._labels)
        if ns is None:
            events.object_rejected("namespaces")
        else:
            self._cache.set_namespace(ns)

    # -- the reflector loop ---------------------------------------------------------------

    async def _connect(self) -> KubeClient:
        async with self._connecting:  # the pod and namespace loops share one client
            if self._client is None:
                api = await asyncio.to_thread(load_api_config, self._config)
                self._client = KubeClient(self._config, api)
            return self._client

    async def _reflect(self, resource: _Resource) -> None:
        backoff = Backoff(self._config.backoff_initial_seconds, self._config.backoff_max_seconds)
        version: str | None = None
        list_reason = "start"
        while not self._stopping.is_set():
            try:
                client = await self._connect()
                if version is None:
                    events.list_started(resource.name, list_reason)
                    items, version = await client.list(resource.path, resource.params, resource.compact)
                    resource.replace(items)
                    self._connected(resource, True)
                    events.api_listed(resource.name, version, len(items))
                    events.pods_counted(self._cache.counts())
                    backoff.reset()
                opened = time.monotonic()
                received = 0
                watch = client.watch(
                    resource.path, version, resource.params, lambda: self._connected(resource, True)
                )
                async for event_type, obj in watch:
                    received += 1
                    backoff.reset()
                    events.watch_event_received(resource.name, event_type)
                    new_version = _metadata(obj).get("resourceVersion")
                    if event_type != "BOOKMARK":
                        resource.apply(event_type, obj)
                    if isinstance(new_version, str) and new_version:
                        version = new_version
                if not received and time.monotonic() - opened < _MIN_QUIET_WATCH_SECONDS:
                    # The server ended an empty watch at once: do not spin on it.
                    await self._sleep(backoff.next_delay())
            except ResourceGoneError:
                if version is None:
                    # A paged list whose continue token expired: list again, but
                    # never in a tight loop.
                    await self._sleep(backoff.next_delay())
                events.watch_expired(resource.name, version)
                version = None
                list_reason = "gone"
            except KubeApiError as exc:
                delay = backoff.next_delay()
                self._connected(resource, False)
                events.api_failed(resource.name, exc.error_code, str(exc), delay)
                if version is None:
                    list_reason = "reconnect"
                await self._sleep(delay)
            except ConfigError as exc:
                delay = backoff.next_delay()
                self._connected(resource, False)
                events.api_unconfigured(str(exc), delay)
                await self._sleep(delay)

    def _connected(self, resource: _Resource, connected: bool) -> None:
        if resource.primary and self._api.connected != connected:
            self._api.connected = connected
            events.api_connection_changed(connected)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- snapshot and expiry --------------------------------------------------------------

    async def _housekeep(self) -> None:
        while not self._stopping.is_set():
            await self._sleep(self._config.snapshot_interval_seconds)
            self._cache.expire()
            events.pods_counted(self._cache.counts())
            await self._write_snapshot(force=False)

    async def _write_snapshot(self, *, force: bool) -> None:
        changes = self._cache.changes
        if not force and changes == self._written_changes:
            return
        data = snapshot_bytes(self._cache, self._node)
        try:
            path = await asyncio.to_thread(write_snapshot, self._state_dir, data)
        except OSError as exc:
            events.snapshot_write_failed(str(self._state_dir), str(exc))
            return
        self._written_changes = changes
        events.snapshot_written(str(path), len(self._cache))


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}
