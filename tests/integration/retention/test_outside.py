"""The outside check of retention, against both modes: searchable = within retention.

Lines 1 h, 23 h, 30 h, 6 d, 8 d, 13 d and 20 d old in three namespaces whose
classes keep 1, 7 and 14 days.  Against ``podlog run`` (embedded index, a real
process, kill -9 and a re-read from the start of every file) and against the
indexer writing to an OpenSearch emulator through Kafka (and a replay of the
whole topic by a second consumer group), a search never shows a line past its
class's days: not right after ingest, not after a re-read.  Moving the clock on
hour by hour (the retention pass at each hour, as the indexer runs it), what is
searchable at each pass is exactly what is within retention, and between passes
nothing is shown more than one pass interval (1 h) past its class's days.
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from opensearchpy import OpenSearch

from indexer.retention import apply_retention
from podlog.demo import render_line
from podlog.record import SourcePosition, encode_batch, make_record
from podlog.retention import DAY_NS, RetentionConfig
from tests.fixtures.servers import free_port, wait_for
from tests.integration.indexer.conftest import (
    create_topic,
    indexer_config,
    produce,
    running,
    wait_committed,
    wait_until,
)
from tests.integration.single_node.runner import RunProcess, start_run

HOUR_NS = 3_600_000_000_000
AGES_H = (1, 23, 30, 24 * 6, 24 * 8, 24 * 13, 24 * 20)
DAYS = {"ns-day": 1.0, "ns-week": 7.0, "ns-fortnight": 14.0}
RETENTION: dict[str, object] = {
    "classes": {"day": 1, "week": 7, "fortnight": 14},
    "default_class": "week",
    "namespaces": {"ns-day": "day", "ns-week": "week", "ns-fortnight": "fortnight"},
}
EXPIRED_BY_CLASS = {"day": 5, "week": 3, "fortnight": 1}
"""Lines past their class's days at ingest: 30 h..20 d (day), 8 d..20 d (week), 20 d (fortnight)."""


def _message(ns: str, age_h: int) -> str:
    return f"agecheck {ns} {age_h}h"


def _lines(now_ns: int) -> list[tuple[str, int, str]]:
    """(namespace, timestamp, message) of every line."""
    return [(ns, now_ns - age * HOUR_NS, _message(ns, age)) for ns in DAYS for age in AGES_H]


def _within(now_ns: int, at_ns: int, slack_ns: int = 0) -> set[str]:
    """Messages within retention at ``at_ns`` (``slack_ns``: also those expired less than that ago)."""
    return {
        msg for ns, ts, msg in _lines(now_ns) if ts >= at_ns - int(DAYS[ns] * DAY_NS) - slack_ns
    }


# -- podlog run: the embedded index -------------------------------------------------------


def _file(ns: str) -> str:
    digest = hashlib.sha256(ns.encode()).hexdigest()
    return f"app-6c8d7e9f5-m3n4b_{ns}_app-{digest}.log"


