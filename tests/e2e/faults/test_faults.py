"""Nothing lost, nothing duplicated: the whole pipeline under faults.

Each scenario writes numbered lines, runs agent and indexer as processes,
injects faults on a schedule, waits for the index to drain, and compares the
index with what was written, line by line.  The CI-sized version runs by
default; ``PODLOG_FAULTS_FULL=1`` runs the full version (more files and lines,
30-second outages): ``PODLOG_FAULTS_FULL=1 ./dev test tests/e2e/faults -s``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.faults.harness import (
    LogWriter,
    Pipeline,
    ProxyThread,
    Report,
    indexed_count,
    indexed_messages,
)
from tests.fixtures.servers import DurableKafka, wait_for

FULL = os.environ.get("PODLOG_FAULTS_FULL") == "1"
ROUNDS = 60 if FULL else 12
# Per file and round. The full version's default keeps each scenario near
# 50,000 documents, what the local OpenSearch emulator holds comfortably (at
# 300,000 it grew past 15 GB and was OOM-killed); against a real OpenSearch
# (PODLOG_TEST_OPENSEARCH or Docker) raise it, e.g. PODLOG_FAULTS_LINES=400.
LINES_PER_ROUND = int(os.environ.get("PODLOG_FAULTS_LINES", "70" if FULL else "60"))
OUTAGE_SECONDS = 30.0 if FULL else 4.0
ROUND_SECONDS = 2.0 if FULL else 1.5
DRAIN_TIMEOUT = 600.0 if FULL else 180.0

# The full version writes for minutes and waits out 30-second outages.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400 if FULL else 600)]


@pytest.fixture
def proxy(fresh_opensearch: str) -> Iterator[ProxyThread]:
    """A proxy in front of OpenSearch that can drop connections or answer 429."""
    thread = ProxyThread(fresh_opensearch)
    try:
        yield thread
    finally:
        for error in thread.proxy.errors[:20]:  # the proxy's own failures, answered 502
            print(f"[proxy] {error}")
        thread.close()


@pytest.fixture
def pipeline(
    tmp_path: Path, durable_kafka: DurableKafka, fresh_opensearch: str, proxy: ProxyThread
) -> Iterator[Pipeline]:
    writer = LogWriter(tmp_path / "logs")
    for i in range(12 if FULL else 6):
        writer.add(namespace=f"ns{i % 3}", pod=f"pod-{i}")
    pipe = Pipeline(tmp_path, writer, durable_kafka.bootstrap, fresh_opensearch, indexer_opensearch=proxy.url)
    pipe.start("agent")
    pipe.start("indexer")
    try:
        yield pipe
    finally:
        pipe.stop()


def drain_and_compare(pipe: Pipeline, scenario: str, last_fault: float, *, lost: int = 0) -> Report:
    """Wait until every written line but ``lost`` is indexed (or the deadline), then compare."""
    written = pipe.writer.written
    target = len(written) - lost

    progress = {"next": time.monotonic() + 30.0}

    def drained() -> bool:
        pipe.check_alive()
        pipe.sample_rss()
        count = indexed_count(pipe.opensearch, pipe.index_prefix)
        if time.monotonic() >= progress["next"]:  # a sign of life in -s runs of the full version
            print(f"[{scenario}] draining: {count} of {target} indexed")
            progress["next"] += 30.0
        return count >= target

    with contextlib.suppress(TimeoutError):  # the comparison below says what is missing
        wait_for(drained, DRAIN_TIMEOUT, f"{target} lines indexed", interval=1.0)
    drain = time.monotonic() - last_fault
    seen = indexed_messages(pipe.opensearch, pipe.index_prefix)
    expected = set(written)
    report = Report(
        scenario=scenario,
        written=len(written),
        indexed=sum(seen.values()),
        duplicates=sum(n - 1 for n in seen.values() if n > 1),
        missing=len(expected - set(seen)),
        missing_lines=expected - set(seen),
        lost_bytes=pipe.metric("agent", "podlog_collector_lost_bytes_total"),
        drain_seconds=drain,
        peak_rss_mib={k: v / 1024 for k, v in pipe.peak_rss_kib.items()},
    )
    print(report)
    unexpected = set(seen) - expected
    assert not unexpected, f"indexed lines that were never written: {sorted(unexpected)[:5]}"
    return report


def run_rounds(pipe: Pipeline, faults: dict[int, Callable[[], None]]) -> float:
    """Write ``ROUNDS`` rounds across all files; run ``faults[round]`` at its round."""
    last_fault = time.monotonic()
    for round_no in range(ROUNDS):
        for i, log in enumerate(pipe.writer.logs):
            pipe.writer.write(log, LINES_PER_ROUND if i else LINES_PER_ROUND // 2)
        if round_no in faults:
            faults[round_no]()
            last_fault = time.monotonic()
        pipe.check_alive()
        pipe.sample_rss()
        time.sleep(ROUND_SECONDS)  # the writer's pace (faults spread over time), not synchronisation
    return last_fault


def test_agent_and_indexer_killed_during_rotations(pipeline: Pipeline) -> None:
    """kill -9 of the agent (right after a rotation, inside a checkpoint write) and of the indexer.

    Nothing is lost and nothing duplicated.
    """
    writer = pipeline.writer

    def rotate_then_kill() -> None:
        writer.rotate_rename(writer.logs[1])
        pipeline.kill("agent")

    faults: dict[int, Callable[[], None]] = {
        2: lambda: pipeline.kill("agent"),
        4: lambda: writer.rotate_rename(writer.logs[0]),
        5: rotate_then_kill,
        7: lambda: pipeline.kill("indexer"),
        9: lambda: pipeline.kill("agent"),
        10: pipeline.kill_agent_mid_checkpoint,
    }
    last = run_rounds(pipeline, faults)
    report = drain_and_compare(pipeline, "kill-9 agent x4 (one mid-checkpoint), indexer x1, rotations", last)
    assert pipeline.mid_checkpoint_kills == 1, "the kill never landed inside a checkpoint write"
    assert (report.missing, report.duplicates, report.lost_bytes) == (0, 0, 0)


def test_broker_outage_loses_nothing(pipeline: Pipeline, durable_kafka: DurableKafka) -> None:
    """The broker stopped and restarted mid-stream: the spool holds the lines and delivers them."""

    def outage() -> None:
        durable_kafka.stop_broker()
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            for log in pipeline.writer.logs:
                pipeline.writer.write(log, LINES_PER_ROUND // 4)
            pipeline.check_alive()
            time.sleep(0.5)  # the outage's length is the point, not a synchronisation
        durable_kafka.start_broker()

    last = run_rounds(pipeline, {ROUNDS // 3: outage})
    report = drain_and_compare(pipeline, f"broker down {OUTAGE_SECONDS:.0f}s", last)
    assert (report.missing, report.duplicates, report.lost_bytes) == (0, 0, 0)


def test_noisy_pod_burst_and_deleted_pod_are_delivered_whole(pipeline: Pipeline) -> None:
    """A 50x burst from one pod, and a pod deleted mid-run (files gone while open): every line arrives."""
    noisy = pipeline.writer.logs[0]
    doomed = pipeline.writer.logs[-1]
    last = run_rounds(
        pipeline,
        {
            3: lambda: pipeline.writer.write(noisy, LINES_PER_ROUND * 50),
            ROUNDS - 4: lambda: pipeline.writer.delete_pod(doomed),
        },
    )
    report = drain_and_compare(pipeline, "50x burst from one pod, one pod deleted", last)
    assert (report.missing, report.duplicates, report.lost_bytes) == (0, 0, 0)


def test_opensearch_unreachable_then_throttling_loses_nothing(pipeline: Pipeline, proxy: ProxyThread) -> None:
    """OpenSearch unreachable for a period, then answering 429 for a third of the items: all lines land once."""
    faulty = proxy.proxy

    def unreachable() -> None:
        faulty.drop_bulk_connections = True
        time.sleep(OUTAGE_SECONDS)  # the outage's length is the point, not a synchronisation
        faulty.drop_bulk_connections = False

    def throttle(index: str, doc_id: str, attempt: int) -> tuple[int, dict[str, object]] | None:
        if attempt == 1 and hash(doc_id) % 3 == 0:
            return 429, {"type": "es_rejected_execution_exception", "reason": "rejected by the test"}
        return None

    def start_throttling() -> None:
        faulty.item_rule = throttle

    def stop_throttling() -> None:
        # Lift the 429s only once some were answered: after the outage the
        # indexer may still be backing off through the rounds meant for them.
        wait_for(lambda: faulty.items_faked > 0, DRAIN_TIMEOUT, "a bulk item answered 429", interval=0.2)
        faulty.item_rule = lambda index, doc_id, attempt: None

    last = run_rounds(pipeline, {3: unreachable, 6: start_throttling, 9: stop_throttling})
    report = drain_and_compare(pipeline, f"OpenSearch unreachable {OUTAGE_SECONDS:.0f}s, then 429s", last)
    assert faulty.items_faked > 0 and faulty.requests_failed + faulty.bulk_requests > 0
    assert (report.missing, report.duplicates, report.lost_bytes) == (0, 0, 0)



def test_log_rotated_away_unread_is_counted_to_the_byte(
    tmp_path: Path, durable_kafka: DurableKafka, fresh_opensearch: str
) -> None:
    """The one loss podlog cannot prevent, counted exactly.

    The broker is down, so the small spool fills and tailing pauses. A new
    pod writes lines the agent has seen (opened, sized) but not read; the
    agent stops, and meanwhile the kubelet rotates the file, compresses it
    and deletes the compressed generation too (max-files). After the restart
    the missing lines are exactly those, and the loss counter holds exactly
    their bytes; everything else arrives once.
    """
    writer = LogWriter(tmp_path / "logs")
    for i in range(4):
        writer.add(namespace=f"ns{i % 2}", pod=f"pod-{i}")
    pipe = Pipeline(tmp_path, writer, durable_kafka.bootstrap, fresh_opensearch)
    pipe.agent_settings = {
        "shipper": {"spool": {"max_bytes": 256 * 1024, "segment_bytes": 64 * 1024}},
        "collector": {"scan_interval_seconds": 0.2},
    }
    pipe.start("agent")
    pipe.start("indexer")
    try:
        for _ in range(3):
            for log in writer.logs:
                writer.write(log, LINES_PER_ROUND)
        durable_kafka.stop_broker()

        def spool_full() -> bool:
            for log in writer.logs:
                writer.write(log, LINES_PER_ROUND)
            pipe.check_alive()
            return pipe.metric("agent", "podlog_collector_sink_retries_total") > 0

        wait_for(spool_full, 120, "the spool full and tailing paused", interval=0.5)
        opened = pipe.metric("agent", "podlog_collector_file_events_total", 'event="opened"')
        doomed = writer.add(namespace="ns0", pod="rotated-away")
        writer.write(doomed, LINES_PER_ROUND)
        wait_for(
            lambda: pipe.metric("agent", "podlog_collector_file_events_total", 'event="opened"') > opened,
            30,
            "the new pod's file opened",
            interval=0.1,
        )
        agent = pipe.procs["agent"]
        agent.stop(timeout=30)  # SIGTERM: an orderly stop with the spool still full and no broker
        assert agent.popen.returncode == 0, agent.tail()
        gone = writer.rotate_away(doomed)
        writer.write(doomed, LINES_PER_ROUND)  # the new 0.log: must arrive
        durable_kafka.start_broker()
        pipe.start("agent")
        last = time.monotonic()
        for _ in range(3):
            for log in writer.logs:
                writer.write(log, LINES_PER_ROUND)
        report = drain_and_compare(pipe, "a log rotated away unread", last, lost=len(gone))
    finally:
        pipe.stop()
    assert report.duplicates == 0
    assert report.missing_lines == set(gone), "missing lines are not exactly the rotated-away ones"
    assert report.lost_bytes == sum(gone.values())
