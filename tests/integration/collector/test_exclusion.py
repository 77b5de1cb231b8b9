"""``podlog.io/exclude`` changing on a running pod takes effect on the files already open."""

from __future__ import annotations

from pathlib import Path

from collector.enrichment import FilePolicy
from podlog.metrics import sample
from tests.integration.collector.harness import delivered, lines, running, write_cri
from tests.unit.collector.helpers import StaticEnricher, container_path, wait_until


def _file_events(event: str) -> float:
    return sample("podlog_collector_file_events_total", {"event": event})


async def test_exclusion_set_and_lifted_while_the_file_is_open(tmp_path: Path) -> None:
    """Excluded: reading stops. Lifted: reading resumes at the end; lines written meanwhile stay out."""
    logs = tmp_path / "containers"
    logs.mkdir()
    noisy = container_path(logs, pod="noisy-1", container="noisy")
    other = container_path(logs, pod="other-1", container="other")
    enricher = StaticEnricher()
    write_cri(noisy, lines("a", 0, 10))
    write_cri(other, lines("b", 0, 10))
    excluded, included = _file_events("excluded"), _file_events("included")
    async with running(tmp_path, enricher=enricher) as (_, sink):
        await delivered(sink, 20)

        enricher.policies["noisy"] = FilePolicy(exclude=True)
        await wait_until(lambda: _file_events("excluded") > excluded, 10)
        write_cri(noisy, lines("a", 10, 20))
        write_cri(other, lines("b", 10, 20))  # read in the same rounds: the barrier
        await wait_until(lambda: "b-19" in sink.messages(), 10)

        del enricher.policies["noisy"]
        await wait_until(lambda: _file_events("included") > included, 10)
        write_cri(noisy, lines("a", 20, 30))
        await wait_until(lambda: "a-29" in sink.messages(), 10)

    messages = sink.messages()
    assert [m for m in messages if m.startswith("a-")] == lines("a", 0, 10) + lines("a", 20, 30)
    assert [m for m in messages if m.startswith("b-")] == lines("b", 0, 20)


async def test_a_pod_excluded_from_the_start_is_read_from_its_end_when_lifted(tmp_path: Path) -> None:
    """What an excluded pod wrote before the exclusion was lifted is never collected."""
    logs = tmp_path / "containers"
    logs.mkdir()
    path = container_path(logs, pod="quiet-1", container="quiet")
    enricher = StaticEnricher({"quiet": FilePolicy(exclude=True)})
    write_cri(path, lines("q", 0, 10))
    included = _file_events("included")
    async with running(tmp_path, enricher=enricher) as (_, sink):
        del enricher.policies["quiet"]
        await wait_until(lambda: _file_events("included") > included, 10)  # opened in the same scan
        write_cri(path, lines("q", 10, 15))
        await wait_until(lambda: "q-14" in sink.messages(), 10)
    assert sink.messages() == lines("q", 10, 15)
