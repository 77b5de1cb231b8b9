"""One lifecycle fault run: write in paced ticks, SIGKILL podlog on a seeded schedule, drain, compare.

The writer's logical clock is the tick; the kill schedule, the collector's
up time (from the tick its collector had opened files to the tick it was
killed) and every generation's lifetime are counted in ticks, so what the
collector could have seen is decided in one time base.  Sleeping paces the
ticks and keeps podlog down; everything that waits for podlog polls with a
deadline.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from tests.e2e.lifecycle.checker import Delivered, Report, check
from tests.e2e.lifecycle.targets import AgentTarget, RunTarget, Target, podlog_source, poll_until
from tests.e2e.lifecycle.truth import GroundTruth
from tests.e2e.lifecycle.writer import NodeWriter, WriterConfig

__all__ = ["Kill", "Mode", "ScenarioConfig", "ScenarioResult", "kill_schedule", "run_scenario"]

Mode = Literal["agent", "run"]


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """A whole run: the node's logs, how podlog runs, and the faults."""

    writer: WriterConfig
    mode: Mode = "agent"
    write_seconds: float = 40.0
    """How long lines are written."""
    kills: int = 3
    """SIGKILLs of podlog while lines are written, spread over the middle 70% of that time."""
    down_seconds: tuple[float, float] = (0.5, 8.0)
    """How long podlog stays down after each SIGKILL (seeded uniform)."""
    min_up_seconds: float = 2.0
    """Running time at least between a restart and the next SIGKILL."""
    settle_seconds: float = 10.0
    """The drain ends when nothing changed for this long (more than the collector's rotate_wait)."""
    drain_timeout_seconds: float = 180.0
    start_timeout_seconds: float = 60.0
    """Longest wait for an incarnation's collector to open its first files."""
    find_seconds: float = 1.0
    """Time within which podlog surely notices a new file or a file's growth (its stat pass)."""
    checkpoint_seconds: float = 2.0
    """Time after finding a file within which podlog has surely checkpointed it (stat pass + checkpoint interval)."""
    partitions: int = 4
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra podlog settings by section, over the suite's defaults."""

    @property
    def name(self) -> str:
        return f"{self.writer.format}/{self.mode}"


@dataclass(frozen=True, slots=True)
class Kill:
    """One planned SIGKILL."""

    tick: int
    down_ticks: int


def kill_schedule(config: ScenarioConfig) -> list[Kill]:
    """Seeded SIGKILLs: one in each of ``kills`` equal slices of the middle of the writing time."""
    rng = random.Random(config.writer.seed * 7919 + 17)
    tick = config.writer.tick_seconds
    total = round(config.write_seconds / tick)
    first, last = round(total * 0.15), round(total * 0.85)
    span = (last - first) / max(config.kills, 1)
    min_up = round(config.min_up_seconds / tick)
    out = []
    for number in range(config.kills):
        start, end = first + round(number * span), first + round((number + 1) * span)
        down = max(1, round(rng.uniform(*config.down_seconds) / tick))
        room = end - start - down - min_up
        if room < 0:
            down, room = max(1, end - start - min_up), 0
        out.append(Kill(start + rng.randint(0, room), down))
    return out


