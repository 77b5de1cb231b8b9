"""EmbeddedTransport: the spool feeds the in-process index of ``podlog run``.

The same acknowledgement chain as with Kafka: :meth:`EmbeddedTransport.send`
returns only after the index committed the records (its own transaction,
fsynced per ``embedded.synchronous``), and only then does the
:class:`~shipper.shipper.Shipper` acknowledge the spool batch and move the
collector's checkpoints.  A crash between the commit and the checkpoint
replays the batch; the index skips every ``event.id`` it already holds.

Records arrive as the spool's JSON encodings (:class:`EncodedRecords`); they
reach the index with those encodings (:class:`SpooledRecords`), so the index
stores the bytes the spool read instead of encoding each record again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import overload

from podlog.errors import TransportError
from podlog.protocols import DocumentWriter
from podlog.record import Record
from shipper.records import EncodedRecords

__all__ = ["EmbeddedTransport", "SpooledRecords"]


class SpooledRecords(Sequence[Record]):
    """Spooled records, decoded, that also offer each record's encoding (``encodings()``)."""

    __slots__ = ("_encoded",)

    def __init__(self, encoded: EncodedRecords) -> None:
        self._encoded = encoded

    def encodings(self) -> list[bytes | memoryview]:
        """Each record's JSON as the spool holds it, in iteration order."""
        return [fragment for run in self._encoded.runs for fragment in run.fragments()]

    def __len__(self) -> int:
        return len(self._encoded)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        return self._encoded.records()[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._encoded.records())


class EmbeddedTransport:
    """A :class:`podlog.protocols.Transport` that writes into a :class:`DocumentWriter`."""

    name = "embedded"

    def __init__(self, writer: DocumentWriter) -> None:
        self.writer = writer

    async def start(self) -> None:
        """Nothing to connect: the index is a service of the same process."""

    async def send(self, records: Sequence[Record]) -> None:
        """Return once the index committed every record; TransportError otherwise.

        Index failures (disk full, a locked file, I/O errors) are retriable:
        the spool keeps the records and the shipper tries again.
        """
        if not records:
            return
        if isinstance(records, EncodedRecords):
            records = SpooledRecords(records)
        try:
            await self.writer.write(records)
        except asyncio.CancelledError:
            raise
        except (OSError, RuntimeError) as exc:
            raise TransportError(f"embedded index write failed: {exc}", retriable=True) from exc
        except Exception as exc:  # sqlite3 errors and anything else the writer raises
            raise TransportError(
                f"embedded index write failed: {type(exc).__name__}: {exc}", retriable=True
            ) from exc

    async def stop(self) -> None:
        """Nothing to flush: every send already waited for its commit."""
