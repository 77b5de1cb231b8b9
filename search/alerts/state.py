"""Alert state: pending -> firing -> resolved per (rule, group), and where it is kept.

The transitions are one pure function, :func:`advance`, so the state machine is
tested without a backend.  :class:`StateStore` persists the active alerts and
the notifications already sent as one JSON file (tmp + fsync + rename, read
tmp-first), so a restart neither re-notifies nor forgets a firing alert.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from podlog.logging import get_logger

__all__ = ["ActiveAlert", "StateStore", "Transition", "advance", "group_key", "notification_key"]

log = get_logger("search.alerts.state")

_VERSION = 1

Transition = Literal["firing", "resolved"]
"""A change that is notified; pending and the way back from pending are not."""


@dataclass(slots=True)
class ActiveAlert:
    """One (rule, group) whose condition holds or held recently."""

    rule: str
    group: dict[str, str]
    """The group_by field and its value; empty for an ungrouped rule."""
    status: Literal["pending", "firing", "resolved"]
    active_since_ns: int
    """End of the first window in which the condition held (aligned, so replicas agree)."""
    last_true_ns: int
    """End of the last window in which the condition held."""
    count: int = 0
    sample: str = ""
    fired_at_ns: int = 0
    """End of the window in which the alert began firing; 0 while pending."""
    annotations: dict[str, str] = field(default_factory=dict)
    resolved_at_ns: int = 0
    """End of the window in which the alert resolved; kept until every target took the news."""


def group_key(rule: str, group: Mapping[str, str]) -> str:
    """Stable key of a (rule, group) pair."""
    return rule + "|" + ",".join(f"{k}={v}" for k, v in sorted(group.items()))


def notification_key(rule: str, group: Mapping[str, str], active_since_ns: int, status: Transition) -> str:
    """The idempotency key of one notification: same (rule, group, window, status), same key.

    Windows end on multiples of the rule's interval, so every evaluator replica
    computes the same key for the same event and a receiver drops repeats.
    """
    text = f"{group_key(rule, group)}|{active_since_ns}|{status}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def advance(
    alert: ActiveAlert | None,
    *,
    rule: str,
    group: Mapping[str, str],
    holds: bool,
    window_end_ns: int,
    for_ns: int,
    keep_firing_for_ns: int,
) -> tuple[ActiveAlert | None, Transition | None]:
    """The next state of one (rule, group) after a window, and the transition to notify, if any."""
    if holds:
        if alert is None or alert.status == "resolved":
            alert = ActiveAlert(rule, dict(group), "pending", window_end_ns, window_end_ns)
        alert.last_true_ns = window_end_ns
        if alert.status == "pending" and window_end_ns - alert.active_since_ns >= for_ns:
            alert.status = "firing"
            alert.fired_at_ns = window_end_ns
            return alert, "firing"
        return alert, None
    if alert is None or alert.status == "pending":
        return None, None
    if alert.status == "resolved" or window_end_ns - alert.last_true_ns < keep_firing_for_ns:
        return alert, None
    alert.status = "resolved"
    alert.resolved_at_ns = window_end_ns
    return alert, "resolved"


class StateStore:
    """Active alerts and sent notification keys, in one JSON file; no file keeps them in memory only."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.alerts: dict[str, ActiveAlert] = {}
        """By :func:`group_key`."""
        self.sent: dict[str, int] = {}
        """Notification key -> when it was delivered (ns); trimmed to the active alerts' keys."""

    def load(self) -> None:
        """Read the file (its tmp first, as a crash between write and rename leaves it); missing is empty."""
        if self.path is None:
            return
        for candidate in (self.path.with_suffix(".tmp"), self.path):
            try:
                data = json.loads(candidate.read_bytes())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("alert_state_unreadable", path=str(candidate), error=repr(exc))
                continue
            if not isinstance(data, dict) or data.get("version") != _VERSION:
                log.warning("alert_state_unreadable", path=str(candidate), error="unknown version")
                continue
            self.alerts = {key: ActiveAlert(**value) for key, value in data["alerts"].items()}
            self.sent = {str(k): int(v) for k, v in data["sent"].items()}
            log.info("alert_state_loaded", path=str(candidate), alerts=len(self.alerts))
            return

    def save(self) -> None:
        """Write the file: tmp, fsync, rename, fsync the directory."""
        if self.path is None:
            return
        payload: dict[str, Any] = {
            "version": _VERSION,
            "alerts": {key: asdict(alert) for key, alert in self.alerts.items()},
            "sent": self.sent,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            out.write(json.dumps(payload, sort_keys=True).encode())
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
