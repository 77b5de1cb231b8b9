"""The dead-letter index: reading it, replaying it and expiring it.

A dead letter holds the reason, the original record (or, for a message that
did not decode, the message bytes in base64) and its Kafka position.  A
letter the cluster refused with its body (too large) holds the rest, with
``body_omitted``; it cannot be replayed, but says where in Kafka the record was.  Its id
is the record's ``event.id`` (or ``topic:partition:offset``), so a replayed
batch never doubles it.  Replay sends each letter through the same writer as
the indexer: a letter that now indexes (or was indexed meanwhile) is removed
from the dead-letter index; one that fails again is overwritten with the new
reason.  Letters older than ``indexer.dead_letter_days`` are deleted by the
retention pass (:func:`expire_dead_letters`), counted and logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from indexer.bulk import BulkWriter
from indexer.config import IndexerConfig
from indexer.documents import BulkItem, KafkaPosition, build_items, iso_time
from indexer.events import events
from indexer.outcomes import collect, report
from indexer.templates import Capabilities, dlq_index, ensure_templates, open_client
from podlog.logging import get_logger
from podlog.record import encode_batch
from podlog.retention import RetentionConfig

__all__ = [
    "DeadLetter",
    "ReplayResult",
    "count_expired_dead_letters",
    "expire_dead_letters",
    "list_dead_letters",
    "replay_dead_letters",
]

log = get_logger("indexer.dlq")


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """One document of the dead-letter index."""

    doc_id: str
    source: dict[str, Any]


@dataclasses.dataclass(slots=True)
class ReplayResult:
    """What a replay did, letter by letter."""

    replayed: int = 0
    indexed: int = 0
    already_present: int = 0
    still_dead: int = 0
    skipped: int = 0
    expired: int = 0
    """Records past their class's retention: not indexed, their letters deleted."""


def list_dead_letters(
    client: OpenSearch,
    prefix: str,
    *,
    limit: int = 50,
    namespace: str | None = None,
    ids: Sequence[str] = (),
) -> list[DeadLetter]:
    """Dead letters, newest first."""
    index = dlq_index(prefix)
    filters: list[dict[str, Any]] = []
    if namespace:
        filters.append({"term": {"namespace": namespace}})
    if ids:
        filters.append({"ids": {"values": list(ids)}})
    body = {
        "size": max(0, limit),
        "query": {"bool": {"filter": filters}} if filters else {"match_all": {}},
        "sort": [{"@timestamp": {"order": "desc"}}],
    }
    try:
        client.indices.refresh(index=index)
        reply = client.search(index=index, body=body)
    except NotFoundError:
        return []
    return [
        DeadLetter(doc_id=str(hit["_id"]), source=dict(hit.get("_source") or {}))
        for hit in reply.get("hits", {}).get("hits", [])
    ]


def _position(source: dict[str, Any]) -> KafkaPosition:
    kafka = source.get("kafka") or {}
    try:
        return KafkaPosition(str(kafka.get("topic", "")), int(kafka.get("partition", -1)), int(kafka.get("offset", -1)))
    except (TypeError, ValueError):
        return KafkaPosition("", -1, -1)


