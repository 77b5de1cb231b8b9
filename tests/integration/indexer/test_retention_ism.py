"""ISM kept in step with retention: one test per ISM point of the retention design.

No server here has the ISM plugin (both emulators lack it, and no Docker daemon
answers for a real OpenSearch), so the ISM API is the documented behaviour
faked by :mod:`tests.integration.indexer.ism_fake`, in front of a real
emulator that holds the indices and documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner
from opensearchpy import OpenSearch

from indexer.commands import retention as retention_cli
from indexer.config import OpenSearchConfig
from indexer.retention import (
    BACKSTOP_DAYS,
    apply_ism,
    apply_retention,
    index_creation_dates,
    list_log_indices,
    plan_ism,
    plan_retention,
    policy_id,
)
from podlog.retention import RetentionConfig
from tests.integration.indexer.ism_fake import FakeIsm

NOW = datetime.now(tz=UTC).replace(microsecond=0)


@pytest.fixture
def ism(opensearch_any: str) -> Iterator[FakeIsm]:
    """ISM answered by the fake, the rest by the emulator."""
    with FakeIsm(opensearch_any) as fake:
        fake.clock = NOW
        yield fake


def _day(days_ago: int) -> str:
    return f"{(NOW - timedelta(days=days_ago)):%Y.%m.%d}"


def _create(client: OpenSearch, names: list[str]) -> None:
    for name in names:
        client.indices.create(index=name, body={"settings": {"number_of_replicas": 0}})


def _names(client: OpenSearch, prefix: str) -> set[str]:
    return {row["index"] for row in client.cat.indices(index=f"{prefix}-logs-*", format="json")}


def test_age_counts_from_the_day_an_index_holds_not_its_creation(ism: FakeIsm, unique: str) -> None:
    """A late index (data of 10 days ago, created now) of a 1-day class: ISM alone would keep it
    4 more days; the plan says the pass deletes it now, and the pass does.  An on-time index
    goes by the pass too, and the backstop never fires before the pass would."""
    client = OpenSearch(ism.url)
    config = OpenSearchConfig(hosts=[ism.url], index_prefix=unique, ism="on")
    retention = RetentionConfig(classes={"day": 1.0, "fortnight": 14.0}, default_class="fortnight")
    apply_ism(client, config, retention)
    late, today = f"{unique}-logs-day-{_day(10)}", f"{unique}-logs-day-{_day(0)}"
    _create(client, [late, today])
    ism.observe()
    assert ism.managed[late][0] == policy_id(unique, "day")
    plan = {e.index: e for e in plan_retention(
        list_log_indices(client, unique), unique, retention, NOW, created=index_creation_dates(client, unique)
    )}  # fmt: skip
    assert plan[late].action == "DELETE"
    ism_late = plan[late].ism_deletes_at
    assert ism_late is not None and ism_late > NOW + timedelta(days=3)
    assert ism.run_ism(NOW) == []  # by creation, ISM sees a new index
    applied = apply_retention(client, unique, retention, NOW)
    assert [e.index for e in applied.deleted] == [late]
    assert _names(client, unique) == {today}
    # The on-time index: the pass deletes it at the end of its day plus 1 day; ISM later.
    expires, ism_today = plan[today].expires_at, plan[today].ism_deletes_at
    assert expires is not None and ism_today is not None
    assert ism_today - expires >= timedelta(days=BACKSTOP_DAYS)
    assert ism.run_ism(expires) == []
    assert [e.index for e in apply_retention(client, unique, retention, expires).deleted] == [today]


def test_lowering_a_class_from_14_to_1_day_reaches_the_indices_ism_already_manages(
    ism: FakeIsm, unique: str
) -> None:
    """ISM keeps a managed index on the policy version it started with; apply updates the
    policy and calls change-policy on each managed index of the class, the pass deletes what
    the new days expire, and a second apply has nothing left to do."""
    client = OpenSearch(ism.url)
    config = OpenSearchConfig(hosts=[ism.url], index_prefix=unique, ism="on")
    before = RetentionConfig(classes={"fortnight": 14.0}, default_class="fortnight")
    after = RetentionConfig(classes={"fortnight": 1.0}, default_class="fortnight")
    apply_ism(client, config, before)
    old, today = f"{unique}-logs-fortnight-{_day(3)}", f"{unique}-logs-fortnight-{_day(0)}"
    _create(client, [old, today])
    ism.observe()
    assert ism.age_limit(today) == timedelta(hours=24 * 17)
    planned = [(a.kind, a.target) for a in plan_ism(client, config, after)]
    assert planned == [
        ("update_policy", policy_id(unique, "fortnight")),
        ("change_policy", old),
        ("change_policy", today),
    ]
    ism.changes.clear()
    done = apply_ism(client, config, after)
    assert [(a.kind, a.target) for a in done] == planned == ism.changes
    assert ism.age_limit(today) == timedelta(hours=24 * 4)  # 1 day + its day + the backstop
    assert plan_ism(client, config, after) == []
    assert [e.index for e in apply_retention(client, unique, after, NOW).deleted] == [old]
    assert _names(client, unique) == {today}


def test_apply_adds_indices_created_before_their_policy(ism: FakeIsm, unique: str) -> None:
    """An index that existed before its class's policy (ISM attaches templates only at
    creation) is added to the policy; indices of other prefixes are left alone."""
    client = OpenSearch(ism.url)
    config = OpenSearchConfig(hosts=[ism.url], index_prefix=unique, ism="on")
    retention = RetentionConfig(classes={"week": 7.0}, default_class="week")
    early = f"{unique}-logs-week-{_day(1)}"
    _create(client, [early])
    ism.observe()
    assert early not in ism.managed
    done = apply_ism(client, config, retention)
    assert [(a.kind, a.target) for a in done] == [
        ("create_policy", policy_id(unique, "week")),
        ("add_policy", early),
    ]
    assert ism.managed[early] == (policy_id(unique, "week"), ism.policies[policy_id(unique, "week")]["_seq_no"])
    assert plan_ism(client, config, retention) == []


def test_plan_shows_exactly_what_apply_and_ism_do(ism: FakeIsm, unique: str, tmp_path: Path) -> None:
    """`retention plan --json` lists every ISM request and every index action; `retention apply`
    then makes exactly those ISM requests, deletes exactly the DELETE indices and trims exactly
    the TRIM ones; a second plan lists no ISM request and no deletion."""
    client = OpenSearch(ism.url)
    config = OpenSearchConfig(hosts=[ism.url], index_prefix=unique, ism="on")
    apply_ism(client, config, RetentionConfig(classes={"day": 3.0, "week": 7.0}, default_class="week"))
    straddling = f"{unique}-logs-day-{_day(1)}"
    names = [f"{unique}-logs-day-{_day(5)}", straddling, f"{unique}-logs-day-{_day(0)}",
             f"{unique}-logs-week-{_day(9)}", f"{unique}-logs-week-{_day(2)}"]  # fmt: skip
    _create(client, names)
    ism.observe()
    now_ns = int(datetime.now(tz=UTC).timestamp()) * 1_000_000_000
    hour = 3_600_000_000_000
    day_start = int(datetime.strptime(_day(1), "%Y.%m.%d").replace(tzinfo=UTC).timestamp()) * 1_000_000_000
    stamps = [day_start + h * hour for h in range(24) if day_start + h * hour < now_ns]
    for number, stamp in enumerate(stamps):
        client.index(index=straddling, id=str(number), body={"timestamp_ns": stamp})
    client.indices.refresh(index=straddling)
    conf = tmp_path / "podlog.yaml"
    conf.write_text(yaml.safe_dump({
        "indexer": {"opensearch": {"hosts": [ism.url], "index_prefix": unique, "ism": "on"}},
        "retention": {"classes": {"day": 1, "week": 7}, "default_class": "week"},  # day lowered 3 -> 1
    }))  # fmt: skip
    runner = CliRunner()
    shown = runner.invoke(retention_cli, ["plan", "--json", "--config", str(conf)])
    assert shown.exit_code == 0, shown.output
    rows = [orjson.loads(line) for line in shown.output.splitlines() if line.startswith("{")]
    ism_planned = [(r["ism"], r["target"]) for r in rows if "ism" in r]
    actions = {r["index"]: r["action"] for r in rows if "index" in r}
    assert actions == {
        names[0]: "DELETE", straddling: "TRIM", names[2]: "keep", names[3]: "DELETE", names[4]: "keep",
    }
    assert ("update_policy", policy_id(unique, "day")) in ism_planned
    ism.changes.clear()
    applied = runner.invoke(retention_cli, ["apply", "--config", str(conf)])
    assert applied.exit_code == 0, applied.output
    assert ism.changes == ism_planned
    assert _names(client, unique) == {n for n, a in actions.items() if a != "DELETE"}
    cutoff = now_ns - 86_400 * 1_000_000_000
    left = client.search(index=straddling, body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    assert sorted(h["_source"]["timestamp_ns"] for h in left) == [s for s in stamps if s >= cutoff]
    again = runner.invoke(retention_cli, ["plan", "--json", "--config", str(conf)])
    rows = [orjson.loads(line) for line in again.output.splitlines() if line.startswith("{")]
    assert [r for r in rows if "ism" in r] == []
    assert [r["index"] for r in rows if r.get("action") == "DELETE"] == []
