"""EmbeddedTransport: the spool feeds the in-process index of ``podlog run``.

The same acknowledgement chain as with Kafka: :meth:`EmbeddedTransport.send`
returns only after the index committed the records (its own transaction,
fsynced per ``embedded.synchronous``), and only then does the
:class:`~shipper.shipper.Shipper` acknowledge the spool batch and move the
collector's checkpoints.  A crash between the commit and the checkpoint
replays the batch; the index skips every ``event.id`` it already holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from podlog.errors import TransportError
from podlog.protocols import DocumentWriter
from podlog.record import Record

__all__ = ["EmbeddedTransport"]


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
