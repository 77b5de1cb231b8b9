"""Notification targets: Alertmanager v2, a signed JSON webhook, a Slack incoming webhook."""

__all__ = ["Notification", "Notifier", "NotifyError", "deliver"]

from search.alerts.notify.base import Notification, Notifier, NotifyError, deliver
