"""Compare what a pipeline delivered with what the writer wrote, line by line.

:func:`check` takes the ground truth, every delivered record (with its
``event.id``, Kafka key and position) and the lost-bytes figures, and returns
a :class:`Report`.  The *zero conditions* (:meth:`Report.failures`):

* no line delivered twice under different ``event.id``s (raw redeliveries
  of one ``event.id`` are counted, not failed: consumers deduplicate them);
* no missing line whose generation still exists, plain or gzip'ed (a
  copytruncate copy counts: the bytes exist); a line delivered mangled is
  counted once, as garbage, not again as missing;
* no line out of order within its stream key (where delivery order is observable);
* no record that is not exactly a written line (gzip bytes read as text,
  unjoined pieces, truncated or mangled text), and no U+FFFD the input lacked;
  the one exception, reported apart: a line a rotation cut in two whose
  other share was deleted before it could be read comes out as the share
  that is left, exactly (``partial_after_loss``);
* the lost-bytes counter, up to one line's framing per affected file,
  between the bytes of the missing lines the collector surely had time to
  stat and the bytes of those it had any chance to stat
  (:meth:`~tests.e2e.lifecycle.truth.GroundTruth.surely_seen`,
  :meth:`~tests.e2e.lifecycle.truth.GroundTruth.possibly_seen`: it cannot
  count what was written and gone while it was down);
* one Kafka key per container (where there are keys).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.e2e.lifecycle.truth import GroundTruth, LineTruth, Storage, message_digest, parse_line_id

__all__ = ["Delivered", "LostBytes", "Report", "check", "tally"]

EXAMPLES = 5
"""Examples kept per kind of failure."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """One record as it came out of the pipeline."""

    message: str
    event_id: str
    key: str | None = None
    """The Kafka message key it arrived under; None where there are no keys."""
    lane: str = ""
    """The unit within which delivery order means something (a Kafka partition)."""
    origin: str = ""
    """Where the pipeline says the record came from (file, offset), for post-mortems only."""


@dataclass(frozen=True, slots=True)
class LostBytes:
    """What the collector says it lost."""

    events: int
    """Sum of the ``bytes_lost`` log events of every incarnation."""
    metric_last: float | None = None
    """``podlog_collector_lost_bytes_total`` scraped from the last incarnation before its clean stop."""
    events_last: int | None = None
    """The ``bytes_lost`` events of the last incarnation logged before that scrape."""


@dataclass(slots=True)
class Report:
    """The figures of one comparison; :meth:`failures` names the zero conditions not met."""

    written: int = 0
    delivered_records: int = 0
    delivered_unique: int = 0
    raw_duplicates: int = 0
    """Records whose ``event.id`` was delivered before (redeliveries)."""
    dedup_duplicates: int = 0
    """Extra ``event.id``s under which a line was delivered: duplicates that survive dedup by ``event.id``."""
    missing: int = 0
    missing_mangled: int = 0
    """Missing lines some record carries mangled (counted under ``garbage``): not lost, not in the buckets below."""
    missing_split: int = 0
    """Of the other missing lines: those a rotation cut between two files (dockerd rotates between pieces)."""
    missing_plain: int = 0
    missing_gz: int = 0
    missing_in_copies: int = 0
    """Of ``missing_plain + missing_gz``: lines whose bytes survive only in a copytruncate copy."""
    missing_deleted_seen: int = 0
    missing_deleted_unseen: int = 0
    """Lines written and deleted without the collector surely having had time to stat them."""
    out_of_order: int | None = None
    """First deliveries of a line after a later line of its stream; None where order is not observable."""
    garbage: int = 0
    """Records that are not exactly a written line."""
    partial_after_loss: int = 0
    """Records that are exactly one generation's share of a line a rotation cut in two, whose other
    share was deleted before it was read: what is left of a line partly lost (not garbage)."""
    fffd: int = 0
    """Records of a written line (by its id) with more U+FFFD than the line's text on disk."""
    key_violations: int | None = None
    """Containers whose lines arrived under more than one Kafka key; None where there are no keys."""
    keys_shared: int | None = None
    """Kafka keys carrying lines of more than one container (allowed: keys may hash together)."""
    lost_bytes: int = 0
    missing_bytes: int = 0
    """Bytes on disk of the missing (not mangled) lines the collector surely had time to stat."""
    missing_bytes_possible: int = 0
    """Bytes on disk of the missing (not mangled) lines the collector had any chance to stat."""
    lost_tolerance: int = 0
    """One line's framing per file (generation) with such missing lines."""
    affected_files: int = 0
    lost_metric_last: float | None = None
    lost_events_last: int | None = None
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def missing_existing(self) -> int:
        """Missing lines whose generation's bytes still exist, plain or gzip'ed."""
        return self.missing_plain + self.missing_gz

    @property
    def lost_difference(self) -> int:
        """How far the lost-bytes counter is outside ``[missing_bytes, missing_bytes_possible]`` (0: inside)."""
        if self.lost_bytes < self.missing_bytes:
            return self.lost_bytes - self.missing_bytes
        return max(0, self.lost_bytes - self.missing_bytes_possible)

    def failures(self) -> list[str]:
        """The zero conditions not met, each with its figure."""
        out = []
        if self.dedup_duplicates:
            out.append(f"duplicates after event.id dedup: {self.dedup_duplicates}")
        if self.missing_existing:
            out.append(
                f"missing lines whose generation still exists: {self.missing_existing} "
                f"(plain {self.missing_plain}, gz {self.missing_gz}, of which in copytruncate copies "
                f"{self.missing_in_copies})"
            )
        if self.out_of_order:
            out.append(f"out of order within a stream key: {self.out_of_order}")
        if self.garbage:
            out.append(f"records that are no written line: {self.garbage}")
        if self.fffd:
            out.append(f"records with U+FFFD not in the input: {self.fffd}")
        if abs(self.lost_difference) > self.lost_tolerance:
            out.append(
                f"lost-bytes counter {self.lost_bytes} vs {self.missing_bytes}..{self.missing_bytes_possible} bytes "
                f"of missing lines: difference {self.lost_difference:+d} beyond the tolerance of {self.lost_tolerance}"
            )
        if self.key_violations:
            out.append(f"containers under more than one Kafka key: {self.key_violations}")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures()

    def summary(self) -> str:
        """One line of figures."""
        order = "n/a" if self.out_of_order is None else str(self.out_of_order)
        keys = "n/a" if self.key_violations is None else str(self.key_violations)
        return (
            f"written={self.written} delivered={self.delivered_unique} records={self.delivered_records} "
            f"raw_dup={self.raw_duplicates} dedup_dup={self.dedup_duplicates} missing={self.missing} "
            f"(mangled={self.missing_mangled} split={self.missing_split}; existing plain={self.missing_plain} "
            f"gz={self.missing_gz} "
            f"copies={self.missing_in_copies}; "
            f"deleted seen={self.missing_deleted_seen} unseen={self.missing_deleted_unseen}) "
            f"out_of_order={order} garbage={self.garbage} partial_after_loss={self.partial_after_loss} "
            f"fffd={self.fffd} key_violations={keys} "
            f"lost_bytes={self.lost_bytes} vs missing_bytes={self.missing_bytes}..{self.missing_bytes_possible} "
            f"(diff {self.lost_difference:+d}, tolerance {self.lost_tolerance})"
        )

    def __str__(self) -> str:
        lines = [self.summary()]
        if self.lost_metric_last is not None:
            lines.append(
                f"  cross-check: lost-bytes metric of the last incarnation {self.lost_metric_last:.0f}, "
                f"its bytes_lost events before the scrape {self.lost_events_last}"
            )
        for failure in self.failures():
            lines.append(f"  FAIL {failure}")
        for kind, examples in sorted(self.examples.items()):
            lines.append(f"  e.g. {kind}: {'; '.join(examples)}")
        return "\n".join(lines)

    def example(self, kind: str, text: str) -> None:
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES:
            kept.append(text)