@dataclass(slots=True)
class ScenarioResult:
    """The report of one run, with what happened around it."""

    name: str
    seed: int
    report: Report
    writer_stats: dict[str, int]
    kills: list[tuple[int, float]]
    """(tick, seconds actually down) of each SIGKILL."""
    incarnations: int
    exit_code: int | None
    drain: str
    """How the drain ended: complete (every line arrived), settled (nothing changed) or timeout."""
    harness_problems: list[str]
    seconds: dict[str, float]
    source: str
    max_lag_seconds: float

    @property
    def ok(self) -> bool:
        """Every zero condition met, a clean final stop, and a ground truth that matches the disk."""
        return self.report.ok and self.exit_code == 0 and not self.harness_problems

    def failures(self) -> list[str]:
        out = list(self.report.failures())
        if self.exit_code != 0:
            out.append(f"clean stop exited with {self.exit_code}")
        out.extend(f"harness: {problem}" for problem in self.harness_problems)
        return out

    def line(self) -> str:
        """One line: the verdict, the figures, the faults and the times."""
        downs = ",".join(f"{down:.1f}s" for _, down in self.kills)
        return (
            f"[{self.name} seed={self.seed}] {'PASS' if self.ok else 'FAIL'} {self.report.summary()} "
            f"kills={len(self.kills)} down=[{downs}] exit={self.exit_code} drain={self.drain} "
            f"write={self.seconds['write']:.0f}s drain={self.seconds['drain']:.0f}s total={self.seconds['total']:.0f}s"
        )

    def __str__(self) -> str:
        stats = " ".join(f"{k}={v}" for k, v in self.writer_stats.items())
        lines = [
            self.line(),
            f"  podlog under test: {self.source}",
            f"  writer: {stats}; writer lag at most {self.max_lag_seconds:.2f}s",
            *(f"  FAIL {failure}" for failure in self.failures()),
        ]
        if self.report.lost_metric_last is not None:
            lines.append(
                f"  lost-bytes cross-check: last incarnation's metric {self.report.lost_metric_last:.0f}, "
                f"its events before the scrape {self.report.lost_events_last}, all incarnations' events "
                f"{self.report.lost_bytes}"
            )
        lines.extend(f"  e.g. {kind}: {'; '.join(examples)}" for kind, examples in sorted(self.report.examples.items()))
        return "\n".join(lines)


def _target(config: ScenarioConfig, workdir: Path, writer: NodeWriter, bootstrap: str | None) -> Target:
    if config.mode == "agent":
        if bootstrap is None:
            raise ValueError("agent mode needs a Kafka bootstrap address")
        topic = f"lifecycle-{config.writer.format}-{config.writer.seed}-{secrets.token_hex(3)}"
        return AgentTarget(workdir / "agent", [writer.include_glob], bootstrap, topic,
                           partitions=config.partitions, settings=config.settings)
    return RunTarget(workdir / "run", writer.containers_dir, writer.base_time_ns, settings=config.settings)


def _lost_bytes_disagreement(report: Report) -> list[str]:
    """The cross-check: the last incarnation's counter equals the bytes_lost events it logged before the scrape.

    Both move in one call, so a difference means the summed events, which the
    lost-bytes comparison rests on, are not what podlog counted.
    """
    metric, events = report.lost_metric_last, report.lost_events_last
    if metric is None or events is None or metric == events:
        return []
    return [f"last incarnation's lost-bytes counter {metric:.0f} but its bytes_lost events sum to {events}"]


def _write_post_mortem(workdir: Path, truth: GroundTruth, delivered: list[Delivered]) -> None:
    """``delivered.jsonl`` (every record as read back) and ``missing.jsonl`` (each missing line, its files)."""
    with (workdir / "delivered.jsonl").open("wb") as out:
        for record in delivered:
            out.write(orjson.dumps(dataclasses.asdict(record)) + b"\n")
    arrived = {record.message.split(" ", 1)[0].removeprefix("lc:") for record in delivered}
    with (workdir / "missing.jsonl").open("wb") as out:
        for line_id, line in truth.lines.items():
            if line_id in arrived:
                continue  # delivered, or delivered mangled (then in delivered.jsonl)
            gens = [dataclasses.asdict(truth.generations[gen]) for gen in line.gens]
            doc = {"id": line_id, "tick": line.tick, "bytes": line.disk_bytes, "gens": gens,
                   "surely_seen": truth.surely_seen(line), "possibly_seen": truth.possibly_seen(line)}
            out.write(orjson.dumps(doc, default=str) + b"\n")


