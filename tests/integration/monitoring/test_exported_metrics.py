"""Every metric the alert rules and the Grafana dashboard read is served by the running processes."""

from __future__ import annotations

import contextlib
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported from cimpl

from tests.fixtures.servers import ManagedProcess, free_port, start_podlog, wait_for, wait_for_port
from tests.integration.monitoring.prometheus import Series, exported_series, total
from tests.unit.deploy.test_monitoring import EXTERNAL_METRICS, dashboard, metric_names, promql, queries, rule_groups

OWNERS = {
    "podlog_collector_": ("agent", "run"),
    "podlog_shipper_": ("agent",),
    "podlog_indexer_": ("indexer",),
    "podlog_search_": ("run",),
}
"""Metric name prefix -> the processes that must serve it: each component's metrics in each
process that runs the component (the agent's Kafka shipper is checked in the agent)."""
TARGET_LABELS = {"namespace", "node", "pod", "job", "instance"}
"""Labels Prometheus adds to a target's series (the PodMonitor and ServiceMonitors), not podlog."""
SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')

LINES = 10
"""Lines in each container log the test writes."""

Matcher = tuple[str, str, str]
"""(label, operator, value) of a PromQL label matcher."""


def selectors(expr: str) -> dict[str, list[list[Matcher]]]:
    """Metric name -> the label matchers of each selector of it in ``expr`` (one empty list for a bare name)."""
    names = metric_names(expr)
    found: dict[str, list[list[Matcher]]] = {}
    for match in SELECTOR.finditer(promql(expr)):
        if match.group(1) in names:
            found.setdefault(match.group(1), []).append(MATCHER.findall(match.group(2)))
    for name in names - found.keys():
        found[name] = [[]]
    return found


def matches(labels: dict[str, str], matchers: list[Matcher]) -> bool:
    """Whether a series podlog exports can satisfy ``matchers``.

    Target labels come from Prometheus and are not checked.  A positive regex
    (``status=~"5.."``) selects values that exist once such an event happened
    (an HTTP status), so only its metric is checked; equality and the negative
    matchers must hold for one exported series.
    """
    for label, op, value in matchers:
        if label in TARGET_LABELS or op == "=~":
            continue
        assert "$" not in value, f"dashboard variable on podlog's own label {label}: {value}"
        have = labels.get(label, "")
        if (
            (op == "=" and have != value)
            or (op == "!=" and have == value)
            or (op == "!~" and re.fullmatch(value, have))
        ):
            return False
    return True


def expected() -> dict[str, dict[str, list[list[Matcher]]]]:
    """Where it is read (rule or dashboard query) -> metric -> the matchers of each selector."""
    used = {f"rule {r.get('alert') or r.get('record')}": r["expr"] for g in rule_groups() for r in g["rules"]}
    used.update(queries(dashboard()))
    return {where: selectors(expr) for where, expr in used.items()}


def owners(name: str) -> tuple[str, ...]:
    found = [processes for prefix, processes in OWNERS.items() if name.startswith(prefix)]
    assert found, f"{name}: no process is known to serve it; add its prefix to OWNERS"
    return found[0]


def unserved(scraped: dict[str, Series]) -> list[str]:
    """Each (process, metric, selector) the rules or dashboard read that the process does not serve."""
    missing = []
    for where, used in expected().items():
        for name, each in used.items():
            if name in EXTERNAL_METRICS:
                continue
            for process in owners(name):
                samples = scraped.get(process, {}).get(name, [])
                for matchers in each:
                    if not any(matches(sample.labels, matchers) for sample in samples):
                        shown = ",".join(f'{label}{op}"{value}"' for label, op, value in matchers)
                        missing.append(f"{process}: {name}{{{shown}}} ({where})")
    return sorted(set(missing))


def cri_lines(count: int) -> bytes:
    return b"".join(f"2026-11-27T00:00:00.{n:09d}Z stdout F request {n} served\n".encode() for n in range(count))


def write_container_log(logs: Path) -> None:
    """One container's log, as the kubelet lays it out under /var/log/pods."""
    log = logs / "shop_web-1_7d3e2f10-4c5b-4a8e-9f61-0b2a3c4d5e6f" / "web" / "0.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(cri_lines(LINES))


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result(30)


