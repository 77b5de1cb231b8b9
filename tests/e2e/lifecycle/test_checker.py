"""The checker on hand-made ground truth and deliveries: each zero condition, and what must not trip it."""

from __future__ import annotations

import dataclasses

from tests.e2e.lifecycle.checker import Delivered, LostBytes, Report, check
from tests.e2e.lifecycle.truth import GenerationTruth, GroundTruth, LineTruth, Storage, message_digest

FRAMING = 40
"""Framing bytes of every hand-made line (timestamp, stream, tag, newline)."""


def text(stream: str, seq: int) -> str:
    return f"lc:r1/pod-{stream}/app/{seq} stdout hello {seq}"


def truth_of(*streams: tuple[str, int, int], storage: dict[int, Storage] | None = None,
             up: tuple[tuple[int, int | None], ...] = ((0, None),), copied: frozenset[int] = frozenset(),
             end_tick: int = 100, grace: int = 1) -> GroundTruth:
    """Streams as (name, lines, generation), line n written at tick n; every generation plain unless told."""
    truth = GroundTruth(run_id="r1", up=up, find_ticks=grace, checkpoint_ticks=grace, now_tick=100)
    for name, count, gen in streams:
        for seq in range(count):
            message = text(name, seq)
            truth.lines[f"r1/pod-{name}/app/{seq}"] = LineTruth(
                stream=f"uid-{name}/app", seq=seq, tick=seq, gens=(gen,), disk_bytes=len(message.encode()) + FRAMING,
                framing=FRAMING, digest=message_digest(message), fffd=message.count("\ufffd"),
            )
        kept = (storage or {}).get(gen, Storage.PLAIN)
        ended = None if kept is Storage.PLAIN and gen not in copied else end_tick
        truth.generations[gen] = GenerationTruth(
            gen_id=gen, path=f"/node/{name}.log", storage=kept, born_tick=0, named_until_tick=ended,
            end_tick=ended, copied=gen in copied,
        )
    return truth


def deliver(stream: str, seqs: range | list[int], key: str = "k", lane: str = "0") -> list[Delivered]:
    return [Delivered(text(stream, seq), f"e-{stream}-{seq}", key, lane) for seq in seqs]


def run(truth: GroundTruth, delivered: list[Delivered], lost: int = 0, *, ordered: bool = True,
        keyed: bool = True) -> Report:
    return check(truth, delivered, LostBytes(events=lost), ordered=ordered, keyed=keyed)


def test_exact_delivery_meets_every_zero_condition() -> None:
    """Every line once, in order, under one key per container: no failure and exact figures."""
    truth = truth_of(("a", 5, 1), ("b", 3, 2))
    report = run(truth, deliver("a", range(5), key="ka") + deliver("b", range(3), key="kb"))
    assert report.failures() == []
    assert (report.written, report.delivered_unique, report.missing, report.out_of_order) == (8, 8, 0, 0)
    assert report.key_violations == 0


def test_redelivery_of_one_event_id_is_counted_but_not_failed() -> None:
    """The same event.id twice (a replay after a crash) is a raw duplicate that dedup removes."""
    truth = truth_of(("a", 3, 1))
    report = run(truth, deliver("a", range(3)) + deliver("a", [1, 2]))
    assert (report.raw_duplicates, report.dedup_duplicates, report.out_of_order) == (2, 0, 0)
    assert report.ok


def test_line_under_a_second_event_id_survives_dedup_and_fails() -> None:
    """One line delivered under two event.ids is a duplicate no consumer can remove."""
    truth = truth_of(("a", 3, 1))
    again = Delivered(text("a", 1), "another-id", "k", "0")
    report = run(truth, [*deliver("a", range(3)), again])
    assert (report.raw_duplicates, report.dedup_duplicates) == (0, 1)
    assert any("dedup" in failure for failure in report.failures())


def test_missing_line_of_an_existing_generation_fails_whether_plain_or_gz() -> None:
    """A missing line whose bytes still exist (plain, gzip'ed, or in a copytruncate copy) is a failure."""
    truth = truth_of(("a", 3, 1), ("b", 3, 2), storage={2: Storage.GZ}, copied=frozenset({1}))
    report = run(truth, deliver("a", [0, 2]) + deliver("b", [0, 1]), lost=0)
    assert (report.missing, report.missing_plain, report.missing_gz, report.missing_in_copies) == (2, 1, 1, 1)
    assert report.missing_existing == 2
    assert any("still exists" in failure for failure in report.failures())


