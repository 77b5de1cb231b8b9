"""The seam between the spool and what it drains into: ``kafka.py`` or ``embedded.py``.

Both implement :class:`podlog.protocols.Transport`; the :class:`~shipper.shipper.Shipper`
only ever sees this protocol, so nothing Kafka-specific reaches the spool.
"""

from __future__ import annotations

from podlog.errors import TransportError
from podlog.protocols import Transport

__all__ = ["Transport", "TransportError"]
