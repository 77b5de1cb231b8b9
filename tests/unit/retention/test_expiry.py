"""One meaning of "N days": what arrives expired is never indexed, what expires is never searched."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import pytest

from indexer.dlq import DeadLetter, _letter_items
from indexer.documents import KafkaPosition, build_items
from indexer.outcomes import PendingOutcomes, collect, report
from indexer.templates import Capabilities
from podlog.metrics import sample
from podlog.record import Record, encode_batch
from podlog.retention import DAY_NS, RetentionConfig, class_for, cutoff_ns, is_expired
from podlog.settings import Settings
from podlog.single_node import kube_api_source, prepare_run
from tests.unit.embedded.conftest import T0, Clock, open_index, rec, req

HOUR_NS = 3_600_000_000_000
RETENTION = RetentionConfig(
    classes={"day": 1.0, "week": 7.0, "fortnight": 14.0},
    default_class="week",
    namespaces={"ns-day": "day", "ns-week": "week", "ns-fortnight": "fortnight"},
)
AGES_NS = [h * HOUR_NS for h in (1, 23, 30, 24 * 6, 24 * 8, 24 * 13, 24 * 20)]
"""The ages of the issue's outside check: 1 h, 23 h, 30 h, 6 d, 8 d, 13 d, 20 d."""
DAYS = {"ns-day": 1.0, "ns-week": 7.0, "ns-fortnight": 14.0}
CAPS = Capabilities("opensearch", (3, 0), "flat_object", ism=False)


def _lines(now_ns: int) -> list[Record]:
    """One line per age and namespace, its message naming both."""
    out: list[Record] = []
    for ns in DAYS:
        for age in AGES_NS:
            out.append(rec(len(out), now_ns - age, f"{ns} {age // HOUR_NS}h", namespace=ns))
    return out


def _within(now_ns: int, at_ns: int) -> set[str]:
    """Messages of the lines within retention at ``at_ns`` (lines stamped from ``now_ns``)."""
    return {
        f"{ns} {age // HOUR_NS}h"
        for ns, days in DAYS.items()
        for age in AGES_NS
        if now_ns - age >= at_ns - int(days * DAY_NS)
    }


def test_the_cutoff_is_the_same_instant_for_every_caller() -> None:
    """A record is kept while timestamp >= now - days; a class no longer configured keeps the default's days."""
    now = T0
    assert cutoff_ns(RETENTION, "day", now) == now - DAY_NS
    assert not is_expired(RETENTION, "day", now - DAY_NS, now)
    assert is_expired(RETENTION, "day", now - DAY_NS - 1, now)
    assert cutoff_ns(RETENTION, "retired", now) == now - 7 * DAY_NS


def test_precedence_is_annotation_then_namespace_glob_then_default() -> None:
    """The class a record carries (pod, else namespace annotation) wins over the globs; an
    unknown class counts as absent; a namespace no glob matches takes the default."""
    assert class_for(RETENTION, "ns-day", "fortnight") == "fortnight"
    assert class_for(RETENTION, "ns-day", "no-such-class") == "day"
    assert class_for(RETENTION, "ns-day", None) == "day"
    assert class_for(RETENTION, "elsewhere", None) == "week"


def test_the_indexer_builds_no_item_for_an_expired_record_and_counts_it_at_commit() -> None:
    """Records past their class's days are not bulk items; they are counted by class in
    podlog_indexer_records_expired_total once their partition commits, and only then."""
    lines = _lines(T0)
    expired: Counter[str] = Counter()
    items, dead = build_items(
        value=encode_batch(lines), position=KafkaPosition("t", 0, 5), timestamp_ms=None, prefix="p",
        retention=RETENTION, capabilities=CAPS, expired=expired, now_ns=T0,
    )  # fmt: skip
    assert dead == []
    kept = {item.document["message"] for item in items}
    assert kept == _within(T0, T0)
    assert expired == {"day": 5, "week": 3, "fortnight": 1}
    before = {k: sample("podlog_indexer_records_expired_total", {"class": k}) for k in expired}
    pending = PendingOutcomes()
    for item in items:
        item.outcome = "indexed"
    pending.add(collect(items, (), {("t", 0): expired}), {("t", 0)})
    assert all(sample("podlog_indexer_records_expired_total", {"class": k}) == before[k] for k in expired)
    report(pending.settle({("t", 0)}))
    after = {k: sample("podlog_indexer_records_expired_total", {"class": k}) - before[k] for k in expired}
    assert after == dict(expired)


def test_without_an_expired_counter_nothing_is_filtered() -> None:
    """Callers that do not ask (tools re-routing stored records) get every record."""
    items, _ = build_items(
        value=encode_batch(_lines(T0)), position=KafkaPosition("t", 0, 5), timestamp_ms=None, prefix="p",
        retention=RETENTION, capabilities=CAPS,
    )  # fmt: skip
    assert len(items) == len(DAYS) * len(AGES_NS)


