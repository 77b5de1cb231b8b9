"""The bulk writer against a stand-in cluster (an httpx transport): retries, dead letters, drops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from indexer.bulk import BulkWriter
from indexer.config import IndexerConfig, OpenSearchConfig
from indexer.documents import BulkItem, KafkaPosition, dead_letter_item
from indexer.events import IndexerEvents
from indexer.outcomes import DeadLetterNote, collect, report
from podlog import metrics

Answer = tuple[int, dict[str, Any] | None]
Rule = Callable[[str, str, str, int], Answer | None]
"""``(op, index, doc_id, attempt) -> (status, error)`` for one item, or None: created."""

POSITION = KafkaPosition("logs", 2, 40)


class StandIn:
    """Answers ``_bulk`` item by item after ``rule``; refuses bodies above ``max_body`` with 413."""

    def __init__(self, rule: Rule, max_body: int = 1 << 30) -> None:
        self.rule = rule
        self.max_body = max_body
        self.written: dict[tuple[str, str], dict[str, Any]] = {}
        self.attempts: dict[str, int] = {}
        self.refused_bodies = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if len(body) > self.max_body:
            self.refused_bodies += 1
            return httpx.Response(413, text="Request Entity Too Large")
        lines = body.splitlines()
        answers = []
        for action_line, source in zip(lines[::2], lines[1::2], strict=True):
            op, meta = next(iter(orjson.loads(action_line).items()))
            doc_id = str(meta["_id"])
            self.attempts[doc_id] = self.attempts.get(doc_id, 0) + 1
            answer = self.rule(op, str(meta["_index"]), doc_id, self.attempts[doc_id])
            status, error = answer if answer is not None else (201, None)
            if status < 300:
                self.written[(str(meta["_index"]), doc_id)] = orjson.loads(source)
            answers.append({op: {"_index": meta["_index"], "_id": doc_id, "status": status, "error": error}})
        return httpx.Response(200, json={"took": 1, "errors": True, "items": answers})


class RecordedEvents(IndexerEvents):
    """The writer's events, kept for the test to read (and still logged and counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.retried: list[tuple[str, int, str]] = []
        self.omitted: list[tuple[str, int, str]] = []

    def items_retried(self, status_class: str, count: int, first_error: str, delay: float) -> None:
        self.retried.append((status_class, count, first_error))
        super().items_retried(status_class, count, first_error, delay)

    def dead_letter_body_omitted(
        self, doc_id: str, topic: str, partition: int, offset: int, size: int, error: str
    ) -> None:
        self.omitted.append((doc_id, offset, error))
        super().dead_letter_body_omitted(doc_id, topic, partition, offset, size, error)


def _config() -> IndexerConfig:
    return IndexerConfig(
        opensearch=OpenSearchConfig(hosts=["http://stand-in"], index_prefix="pl"),
        retry_initial_seconds=0.001,
        retry_max_seconds=0.002,
        item_max_attempts=3,
    )


def _item(doc_id: str, message: str = "hello", offset: int = POSITION.offset) -> BulkItem:
    record = {"event": {"id": doc_id}, "message": message, "kubernetes": {"namespace": "shop"}}
    position = KafkaPosition(POSITION.topic, POSITION.partition, offset)
    return BulkItem(index="pl-logs-default-2026.11.27", doc_id=doc_id, document=record, position=position,
                    original=record)  # fmt: skip


async def _write(
    stand_in: StandIn, items: list[BulkItem], dead: list[BulkItem] | None = None
) -> tuple[dict[str, int], RecordedEvents]:
    recorded = RecordedEvents()
    writer = BulkWriter(_config(), event_sink=recorded, transport=httpx.MockTransport(stand_in))
    await writer.start()
    try:
        outcomes = await writer.write(items, dead or [])
    finally:
        await writer.close()
    return outcomes, recorded


def _documents(outcome: str) -> float:
    return metrics.sample("podlog_indexer_documents_total", {"outcome": outcome})


async def test_retried_items_are_logged_with_the_text_of_their_own_status() -> None:
    """One item throttled (429) and one failing (503) in the same reply: each retry line
    carries its own status's error, not the first one seen."""
    throttled = {"type": "es_rejected_execution_exception", "reason": "queue full"}
    failing = {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}

    def rule(op: str, index: str, doc_id: str, attempt: int) -> Answer | None:
        if attempt > 1:
            return None
        return (429, throttled) if doc_id == "a" else (503, failing)

    outcomes, recorded = await _write(StandIn(rule), [_item("a"), _item("b")])
    assert outcomes["indexed"] == 2
    assert sorted(recorded.retried) == [
        ("429", 1, "429 es_rejected_execution_exception: queue full"),
        ("5xx", 1, "503 unavailable_shards_exception: primary shard is not active"),
    ]


