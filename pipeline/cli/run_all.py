"""`all`: the full pipeline on the bundled corpus, stage after stage, into the build folder.

`generate` and `label` run first when models are configured (they say so and do nothing otherwise);
then clean, dedup, split, train, evaluate and stage. A failed stage stops the run; everything
written by the stages before it stays on disk.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

TIMINGS_REPORT = "pipeline_timings.json"
STAGE_ORDER: tuple[str, ...] = ("generate", "label", "clean", "dedup", "split", "train", "evaluate", "stage")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip", action="append", default=[], choices=STAGE_ORDER, help="leave out a stage (repeatable)"
    )
    parser.add_argument("--from", dest="start", choices=STAGE_ORDER, help="start at this stage")


def stage_argv(stage: str, args: argparse.Namespace) -> list[str]:
    argv = [stage, "--preset", str(args.preset), "--build-dir", str(args.build_dir)]
    for override in args.overrides:
        argv += ["--set", override]
    if args.verbose:
        argv.append("--verbose")
    return argv


def main(args: argparse.Namespace) -> int:
    from pipeline.__main__ import main as run_stage

    stages = list(STAGE_ORDER)
    if args.start:
        stages = stages[stages.index(args.start) :]
    stages = [s for s in stages if s not in args.skip]
    timings: dict[str, float] = {}
    for stage in stages:
        log.info("== %s ==", stage)
        started = time.perf_counter()
        code = run_stage(stage_argv(stage, args))
        timings[stage] = time.perf_counter() - started
        if code != 0:
            log.error("stage %s failed with exit code %d; earlier outputs are kept in %s", stage, code, args.build_dir)
            return code
    summary = ", ".join(f"{s} {t:.0f}s" for s, t in timings.items())
    log.info("pipeline done in %.0fs (%s)", sum(timings.values()), summary)
    write_timings(Path(args.build_dir) / "reports" / TIMINGS_REPORT, timings, args)
    return 0


def write_timings(path: Path, timings: dict[str, float], args: argparse.Namespace) -> None:
    """The wall time of every stage of one `all` run, with the preset, overrides and host."""
    from pipeline.core.host import host_meta
    from pipeline.core.io import write_json

    write_json(
        path,
        {
            "stages_s": {stage: round(seconds, 1) for stage, seconds in timings.items()},
            "total_s": round(sum(timings.values()), 1),
            "preset": str(args.preset),
            "overrides": list(args.overrides),
            **host_meta(),
        },
    )
