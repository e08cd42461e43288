"""`python -m pipeline compare`: one table of several trained models from their reports.
Parses the arguments, reads the files, calls `pipeline.report.compare` and writes what it returns."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.io import write_json
from pipeline.report.compare import compare, render_markdown


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="append", required=True, metavar="NAME=FOLDER",
                        help="a run's name and the folder of its eval.json, train.json and bench_infer.json (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder of comparison.json and comparison.md")


def parse_runs(values: list[str]) -> dict[str, Path]:
    runs: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"error: --run {value!r}: expected NAME=FOLDER")
        if name in runs:
            raise SystemExit(f"error: --run {name!r} given twice")
        runs[name] = Path(folder)
    return runs


def main(args: argparse.Namespace) -> int:
    try:
        result = compare(parse_runs(args.run))
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from exc
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "comparison.json", result)
    (args.out / "comparison.md").write_text(render_markdown(result), encoding="utf-8")
    print(f"compared {len(result['runs'])} run(s): {args.out / 'comparison.md'}")
    return 0