def test_deleted_lines_counted_to_the_byte_pass() -> None:
    """Lines of a deleted generation, missing, with the lost-bytes counter covering exactly their bytes."""
    truth = truth_of(("a", 4, 1), storage={1: Storage.DELETED})
    missing = sum(truth.lines[f"r1/pod-a/app/{seq}"].disk_bytes for seq in (2, 3))
    report = run(truth, deliver("a", [0, 1]), lost=missing)
    assert (report.missing_deleted_seen, report.missing_bytes, report.lost_difference) == (2, missing, 0)
    assert report.ok


def test_lost_bytes_within_one_line_framing_per_file_pass_and_beyond_fail() -> None:
    """The counter may differ from the missing lines' bytes by one line's framing per affected file, not more."""
    truth = truth_of(("a", 4, 1), ("b", 4, 2), storage={1: Storage.DELETED, 2: Storage.DELETED})
    missing = sum(truth.lines[f"r1/pod-{s}/app/3"].disk_bytes for s in "ab")
    delivered = deliver("a", range(3)) + deliver("b", range(3))
    within = run(truth, delivered, lost=missing - 2 * FRAMING)
    beyond = run(truth, delivered, lost=missing - 2 * FRAMING - 1)
    over = run(truth, delivered, lost=missing + 2 * FRAMING + 1)
    assert (within.affected_files, within.lost_tolerance) == (2, 2 * FRAMING)
    assert within.ok
    assert not beyond.ok and not over.ok
    assert run(truth, delivered, lost=0).failures() == [
        f"lost-bytes counter 0 vs {missing}..{missing} bytes of missing lines: difference {-missing:+d} beyond the "
        f"tolerance of {2 * FRAMING}"
    ]


def test_lines_of_generations_the_collector_never_saw_are_left_out_of_the_lost_bytes() -> None:
    """A generation written and deleted while the collector was down cannot be counted: reported apart."""
    truth = truth_of(("a", 3, 1), storage={1: Storage.DELETED}, up=((50, None),), end_tick=40)
    report = run(truth, [], lost=0)
    assert (report.missing, report.missing_deleted_unseen, report.missing_bytes) == (3, 3, 0)
    assert report.ok


def test_lines_written_after_the_last_look_at_a_file_are_unseen_even_when_the_file_was_seen() -> None:
    """Killed at tick 2: lines 0-1 were there to stat, lines 2-4 came while down and died with the file."""
    truth = truth_of(("a", 5, 1), storage={1: Storage.DELETED}, up=((0, 2), (50, None)), end_tick=20)
    seen = sum(truth.lines[f"r1/pod-a/app/{seq}"].disk_bytes for seq in (0, 1))
    report = run(truth, [], lost=seen)
    assert (report.missing_deleted_seen, report.missing_deleted_unseen, report.missing_bytes) == (2, 3, seen)
    assert report.ok


def test_first_delivery_behind_a_later_line_is_out_of_order_but_a_replay_is_not() -> None:
    """Order counts first deliveries per stream and lane: a line after a later one fails, a replay does not."""
    truth = truth_of(("a", 5, 1))
    replayed = run(truth, deliver("a", [0, 1, 2, 1, 2, 3, 4]))
    swapped = run(truth, deliver("a", [0, 2, 1, 3, 4]))
    assert replayed.out_of_order == 0 and replayed.ok
    assert swapped.out_of_order == 1
    assert any("out of order" in failure for failure in swapped.failures())


def test_order_is_not_judged_where_it_is_not_observable() -> None:
    """A store that keeps records by time (podlog run) reports order as n/a, whatever the sequence."""
    truth = truth_of(("a", 3, 1))
    report = run(truth, deliver("a", [2, 1, 0]), ordered=False, keyed=False)
    assert (report.out_of_order, report.key_violations) == (None, None)
    assert report.ok


def test_gzip_bytes_and_unjoined_pieces_are_garbage() -> None:
    """Records that are not exactly a written line: compressed bytes read as text, a piece of a line."""
    truth = truth_of(("a", 2, 1))
    gz = Delivered("\x1f\ufffd\x08\x00\x00\x00\x00\x00\x00\x03\ufffd\ufffdK", "g1", "k", "0")
    piece = Delivered(text("a", 1)[:20], "g2", "k", "0")
    report = run(truth, [*deliver("a", [0]), gz, piece])
    assert (report.garbage, report.delivered_unique, report.missing) == (2, 1, 1)
    assert report.fffd == 0  # no line id: garbage, whatever it holds
    assert "garbage" in report.examples


