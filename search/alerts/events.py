"""Alert events: each function writes one log line and moves its metric together."""

from __future__ import annotations

from podlog.logging import get_logger
from podlog.metrics import counter, gauge, histogram

__all__ = [
    "alert_changed",
    "evaluation_failed",
    "evaluation_finished",
    "notification_retried",
    "notifications_failed",
    "notifications_sent",
    "rules_loaded",
    "rules_reload_failed",
    "set_active",
    "state_save_failed",
]

log = get_logger("search.alerts")

EVALUATIONS = counter(
    "podlog_alert_evaluations_total", "Rule evaluations by result: ok, error (backend or template).", ["result"]
)
EVALUATION_SECONDS = histogram("podlog_alert_evaluation_seconds", "Time of one rule's evaluation.")
NOTIFICATIONS = counter(
    "podlog_alert_notifications_total",
    "Notifications by target kind and result: sent, retried (an attempt failed), failed (given up).",
    ["notifier", "result"],
)
FIRING = gauge("podlog_alerts_firing", "Alerts (rule and group) firing now.")
PENDING = gauge("podlog_alerts_pending", "Alerts (rule and group) pending now: true, but not yet for long enough.")
STATE_SAVE_ERRORS = counter(
    "podlog_alert_state_save_errors_total", "Writes of the alert state file that failed (kept in memory)."
)
RULES = gauge("podlog_alert_rules", "Rules loaded.")
RELOAD_ERRORS = counter("podlog_alert_rules_reload_errors_total", "Rule reloads that failed (the old rules stay).")


def evaluation_finished(rule: str, seconds: float, groups: int) -> None:
    """A rule was evaluated (debug: once per rule and interval)."""
    EVALUATIONS.labels("ok").inc()
    EVALUATION_SECONDS.observe(seconds)
    log.debug("alert_rule_evaluated", rule=rule, seconds=round(seconds, 4), groups=groups)


def evaluation_failed(rule: str, seconds: float, error: str) -> None:
    """A rule's evaluation failed; its alerts keep their state."""
    EVALUATIONS.labels("error").inc()
    EVALUATION_SECONDS.observe(seconds)
    log.warning("alert_rule_failed", rule=rule, error=error)


def alert_changed(rule: str, group: dict[str, str], status: str, count: int) -> None:
    """An alert became pending, firing or resolved, or went back from pending."""
    log.info("alert_state_changed", rule=rule, group=group, status=status, count=count)


def set_active(firing: int, pending: int) -> None:
    """The number of firing and pending alerts now."""
    FIRING.set(firing)
    PENDING.set(pending)


def notifications_sent(notifier: str, count: int) -> None:
    """A target took ``count`` notifications."""
    NOTIFICATIONS.labels(notifier, "sent").inc(count)
    log.info("alert_notifications_sent", notifier=notifier, count=count)


def notification_retried(notifier: str, attempt: int, error: str) -> None:
    """An attempt to notify failed and will be retried."""
    NOTIFICATIONS.labels(notifier, "retried").inc()
    log.warning("alert_notification_retried", notifier=notifier, attempt=attempt, error=error)


def notifications_failed(notifier: str, count: int, error: str) -> None:
    """A target did not take ``count`` notifications after every attempt."""
    NOTIFICATIONS.labels(notifier, "failed").inc(count)
    log.error("alert_notifications_failed", notifier=notifier, count=count, error=error)


def rules_loaded(source: str, count: int) -> None:
    """Rules were (re)loaded."""
    RULES.set(count)
    log.info("alert_rules_loaded", source=source, rules=count)


def rules_reload_failed(source: str, error: str) -> None:
    """A reload failed; the rules loaded before stay in force."""
    RELOAD_ERRORS.inc()
    log.error("alert_rules_reload_failed", source=source, error=error)


def state_save_failed(path: str, error: str) -> None:
    """The state file could not be written; the state stays in memory and is written again next time."""
    STATE_SAVE_ERRORS.inc()
    log.error("alert_state_save_failed", path=path, error=error)
