"""The lost-bytes alert of the monitoring component goes pending, then firing, in a real Prometheus."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.servers import ManagedProcess, free_port, start_podlog, wait_for, wait_for_port
from tests.integration.monitoring.prometheus import (
    PROMETHEUS,
    alerts,
    exported_series,
    query,
    start_prometheus,
    total,
)
from tests.unit.deploy.test_monitoring import alerting_rules, rule_groups, with_for

ALERT = "PodlogAgentLostBytes"
LOST = "podlog_collector_lost_bytes_total"
REASON = "deleted_before_read"
FOR_SECONDS = 4
"""The test copy's ``for:``; the production one is pinned by the promtool tests."""
LINES = 5
TARGET_LABELS = {"namespace": "podlog", "node": "node-1"}
"""What the PodMonitor's relabelling adds to an agent's series in a cluster."""


def cri_line(number: int) -> bytes:
    return f"2026-11-27T00:00:00.{number:09d}Z stdout F line {number} of a container\n".encode()


def lost_bytes_alerts(prometheus: str, state: str) -> list[dict[str, Any]]:
    return [a for a in alerts(prometheus, ALERT) if a["state"] == state]


def alert_history(prometheus: str) -> dict[str, list[float]]:
    """alertstate -> the evaluation times Prometheus recorded the alert in that state (ALERTS series)."""
    result = query(prometheus, f'ALERTS{{alertname="{ALERT}"}}[5m]')
    return {r["metric"]["alertstate"]: [float(t) for t, _ in r["values"]] for r in result}


def test_lost_bytes_alert_goes_pending_then_firing_when_podlog_run_finds_a_file_gone(tmp_path: Path) -> None:
    """A real Prometheus scrapes `podlog run` (as the agent's job, with a node) and evaluates the
    PrometheusRule's groups.  While podlog has lost nothing the alert is inactive; podlog run is
    stopped holding the unterminated last line of a container log, the pod's logs are deleted
    while it is down, and after the restart the lost-bytes counter holds exactly that line's
    bytes and PodlogAgentLostBytes goes pending, then firing."""
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed: Debian's `prometheus` package; ./dev test and .ci/run install it")
    # The expression is the real one; only for: is shortened here (the promtool tests pin the production one).
    groups = with_for(rule_groups(), ALERT, FOR_SECONDS)
    assert f"increase({LOST}[" in alerting_rules(groups)[ALERT]["expr"]

    pod = tmp_path / "logs" / "shop_web-1_5f0c4a7e-9a51-4bb6-8a4e-3c1d2b7f6e01"
    log = pod / "web" / "0.log"
    log.parent.mkdir(parents=True)
    # The container was writing its last line when podlog stopped: podlog saw those bytes
    # but reads only whole lines, so they are what the deletion loses.
    unterminated = cri_line(LINES).rstrip(b"\n")
    log.write_bytes(b"".join(cri_line(n) for n in range(LINES)) + unterminated)

    ops_port = free_port()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "podlog": {"node_name": "node-1", "log_format": "json"},
        "kubernetes": {"enabled": False},
        "search": {"ops_listen": f"127.0.0.1:{ops_port}"},
    }))  # fmt: skip
    args = ["run", "--config", str(config), "--logs", str(tmp_path / "logs"),
            "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
    metrics_url = f"http://127.0.0.1:{ops_port}/metrics"
    processes: list[ManagedProcess] = []
    try:
        run = start_podlog(args, tmp_path / "process-logs", name="run")
        processes.append(run)
        wait_for_port(ops_port, 30, run)
        # The PodMonitor names the agents' job podlog-agent; podlog run's collector is that node's agent.
        prometheus = start_prometheus(
            tmp_path / "prometheus", "podlog-agent", f"127.0.0.1:{ops_port}", groups, TARGET_LABELS
        )
        processes.append(prometheus)
        url = prometheus.url

        def read_the_whole_lines() -> bool:
            assert run.popen.poll() is None, run.tail()
            return total(exported_series(metrics_url), "podlog_collector_read_lines_total") >= LINES

        wait_for(read_the_whole_lines, 30, "podlog run to read the whole lines")

        def nothing_lost_yet() -> bool:
            # increase() has a value once Prometheus holds two samples of the series: it is
            # exported at 0 before any loss, so an increase after a restart counts from 0.
            result = query(url, f'increase({LOST}{{reason="{REASON}"}}[15m])')
            return len(result) == 1 and float(result[0]["value"][1]) == 0.0

        wait_for(nothing_lost_yet, 30, f"Prometheus to hold {LOST} at 0", interval=0.2)
        assert alerts(url, ALERT) == []

        run.stop(timeout=30)
        assert run.popen.returncode == 0, run.tail()
        shutil.rmtree(pod)  # the kubelet removes a deleted pod's logs, every generation of them

        run = start_podlog(args, tmp_path / "process-logs", name="run")
        processes.append(run)

        def active(state: str) -> list[dict[str, Any]]:
            assert run.popen.poll() is None, run.tail()
            return lost_bytes_alerts(url, state)

        pending = wait_for(lambda: active("pending"), 30, f"{ALERT} to go pending", interval=0.1)
        firing = wait_for(lambda: active("firing"), 30, f"{ALERT} to fire", interval=0.2)
        for (alert,) in (pending, firing):
            assert {**TARGET_LABELS, "reason": REASON, "severity": "critical"}.items() <= alert["labels"].items()
            assert float(alert["value"]) > 0

        (lost,) = query(url, f'{LOST}{{reason="{REASON}"}}')
        assert float(lost["value"][1]) == len(unterminated)
        history = alert_history(url)
        assert max(history["pending"]) < min(history["firing"])
        assert min(history["firing"]) - min(history["pending"]) >= FOR_SECONDS
    finally:
        for process in reversed(processes):
            process.stop()
