"""The agent's state disk full for a period: ENOSPC on spool and checkpoints."""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.faults.harness import LogWriter, Pipeline
from tests.e2e.faults.test_faults import FULL, LINES_PER_ROUND, OUTAGE_SECONDS, drain_and_compare, run_rounds
from tests.fixtures.servers import DurableKafka

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400 if FULL else 600)]


@pytest.fixture
def small_state_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs for the agent's state directory, so the test can fill it."""
    mount_point = tmp_path / "state-agent"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem answers ENOSPC; return its path."""
    filler = directory / "filler"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(block)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_state_disk_full_pauses_and_recovers(tmp_path: Path, small_state_disk: Path, durable_kafka: DurableKafka,
                                             fresh_opensearch: str) -> None:
    """The agent's state disk full for a period (ENOSPC on spool and checkpoints): it pauses, then delivers all."""
    writer = LogWriter(tmp_path / "logs")
    for i in range(6):
        writer.add(namespace=f"ns{i % 3}", pod=f"pod-{i}")
    pipe = Pipeline(tmp_path, writer, durable_kafka.bootstrap, fresh_opensearch)
    pipe.start("agent")
    pipe.start("indexer")
    try:

        def disk_full() -> None:
            filler = fill(small_state_disk)
            deadline = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < deadline:
                for log in writer.logs:
                    writer.write(log, LINES_PER_ROUND // 4)
                pipe.check_alive()
                time.sleep(0.5)  # the outage's length is the point, not a synchronisation
            filler.unlink()

        last = run_rounds(pipe, {4: disk_full})
        report = drain_and_compare(pipe, "state disk full", last)
        assert (report.missing, report.duplicates, report.lost_bytes) == (0, 0, 0)
    finally:
        pipe.stop()
