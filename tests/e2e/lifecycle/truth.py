"""Ground truth: every line the writer wrote, and what became of the file generation it went to.

The writer produces it (:meth:`tests.e2e.lifecycle.writer.NodeWriter.truth`),
the checker compares deliveries with it; neither imports the other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "LINE_ID",
    "GenerationTruth",
    "GroundTruth",
    "LineTruth",
    "Storage",
    "message_digest",
    "parse_line_id",
]

LINE_ID = re.compile(r"^lc:(?P<id>[0-9a-z]+/[a-z0-9.-]+/[a-z0-9-]+/(?P<seq>\d+)) ")
"""A written message starts ``lc:<run>/<pod>/<container>/<seq> ``: its line id."""


def parse_line_id(message: str) -> str | None:
    """The line id a message starts with, or None for text the writer never wrote."""
    match = LINE_ID.match(message)
    return match["id"] if match else None


def message_digest(text: str) -> bytes:
    """A 128-bit digest of a message's text, to compare deliveries without keeping every text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Storage(Enum):
    """Where a file generation's bytes are at check time."""

    PLAIN = "plain"
    """In a plain file (the live file, a renamed rotation, or a copytruncate copy)."""
    GZ = "gz"
    """Only in a ``.gz`` file: readable by decompressing, not by tailing."""
    DELETED = "deleted"
    """Nowhere: deleted (pod deleted, container removed, rotated past max-files)."""


@dataclass(frozen=True, slots=True)
class GenerationTruth:
    """One physical file generation: one inode's content from creation or truncation on."""

    gen_id: int
    path: str
    """Where its bytes are at check time (or were last, when deleted)."""
    storage: Storage
    born_tick: int
    named_until_tick: int | None
    """When an included name (its ``containers/`` link) stopped leading to it: renamed by a rotation,
    truncated after a copy, its link removed; None: not yet."""
    end_tick: int | None
    """When its plain name went (gzip'ed, deleted) or its inode was truncated after a copy; None: not yet."""
    copied: bool
    """Its bytes survive in a copytruncate copy: another inode, not the one the collector followed."""


@dataclass(frozen=True, slots=True)
class LineTruth:
    """One written line."""

    stream: str
    """The stream key: ``<pod uid>/<container name>`` (every restart of the container)."""
    seq: int
    """Position in the stream: the order the line was written in."""
    tick: int
    """When it was written."""
    gens: tuple[int, ...]
    """The generations its pieces went to (two when a rotation fell between pieces)."""
    disk_bytes: int
    """Bytes on disk, every piece with its framing."""
    framing: int
    """``disk_bytes`` minus the UTF-8 bytes of the text: timestamps, tags, JSON, newlines."""
    digest: bytes
    """:func:`message_digest` of the text a correct collector delivers."""
    fffd: int
    """U+FFFD characters in that text (Docker writes them for cut characters)."""
    parts: tuple[tuple[int, int, bytes], ...] = ()
    """For a line whose pieces went to several generations: ``(start, stop, digest)`` for every run
    ``gens[start:stop]`` short of all of them, with :func:`message_digest` of the text their pieces
    hold: what a collector delivers when the other generations are gone."""
    gen_bytes: tuple[int, ...] = ()
    """Bytes on disk in each of ``gens``, in order (empty: all in the one generation)."""


@dataclass(slots=True)
class GroundTruth:
    """Everything written in one run, and when the collector ran."""

    run_id: str
    lines: dict[str, LineTruth] = field(default_factory=dict)
    generations: dict[int, GenerationTruth] = field(default_factory=dict)
    up: tuple[tuple[int, int | None], ...] = ((0, None),)
    """Ticks ``[from, to)`` the collector ran (from when it had opened files; None: to the end)."""
    find_ticks: int = 1
    """Running time within which a collector surely notices a file, or a file's growth (its stat pass)."""
    checkpoint_ticks: int = 1
    """Running time after finding a file within which a collector has surely checkpointed it."""
    now_tick: int = 0
    """The tick the truth was taken at."""

    def surely_seen(self, line: LineTruth) -> bool:
        """The collector surely had time to stat the line, following only its include globs.

        It finds a generation that has an included name for ``find_ticks``
        while it runs, and when it runs ``checkpoint_ticks`` from then on its
        checkpoint names the file: it holds the file open, and after a restart
        finds it again by inode while its plain name exists.  It notices a
        line ``find_ticks`` after its writing, if it still runs then and the
        bytes are still in the inode it holds (a copytruncate takes them).
        """
        return all(self._surely(line, self.generations[gen]) for gen in line.gens)

    def possibly_seen(self, line: LineTruth) -> bool:
        """The collector had any chance to stat the line: it ran after the writing, coming up while the file had
        a plain name (a collector that also looks at rotated siblings finds files no include glob names)."""
        for gen in (self.generations[g] for g in line.gens):
            end = self.now_tick if gen.end_tick is None else gen.end_tick
            windows = (
                (min(stop, end) if gen.copied else stop) - max(start, line.tick)
                for start, stop in self._intervals()
                if start < end
            )
            if not any(window > 0 for window in windows):
                return False
        return True

    def _intervals(self) -> list[tuple[int, int]]:
        return [(start, self.now_tick if stop is None else stop) for start, stop in self.up]

    def _surely(self, line: LineTruth, gen: GenerationTruth) -> bool:
        named_until = self.now_tick if gen.named_until_tick is None else gen.named_until_tick
        end = self.now_tick if gen.end_tick is None else gen.end_tick
        known = False
        for start, stop in self._intervals():
            if known:
                if start >= end:
                    return False  # gone while it was down: nothing left to find by inode
                reading_from = start
            else:
                found = max(start, gen.born_tick)
                if named_until - found < self.find_ticks or stop - found < self.checkpoint_ticks:
                    continue  # not under an included name long enough, or killed before its checkpoint
                known, reading_from = True, found
            readable_until = min(stop, end) if gen.copied else stop
            if readable_until - max(reading_from, line.tick) >= self.find_ticks:
                return True
        return False