def _write_logs(directory: Path, now_ns: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for ns in DAYS:
        with (directory / _file(ns)).open("wb") as out:
            for line_ns, ts, msg in sorted(_lines(now_ns), key=lambda line: line[1]):
                if line_ns == ns:
                    out.write(render_line("cri", "stdout", ts, msg))


def _searchable(run: RunProcess) -> set[str]:
    page = run.get("/api/search?q=agecheck&start=now-30d&size=500")
    return {hit["message"] for hit in page["hits"]}


def _expired_counts(run: RunProcess) -> Counter[str]:
    match = re.search(r"podlog: metrics at (\S+)", run.output())
    if match is None:
        return Counter()
    with urllib.request.urlopen(match.group(1), timeout=5) as response:
        text = response.read().decode()
    found: Counter[str] = Counter()
    for name, value in re.findall(r'^podlog_indexer_records_expired_total\{class="([^"]+)"\} (\S+)$', text, re.M):
        found[name] = int(float(value))
    return found


def test_podlog_run_never_shows_a_line_past_its_retention(tmp_path: Path) -> None:
    """podlog run: right after ingest, and after kill -9 and a re-read of every file from its
    start, the search shows exactly the lines within their class's days; the expired ones
    are counted by class each time they arrive."""
    now_ns = time.time_ns()
    logs, data = tmp_path / "logs", tmp_path / "data"
    _write_logs(logs, now_ns)
    config = tmp_path / "podlog.yaml"
    config.write_text(yaml.safe_dump({"retention": RETENTION}))
    args = ["--config", str(config), "--logs", str(logs), "--data-dir", str(data)]
    expected = _within(now_ns, now_ns)
    runs: list[RunProcess] = []
    try:
        run = start_run(args, free_port(), tmp_path / "out")
        runs.append(run)
        seen: list[set[str]] = []

        def ingested() -> bool:
            seen.append(_searchable(run))
            return seen[-1] == expected

        wait_for(lambda: "search page at" in run.output(), 30, "podlog run to listen")
        wait_for(ingested, 60, f"the {len(expected)} lines within retention to be searchable")
        assert all(found <= expected for found in seen), "an expired line was searchable during ingest"
        wait_for(lambda: _expired_counts(run) == EXPIRED_BY_CLASS, 30, "expired lines counted by class")
        run.kill()
        for checkpoint in data.rglob("checkpoints.json*"):
            checkpoint.unlink()  # every file is read again from its start
        run = start_run(args, free_port(), tmp_path / "out")
        runs.append(run)
        wait_for(lambda: "search page at" in run.output(), 30, "podlog run to listen again")
        # The re-read (and the replay of the spool's unacknowledged segment) counts again.
        wait_for(
            lambda: all(_expired_counts(run)[k] >= n for k, n in EXPIRED_BY_CLASS.items()),
            60,
            "the re-read to reach the expired lines",
        )
        assert _searchable(run) == expected, run.tail()
        assert run.stop() == 0, run.tail()
    finally:
        for process in runs:
            process.kill()


# -- the indexer and OpenSearch ----------------------------------------------------------


def _records(now_ns: int) -> list[dict[str, object]]:
    records = []
    for number, (ns, ts, msg) in enumerate(_lines(now_ns)):
        records.append(
            make_record(
                position=SourcePosition("test", "node-1", f"1:2:{ns}", 0, number * 100),
                timestamp=datetime.fromtimestamp(ts / 1e9, tz=UTC).isoformat().replace("+00:00", "Z"),
                timestamp_ns=ts,
                message=msg,
                stream="stdout",
                path=f"/var/log/containers/{_file(ns)}",
                kubernetes={"namespace": ns, "pod": {"name": "app", "uid": "u"}, "container": {"name": "app"}},
            )
        )
    return records


def _os_searchable(client: OpenSearch, prefix: str) -> set[str]:
    names = [row["index"] for row in client.cat.indices(index=f"{prefix}-logs-*", format="json")]
    for name in names:
        client.indices.refresh(index=name)
    if not names:
        return set()
    found = client.search(index=f"{prefix}-logs-*", body={"size": 500, "query": {"match_all": {}}})
    return {hit["_source"]["message"] for hit in found["hits"]["hits"]}


async def test_indexer_never_indexes_a_line_past_its_retention_and_the_pass_keeps_it_so(
    kafka_bootstrap: str, opensearch_url: str
) -> None:
    """Indexer to OpenSearch: right after ingest and after a replay of the whole topic, the
    indices hold exactly the lines within retention; then, hour by hour for 15 days, each
    retention pass leaves exactly what is within retention at that hour, and nothing is
    ever searchable more than the pass interval past its class's days."""
    now_ns = time.time_ns()
    unique = f"ret{now_ns % 10**12}"
    retention = RetentionConfig(
        classes={"day": 1.0, "week": 7.0, "fortnight": 14.0},
        default_class="week",
        namespaces={"ns-day": "day", "ns-week": "week", "ns-fortnight": "fortnight"},
    )
    await create_topic(kafka_bootstrap, unique, 1)
    await produce(kafka_bootstrap, unique, [encode_batch(_records(now_ns))])
    client = OpenSearch(opensearch_url)
    expected = _within(now_ns, now_ns)
    for group in (f"{unique}-first", f"{unique}-replay"):  # the replay re-reads every line
        config = indexer_config(kafka_bootstrap, opensearch_url, unique, unique, group=group)
        async with running(config, retention) as _indexer:
            await wait_committed(kafka_bootstrap, group, unique, 1)
            await wait_until(lambda: _os_searchable(client, unique) == expected, 30, "the lines within retention")
        assert _os_searchable(client, unique) == expected
    for hours in range(0, 24 * 15 + 1):
        # A second past each hour: the lines' ages are whole hours, so no line sits on a cutoff
        # to the nanosecond (which a cluster comparing longs as doubles cannot tell apart).
        at_ns = now_ns + hours * HOUR_NS + 1_000_000_000
        moment = datetime.fromtimestamp(at_ns // 1_000_000_000, tz=UTC) + timedelta(
            microseconds=at_ns % 1_000_000_000 // 1000
        )
        # Just before this hour's pass: at most one interval late.
        before = _os_searchable(client, unique)
        assert _within(now_ns, at_ns) <= before <= _within(now_ns, at_ns, slack_ns=HOUR_NS), hours
        apply_retention(client, unique, retention, moment)
        assert _os_searchable(client, unique) == _within(now_ns, at_ns), hours