def configs(tmp_path: Path, bootstrap: str, opensearch: str, topic: str) -> dict[str, dict[str, Any]]:
    """The agent's, the indexer's and podlog run's config: short waits, ops routes on free ports."""
    common = {"cluster": "monitoring", "node_name": "node-1", "log_format": "json"}
    return {
        "agent": {
            "podlog": {**common, "state_dir": str(tmp_path / "agent-state"), "http_listen": f"127.0.0.1:{free_port()}"},
            "collector": {"include": [str(tmp_path / "agent-logs" / "*" / "*" / "*.log")]},
            "kubernetes": {"enabled": False},
            "shipper": {"kafka": {"bootstrap_servers": bootstrap, "topic": topic}},
        },
        "indexer": {
            "podlog": {**common, "http_listen": f"127.0.0.1:{free_port()}"},
            "indexer": {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topics": [topic],
                    "group_id": f"{topic}-group",
                    "batch_max_wait_seconds": 0.2,
                    "session_timeout_ms": 6000,
                    "lag_interval_seconds": 1,
                },
                "opensearch": {"hosts": [opensearch], "index_prefix": topic, "number_of_replicas": 0},
            },
        },
        "run": {
            "podlog": common,
            "kubernetes": {"enabled": False},
            "search": {"ops_listen": f"127.0.0.1:{free_port()}"},
        },
    }


def ops_port(config: dict[str, Any]) -> int:
    address = config.get("search", {}).get("ops_listen") or config["podlog"]["http_listen"]
    return int(address.rpartition(":")[2])


def search_once(url: str) -> None:
    """One request to the search API, as the search page makes."""
    now_ms = time.time_ns() // 1_000_000
    query = urllib.parse.urlencode({"buckets": 1, "start": now_ms - 86_400_000, "end": now_ms + 3_600_000})
    with urllib.request.urlopen(f"{url}/api/histogram?{query}", timeout=10) as response:
        assert response.status == 200


def test_every_metric_the_rules_and_dashboard_read_is_served(
    kafka_bootstrap: str, opensearch_any: str, tmp_path: Path
) -> None:
    """A real `podlog agent` (to Kafka), `podlog indexer` (Kafka to OpenSearch) and `podlog run`,
    having each done their ordinary work (read a container log, shipped it, indexed it, answered
    a search), serve on /metrics every metric the PrometheusRule and the Grafana dashboard read,
    in each process that runs its component, with a series for every label value a rule or
    panel selects; a histogram is matched by its _bucket series.  Series only a fault moves
    (lost bytes, a full spool, produce errors, dead letters, throttling) are served at 0."""
    topic = f"monitoring-{time.monotonic_ns()}"
    create_topic(kafka_bootstrap, topic)
    settings = configs(tmp_path, kafka_bootstrap, opensearch_any, topic)
    write_container_log(tmp_path / "agent-logs")
    write_container_log(tmp_path / "run-logs")
    search_port = free_port()
    args = {
        "agent": ["agent"],
        "indexer": ["indexer"],
        "run": ["run", "--logs", str(tmp_path / "run-logs"), "--data-dir", str(tmp_path / "run-data"),
                "--listen", f"127.0.0.1:{search_port}"],
    }  # fmt: skip
    running: dict[str, ManagedProcess] = {}
    try:
        for name, config in settings.items():
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            running[name] = start_podlog([args[name][0], "--config", str(path), *args[name][1:]], tmp_path / "logs")
        for name, process in running.items():
            wait_for_port(ops_port(settings[name]), 30, process)
        wait_for_port(search_port, 30, running["run"])  # the ops port answers before the API's
        search_once(f"http://127.0.0.1:{search_port}")

        def scrape() -> dict[str, Series]:
            for name, process in running.items():
                assert process.popen.poll() is None, f"{name} exited: {process.tail()}"
            return {name: exported_series(f"http://127.0.0.1:{ops_port(settings[name])}/metrics") for name in running}

        def indexed() -> bool:
            served = scrape()["indexer"]
            return total(served, "podlog_indexer_documents_total", {"outcome": "indexed"}) >= LINES

        # The agent's lines went through Kafka into OpenSearch: every stage has run once.
        wait_for(indexed, 45, "the indexer to index the agent's lines", interval=0.2)
        with contextlib.suppress(TimeoutError):  # the assertion below names what is missing
            wait_for(lambda: not unserved(scrape()), 15, "every metric to be served", interval=0.5)
        scraped = scrape()
        missing = unserved(scraped)
    finally:
        for process in running.values():
            process.stop()
    assert missing == [], "not served:\n" + "\n".join(missing)
    # Only the indexer exports indexer series: an agent's "OpenSearch down" would be a false alarm.
    for name in ("agent", "run"):
        assert [n for n in scraped[name] if n.startswith("podlog_indexer_")] == [], name