async def test_the_embedded_index_never_stores_an_expired_line_even_on_a_reread(tmp_path: Path) -> None:
    """Lines past their class's days are counted and not stored, on arrival and again when the
    same lines are read again (a restart), so they are never searchable."""
    clock = Clock(T0)
    async with open_index(tmp_path, retention=RETENTION, clock=clock) as index:
        before = sample("podlog_indexer_records_expired_total", {"class": "day"}) or 0.0
        await index.write(_lines(T0))
        assert {r["message"] for r in (await index.search(req())).hits} == _within(T0, T0)
        await index.write(_lines(T0))  # the re-read
        assert {r["message"] for r in (await index.search(req())).hits} == _within(T0, T0)
        assert (sample("podlog_indexer_records_expired_total", {"class": "day"}) or 0.0) - before == 10
        assert await index.expire() == {"day": 0, "week": 0, "fortnight": 0}


@pytest.mark.parametrize("pass_runs", [False, True], ids=["between-passes", "after-a-pass"])
async def test_the_embedded_index_shows_exactly_what_is_within_retention_at_every_moment(
    tmp_path: Path, pass_runs: bool
) -> None:
    """As time moves on (hour by hour across every boundary), a search shows exactly the lines
    within their class's days: the query-time condition hides a line the moment it expires,
    before any retention pass, and the pass then deletes the same lines."""
    clock = Clock(T0)
    async with open_index(tmp_path, retention=RETENTION, clock=clock) as index:
        await index.write(_lines(T0))
        for hours in range(0, 24 * 15, 1):
            clock.now_ns = T0 + hours * HOUR_NS
            if pass_runs:
                await index.expire()
            page = await index.search(req())
            seen = {r["message"] for r in page.hits}
            assert seen == _within(T0, clock.now_ns), hours
            assert page.total == len(seen)
            histogram = await index.histogram(req(), DAY_NS)
            assert sum(b.count for b in histogram) == len(seen), hours


async def test_recent_searches_get_no_retention_condition(tmp_path: Path) -> None:
    """A search from after every class's cutoff (the common "last hour") adds nothing to the query."""
    async with open_index(tmp_path, retention=RETENTION, clock=Clock(T0)) as index:
        assert index.retention_clause(T0 - HOUR_NS, T0) is None
        assert index.retention_clause(T0 - 2 * DAY_NS, T0) is not None


def test_podlog_run_uses_the_api_whenever_it_has_access(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A kubeconfig ($KUBECONFIG, ~/.kube/config or the setting) or an api_server turns the pod
    and namespace watch on in `podlog run`, as in-cluster credentials do; none leaves it off."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def enabled(settings: Settings) -> bool:
        return prepare_run(settings, logs=tmp_path, data_dir=tmp_path / "d", listen=None, demo=False).kubernetes.enabled

    assert kube_api_source(Settings().kubernetes) == ""
    assert not enabled(Settings())
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert kube_api_source(Settings().kubernetes) == "~/.kube/config"
    assert enabled(Settings())
    (tmp_path / ".kube" / "config").unlink()
    other = tmp_path / "kubeconfig"
    other.write_text("apiVersion: v1\n")
    monkeypatch.setenv("KUBECONFIG", str(other))
    assert kube_api_source(Settings().kubernetes) == "$KUBECONFIG"
    monkeypatch.delenv("KUBECONFIG")
    settings = Settings()
    server = dataclasses.replace(
        settings, kubernetes=dataclasses.replace(settings.kubernetes, api_server="http://127.0.0.1:1")
    )
    assert enabled(server)
    off = dataclasses.replace(server, kubernetes=dataclasses.replace(server.kubernetes, enabled=False))
    assert not enabled(off)


async def test_the_context_of_a_line_never_shows_an_expired_neighbour(tmp_path: Path) -> None:
    """Between retention passes, the context of a line stops at the first expired line before
    it, and an expired line has no context at all."""
    clock = Clock(T0)
    lines = [rec(n, T0 - (10 - n) * HOUR_NS, f"ctx {n}", namespace="ns-day") for n in range(10)]
    async with open_index(tmp_path, retention=RETENTION, clock=clock) as index:
        await index.write(lines)
        anchor = lines[5]["event"]["id"]
        found = await index.context(anchor, 10, 10, None)
        assert found is not None and len(found.before) == 5 and len(found.after) == 4
        clock.now_ns = T0 + 17 * HOUR_NS  # lines 0..2 are now past the day (no pass ran)
        found = await index.context(anchor, 10, 10, None)
        assert found is not None
        assert [r["message"] for r in found.before] == ["ctx 3", "ctx 4"]
        assert await index.context(lines[1]["event"]["id"], 10, 10, None) is None


def test_a_dead_letter_past_its_retention_replays_as_nothing_and_is_counted() -> None:
    """`podlog dlq replay` of a record past its class's days indexes nothing (the letter is then
    resolved) and counts the record as expired; a record within retention replays as usual."""
    now = time.time_ns()  # a replay decides at the wall clock's now
    old, fresh = rec(0, now - 3 * DAY_NS, "old", namespace="ns-day"), rec(1, now - HOUR_NS, "new", namespace="ns-day")
    expired: Counter[str] = Counter()
    letters = [DeadLetter(r["event"]["id"], {"record": r, "kafka": {"topic": "t", "partition": 0, "offset": 1}})
               for r in (old, fresh)]  # fmt: skip
    replayed = [_letter_items(letter, "p", RETENTION, CAPS, expired) for letter in letters]
    assert replayed[0] == []
    assert replayed[1] is not None and [i.doc_id for i in replayed[1]] == [fresh["event"]["id"]]
    assert expired == {"day": 1}