async def test_a_dead_letter_too_large_for_the_cluster_is_written_without_its_record() -> None:
    """A record refused as a document (413: the request is too large) and again as a dead
    letter leaves a letter without its record, with its reason and Kafka position."""
    stand_in = StandIn(lambda op, index, doc_id, attempt: None, max_body=64_000)
    big = _item("big", message="x" * 300_000, offset=41)
    outcomes, recorded = await _write(stand_in, [_item("small", offset=40), big])
    assert outcomes == {"indexed": 1, "already_present": 0, "dead_lettered": 1, "dropped": 0}
    assert big.outcome == "dead_lettered"
    letter = stand_in.written[("pl-dlq", "big")]
    assert "record" not in letter
    assert letter["body_omitted"] is True
    assert letter["body_bytes"] > 300_000
    assert "HTTP 413" in letter["reason"] and "HTTP 413" in letter["body_error"]
    assert letter["kafka"] == {"topic": "logs", "partition": 2, "offset": 41}
    assert letter["event_id"] == "big" and letter["namespace"] == "shop"
    assert [(doc_id, offset) for doc_id, offset, _ in recorded.omitted] == [("big", 41)]
    assert ("pl-logs-default-2026.11.27", "small") in stand_in.written


async def test_an_undecodable_message_too_large_keeps_its_position_without_its_bytes() -> None:
    """The letter of a message that did not decode drops its base64 bytes when refused."""
    stand_in = StandIn(lambda op, index, doc_id, attempt: None, max_body=64_000)
    letter = BulkItem(
        index="pl-dlq", doc_id="logs:2:40", position=POSITION, original=None, op="index",
        document={"reason": "unknown record schema version 99", "error_type": "schema",
                  "kafka": {"topic": "logs", "partition": 2, "offset": 40}, "message_base64": "A" * 200_000},
    )  # fmt: skip
    outcomes, _ = await _write(stand_in, [], [letter])
    assert outcomes["dead_lettered"] == 1 and outcomes["dropped"] == 0
    written = stand_in.written[("pl-dlq", "logs:2:40")]
    assert "message_base64" not in written
    assert written["reason"] == "unknown record schema version 99"
    assert written["kafka"] == {"topic": "logs", "partition": 2, "offset": 40}


async def test_a_record_refused_everywhere_is_dropped_and_counted_once() -> None:
    """Refused as a document, as a dead letter and as a bodyless one: the record is dropped,
    and once its outcomes are reported the dropped count moves by exactly one."""
    refused = {"type": "illegal_argument_exception", "reason": "injected: refused"}
    stand_in = StandIn(lambda op, index, doc_id, attempt: (400, refused) if doc_id == "bad" else None)
    before = {o: _documents(o) for o in ("dropped", "dead_lettered", "indexed")}
    items = [_item("good"), _item("bad", offset=41)]
    outcomes, recorded = await _write(stand_in, items)
    assert outcomes["dropped"] == 1 and outcomes["dead_lettered"] == 0 and outcomes["indexed"] == 1
    assert stand_in.attempts["bad"] == 3  # the document, the letter, the letter without its record
    assert items[1].outcome == "dropped" and "injected: refused" in items[1].error
    assert len(recorded.omitted) == 1
    assert _documents("dropped") == before["dropped"]  # writing counts nothing: outcomes wait for the commit
    for found in collect(items).values():
        report(found)
    assert _documents("dropped") == before["dropped"] + 1
    assert _documents("dead_lettered") == before["dead_lettered"]
    assert _documents("indexed") == before["indexed"] + 1


async def test_an_undecodable_message_refused_everywhere_is_dropped_once_and_dead_lettered_once() -> None:
    """A message that did not decode and whose letter is refused even bodyless counts once as
    dropped and once as a dead-lettered message, never as dead_lettered too."""
    refused = {"type": "illegal_argument_exception", "reason": "injected: refused"}
    stand_in = StandIn(lambda op, index, doc_id, attempt: (400, refused))
    source = _item("x")
    letter = dead_letter_item(source, "pl", "invalid_record", "record 0 of the message: no string event.id")
    note = DeadLetterNote("invalid_record", POSITION, "record 0 of the message: no string event.id", letter)
    before = (_documents("dropped"), _documents("dead_lettered"))
    messages_before = metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": "invalid_record"})
    outcomes, _ = await _write(stand_in, [], [letter])
    assert outcomes["dropped"] == 1
    for found in collect([], [note]).values():
        report(found)
    assert (_documents("dropped"), _documents("dead_lettered")) == (before[0] + 1, before[1])
    messages = metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": "invalid_record"})
    assert messages == messages_before + 1