def test_replacement_character_the_disk_holds_is_no_failure_but_a_new_one_is() -> None:
    """U+FFFD Docker wrote for a cut character is the line's text; one the collector added is a failure."""
    truth = GroundTruth(run_id="r1")
    on_disk = "lc:r1/pod-a/app/0 stdout 日本\ufffd\ufffd\ufffd語"
    truth.lines["r1/pod-a/app/0"] = LineTruth("uid-a/app", 0, 0, (1,), 100, 40, message_digest(on_disk), 3)
    truth.lines["r1/pod-a/app/1"] = LineTruth("uid-a/app", 1, 1, (1,), 100, 40, message_digest(text("a", 1)), 0)
    truth.generations[1] = GenerationTruth(1, "/node/a.log", Storage.PLAIN, 0, None, None, copied=False)
    mangled = text("a", 1)[:-1] + "\ufffd"
    report = run(truth, [Delivered(on_disk, "e0", "k", "0"), Delivered(mangled, "e1", "k", "0")])
    assert (report.delivered_unique, report.fffd, report.garbage) == (1, 1, 1)


def test_container_under_two_kafka_keys_fails_and_shared_keys_do_not() -> None:
    """All of a container's lines under one key; two containers sharing a key is allowed."""
    truth = truth_of(("a", 4, 1), ("b", 2, 2))
    split = run(truth, deliver("a", [0, 1], key="k1") + deliver("a", [2, 3], key="k2", lane="1")
                + deliver("b", [0, 1], key="k1"))
    assert (split.key_violations, split.keys_shared) == (1, 1)
    assert any("Kafka key" in failure for failure in split.failures())
    shared = run(truth, deliver("a", range(4), key="k1") + deliver("b", range(2), key="k1"))
    assert (shared.key_violations, shared.keys_shared) == (0, 1)
    assert shared.ok


def test_line_spanning_two_generations_is_deleted_when_either_is() -> None:
    """A line cut by a rotation counts as deleted when one of its generations is gone, plain only when both exist."""
    truth = truth_of(("a", 1, 1), ("b", 1, 2), storage={2: Storage.DELETED})
    line = truth.lines["r1/pod-a/app/0"]
    truth.lines["r1/pod-a/app/0"] = LineTruth(line.stream, 0, 0, (1, 2), line.disk_bytes, line.framing,
                                               line.digest, 0)
    report = run(truth, [], lost=sum(line.disk_bytes for line in truth.lines.values()))
    assert (report.missing_plain, report.missing_deleted_seen) == (0, 2)
    assert report.ok


def test_the_share_left_of_a_line_cut_by_a_rotation_is_partial_only_when_the_other_share_is_gone() -> None:
    """Exactly one generation's share of a split line is no garbage when the other generation was
    deleted unread; with both generations still there it is an unjoined piece: garbage."""
    for storage, garbage in ((Storage.DELETED, 0), (Storage.PLAIN, 1)):
        truth = truth_of(("a", 1, 1), ("b", 1, 2), storage={2: storage})
        line = truth.lines["r1/pod-a/app/0"]
        head = text("a", 0)[:10]
        shares = ((0, 1, message_digest(head)), (1, 2, message_digest("rest")))
        truth.lines["r1/pod-a/app/0"] = LineTruth(line.stream, 0, 0, (1, 2), line.disk_bytes, line.framing,
                                                   line.digest, 0, shares)
        report = run(truth, [Delivered(head, "e1", "k", "0")])
        assert (report.garbage, report.partial_after_loss) == (garbage, 1 - garbage)


def test_mangled_line_is_one_failure_as_garbage_not_also_a_loss() -> None:
    """A line delivered mangled is garbage; it is not missing from its file again, nor owed to the lost bytes."""
    truth = truth_of(("a", 3, 1))
    mangled = Delivered(text("a", 2).replace("hello", "hel\ufffd"), "e2", "k", "0")
    report = run(truth, [*deliver("a", [0, 1]), mangled])
    assert (report.garbage, report.fffd, report.missing, report.missing_mangled) == (1, 1, 1, 1)
    assert (report.missing_plain, report.missing_bytes) == (0, 0)
    assert [f.split(":")[0] for f in report.failures()] == ["records that are no written line",
                                                            "records with U+FFFD not in the input"]


