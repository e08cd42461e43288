"""`python -m pipeline stage`: write Hub-ready dataset, model and Space folders with cards.
Parses the arguments, reads the files, calls `pipeline.hub.stage` and writes what it returns."""

from __future__ import annotations

import argparse
import sys

from pipeline.core.config import BuildLayout, stage_config
from pipeline.core.io import StageInputError
from pipeline.hub.cards.checks import CardError
from pipeline.hub.manifest import MANIFEST, human_size
from pipeline.hub.stage import StageConfig, stage
from pipeline.model.onnx_export import OnnxParityError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (parser.description or "") + " (repo ids come from the [publish] table)"


def main(args: argparse.Namespace) -> int:
    from pipeline.hub.publish import PublishConfig

    config = stage_config(StageConfig, "stage", args.preset, args.overrides)
    repos = stage_config(PublishConfig, "publish", args.preset, args.overrides).hub_repos()
    layout = BuildLayout(args.build_dir)
    try:
        result = stage(layout, config, repos)
    except (StageInputError, CardError, OnnxParityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, folder in result.folders.items():
        print(f"{kind:<8} {folder.path}: {len(folder.files)} files, {human_size(folder.size_bytes)}")
    print(f"data hash {result.release.data_hash}")
    print(f"wrote {layout.reports / MANIFEST}; publish with `python -m pipeline publish --dry-run` first")
    return 0