def run_scenario(config: ScenarioConfig, workdir: Path, *, bootstrap: str | None = None,
                 say: Callable[[str], None] = print) -> ScenarioResult:
    """Write, kill, drain and compare; every podlog process is stopped by its PID before this returns."""
    started = time.monotonic()
    tick_seconds = config.writer.tick_seconds
    writer = NodeWriter(workdir / "node", config.writer, time.time_ns())
    target = _target(config, workdir, writer, bootstrap)
    total_ticks = round(config.write_seconds / tick_seconds)
    quiet_ticks = round(config.writer.quiet_seconds / tick_seconds)
    kills = {kill.tick: kill for kill in kill_schedule(config)}
    restarts: dict[int, int] = {}
    up: list[tuple[int, int | None]] = []
    down_at: dict[int, float] = {}
    downs: list[tuple[int, float]] = []
    max_lag = 0.0
    try:
        target.start()
        waiting_since: float | None = time.monotonic()
        begun = time.monotonic()
        for tick in range(total_ticks):
            if tick in kills:
                if waiting_since is None:
                    up[-1] = (up[-1][0], tick)
                target.kill()
                waiting_since = None
                down_at[tick] = time.monotonic()
                restarts[tick + kills[tick].down_ticks] = tick
                say(f"[{config.name}] SIGKILL at tick {tick}, down {kills[tick].down_ticks * tick_seconds:.1f}s")
            if tick in restarts:
                killed = restarts.pop(tick)
                downs.append((killed, time.monotonic() - down_at[killed]))
                target.start()
                waiting_since = time.monotonic()
            if waiting_since is not None and not target.down and target.ready():
                up.append((tick, None))
                waiting_since = None
            elif waiting_since is not None and time.monotonic() - waiting_since > config.start_timeout_seconds:
                raise TimeoutError(f"podlog {config.mode} did not open files within {config.start_timeout_seconds}s")
            writer.step(events=tick < total_ticks - quiet_ticks)
            target.check_alive()
            lag = time.monotonic() - (begun + (tick + 1) * tick_seconds)
            max_lag = max(max_lag, lag)
            if lag < 0:
                time.sleep(-lag)  # the writer's pace, not a synchronisation
        writer.finish()
        for killed in list(restarts.values()):  # a restart planned past the end: start now
            downs.append((killed, time.monotonic() - down_at[killed]))
            target.start()
        if target.down:
            raise RuntimeError("podlog is down at the end of the writing")
        poll_until(target.ready, config.start_timeout_seconds, "the last incarnation's collector")
        if not up or up[-1][1] is not None:
            up.append((writer.tick, None))
        wrote = time.monotonic()
        say(f"[{config.name}] wrote {len(writer.lines)} lines in {wrote - begun:.0f}s; draining")
        lines_only = writer.truth([])
        state: dict[str, Any] = {"progress": None, "since": time.monotonic()}

        def drained() -> str | None:
            target.check_alive()
            if target.complete(lines_only):
                return "complete"
            progress = target.progress()
            if progress != state["progress"]:
                state.update(progress=progress, since=time.monotonic())
            return "settled" if time.monotonic() - state["since"] >= config.settle_seconds else None

        try:
            how = poll_until(drained, config.drain_timeout_seconds, "the drain", interval=0.5)
        except TimeoutError:
            how = "timeout"
        readback = target.finish()
        finished = time.monotonic()
    finally:
        target.close()
        writer.close()
    drained_ticks = writer.tick + round((finished - wrote) / tick_seconds)
    truth = writer.truth(up, max(1, round(config.find_seconds / tick_seconds)),
                         max(1, round(config.checkpoint_seconds / tick_seconds)), drained_ticks)
    report = check(truth, readback.delivered, readback.lost, ordered=target.ordered, keyed=target.keyed)
    _write_post_mortem(workdir, truth, readback.delivered)
    result = ScenarioResult(
        name=config.name, seed=config.writer.seed, report=report, writer_stats=writer.describe(), kills=downs,
        incarnations=readback.incarnations, exit_code=readback.exit_code, drain=how,
        harness_problems=writer.verify() + _lost_bytes_disagreement(report), source=podlog_source(),
        seconds={"write": wrote - begun, "drain": finished - wrote, "total": time.monotonic() - started},
        max_lag_seconds=max_lag,
    )
    (workdir / "report.txt").write_text(f"{result}\nup (ticks): {up}\n")
    return result
