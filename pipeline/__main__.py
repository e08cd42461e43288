"""The command line: `python -m pipeline <stage> [--preset NAME] [--set section.field=value]`.

Each stage lives in its own module with a pure core and two CLI hooks:
`configure_parser(parser)` adds the stage's own arguments and `main(args) -> int` runs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.config import DEFAULT_PRESET, ConfigError
from pipeline.data_io import StageInputError
from pipeline.schema import CorpusError

# name -> (module, one-line help). Modules are imported only when their stage runs.
STAGES: dict[str, tuple[str, str]] = {
    "corpus-stats": ("pipeline.corpus_stats", "validate the corpus and print its label statistics"),
    "generate": ("pipeline.generate", "generate labeled commands with LLMs (balanced, resumable)"),
    "label": ("pipeline.label", "re-label generated commands with other LLMs and keep agreements"),
    "clean": ("pipeline.clean", "normalize, validate and remove exact duplicates"),
    "dedup": ("pipeline.dedup", "remove near-duplicates found with sentence embeddings"),
    "split": ("pipeline.split", "leakage-free train/validation/test splits and the data report"),
    "train": ("pipeline.train", "fine-tune the seven-output BERT classifier"),
    "evaluate": ("pipeline.evaluate", "tune thresholds, compare with baselines, write eval report"),
    "stage": ("pipeline.stage", "write Hub-ready dataset, model and Space folders with cards"),
    "publish": ("pipeline.publish", "upload the staged folders to the Hugging Face Hub"),
    "all": ("pipeline.run_all", "clean, dedup, split, train, evaluate and stage in one go"),
    "bench-generate": ("pipeline.bench_generate", "benchmark generation against a local server"),
    "bench-dedup": ("pipeline.bench_dedup", "benchmark embedding and near-duplicate search"),
    "bench-infer": ("pipeline.bench_infer", "benchmark CPU inference backends"),
    "serve": ("pipeline.serve", "serve the gate over HTTP: /v1/classify, /v1/moderations, /healthz"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only the `selected` stage's module is imported to add its own arguments."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lm-action {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name, (module_name, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text, description=help_text)
        stage_parser.add_argument(
            "--preset", default=DEFAULT_PRESET, help="preset name in configs/ or a TOML/YAML path"
        )
        stage_parser.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.FIELD=VALUE",
            help="override one config field (repeatable)",
        )
        stage_parser.add_argument("--build-dir", type=Path, default=Path("build"), help="output root")
        stage_parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        stage_parser.set_defaults(_module=module_name)
        if name == selected:
            importlib.import_module(module_name).configure_parser(stage_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    selected = argv[0] if argv and argv[0] in STAGES else None
    args = build_parser(selected).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except (ConfigError, CorpusError, StageInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: work done so far is kept; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
