"""The pending -> firing -> resolved state machine, idempotency keys, and the state file."""

from __future__ import annotations

from pathlib import Path

from search.alerts.state import ActiveAlert, StateStore, Transition, advance, notification_key
from search.alerts.templates import TemplateError, render_template

M = 60 * 10**9


def _step(
    alert: ActiveAlert | None, holds: bool, end: int, *, for_ns: int = 0, keep_ns: int = 0
) -> tuple[ActiveAlert | None, Transition | None]:
    return advance(alert, rule="r", group={"pod": "web-0"}, holds=holds, window_end_ns=end, for_ns=for_ns,
                   keep_firing_for_ns=keep_ns)


def test_for_holds_an_alert_pending_until_it_has_held_long_enough() -> None:
    """With for: 2m, the alert fires at the third true window, not before."""
    alert, sent = _step(None, True, 10 * M, for_ns=2 * M)
    assert alert is not None and alert.status == "pending" and sent is None
    alert, sent = _step(alert, True, 11 * M, for_ns=2 * M)
    assert alert is not None and alert.status == "pending" and sent is None
    alert, sent = _step(alert, True, 12 * M, for_ns=2 * M)
    assert alert is not None and alert.status == "firing" and sent == "firing"
    assert alert.active_since_ns == 10 * M and alert.fired_at_ns == 12 * M


def test_a_pending_alert_that_clears_is_forgotten_without_a_notification() -> None:
    """Pending and back is not notified."""
    alert, _ = _step(None, True, 10 * M, for_ns=5 * M)
    assert _step(alert, False, 11 * M, for_ns=5 * M) == (None, None)


def test_keep_firing_for_delays_the_resolution() -> None:
    """A firing alert stays firing for keep_firing_for after the condition stops, then resolves once."""
    alert, sent = _step(None, True, 10 * M, keep_ns=2 * M)
    assert sent == "firing"
    alert, sent = _step(alert, False, 11 * M, keep_ns=2 * M)
    assert alert is not None and alert.status == "firing" and sent is None
    alert, sent = _step(alert, False, 12 * M, keep_ns=2 * M)
    assert alert is not None and alert.status == "resolved" and sent == "resolved"
    assert alert.resolved_at_ns == 12 * M
    again, sent = _step(alert, False, 13 * M, keep_ns=2 * M)
    assert again is alert and sent is None


def test_a_resolved_alert_that_holds_again_starts_a_new_one() -> None:
    """A new firing has a new window, so a new idempotency key."""
    alert, _ = _step(None, True, 10 * M)
    alert, _ = _step(alert, False, 11 * M)
    assert alert is not None and alert.status == "resolved"
    new, sent = _step(alert, True, 12 * M)
    assert new is not None and new.active_since_ns == 12 * M and sent == "firing"
    assert notification_key("r", new.group, 12 * M, "firing") != notification_key("r", new.group, 10 * M, "firing")


def test_notification_keys_depend_on_rule_group_window_and_status_only() -> None:
    """Two replicas computing the same event agree on its key; group order does not matter."""
    a = notification_key("r", {"pod": "x", "namespace": "n"}, 5, "firing")
    assert a == notification_key("r", {"namespace": "n", "pod": "x"}, 5, "firing")
    assert a != notification_key("r", {"pod": "x", "namespace": "n"}, 5, "resolved")


def test_the_state_file_survives_a_reload_and_prefers_a_leftover_tmp(tmp_path: Path) -> None:
    """What was saved is what loads; a tmp file left by a crash before the rename wins."""
    store = StateStore(tmp_path / "state.json")
    store.alerts["k"] = ActiveAlert("r", {"pod": "p"}, "firing", 1, 2, count=3, sample="boom", fired_at_ns=2)
    store.sent["webhook#0|key"] = 2
    store.save()
    loaded = StateStore(tmp_path / "state.json")
    loaded.load()
    assert loaded.alerts == store.alerts and loaded.sent == store.sent
    (tmp_path / "state.tmp").write_text('{"version": 1, "alerts": {}, "sent": {"x": 1}}')
    newer = StateStore(tmp_path / "state.json")
    newer.load()
    assert newer.alerts == {} and newer.sent == {"x": 1}


def test_templates_render_group_values_and_refuse_missing_ones() -> None:
    """Placeholders are filled; a value an alert lacks is a TemplateError, not a crash."""
    assert render_template("{{count}} in {{ group.pod }}", {"count": "4"}, {"pod": "web"}) == "4 in web"
    try:
        render_template("{{ group.pod }}", {}, {})
    except TemplateError as exc:
        assert "group.pod" in str(exc)
    else:
        raise AssertionError("a missing value must fail")
