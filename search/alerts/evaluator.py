"""The evaluator: counts each rule's matches over its window, moves alert state, notifies.

Windows end on multiples of the rule's interval, ``evaluation_delay_seconds``
before now, so a window is counted once the indexer has caught up with it and
every replica evaluates the same windows.  Notifications are derived from the
state after each evaluation: a target gets a firing or resolved alert until it
took it once (its key is then recorded as sent), and Alertmanager gets every
firing alert at every evaluation.  Delivery that fails is retried at the next
evaluation, counted, and shown on the rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from podlog.logging import get_logger
from search.alerts import events
from search.alerts.notify.base import Notification, Notifier, deliver
from search.alerts.rules import Rule
from search.alerts.state import ActiveAlert, StateStore, Transition, advance, group_key, notification_key
from search.alerts.templates import TemplateError, render_template
from search.backends.base import SearchBackend, SearchRequest
from search.config import AlertsConfig

__all__ = ["Evaluator", "Observation", "RuleStatus", "window_of"]

log = get_logger("search.alerts.evaluator")

_NS = 1_000_000_000
_RESOLVED_KEEP_NS = 24 * 3600 * _NS
"""A resolved alert some target never took is forgotten after this long."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One group's count over a window, and the newest matching line."""

    group: Mapping[str, str]
    count: int
    sample: str = ""


@dataclass(slots=True)
class RuleStatus:
    """What the page and API show for a rule."""

    rule: str
    health: str = "unknown"
    """ok, pending, firing, error, or nodata (nothing matched in the last window)."""
    last_evaluation_ns: int = 0
    """End of the last window evaluated."""
    next_run_ns: int = 0
    """When (wall clock, ns) the next window is due."""
    error: str | None = None
    """The last evaluation's or template's error."""
    notification_error: str | None = None
    """The last delivery that failed, by target; cleared by the next success."""
    notification_failures: int = 0
    """Deliveries given up since start."""


