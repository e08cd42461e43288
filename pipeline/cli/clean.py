"""`python -m pipeline clean`: normalize, validate and remove exact duplicates.
Parses the arguments, reads the files, calls `pipeline.data.clean` and writes what it returns."""

from __future__ import annotations

import argparse
import json

from pipeline.core.config import BuildLayout, stage_config
from pipeline.data.clean import CleanConfig, clean, read_inputs, write_outputs


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def main(args: argparse.Namespace) -> int:
    config = stage_config(CleanConfig, "clean", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    result = clean(read_inputs(config, layout), config)
    summary = write_outputs(result, layout, config)
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        removed = ", ".join(f"{k} {v}" for k, v in summary["removed"].items())
        print(f"clean: {summary['input_rows']} -> {summary['output_rows']} rows (removed: {removed})")
        print(f"exact duplicates with conflicting labels: {summary['exact_duplicate_conflict_groups']} group(s)")
        print(f"wrote {layout.cleaned} and {layout.reports / 'clean.json'}")
    return 0
