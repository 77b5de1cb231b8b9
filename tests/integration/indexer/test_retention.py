"""Retention deletes whole expired indices of each class, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from opensearchpy import OpenSearch

from indexer.commands import retention as retention_cli
from indexer.config import OpenSearchConfig
from indexer.dlq import count_expired_dead_letters, expire_dead_letters
from indexer.documents import iso_time
from indexer.retention import apply_retention, ensure_ism_policies, policy_id
from indexer.templates import detect_capabilities, dlq_index, ensure_templates, has_ism
from podlog.metrics import sample
from podlog.retention import RetentionConfig
from tests.conftest import DOCKER
from tests.integration.indexer.conftest import indexer_config, running, wait_until

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _names(client: OpenSearch, prefix: str) -> set[str]:
    return {row["index"] for row in client.cat.indices(index=f"{prefix}-*", format="json")}


def _create(client: OpenSearch, names: list[str]) -> None:
    for name in names:
        client.indices.create(index=name, body={"settings": {"number_of_replicas": 0}})


def _letters(client: OpenSearch, url: str, prefix: str, written: dict[str, datetime]) -> None:
    """Dead letters (in the real DLQ index, templates installed) written at the given times."""
    ensure_templates(client, OpenSearchConfig(hosts=[url], index_prefix=prefix, number_of_replicas=0))
    for doc_id, at in written.items():
        client.index(index=dlq_index(prefix), id=doc_id, body={"@timestamp": iso_time(at), "reason": "test"})
    client.indices.refresh(index=dlq_index(prefix))


def _letter_ids(client: OpenSearch, prefix: str) -> set[str]:
    found = client.search(index=dlq_index(prefix), body={"size": 100, "_source": False})
    return {hit["_id"] for hit in found["hits"]["hits"]}


def test_dead_letters_expire_after_their_days_and_no_sooner(opensearch_url: str, unique: str) -> None:
    """Letters written more than dead_letter_days ago go, page by page, counted; younger ones
    stay; 0 days keeps them all; a cluster without a DLQ index has nothing to expire."""
    client = OpenSearch(opensearch_url)
    old = {f"old-{i}": NOW - timedelta(days=31, hours=i) for i in range(5)}
    young = {"young": NOW - timedelta(days=29), "edge": NOW - timedelta(days=30) + timedelta(seconds=1)}
    _letters(client, opensearch_url, unique, {**old, **young})
    before = sample("podlog_indexer_dead_letters_expired_total")
    assert count_expired_dead_letters(client, unique, 30, NOW) == 5
    assert expire_dead_letters(client, unique, 30, NOW, page=2) == 5  # three pages
    assert _letter_ids(client, unique) == set(young)
    assert sample("podlog_indexer_dead_letters_expired_total") - before == 5
    assert expire_dead_letters(client, unique, 30, NOW) == 0
    assert expire_dead_letters(client, unique, 0, NOW + timedelta(days=400)) == 0
    assert _letter_ids(client, unique) == set(young)
    assert expire_dead_letters(client, f"{unique}-none", 30, NOW) == 0


def test_apply_deletes_exactly_the_expired_indices_of_each_class(opensearch_url: str, unique: str) -> None:
    """Per class, indices whose day plus retention has passed go (a class no longer configured
    with the default class's days); newer ones, undated names, the DLQ and foreign indices stay."""
    client = OpenSearch(opensearch_url)
    p = unique
    expired = [f"{p}-logs-short-2026.11.23", f"{p}-logs-standard-2026.11.12", f"{p}-logs-long-2026.08.28",
               f"{p}-logs-retired-2020.01.01"]  # a class no longer configured: the default's days
    kept = [f"{p}-logs-short-2026.11.24", f"{p}-logs-short-2026.11.27",
            f"{p}-logs-standard-2026.11.13", f"{p}-logs-long-2026.09.01",
            f"{p}-logs-retired-2026.11.20", f"{p}-logs-short-notaday", f"{p}-dlq",
            f"{p}-other-2020.01.01"]  # fmt: skip
    _create(client, expired + kept)
    config = RetentionConfig(classes={"short": 3.0, "standard": 14.0, "long": 90.0})
    applied = apply_retention(client, p, config, now=NOW)
    assert sorted(d.index for d in applied.deleted) == sorted(expired)
    assert applied.trimmed == []  # the indices the cutoffs fall in are empty: nothing to trim
    assert _names(client, p) == set(kept)
    assert apply_retention(client, p, config, now=NOW).deleted == []


def test_cli_plan_and_apply_use_the_configured_classes(opensearch_any: str, unique: str, tmp_path: Path) -> None:
    """`retention plan` marks what is expired without deleting; `retention apply --dry-run`
    counts what would go; `retention apply` deletes it, old dead letters included."""
    client = OpenSearch(opensearch_any)
    today = datetime.now(tz=UTC)
    old = f"{unique}-logs-short-{(today - timedelta(days=30)):%Y.%m.%d}"
    fresh = f"{unique}-logs-short-{today:%Y.%m.%d}"
    _create(client, [old, fresh])
    _letters(client, opensearch_any, unique, {"stale": today - timedelta(days=40), "recent": today})
    conf = tmp_path / "podlog.yaml"
    conf.write_text(yaml.safe_dump({
        "indexer": {"opensearch": {"hosts": [opensearch_any], "index_prefix": unique}},
        "retention": {"classes": {"short": 3, "standard": 14}, "namespaces": {"dev-*": "short"}},
    }))  # fmt: skip
    runner = CliRunner()
    plan = runner.invoke(retention_cli, ["plan", "--config", str(conf)])
    assert plan.exit_code == 0, plan.output
    lines = {
        line.split()[1]: line.split()[0] for line in plan.output.splitlines() if line.startswith(("DELETE", "keep"))
    }
    assert lines == {old: "DELETE", fresh: "keep"}
    dry = runner.invoke(retention_cli, ["apply", "--dry-run", "--config", str(conf)])
    assert dry.exit_code == 0, dry.output
    assert f"would delete {old}" in dry.output
    assert "would delete 1 dead letters older than 30 days" in dry.output
    assert _names(client, unique) == {old, fresh, dlq_index(unique)}
    assert _letter_ids(client, unique) == {"stale", "recent"}
    applied = runner.invoke(retention_cli, ["apply", "--config", str(conf)])
    assert applied.exit_code == 0, applied.output
    assert f"deleted {old}" in applied.output
    assert "deleted 1 dead letters older than 30 days" in applied.output
    assert _names(client, unique) == {fresh, dlq_index(unique)}
    assert _letter_ids(client, unique) == {"recent"}


def test_ism_is_detected_as_missing_on_clusters_without_it(opensearch_url: str) -> None:
    """Clusters without the ISM plugin are detected as such, so retention deletes indices."""
    if DOCKER:
        pytest.skip("a real OpenSearch with ISM answers here")
    client = OpenSearch(opensearch_url)
    assert has_ism(client) is False
    assert detect_capabilities(client, OpenSearchConfig(hosts=[opensearch_url])).ism is False


@pytest.mark.docker
def test_ism_policies_are_created_once_and_updated_on_change() -> None:
    """On OpenSearch with ISM, one delete policy per class is created, left alone when current,
    and updated when the class's retention changes."""
    if not DOCKER:
        pytest.skip("needs a Docker daemon for a real OpenSearch")
    from tests.fixtures.servers import opensearch_container

    with opensearch_container() as url:
        client = OpenSearch(url)
        config = OpenSearchConfig(hosts=[url], index_prefix="ism")
        assert detect_capabilities(client, config).ism is True
        retention = RetentionConfig(classes={"short": 3.0, "standard": 14.0})
        assert ensure_ism_policies(client, config, retention) == [
            policy_id("ism", "short"),
            policy_id("ism", "standard"),
        ]
        assert ensure_ism_policies(client, config, retention) == []
        longer = RetentionConfig(classes={"short": 5.0, "standard": 14.0})
        assert ensure_ism_policies(client, config, longer) == [policy_id("ism", "short")]
        policy = client.transport.perform_request("GET", "/_plugins/_ism/policies/ism-retention-short")
        states = policy["policy"]["states"]
        assert states[0]["transitions"][0]["conditions"] == {"min_index_age": "192h"}  # 5 + 1 + 2 days


async def test_indexer_deletes_expired_indices_where_ism_is_missing(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """Without ISM, a running indexer removes expired log indices and dead letters itself
    and keeps fresh ones."""
    client = OpenSearch(opensearch_any)
    expired = f"{unique}-logs-standard-2020.01.01"
    fresh = f"{unique}-logs-standard-{datetime.now(tz=UTC):%Y.%m.%d}"
    _create(client, [expired, fresh])
    now = datetime.now(tz=UTC)
    _letters(client, opensearch_any, unique, {"old": now - timedelta(days=8), "new": now - timedelta(days=6)})
    config = indexer_config(kafka_bootstrap, opensearch_any, unique, unique, dead_letter_days=7.0)
    async with running(config, RetentionConfig()):
        await wait_until(lambda: expired not in _names(client, unique), 30, "the expired index to go")
        await wait_until(lambda: _letter_ids(client, unique) == {"new"}, 30, "the old dead letter to go")
    assert _names(client, unique) == {fresh, dlq_index(unique)}
