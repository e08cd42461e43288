"""`python -m pipeline split`: leakage-free train/validation/test splits and the data report.
Parses the arguments, reads the files, calls `pipeline.data.split` and writes what it returns."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from pipeline.core.config import BuildLayout, stage_config, to_dict
from pipeline.core.io import read_stage_output, write_frame, write_json
from pipeline.data.dedup import EMBEDDING, LEXICAL, DedupConfig, build_spaces, make_embedder
from pipeline.data.split import (
    CHALLENGE,
    CLUSTER_ID,
    SPLIT,
    SPLITS,
    SplitConfig,
    challenge_split,
    read_challenge,
    split,
    to_dataset_dict,
    write_hub_dataset,
)

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-report", action="store_true", help="skip the data report (and its what-if table)")


def main(args: argparse.Namespace) -> int:
    config = stage_config(SplitConfig, "split", args.preset, args.overrides)
    dedup_config = stage_config(DedupConfig, "dedup", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    frame = read_stage_output(layout.deduped, "dedup")
    embedder = make_embedder(dedup_config, layout.cache)
    spaces = build_spaces(frame, dedup_config, embedder)
    dedup_thresholds = dedup_config.thresholds()
    loosest = {k: min(v, dedup_thresholds[k]) for k, v in config.link_thresholds().items()}
    pairs = spaces.search(loosest, dedup_config, embedder.device)
    result = split(frame, pairs.above(config.link_thresholds()), pairs.above(dedup_thresholds), config)
    if result.cross_split_pairs or result.straddling_groups:
        log.error(
            "%d near-duplicate pair(s) and %d group(s) cross splits: nothing written",
            result.cross_split_pairs,
            result.straddling_groups,
        )
        return 1
    layout.splits.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        write_frame(layout.splits / f"{name}.parquet", result.frame[result.frame[SPLIT] == name].reset_index(drop=True))
    from pipeline.data.clean import CleanConfig, read_bundled_corpus

    clean_config = stage_config(CleanConfig, "clean", args.preset, args.overrides)
    challenge_rows = read_challenge(config, clean_config, read_bundled_corpus(layout, clean_config))
    challenge = None
    (layout.splits / f"{CHALLENGE}.parquet").unlink(missing_ok=True)
    if challenge_rows is not None:
        joint = pd.concat([result.frame.drop(columns=[SPLIT, CLUSTER_ID]), challenge_rows], ignore_index=True)
        joint_pairs = build_spaces(joint, dedup_config, embedder).search(loosest, dedup_config, embedder.device)
        challenge = challenge_split(result.frame, challenge_rows, joint_pairs, config.link_thresholds(), dedup_thresholds)
        write_frame(layout.splits / f"{CHALLENGE}.parquet", challenge.frame)
        left = {k: len(v) for k, v in challenge.left_out.items()}
        print(f"challenge: {len(challenge.frame)} of {len(challenge_rows)} rows kept; left out: {left}")
    everything = result.frame if challenge is None else pd.concat([result.frame, challenge.frame], ignore_index=True)
    dataset_dict = to_dataset_dict(everything)
    write_hub_dataset(dataset_dict, layout.hub_dataset)
    counts = result.counts()
    if challenge is not None:
        counts[CHALLENGE] = int(len(challenge.frame))
    print("split: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; {len(np.unique(result.frame[CLUSTER_ID]))} groups")
    print(f"cross-split pairs above the dedup threshold: {result.cross_split_pairs}")
    print(f"wrote {layout.splits}/ and {layout.hub_dataset / 'data'}/")
    summary = {
        "rows": counts,
        "groups": int(result.frame[CLUSTER_ID].nunique()),
        "largest_group": int(max(result.group_sizes)),
        "group_size_histogram": {str(k): v for k, v in result.group_sizes.items()},
        "cross_split_pairs_above_dedup_threshold": result.cross_split_pairs,
        "groups_straddling_splits": result.straddling_groups,
        "link_pairs": {k: int((pairs.above(config.link_thresholds()).space == k).sum()) for k in (EMBEDDING, LEXICAL)},
        "challenge": None
        if challenge is None
        else {"rows": int(len(challenge.frame)), "input_rows": int(len(challenge_rows)), "left_out": challenge.left_out},
        "config": to_dict(config),
    }
    write_json(layout.reports / "split.json", summary)
    if config.report and not args.no_report:
        from pipeline.report.data_report import write_data_report

        paths = write_data_report(layout, result, spaces, config, dedup_config, embedder)
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0