def _letter_items(
    letter: DeadLetter, prefix: str, retention: RetentionConfig, caps: Capabilities, expired: Counter[str]
) -> list[BulkItem] | None:
    """The bulk items a letter replays as, or None when it cannot be replayed yet; records
    already past their class's retention are counted in ``expired``, not replayed."""
    source = letter.source
    record = source.get("record")
    if isinstance(record, dict):
        value = encode_batch([record])
    elif isinstance(source.get("message_base64"), str):
        try:
            value = base64.b64decode(source["message_base64"], validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        return None
    items, dead = build_items(
        value=value,
        position=_position(source),
        timestamp_ms=None,
        prefix=prefix,
        retention=retention,
        capabilities=caps,
        expired=expired,
    )
    if dead:
        return None
    return items


async def replay_dead_letters(
    config: IndexerConfig,
    retention: RetentionConfig,
    *,
    ids: Sequence[str] = (),
    namespace: str | None = None,
    limit: int = 10000,
) -> ReplayResult:
    """Index dead letters again; remove those that are now in the log indices."""
    prefix = config.opensearch.index_prefix
    client = open_client(config.opensearch)
    result = ReplayResult()
    writer = BulkWriter(config)
    try:
        caps = await asyncio.to_thread(ensure_templates, client, config.opensearch)
        letters = await asyncio.to_thread(list_dead_letters, client, prefix, limit=limit, namespace=namespace, ids=ids)
        plan: list[tuple[DeadLetter, list[BulkItem]]] = []
        expired: Counter[str] = Counter()
        for letter in letters:
            items = _letter_items(letter, prefix, retention, caps, expired)
            if items is None:
                result.skipped += 1
                continue
            plan.append((letter, items))
        await writer.start()
        replayed = [item for _, items in plan for item in items]
        await writer.write(replayed)
        for found in collect(replayed).values():
            report(found)
        if expired:
            events.records_expired(expired)
            result.expired = sum(expired.values())
        resolved: list[str] = []
        for letter, items in plan:
            result.replayed += 1
            outcomes = {item.outcome for item in items}
            if outcomes <= {"indexed", "already_present"}:
                result.indexed += sum(1 for i in items if i.outcome == "indexed")
                result.already_present += sum(1 for i in items if i.outcome == "already_present")
                resolved.append(letter.doc_id)
            else:
                result.still_dead += 1
                # A letter for a whole message now lives on as letters per record.
                if letter.doc_id not in {item.doc_id for item in items}:
                    resolved.append(letter.doc_id)
        await asyncio.to_thread(_delete_letters, client, prefix, resolved)
    finally:
        await writer.close()
        client.close()
    log.info("dead_letters_replayed", **dataclasses.asdict(result))
    return result


def expire_dead_letters(client: OpenSearch, prefix: str, days: float, now: datetime, *, page: int = 1000) -> int:
    """Delete the dead letters written more than ``days`` before ``now``; how many went.

    A letter's ``@timestamp`` is when it was written (not its record's time),
    so a letter lives ``days`` after its last failure.  Deleted by id, a page
    at a time, oldest first; the pass goes on only after a full page it wholly
    deleted, so a cluster that refuses (or a page of letters already gone)
    cannot make it spin.
    """
    if days <= 0:
        return 0
    index = dlq_index(prefix)
    cutoff = _cutoff(days, now)
    query = _written_before(cutoff)
    deleted = 0
    while True:
        try:
            found = client.search(
                index=index,
                body={"query": query, "size": page, "_source": False, "sort": [{"@timestamp": {"order": "asc"}}]},
            )
        except NotFoundError:  # no dead letters at all
            break
        ids = [str(hit["_id"]) for hit in found.get("hits", {}).get("hits", [])]
        removed = _delete_letters(client, prefix, ids)
        deleted += removed
        if removed < page:  # the last page, or some refused or gone meanwhile: the next pass goes on
            break
    if deleted:
        events.dead_letters_expired(deleted, index, cutoff)
    return deleted


def count_expired_dead_letters(client: OpenSearch, prefix: str, days: float, now: datetime) -> int:
    """How many dead letters :func:`expire_dead_letters` would delete now."""
    if days <= 0:
        return 0
    try:
        found = client.count(index=dlq_index(prefix), body={"query": _written_before(_cutoff(days, now))})
    except NotFoundError:
        return 0
    return int(found.get("count", 0))


def _cutoff(days: float, now: datetime) -> str:
    return iso_time(now - timedelta(days=days))


def _written_before(cutoff: str) -> dict[str, Any]:
    return {"range": {"@timestamp": {"lt": cutoff}}}


def _delete_letters(client: OpenSearch, prefix: str, ids: list[str]) -> int:
    """Delete letters by id; how many this deleted (not those already gone or refused)."""
    if not ids:
        return 0
    index = dlq_index(prefix)
    body: list[dict[str, Any]] = [{"delete": {"_index": index, "_id": doc_id}} for doc_id in ids]
    response = client.bulk(body=body)
    client.indices.refresh(index=index)
    return sum(1 for item in response.get("items", []) if item.get("delete", {}).get("status") == 200)