def test_examples_name_where_duplicates_were_read() -> None:
    """A duplicate's example names each origin the pipeline gave, so a post-mortem can find the files."""
    truth = truth_of(("a", 1, 1))
    first = Delivered(text("a", 0), "e1", "k", "0", "/node/a.log@0 gen=0")
    second = Delivered(text("a", 0), "e2", "k", "0", "/node/a.log.1@0 gen=1")
    report = run(truth, [first, second])
    assert report.dedup_duplicates == 1
    assert "/node/a.log.1@0 gen=1" in report.examples["dedup_duplicate"][0]


def lines_bytes(truth: GroundTruth, stream: str, seqs: range) -> int:
    return sum(truth.lines[f"r1/pod-{stream}/app/{seq}"].disk_bytes for seq in seqs)


def test_lost_bytes_between_surely_and_possibly_seen_pass_and_outside_fail() -> None:
    """Killed at tick 10 with a grace of 3: lines 0-7 must be counted, 8-9 may be; any count between passes."""
    truth = truth_of(("a", 10, 1), storage={1: Storage.DELETED}, up=((0, 10),), end_tick=50, grace=3)
    surely, possibly = lines_bytes(truth, "a", range(8)), lines_bytes(truth, "a", range(10))
    for lost in (surely, surely + 1, possibly):
        report = run(truth, [], lost=lost)
        assert (report.missing_bytes, report.missing_bytes_possible, report.lost_difference) == (surely, possibly, 0)
        assert report.ok
    assert run(truth, [], lost=possibly + FRAMING + 1).lost_difference == FRAMING + 1
    assert not run(truth, [], lost=possibly + FRAMING + 1).ok
    assert not run(truth, [], lost=surely - FRAMING - 1).ok


def test_copytruncate_takes_unread_bytes_from_the_held_file_but_a_rename_does_not() -> None:
    """Truncated at tick 5: only lines with the grace before it were sure to be seen; a renamed file stays readable."""
    copied = truth_of(("a", 5, 1), up=((0, None),), copied=frozenset({1}), end_tick=5, grace=3)
    renamed = truth_of(("a", 5, 1), storage={1: Storage.GZ}, up=((0, None),), end_tick=5, grace=3)
    assert [copied.surely_seen(line) for line in copied.lines.values()] == [True, True, True, False, False]
    assert all(renamed.surely_seen(line) for line in renamed.lines.values())


def test_a_file_renamed_before_the_collector_found_it_is_not_surely_seen() -> None:
    """Born at tick 0, renamed at tick 1 while the collector was down: only a sibling scan could find it."""
    truth = truth_of(("a", 2, 1), storage={1: Storage.DELETED}, up=((5, None),), end_tick=50, grace=3)
    gen = truth.generations[1]
    truth.generations[1] = GenerationTruth(gen.gen_id, gen.path, gen.storage, 0, 1, 50, copied=False)
    line = truth.lines["r1/pod-a/app/0"]
    assert (truth.surely_seen(line), truth.possibly_seen(line)) == (False, True)
    report = run(truth, [], lost=0)
    assert (report.missing_deleted_unseen, report.missing_bytes) == (2, 0)
    assert report.missing_bytes_possible == lines_bytes(truth, "a", range(2))
    assert report.ok


def test_a_partly_lost_line_owes_the_counter_only_the_share_that_is_gone() -> None:
    """Split over generations 1 (deleted unread, 60 bytes) and 2 (read, 40 bytes): the share of
    generation 2 delivered, the lost-bytes counter owes 60, not the line's 100."""
    truth = truth_of(("a", 1, 1), storage={1: Storage.DELETED})
    truth.generations[2] = dataclasses.replace(truth.generations[1], gen_id=2, storage=Storage.PLAIN)
    line = truth.lines["r1/pod-a/app/0"]
    shares = ((0, 1, message_digest("head")), (1, 2, message_digest("rest")))
    truth.lines["r1/pod-a/app/0"] = LineTruth(line.stream, 0, 0, (1, 2), 100, 5, line.digest, 0, shares, (60, 40))
    report = run(truth, [Delivered("rest", "e1", "k", "0")], lost=60)
    assert report.partial_after_loss == 1
    assert report.lost_difference == 0, report
