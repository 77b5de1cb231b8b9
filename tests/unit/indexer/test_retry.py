"""Classifying bulk answers and backing off."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.retry import (
    ItemAction,
    backoff_delay,
    classify_bulk_item,
    classify_request_status,
    describe_item_error,
)


def test_item_statuses_map_to_actions() -> None:
    """Created is indexed, 409 is already present, 429/5xx retry, other 4xx are rejections."""
    assert classify_bulk_item(201) is ItemAction.INDEXED
    assert classify_bulk_item(200) is ItemAction.INDEXED
    assert classify_bulk_item(409) is ItemAction.ALREADY_PRESENT
    assert classify_bulk_item(429) is ItemAction.RETRY
    assert classify_bulk_item(503) is ItemAction.RETRY
    assert classify_bulk_item(400) is ItemAction.REJECTED
    assert classify_bulk_item(404) is ItemAction.REJECTED


def test_request_statuses_map_to_kinds() -> None:
    """Whole-request answers: 429 throttled, 5xx server error, 413 split, other 4xx rejected."""
    assert classify_request_status(200) == "ok"
    assert classify_request_status(429) == "throttled"
    assert classify_request_status(502) == "server_error"
    assert classify_request_status(413) == "too_large"
    assert classify_request_status(400) == "rejected"


@settings(max_examples=50)
@given(attempt=st.integers(min_value=1, max_value=200), seed=st.integers(0, 2**32))
def test_backoff_grows_and_stays_within_bounds(attempt: int, seed: int) -> None:
    """Backoff lies between half and all of min(max, initial*2^(n-1)), never above the cap."""
    delay = backoff_delay(attempt, 0.1, 30.0, random.Random(seed))
    ceiling = min(30.0, 0.1 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_item_error_includes_innermost_cause() -> None:
    """The reason joins nested causes so the dead letter says what was wrong."""
    error = {
        "type": "mapper_parsing_exception",
        "reason": "failed to parse field [log.offset] of type [long]",
        "caused_by": {"type": "illegal_argument_exception", "reason": 'For input string: "x"'},
    }
    kind, reason = describe_item_error(error)
    assert kind == "mapper_parsing_exception"
    assert reason == 'failed to parse field [log.offset] of type [long]: For input string: "x"'
    assert describe_item_error(None) == ("unknown", "")