def window_of(rule: Rule, now_ns: int, delay_ns: int) -> tuple[int, int]:
    """``[start, end)`` of the newest window of ``rule`` that is due at ``now_ns``."""
    interval = int(rule.interval_seconds * _NS)
    end = (now_ns - delay_ns) // interval * interval
    return end - int(rule.window_seconds * _NS), end


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / _NS, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Evaluator:
    """Evaluates rules against a search backend and notifies the configured targets."""

    def __init__(
        self,
        backend: SearchBackend,
        config: AlertsConfig,
        notifiers: Sequence[Notifier],
        store: StateStore,
        *,
        client: httpx.AsyncClient,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.backend = backend
        self.config = config
        self.notifiers = list(notifiers)
        self.store = store
        self.client = client
        self.timeout_seconds = timeout_seconds
        self.rules: dict[str, Rule] = {}
        self.status: dict[str, RuleStatus] = {}
        self._last_end: dict[str, int] = {}

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Replace the rules; the state of a rule that is gone is dropped."""
        self.rules = {rule.name: rule for rule in rules}
        self.status = {name: self.status.get(name, RuleStatus(name)) for name in self.rules}
        for key, alert in list(self.store.alerts.items()):
            if alert.rule not in self.rules:
                del self.store.alerts[key]
        self._publish()

    async def run_due(self, now_ns: int | None = None) -> float:
        """Evaluate every rule whose next window is due; seconds until the next one is."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        delay_ns = int(self.config.evaluation_delay_seconds * _NS)
        next_due = now_ns + 3600 * _NS
        for rule in list(self.rules.values()):
            _, end = window_of(rule, now_ns, delay_ns)
            if end > self._last_end.get(rule.name, 0):
                try:
                    await self.evaluate(rule, now_ns)
                except Exception as exc:  # the task boundary of one rule: its bug shows on it, the rest run
                    log.exception("alert_rule_crashed", rule=rule.name)
                    self.status[rule.name].health = "error"
                    self.status[rule.name].error = f"internal error: {exc!r}"
                    events.evaluation_failed(rule.name, 0.0, repr(exc))
            due = end + int(rule.interval_seconds * _NS) + delay_ns
            self.status[rule.name].next_run_ns = due
            next_due = min(next_due, due)
        return max(0.0, (next_due - now_ns) / _NS)

    async def evaluate(self, rule: Rule, now_ns: int) -> None:
        """Count ``rule``'s window due at ``now_ns``, advance its alerts and notify."""
        start, end = window_of(rule, now_ns, int(self.config.evaluation_delay_seconds * _NS))
        status = self.status.setdefault(rule.name, RuleStatus(rule.name))
        began = time.perf_counter()
        try:
            observations = await self.observe(rule, start, end)
        except Exception as exc:  # noqa: BLE001 - one rule's failure shows on that rule; the rest keep working
            status.health, status.error = "error", f"evaluation failed: {exc}"
            events.evaluation_failed(rule.name, time.perf_counter() - began, repr(exc))
            return
        self._last_end[rule.name] = end
        status.last_evaluation_ns = end
        status.error = self._advance(rule, observations, start, end)
        events.evaluation_finished(rule.name, time.perf_counter() - began, len(observations))
        await self._notify(rule, start, end)
        try:
            await asyncio.to_thread(self.store.save)
        except OSError as exc:
            # The state stays in memory; the next evaluation writes it again.
            status.error = status.error or f"the alert state was not saved: {exc}"
            events.state_save_failed(str(self.store.path), repr(exc))
        alerts = [a for a in self.store.alerts.values() if a.rule == rule.name]
        if status.error is not None:
            status.health = "error"
        elif any(a.status == "firing" for a in alerts):
            status.health = "firing"
        elif any(a.status == "pending" for a in alerts):
            status.health = "pending"
        elif not any(o.count for o in observations.values()):
            status.health = "nodata"
        else:
            status.health = "ok"
        self._publish()

    async def observe(self, rule: Rule, start_ns: int, end_ns: int) -> dict[str, Observation]:
        """Each group's count in ``[start_ns, end_ns)`` by :func:`group_key`; groups with an alert are included."""
        request = SearchRequest(
            query=rule.parsed_query(),
            start_ns=start_ns,
            end_ns=end_ns,
            allowed_namespaces=list(rule.namespaces) or None,
            size=1,
            timeout_seconds=self.timeout_seconds,
        )
        if rule.group_by is None:
            page = await self.backend.search(request)
            sample = str(page.hits[0].get("message", "")) if page.hits else ""
            return {group_key(rule.name, {}): Observation({}, page.total, sample)}
        field = rule.group_by
        out: dict[str, Observation] = {}
        for value, count in await self.backend.top_values(request, field, self.config.max_groups):
            group = {field: value}
            sample = ""
            if rule.condition.holds(count) and count:
                one = SearchRequest(
                    query=request.query, start_ns=start_ns, end_ns=end_ns, filters={field: [value]},
                    allowed_namespaces=request.allowed_namespaces, size=1, timeout_seconds=self.timeout_seconds,
                )
                hits = (await self.backend.search(one)).hits
                sample = str(hits[0].get("message", "")) if hits else ""
            out[group_key(rule.name, group)] = Observation(group, count, sample)
        for key, alert in self.store.alerts.items():
            if alert.rule == rule.name and key not in out:
                out[key] = Observation(alert.group, 0)
        return out

    def _advance(self, rule: Rule, observations: Mapping[str, Observation], start: int, end: int) -> str | None:
        """Move each group's state; the first template error, if any."""
        error: str | None = None
        for key, seen in observations.items():
            holds = rule.condition.holds(seen.count)
            before = self.store.alerts.get(key)
            old = before.status if before is not None else None
            alert, _ = advance(
                before, rule=rule.name, group=seen.group, holds=holds, window_end_ns=end,
                for_ns=int(rule.for_seconds * _NS), keep_firing_for_ns=int(rule.keep_firing_for_seconds * _NS),
            )
            if alert is None:
                self.store.alerts.pop(key, None)
                if old is not None:
                    events.alert_changed(rule.name, dict(seen.group), "inactive", seen.count)
                continue
            self.store.alerts[key] = alert
            if holds:
                alert.count, alert.sample = seen.count, seen.sample
                failed = self._render(rule, alert)
                error = error or failed
            if alert.status != old:
                events.alert_changed(rule.name, alert.group, alert.status, seen.count)
        return error

    def _render(self, rule: Rule, alert: ActiveAlert) -> str | None:
        values = {
            "rule": rule.name, "severity": rule.severity, "count": str(alert.count),
            "sample": alert.sample, "window": _duration(rule.window_seconds),
        }
        error: str | None = None
        for name, template in rule.annotations.items():
            try:
                alert.annotations[name] = render_template(template, values, alert.group)
            except TemplateError as exc:
                alert.annotations[name] = template
                error = error or f"annotations.{name}: {exc}"
        return error

    def notification(self, rule: Rule, alert: ActiveAlert, start: int, end: int) -> Notification:
        """The notification of ``alert``'s current status (firing or resolved)."""
        status: Transition = "resolved" if alert.status == "resolved" else "firing"
        labels = {"alertname": rule.name, "severity": rule.severity, **rule.labels, **alert.group}
        link_start = min(alert.active_since_ns - int(rule.window_seconds * _NS), start)
        params: list[tuple[str, str]] = [("q", rule.query), ("start", _iso(link_start)), ("end", _iso(end))]
        params += list(alert.group.items())
        return Notification(
            rule=rule.name,
            status=status,
            labels=labels,
            annotations=dict(alert.annotations),
            starts_at_ns=alert.active_since_ns,
            ends_at_ns=alert.resolved_at_ns if status == "resolved" else None,
            generator_url=self.config.external_url.rstrip("/") + "/?" + urlencode(params),
            key=notification_key(rule.name, alert.group, alert.active_since_ns, status),
            count=alert.count,
            sample=alert.sample,
            group=dict(alert.group),
        )

    async def _notify(self, rule: Rule, start: int, end: int) -> None:
        alerts = {k: a for k, a in self.store.alerts.items() if a.rule == rule.name and a.status != "pending"}
        status = self.status[rule.name]
        for index, notifier in enumerate(self.notifiers):
            batch: list[Notification] = []
            for alert in alerts.values():
                item = self.notification(rule, alert, start, end)
                resend = notifier.resend_firing and item.status == "firing"
                if resend or self._sent_key(index, item.key) not in self.store.sent:
                    batch.append(item)
            error = await deliver(
                notifier, self.client, batch, attempts=self.config.notify_attempts,
                backoff_seconds=self.config.notify_backoff_seconds,
                timeout_seconds=self.config.notify_timeout_seconds,
            )
            if error is None:
                for item in batch:
                    self.store.sent[self._sent_key(index, item.key)] = end
                if batch:
                    status.notification_error = None
            else:
                status.notification_error = f"{notifier.name}: {error}"
                status.notification_failures += 1
        self._forget_resolved(end)

    def _sent_key(self, index: int, key: str) -> str:
        return f"{self.notifiers[index].name}#{index}|{key}"

    def _forget_resolved(self, now_ns: int) -> None:
        """Drop resolved alerts every target took (or that are old), and sent keys of alerts that are gone."""
        for key, alert in list(self.store.alerts.items()):
            if alert.status != "resolved":
                continue
            done_key = notification_key(alert.rule, alert.group, alert.active_since_ns, "resolved")
            taken = all(self._sent_key(i, done_key) in self.store.sent for i in range(len(self.notifiers)))
            if taken or now_ns - alert.resolved_at_ns > _RESOLVED_KEEP_NS:
                del self.store.alerts[key]
        live = {
            self._sent_key(i, notification_key(a.rule, a.group, a.active_since_ns, status))
            for a in self.store.alerts.values()
            for i in range(len(self.notifiers))
            for status in ("firing", "resolved")
        }
        self.store.sent = {k: v for k, v in self.store.sent.items() if k in live}

    def _publish(self) -> None:
        alerts = self.store.alerts.values()
        events.set_active(
            sum(1 for a in alerts if a.status == "firing"), sum(1 for a in alerts if a.status == "pending")
        )

    def describe(self) -> list[dict[str, Any]]:
        """Rules with their status and alerts, for the API and page."""
        out: list[dict[str, Any]] = []
        for name, rule in self.rules.items():
            status = self.status[name]
            out.append({
                "name": name, "query": rule.query, "condition": str(rule.condition),
                "window": _duration(rule.window_seconds), "interval": _duration(rule.interval_seconds),
                "group_by": rule.group_by, "severity": rule.severity, "namespaces": list(rule.namespaces),
                "source": rule.source, "read_only": rule.source != "api", "state": status.health,
                "last_evaluation": _iso(status.last_evaluation_ns) if status.last_evaluation_ns else None,
                "next_run": _iso(status.next_run_ns) if status.next_run_ns else None,
                "error": status.error, "notification_error": status.notification_error,
                "notification_failures": status.notification_failures,
                "alerts": [
                    {"group": a.group, "status": a.status, "count": a.count, "since": _iso(a.active_since_ns)}
                    for a in self.store.alerts.values() if a.rule == name
                ],
            })
        return out
