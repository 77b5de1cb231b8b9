"""podlog under a kubelet-faithful node: rotation, compression, copytruncate, restarts, pod churn, SIGKILLs.

Each test writes numbered lines for 40 seconds into a fake node root
(8 pods and a noisy one, 32 KiB max-size so files rotate every second or so),
kills podlog with SIGKILL three times (down 0.5-8 s each, seeded), stops it
cleanly, reads everything back with an independent client and asserts every
zero condition of :mod:`tests.e2e.lifecycle.checker`.  The seed is fixed per
test (``PODLOG_LIFECYCLE_SEED`` overrides it); run with ``-s`` to see the report.
The full-size scenario, repeated: ``python bench/lifecycle_faults.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.lifecycle.scenario import Mode, ScenarioConfig, ScenarioResult, run_scenario
from tests.e2e.lifecycle.writer import Format, WriterConfig
from tests.fixtures.servers import DurableKafka

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    # Six minutes for the four: on request, beside bench/lifecycle_faults.py (docs/collector.md,
    # "Checked from outside"); the hypothesis model of the same invariant runs in every test run.
    pytest.mark.skipif(os.environ.get("PODLOG_LIFECYCLE") != "1",
                       reason="the kubelet-faithful lifecycle scenarios run with PODLOG_LIFECYCLE=1"),
]

SEEDS = {("cri", "agent"): 11, ("docker", "agent"): 12, ("cri", "run"): 13, ("docker", "run"): 14}


def ci_scenario(fmt: Format, mode: Mode) -> ScenarioConfig:
    """About a minute and a half: 40 s of writing at ~360 lines/s, three SIGKILLs, then the drain."""
    seed = int(os.environ.get("PODLOG_LIFECYCLE_SEED", SEEDS[(fmt, mode)]))
    writer = WriterConfig(
        seed=seed, format=fmt, pods=8, lines_per_second=160.0, max_size=32 * 1024, restarts_per_minute=6.0,
        exits_per_minute=3.0, pod_creations_per_minute=4.0, pod_deletions_per_minute=4.0,
    )  # fmt: skip
    return ScenarioConfig(writer=writer, mode=mode, write_seconds=40.0, kills=3)


def assert_zero_conditions(result: ScenarioResult) -> None:
    print(result)
    stats = result.writer_stats
    assert len(result.kills) == 3, "the SIGKILLs did not all happen"
    assert stats["rotations"] and stats["compressions"] and stats["cut_characters"], stats
    assert stats.get("restarts", 0) + stats.get("exits", 0) + stats.get("pods_deleted", 0), stats
    assert result.failures() == [], str(result)


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_agent_killed_through_rotations_and_churn_ships_every_surviving_line_once_in_order(
    tmp_path: Path, durable_kafka: DurableKafka, fmt: Format
) -> None:
    """podlog agent into Kafka, SIGKILLed three times: no line that still exists missing, no duplicate after
    dedup, order and one key per container kept, no garbage, lost bytes counted exactly."""
    result = run_scenario(ci_scenario(fmt, "agent"), tmp_path, bootstrap=durable_kafka.bootstrap)
    assert_zero_conditions(result)


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_single_node_killed_through_rotations_and_churn_indexes_every_surviving_line_once(
    tmp_path: Path, fmt: Format
) -> None:
    """podlog run on its embedded index, SIGKILLed three times: no line that still exists missing, no
    duplicate, no garbage, lost bytes counted exactly (the index keeps no arrival order to judge)."""
    result = run_scenario(ci_scenario(fmt, "run"), tmp_path)
    assert_zero_conditions(result)
