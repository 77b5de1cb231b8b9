"""Lifecycle faults at node size, repeated: what ``tests/e2e/lifecycle`` checks in CI, N times over.

Each run writes numbered lines from 30 pods (~1,000 lines/s together) plus a
noisy pod at ten times a pod's rate for about 75 s into a kubelet-faithful
fake node root (``tests/e2e/lifecycle/writer.py``: 256 KiB rotation as
kubelet or dockerd does it, gzip of older generations, copytruncate for a
tenth of the files, container restarts and exits, pod churn, lines over
16 KiB cut mid-character), SIGKILLs podlog three times (down 0.5-8 s each),
stops it cleanly, reads every record back with an independent client and
compares line by line (``tests/e2e/lifecycle/checker.py``).  Run ``i`` uses
seed ``--seed + i``, so a failing run can be repeated alone.

Prints one line per run, then a table per format and mode: runs with every
zero condition met, the worst figure of each condition, and how many runs
failed each.

    python bench/lifecycle_faults.py                          # 10 runs of cri, docker x agent, run
    python bench/lifecycle_faults.py --runs 3 --format cri --mode agent
    python bench/lifecycle_faults.py --runs 1 --seconds 30 --pods 8 --rate 200 --max-size 32768

``--mode agent`` starts a tansu broker of its own per run, on memory
storage (only podlog is killed; the broker stays up), and stops it after the
run, as every podlog process, by its PID.  On moto's S3 storage, reading a
75 s run's topic back (about 20,000 messages) took longer than two minutes.  Run directories are removed
unless ``--keep`` or the run failed (each holds the node's files, ``delivered.jsonl`` and
``report.txt``).  The podlog under test is the one ``python -m podlog``
imports from the current directory and ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# Keep bench/ off the import path (bench/collector.py is named like the package).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

from tests.e2e.lifecycle.checker import tally  # noqa: E402
from tests.e2e.lifecycle.scenario import Mode, ScenarioConfig, ScenarioResult, run_scenario  # noqa: E402
from tests.e2e.lifecycle.targets import podlog_source  # noqa: E402
from tests.e2e.lifecycle.writer import Format, WriterConfig  # noqa: E402
from tests.fixtures.servers import start_tansu  # noqa: E402

FIGURES: tuple[tuple[str, Callable[[ScenarioResult], int | None]], ...] = (
    ("dedup_dup", lambda r: r.report.dedup_duplicates),
    ("missing_existing", lambda r: r.report.missing_existing),
    ("out_of_order", lambda r: r.report.out_of_order),
    ("garbage", lambda r: r.report.garbage),
    ("fffd", lambda r: r.report.fffd),
    ("lost_excess", lambda r: max(0, abs(r.report.lost_difference) - r.report.lost_tolerance)),
    ("key_violations", lambda r: r.report.key_violations),
    ("missing_deleted", lambda r: r.report.missing_deleted_seen + r.report.missing_deleted_unseen),
    ("partial", lambda r: r.report.partial_after_loss),
    ("raw_dup", lambda r: r.report.raw_duplicates),
)
"""Columns of the summary: the worst value over the runs (the last three are figures, not conditions)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per format and mode (default 10)")
    parser.add_argument("--format", choices=["cri", "docker", "both"], default="both")
    parser.add_argument("--mode", choices=["agent", "run", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first run; run i uses seed + i")
    parser.add_argument("--pods", type=int, default=30, help="ordinary pods at the start (a noisy one comes on top)")
    parser.add_argument("--rate", type=float, default=1000.0, help="lines/s of the ordinary pods together")
    parser.add_argument("--noisy-factor", type=float, default=10.0, help="the noisy pod's rate, in pods")
    parser.add_argument("--max-size", type=int, default=256 * 1024, help="rotation size in bytes (default 256 KiB)")
    parser.add_argument("--max-files", type=int, default=5, help="files kept per container, the live one included")
    parser.add_argument("--seconds", type=float, default=75.0, help="seconds of writing per run")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per run")
    parser.add_argument("--down-min", type=float, default=0.5, help="shortest time down after a SIGKILL, s")
    parser.add_argument("--down-max", type=float, default=8.0, help="longest time down after a SIGKILL, s")
    parser.add_argument("--settle", type=float, default=10.0, help="the drain ends after this long without change")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory")
    parser.add_argument("--workdir", type=Path, default=None, help="where run directories go (default: a temp dir)")
    return parser.parse_args()


def scenario(args: argparse.Namespace, fmt: Format, mode: Mode, seed: int) -> ScenarioConfig:
    writer = WriterConfig(
        seed=seed, format=fmt, pods=args.pods, lines_per_second=args.rate, noisy_factor=args.noisy_factor,
        max_size=args.max_size, max_files=args.max_files,
    )  # fmt: skip
    return ScenarioConfig(
        writer=writer, mode=mode, write_seconds=args.seconds, kills=args.kills,
        down_seconds=(args.down_min, args.down_max), settle_seconds=args.settle,
    )  # fmt: skip


def shown(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def summary(results: list[ScenarioResult]) -> str:
    """One table row per format and mode, plus the conditions that failed and how often."""
    groups: dict[str, list[ScenarioResult]] = defaultdict(list)
    for result in results:
        groups[result.name].append(result)
    header = ["scenario", "runs", "passed", *(name for name, _ in FIGURES), "max_drain_s"]
    rows = [header]
    for name, group in sorted(groups.items()):
        worst = []
        for _, figure in FIGURES:
            values = [v for v in (figure(r) for r in group) if v is not None]
            worst.append(shown(max(values)) if values else "n/a")
        drain = max(r.seconds["drain"] for r in group)
        rows.append([name, str(len(group)), str(sum(r.ok for r in group)), *worst, f"{drain:.0f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    for name, group in sorted(groups.items()):
        failed = tally(r.report for r in group)
        failed.update(f for r in group for f in r.failures() if f.startswith(("clean stop", "harness")))
        if failed:
            lines.append(f"{name} failed: " + "; ".join(f"{cond} in {n} run(s)" for cond, n in failed.most_common()))
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM stops the series as Ctrl-C does: every process by its PID


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    formats: list[Format] = ["cri", "docker"] if args.format == "both" else [args.format]
    modes: list[Mode] = ["agent", "run"] if args.mode == "both" else [args.mode]
    base = args.workdir or Path(tempfile.mkdtemp(prefix="lifecycle-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"podlog under test: {podlog_source()}; runs under {base}", flush=True)
    results: list[ScenarioResult] = []
    errors: list[str] = []
    started = time.monotonic()
    try:
        for number in range(args.runs):
            for fmt in formats:
                for mode in modes:
                    config = scenario(args, fmt, mode, args.seed + number)
                    workdir = base / f"{fmt}-{mode}-{config.writer.seed}"
                    # A broker of its own per run: one in-memory broker holding every run's topics
                    # slowed down until the reader of the 27th run could not catch up in time.
                    servers = base / f"servers-{fmt}-{config.writer.seed}"
                    if mode == "agent":
                        servers.mkdir(parents=True, exist_ok=True)
                    kafka = start_tansu(servers) if mode == "agent" else None
                    result = None
                    try:
                        result = run_scenario(config, workdir, bootstrap=kafka.url if kafka else None,
                                              say=lambda _: None)
                    except Exception as exc:  # the harness itself failed: say so, keep the rest of the series
                        errors.append(f"[{fmt}/{mode} seed={config.writer.seed}] HARNESS ERROR {exc!r}")
                        print(errors[-1], flush=True)
                        continue
                    finally:
                        if kafka is not None:
                            kafka.stop()
                            if not args.keep:
                                shutil.rmtree(servers, ignore_errors=True)
                        # A failed run's directory is kept: its report, delivered.jsonl and the
                        # agent's own logs are what a post-mortem needs.
                        if not args.keep and result is not None and result.ok:
                            shutil.rmtree(workdir, ignore_errors=True)
                    results.append(result)
                    print(result.line(), flush=True)
    except KeyboardInterrupt:
        print("interrupted; summary of the finished runs:")
    finally:
        if not args.keep and args.workdir is None and not errors and all(r.ok for r in results):
            shutil.rmtree(base, ignore_errors=True)
        for result in results:
            if not result.ok:
                print(f"kept for a post-mortem: {base / (result.name.replace('/', '-') + f'-{result.seed}')}")
    print(f"\n{len(results)} runs in {time.monotonic() - started:.0f}s")
    print(summary(results))
    for error in errors:
        print(error)
    return 0 if results and not errors and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