def _shown(message: str, limit: int = 90) -> str:
    return repr(message[:limit]) + ("..." if len(message) > limit else "")


def _state(truth: GroundTruth, line: LineTruth) -> tuple[Storage, bool]:
    """(storage, copied) of a line, from its generations: the worst of them."""
    gens = [truth.generations[g] for g in line.gens]
    storages = {g.storage for g in gens}
    storage = next((s for s in (Storage.DELETED, Storage.GZ) if s in storages), Storage.PLAIN)
    return storage, any(g.copied for g in gens)


def _share_of_a_partly_lost_line(truth: GroundTruth, share: tuple[str, int, int] | None) -> bool:
    """True when ``share`` (line id, run of its generations) names a line cut by a rotation
    whose other generations include one that was deleted."""
    if share is None:
        return False
    line_id, start, stop = share
    line = truth.lines[line_id]
    others = [truth.generations[g] for i, g in enumerate(line.gens) if not start <= i < stop]
    return any(g.storage is Storage.DELETED for g in others)


def check(truth: GroundTruth, delivered: Iterable[Delivered], lost: LostBytes, *, ordered: bool,
          keyed: bool) -> Report:
    """The report of one run: ``delivered`` in delivery order (per lane), ``ordered``/``keyed`` when observable."""
    report = Report(written=len(truth.lines), lost_bytes=lost.events, lost_metric_last=lost.metric_last,
                    lost_events_last=lost.events_last)
    eids_seen: set[str] = set()
    mangled: set[str] = set()
    eids_of_line: dict[str, set[str]] = defaultdict(set)
    first_seen: set[str] = set()
    highest: dict[tuple[str, str], int] = {}
    keys_of_stream: dict[str, set[str]] = defaultdict(set)
    streams_of_key: dict[str, set[str]] = defaultdict(set)
    out_of_order = 0
    parts: dict[bytes, tuple[str, int, int]] = {}
    shipped_share: dict[str, set[int]] = defaultdict(set)
    """Generations (indexes into ``gens``) of a partly lost line whose share was delivered."""
    for split_id, split in truth.lines.items():
        for start, stop, part in split.parts:
            parts[part] = (split_id, start, stop)
    for record in delivered:
        report.delivered_records += 1
        if record.event_id in eids_seen:
            report.raw_duplicates += 1
        eids_seen.add(record.event_id)
        line_id = parse_line_id(record.message)
        line = truth.lines.get(line_id) if line_id is not None else None
        digest = message_digest(record.message)
        if line is None or digest != line.digest:
            share = parts.get(digest)
            if _share_of_a_partly_lost_line(truth, share):
                assert share is not None
                shipped_share[share[0]].update(range(share[1], share[2]))
                report.partial_after_loss += 1
                report.example("partial_after_loss", f"{_shown(record.message)} from {record.origin or '?'}")
                continue
            report.garbage += 1
            report.example("garbage", f"{_shown(record.message)} from {record.origin or '?'}")
            if line is not None:
                assert line_id is not None
                mangled.add(line_id)
                if record.message.count("\ufffd") > line.fffd:
                    report.fffd += 1
                    report.example("fffd", f"{_shown(record.message)} from {record.origin or '?'}")
            continue
        assert line_id is not None
        eids_of_line[line_id].add(f"{record.event_id}\x00{record.origin}")
        if record.key is not None:
            keys_of_stream[line.stream].add(record.key)
            streams_of_key[record.key].add(line.stream)
        if line_id in first_seen:
            continue
        first_seen.add(line_id)
        lane = (line.stream, record.lane)
        top = highest.get(lane, -1)
        if line.seq < top:
            out_of_order += 1
            if ordered:
                report.example("out_of_order", f"{line_id} after seq {top} (lane {record.lane or '-'})")
        else:
            highest[lane] = line.seq
    report.delivered_unique = len(first_seen)
    for line_id, tagged in eids_of_line.items():
        eids = {tag.split("\x00", 1)[0] for tag in tagged}
        if len(eids) > 1:
            report.dedup_duplicates += len(eids) - 1
            origins = sorted(tag.split("\x00", 1)[1] or "?" for tag in tagged)
            report.example("dedup_duplicate", f"{line_id} under {len(eids)} event.ids from {origins}")
    if ordered:
        report.out_of_order = out_of_order
    if keyed:
        report.key_violations = sum(1 for keys in keys_of_stream.values() if len(keys) > 1)
        report.keys_shared = sum(1 for streams in streams_of_key.values() if len(streams) > 1)
        for stream, keys in keys_of_stream.items():
            if len(keys) > 1:
                report.example("key_violation", f"{stream} under {sorted(keys)}")
    framing_by_gen: dict[int, int] = {}
    for line_id, line in truth.lines.items():
        if line_id in first_seen:
            continue
        report.missing += 1
        if line_id in mangled:
            report.missing_mangled += 1
            continue
        report.missing_split += len(line.gens) > 1
        storage, copied = _state(truth, line)
        surely, possibly = truth.surely_seen(line), truth.possibly_seen(line)
        if storage is Storage.PLAIN:
            report.missing_plain += 1
        elif storage is Storage.GZ:
            report.missing_gz += 1
        elif surely:
            report.missing_deleted_seen += 1
        else:
            report.missing_deleted_unseen += 1
        if storage is not Storage.DELETED:
            report.missing_in_copies += copied
            report.example(f"missing_{storage.value}", f"{line_id} in {truth.generations[line.gens[-1]].path}")
        # What of a partly lost line was delivered (its share in generations still read) is not lost.
        shipped = sum(line.gen_bytes[i] for i in shipped_share.get(line_id, ()) if i < len(line.gen_bytes))
        if surely:
            report.missing_bytes += line.disk_bytes - shipped
        if possibly:
            report.missing_bytes_possible += line.disk_bytes - shipped
            for gen in line.gens:
                framing_by_gen[gen] = max(framing_by_gen.get(gen, 0), line.framing)
    report.affected_files = len(framing_by_gen)
    report.lost_tolerance = sum(framing_by_gen.values())
    return report


def tally(reports: Iterable[Report]) -> Counter[str]:
    """How many reports fail each zero condition (by its first words)."""
    out: Counter[str] = Counter()
    for report in reports:
        for failure in report.failures():
            out[failure.split(":")[0]] += 1
    return out
