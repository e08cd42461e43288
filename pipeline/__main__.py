"""The command line: `python -m pipeline <stage> [--preset NAME] [--set section.field=value]`.

Each stage has a pure core in its subpackage (`pipeline.data.clean.clean`) and a module under
`pipeline.cli` with two hooks: `configure_parser(parser)` adds the stage's own arguments and
`main(args) -> int` parses them, reads the files, calls the core and writes its outputs.
Every field of the preset tables a stage reads is also an option, `--section.field VALUE`, listed
by the stage's `--help` with its default and help text.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline import __version__
from pipeline.cli.options import SECTIONS, add_run_options, add_section_options, fold_config_options, run_main

# name -> (module, one-line help). Modules are imported only when their stage runs.
STAGES: dict[str, tuple[str, str]] = {
    "corpus-stats": ("pipeline.cli.corpus_stats", "validate the corpus and print its label statistics"),
    "generate": ("pipeline.cli.generate", "generate labeled commands with LLMs (balanced, resumable)"),
    "label": ("pipeline.cli.label", "re-label generated commands with other LLMs and keep agreements"),
    "clean": ("pipeline.cli.clean", "normalize, validate and remove exact duplicates"),
    "dedup": ("pipeline.cli.dedup", "remove near-duplicates found with sentence embeddings"),
    "split": ("pipeline.cli.split", "leakage-free train/validation/test splits and the data report"),
    "train": ("pipeline.cli.train", "fine-tune the seven-output BERT classifier"),
    "evaluate": ("pipeline.cli.evaluate", "tune thresholds, compare with baselines, write eval report"),
    "stage": ("pipeline.cli.stage", "write Hub-ready dataset, model and Space folders with cards"),
    "publish": ("pipeline.cli.publish", "upload the staged folders to the Hugging Face Hub"),
    "all": ("pipeline.cli.run_all", "clean, dedup, split, train, evaluate and stage in one go"),
    "compare": ("pipeline.cli.compare", "one table of several trained models from their reports"),
    "serve": ("pipeline.cli.serve", "serve the gate over HTTP: /v1/classify, /v1/moderations, /healthz"),
    "transport": ("pipeline.cli.transport", "pack a model without its fixed embeddings as fp16, or unpack one"),
}

# Stage -> the preset tables it reads (`label` reads its settings from `[generate]`).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "generate": ("generate",),
    "label": ("generate",),
    "clean": ("clean",),
    "dedup": ("dedup",),
    "split": ("split", "dedup", "clean"),
    "train": ("train",),
    "evaluate": ("evaluate",),
    "stage": ("stage", "publish"),
    "publish": ("publish",),
    "all": tuple(SECTIONS),
}


def build_parser(selected: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only the `selected` stage's module (and those of the preset tables it
    reads) is imported to add its own arguments."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lm-action {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name, (module_name, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text, description=help_text)
        add_run_options(stage_parser)
        stage_parser.set_defaults(_module=module_name)
        if name == selected:
            importlib.import_module(module_name).configure_parser(stage_parser)
            add_section_options(stage_parser, STAGE_SECTIONS.get(name, ()), argv or [])
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The arguments of one stage run; `--section.field VALUE` options join `args.overrides`
    after the `--set` ones (so they win)."""
    selected = argv[0] if argv and argv[0] in STAGES else None
    return fold_config_options(build_parser(selected, argv).parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_main(importlib.import_module(args._module).main, args)


if __name__ == "__main__":
    sys.exit(main())
