"""The alert evaluator as a Service: loads the rules, evaluates them when due, reloads them.

Runs inside the search process (``podlog search`` and ``podlog run``) against
the same backend as the API.  Rules come from files (``alerts.rules_path``,
read-only) and, with ``alerts.api_rules``, from the API, kept in the index store
(:mod:`search.alerts.store`).  Exactly-once notification across replicas does
not rely on a leader: every replica evaluates the same aligned windows, and
each notification carries the idempotency key of its (rule, group, window,
status); see docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from podlog.errors import ConfigError, PodlogError
from podlog.logging import get_logger
from search.alerts import events
from search.alerts.evaluator import Evaluator
from search.alerts.notify.alertmanager import AlertmanagerNotifier
from search.alerts.notify.base import Notifier
from search.alerts.notify.slack import SlackNotifier
from search.alerts.notify.webhook import WebhookNotifier
from search.alerts.rules import Rule, RuleError, load_rules, parse_rule
from search.alerts.state import StateStore
from search.alerts.store import OpenSearchRuleStore, RuleStore, SqliteRuleStore
from search.backends.base import SearchBackend
from search.config import AlertsConfig, SearchConfig

__all__ = ["API_SOURCE", "AlertService", "RuleConflictError", "build_notifiers", "open_alert_service"]

log = get_logger("search.alerts.service")

API_SOURCE = "api"
"""The ``source`` of a rule made through the API."""


class RuleConflictError(PodlogError):
    """A rule name that is taken, or a file rule the API may not change (HTTP 409)."""


def build_notifiers(config: AlertsConfig) -> list[Notifier]:
    """The targets ``config`` names, Alertmanagers first."""
    notifiers: list[Notifier] = [AlertmanagerNotifier(url) for url in config.alertmanager_urls]
    notifiers += [WebhookNotifier(url, config.webhook_secret) for url in config.webhook_urls]
    notifiers += [SlackNotifier(url) for url in config.slack_urls]
    return notifiers


def open_alert_service(config: SearchConfig, backend: SearchBackend) -> AlertService | None:
    """The alert service ``config`` asks for, with its stores beside the backend's index; None when off.

    On the embedded index (a backend with a ``path``), the state file defaults to
    ``alerts-state.json`` and API rules live in ``alert-rules.db``, beside it.
    """
    alerts = config.alerts
    if not alerts.rules_path and not alerts.api_rules:
        return None
    index_path = getattr(backend, "path", None)
    local = Path(index_path).parent if isinstance(index_path, str | Path) else None
    state_file = alerts.state_file or (str(local / "alerts-state.json") if local is not None else "")
    store: RuleStore | None = None
    if alerts.api_rules:
        if local is not None:
            store = SqliteRuleStore(local / "alert-rules.db")
        else:
            verify: bool | str = config.opensearch_ca_certs or config.opensearch_verify_certs
            store = OpenSearchRuleStore(
                config.opensearch_hosts, f"{config.index_prefix}-alert-rules",
                username=config.opensearch_username, password=config.opensearch_password, verify=verify,
            )
    return AlertService(
        alerts, backend, timeout_seconds=config.guards.timeout_seconds, store=store, state_file=state_file
    )


class AlertService:
    """Evaluates the rules of the files and the store until stopped."""

    name = "alerts"

    def __init__(
        self, config: AlertsConfig, backend: SearchBackend, *, timeout_seconds: float = 10.0,
        store: RuleStore | None = None, state_file: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._client = httpx.AsyncClient(timeout=config.notify_timeout_seconds)
        state = state_file if state_file is not None else config.state_file
        self.evaluator = Evaluator(
            backend, config, build_notifiers(config), StateStore(state or None),
            client=self._client, timeout_seconds=timeout_seconds,
        )
        self.file_rules: list[Rule] = []
        self.api_rules: dict[str, Rule] = {}
        self._changes = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._stopped = False
        self._running = False
        self._ended = asyncio.Event()

    async def start(self) -> None:
        """Load the state and the rules; ConfigError when the rules files do not load."""
        await asyncio.to_thread(self.evaluator.store.load)
        try:
            self._reload_files(initial=True)
        except RuleError as exc:
            raise ConfigError(f"alerts.rules_path: {exc}") from exc
        await self._reload_store()
        self._apply()

    async def run(self) -> None:
        """Evaluate due rules and re-read the rules, until stopped."""
        self._running = True
        try:
            await self._loop()
        finally:
            self._ended.set()

    async def _loop(self) -> None:
        next_reload = time.monotonic() + self.config.reload_seconds
        while not self._stopping.is_set():
            wait = await self.evaluator.run_due()
            if time.monotonic() >= next_reload:
                next_reload = time.monotonic() + self.config.reload_seconds
                try:
                    self._reload_files(initial=False)
                except RuleError as exc:
                    events.rules_reload_failed(self.config.rules_path, str(exc))
                await self._reload_store()
                self._apply()
            wait = min(wait, max(0.0, next_reload - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(wait, 0.05))

    def _reload_files(self, *, initial: bool) -> None:
        """Re-read the rules files when one changed (name, size, mtime)."""
        if not self.config.rules_path:
            return
        root = Path(self.config.rules_path)
        try:
            files = sorted(root.iterdir()) if root.is_dir() else [root]
            signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file())
        except OSError as exc:
            raise RuleError(str(root), "-", "file", f"cannot be read: {exc}") from exc
        if not initial and signature == self._signature:
            return
        rules = load_rules(root)
        self._signature = signature
        self.file_rules = rules
        events.rules_loaded(str(root), len(rules))

    async def _reload_store(self) -> None:
        """Re-read the API rules; a store that does not answer keeps the ones known."""
        if self.store is None:
            return
        try:
            stored = await self.store.load()
        except PodlogError as exc:
            events.rules_reload_failed(API_SOURCE, str(exc))
            return
        rules: dict[str, Rule] = {}
        for index, (name, body) in enumerate(stored.items()):
            try:
                rules[name] = parse_rule(body, API_SOURCE, index)
            except RuleError as exc:
                events.rules_reload_failed(API_SOURCE, str(exc))
        self.api_rules = rules

    def _apply(self) -> None:
        files = {rule.name for rule in self.file_rules}
        api = [rule for name, rule in self.api_rules.items() if name not in files]
        self.evaluator.set_rules([*self.file_rules, *api])

    def is_api_rule(self, name: str) -> bool:
        """True for a rule made through the API (and not shadowed by a file rule)."""
        return name in self.api_rules and all(rule.name != name for rule in self.file_rules)

    async def put_rule(self, body: Mapping[str, Any], *, create: bool) -> Rule:
        """Validate and store an API rule; RuleError (400) or RuleConflictError (409)."""
        rule = parse_rule(body, API_SOURCE, 0)
        if self.store is None:
            raise RuleConflictError("rules through the API are off (search.alerts.api_rules)")
        async with self._changes:
            if any(r.name == rule.name for r in self.file_rules):
                raise RuleConflictError(f"rule {rule.name} comes from a rules file and is read-only here")
            if create and rule.name in self.api_rules:
                raise RuleConflictError(f"rule {rule.name} exists; PUT /api/alerts/rules/{rule.name} replaces it")
            await self.store.put(rule.name, dict(body))
            self.api_rules[rule.name] = rule
            self._apply()
        return rule

    async def delete_rule(self, name: str) -> bool:
        """Remove an API rule; False when there is none of that name."""
        if self.store is None or not self.is_api_rule(name):
            return False
        async with self._changes:
            await self.store.delete(name)
            self.api_rules.pop(name, None)
            self._apply()
        return True

    async def stop(self) -> None:
        """Stop evaluating, write the state, close connections; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._running:
            # An evaluation in flight finishes (its notifications are bounded by their timeouts).
            await self._ended.wait()
        try:
            await asyncio.to_thread(self.evaluator.store.save)
        except OSError as exc:
            events.state_save_failed(str(self.evaluator.store.path), repr(exc))
        await self._client.aclose()
        if self.store is not None:
            await self.store.close()
