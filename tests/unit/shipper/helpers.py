"""Records, batches and fakes shared by the shipper's unit tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from podlog.errors import TransportError
from podlog.protocols import Batch, FileMark
from podlog.record import Record, SourcePosition, make_record
from shipper.spool import Spool


def record(stream: str, offset: int, message: str | None = None, *, pod: str = "p") -> Record:
    """A schema-1 record of container ``stream`` in pod ``pod`` at ``offset``."""
    return make_record(
        position=SourcePosition("c", "n", f"{pod}:{stream}:x", 0, offset),
        timestamp="2026-11-27T00:00:00.000000001Z",
        timestamp_ns=1_795_737_600_000_000_001 + offset,
        message=message if message is not None else f"{stream} line at {offset}",
        stream="stdout",
        path=f"/var/log/containers/{stream}.log",
        kubernetes={
            "namespace": "ns",
            "pod": {"name": pod, "uid": f"uid-{pod}"},
            "container": {"name": stream},
        },
    )


def lines(records: Sequence[Record]) -> list[tuple[str, str, str, int, int, str]]:
    """What a record says of its line, whichever schema carried it: (event.id, message, stream,
    time, offset, pod uid).  Records read back from a schema 2 spool are the same lines, with
    ``podlog.schema`` 2 and their payloads parsed."""
    return [(r["event"]["id"], r["message"], r["stream"], r["timestamp_ns"], r["log"]["offset"],
             r["kubernetes"]["pod"]["uid"]) for r in records]


def batch(stream: str, start: int, count: int, *, pod: str = "p") -> Batch:
    """``count`` records of one stream and the mark just after them."""
    records = [record(stream, start + i, pod=pod) for i in range(count)]
    key = f"{pod}:{stream}:x"
    mark = FileMark(f"/var/log/containers/{stream}.log", key, 0, start + count)
    return Batch(records, {key: mark})


class RecordingAcks:
    """An AckListener that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, FileMark]] = []

    def acknowledged(self, marks: Mapping[str, FileMark]) -> None:
        self.calls.append(dict(marks))

    def offset(self, key: str) -> int:
        """Latest acknowledged offset of file ``key`` (-1 when never acknowledged)."""
        for call in reversed(self.calls):
            if key in call:
                return call[key].offset
        return -1


class FlakyTransport:
    """A Transport that fails the first ``failures`` sends, then records what it gets."""

    name = "fake"

    def __init__(self, failures: int = 0, *, retriable: bool = True) -> None:
        self.failures = failures
        self.retriable = retriable
        self.received: list[Record] = []
        self.attempts = 0
        self.started = 0
        self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def send(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise TransportError("injected failure", retriable=self.retriable)
        self.received.extend(records)

    async def stop(self) -> None:
        self.stopped += 1


def crash(spool: Spool) -> None:
    """Leave ``spool`` as a killed process would: files as they are, the directory lock dropped."""
    spool._unlock()  # the kernel releases a dead process's flock
