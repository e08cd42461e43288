"""`python -m pipeline dedup`: remove near-duplicates found with sentence embeddings.
Parses the arguments, reads the files, calls `pipeline.data.dedup` and writes what it returns."""

from __future__ import annotations

import argparse
import json

from pipeline.core.config import BuildLayout, stage_config, to_dict
from pipeline.core.io import read_stage_output, write_frame, write_json
from pipeline.data.dedup import DedupConfig, build_spaces, make_embedder, merge_near_duplicates


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def main(args: argparse.Namespace) -> int:
    config = stage_config(DedupConfig, "dedup", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    frame = read_stage_output(layout.cleaned, "clean")
    embedder = make_embedder(config, layout.cache)
    spaces = build_spaces(frame, config, embedder)
    pairs = spaces.search(config.thresholds(), config, embedder.device)
    result = merge_near_duplicates(frame, pairs, spaces, config.thresholds())
    write_frame(layout.deduped, result.frame)
    write_frame(layout.reports / "dedup_removed.csv", result.removed)
    write_frame(layout.reports / "dedup_conflicts.csv", result.conflicts)
    summary = {
        **result.summary(),
        "embedding": {"model": config.model, "device": embedder.device, **embedder.stats},
        "seconds": {k: round(v, 2) for k, v in spaces.timings.items()},
        "config": to_dict(config),
    }
    write_json(layout.reports / "dedup.json", summary)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(
            f"dedup: {summary['input_rows']} -> {summary['output_rows']} rows "
            f"({summary['removed_near_duplicates']} near-duplicates removed, "
            f"{summary['clusters_with_duplicates']} clusters); "
            f"{summary['label_conflict_pairs']} label-conflict pair(s) for review "
            f"({summary['label_conflict_contrast_pairs']} are contrast pairs)"
        )
        print(f"embedded {embedder.stats['embedded']} text(s), {embedder.stats['cached']} from cache")
        print(f"wrote {layout.deduped}, {layout.reports / 'dedup_removed.csv'}, {layout.reports / 'dedup_conflicts.csv'}")
    return 0
