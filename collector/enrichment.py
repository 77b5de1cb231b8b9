"""The seam between the tailing pipeline and pod metadata (``collector/kube``).

The pipeline knows a file only by its path; :class:`PathMeta` is what the
path says (``/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`` or
``/var/log/containers/<pod>_<ns>_<container>-<id>.log``).  An
:class:`Enricher` turns that into a per-file :class:`FilePolicy` (exclude,
parser, multiline, from pod annotations) and fills each record's
``kubernetes`` fields, ``level`` and ``json`` payload.  It never blocks: when
the API has not answered, records go on with path metadata and a marker.  It
may ask, within a bound, that a file whose pod it does not know yet be left
unread meanwhile (:meth:`Enricher.held`): the file on disk is the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from podlog.record import Record

__all__ = ["Enricher", "FilePolicy", "PathMeta"]


@dataclass(frozen=True, slots=True)
class PathMeta:
    """What a log file's path says about its container."""

    namespace: str
    pod: str
    container: str
    pod_uid: str = ""
    """From ``/var/log/pods`` paths; empty for ``/var/log/containers`` ones."""
    container_id: str = ""
    """From ``/var/log/containers`` names; empty for ``/var/log/pods`` ones."""
    restart_count: int | None = None
    """From ``/var/log/pods/.../<restart>.log``."""


@dataclass(frozen=True, slots=True)
class FilePolicy:
    """How to treat one container's file, from annotations or global config."""

    exclude: bool = False
    """Do not read this file at all (``podlog.io/exclude``)."""
    parser: str | None = None
    """``json``, ``logfmt`` or ``none``; None means the configured default."""
    multiline: str | None = None
    """``java``, ``python``, ``go``, ``none`` or a start regex; None means the default."""
    retention: str | None = None
    """Retention class (``podlog.io/retention``), or None for the namespace default."""


class Enricher(Protocol):
    """Pod metadata for the pipeline; implementations must not block or do I/O per call."""

    async def wait_ready(self) -> None:
        """Return once the enricher can enrich the lines already on disk (its first view of the
        cluster, or a bound on waiting for it): the collector reads nothing before."""

    def held(self, meta: PathMeta, now: float) -> bool:
        """True while the container's file should not be read yet (its pod's metadata is
        expected soon); bounded by the enricher, cheap enough to call per file per round.
        ``now`` is monotonic.  The pipeline then skips the file, leaving its lines on disk."""

    def policy(self, meta: PathMeta) -> FilePolicy:
        """The policy for a container's file; cheap enough to call per batch."""

    def enrich(self, meta: PathMeta, records: list[Record]) -> None:
        """Set ``kubernetes``, ``level``, ``json`` and ``podlog`` (``metadata``) in place.

        ``records`` are of one file and share their ``kubernetes`` and
        ``podlog`` maps (the tailer builds them so).  Records are read-only
        once built: set a sub-map by replacing it, never write into one,
        since it is shared by many records (``podlog.record.SharedMap``).
        """
