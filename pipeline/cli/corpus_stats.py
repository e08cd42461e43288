"""`python -m pipeline corpus-stats`: validate the corpus and print its label statistics.
Parses the arguments, reads the files, calls `pipeline.data.corpus_stats` and writes what it returns."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.core.config import bundled_corpus_files
from pipeline.core.schema import corpus_files, load_corpus
from pipeline.core.text_forms import corpus_figures, goal_report
from pipeline.data.corpus_stats import corpus_stats, format_goals, format_stats, rule_violations


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, help="corpus CSV files or folders (default: data/seed)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-rules", action="store_true", help="only validate and count; skip corpus rules")
    parser.add_argument(
        "--check-goals", action="store_true", help="also fail when a corpus goal (pipeline.core.text_forms.CORPUS_GOALS) is not met"
    )


def main(args: argparse.Namespace) -> int:
    files: list[Path] = []
    for path in args.paths:
        files.extend(corpus_files(path) if path.is_dir() else [path])
    files = files or bundled_corpus_files()
    frame = load_corpus(files)
    stats = corpus_stats(frame)
    figures = corpus_figures(frame)
    if args.json:
        print(json.dumps({**stats.to_dict(), "goals": figures}, indent=2))
    else:
        print(format_stats(stats))
        print(format_goals(figures))
    if args.no_rules:
        return 0
    violations = rule_violations(frame)
    missed = [g for g, _, met in goal_report(figures) if not met] if args.check_goals else []
    if violations:
        print(f"\n{len(violations)} corpus rule violation(s):")
        for v in violations[:100]:
            print(f"  {v}")
    if missed:
        print(f"\n{len(missed)} corpus goal(s) not met: {', '.join(g.name for g in missed)}")
    if violations or missed:
        return 1
    print("\nall corpus rules hold" + (" and every corpus goal is met" if args.check_goals else ""))
    return 0
