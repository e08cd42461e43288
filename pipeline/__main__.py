"""The command line: `python -m pipeline <stage> [--preset NAME] [--set section.field=value]`.

Each stage lives in its own module with a pure core and two CLI hooks:
`configure_parser(parser)` adds the stage's own arguments and `main(args) -> int` runs it.
Every field of the preset tables a stage reads is also an option, `--section.field VALUE`, listed
by the stage's `--help` with its default and help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.core.config import DEFAULT_PRESET, ConfigError, field_help, load_preset, show_value
from pipeline.core.io import StageInputError
from pipeline.core.schema import CorpusError

# name -> (module, one-line help). Modules are imported only when their stage runs.
STAGES: dict[str, tuple[str, str]] = {
    "corpus-stats": ("pipeline.data.corpus_stats", "validate the corpus and print its label statistics"),
    "generate": ("pipeline.llm.generate", "generate labeled commands with LLMs (balanced, resumable)"),
    "label": ("pipeline.llm.label", "re-label generated commands with other LLMs and keep agreements"),
    "clean": ("pipeline.data.clean", "normalize, validate and remove exact duplicates"),
    "dedup": ("pipeline.data.dedup", "remove near-duplicates found with sentence embeddings"),
    "split": ("pipeline.data.split", "leakage-free train/validation/test splits and the data report"),
    "train": ("pipeline.model.train", "fine-tune the seven-output BERT classifier"),
    "evaluate": ("pipeline.model.evaluate", "tune thresholds, compare with baselines, write eval report"),
    "stage": ("pipeline.hub.stage", "write Hub-ready dataset, model and Space folders with cards"),
    "publish": ("pipeline.hub.publish", "upload the staged folders to the Hugging Face Hub"),
    "all": ("pipeline.run_all", "clean, dedup, split, train, evaluate and stage in one go"),
    "bench-generate": ("pipeline.bench_generate", "benchmark generation against a local server"),
    "bench-dedup": ("pipeline.bench_dedup", "benchmark embedding and near-duplicate search"),
    "bench-infer": ("pipeline.bench_infer", "benchmark CPU inference backends"),
    "compare": ("pipeline.report.compare", "one table of several trained models from their reports"),
    "serve": ("pipeline.serve", "serve the gate over HTTP: /v1/classify, /v1/moderations, /healthz"),
}


# Preset table -> the config dataclass that reads it.
SECTIONS: dict[str, str] = {
    "generate": "pipeline.llm.generate:GenerateConfig",
    "clean": "pipeline.data.clean:CleanConfig",
    "dedup": "pipeline.data.dedup:DedupConfig",
    "split": "pipeline.data.split:SplitConfig",
    "train": "pipeline.model.train:TrainConfig",
    "evaluate": "pipeline.model.evaluate:EvaluateConfig",
    "stage": "pipeline.hub.stage:StageConfig",
    "publish": "pipeline.hub.publish:PublishConfig",
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
    "bench-generate": ("generate",),
}
OPTION_PREFIX = "config:"
# Longer defaults (the generation profiles) are summarized in `--help`.
HELP_VALUE_CHARS = 100


def section_class(section: str) -> type:
    """The config dataclass of preset table `section`."""
    module_name, _, class_name = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def add_config_options(parser: argparse.ArgumentParser, section: str, preset: tuple[str, dict]) -> None:
    """One `--section.field VALUE` option per field of `section`'s config, in a group of its own;
    the help gives the field's default and, where the preset sets another value, the preset's."""
    group = parser.add_argument_group(
        f"[{section}] settings", f"also --set {section}.FIELD=VALUE; the preset's values win over defaults"
    )
    preset_name, tables = preset
    preset_values = tables.get(section, {})
    for item in field_help(section_class(section)):
        shown = "required" if item.default is dataclasses.MISSING else f"default: {help_value(item.default)}"
        if item.name in preset_values and show_value(preset_values[item.name]) != show_value(item.default):
            shown += f"; {preset_name}: {help_value(preset_values[item.name])}"
        group.add_argument(
            f"--{section}.{item.name}",
            dest=f"{OPTION_PREFIX}{section}.{item.name}",
            default=argparse.SUPPRESS,
            metavar=item.type.upper().replace(" ", ""),
            help=f"{item.help} ({shown})".replace("%", "%%"),
        )


def help_value(value: object) -> str:
    """A default or preset value as `--help` shows it: as `--set` takes it, or its length."""
    shown = show_value(value)
    if len(shown) > HELP_VALUE_CHARS and isinstance(value, (list, tuple, dict)):
        return f"{len(value)} entries"
    return shown


def _preset_named(argv: list[str]) -> tuple[str, dict]:
    """The name and tables of the preset `argv` names (or the default one), for `--help`."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=DEFAULT_PRESET)
    name = pre.parse_known_args(argv)[0].preset
    try:
        return Path(name).stem, load_preset(name)
    except ConfigError:
        return name, {}


def build_parser(selected: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only the `selected` stage's module (and those of the preset tables it
    reads) is imported to add its own arguments."""
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
            preset = _preset_named(argv or [])
            if STAGE_SECTIONS.get(name):
                usage = stage_parser.format_usage().removeprefix("usage: ").rstrip()
                stage_parser.usage = f"{usage} [--SECTION.FIELD VALUE ...]"
            for section in STAGE_SECTIONS.get(name, ()):
                add_config_options(stage_parser, section, preset)
    return parser


def config_options_as_overrides(args: argparse.Namespace) -> list[str]:
    """The `--section.field VALUE` options given, as `section.field=VALUE` overrides."""
    return [
        f"{dest.removeprefix(OPTION_PREFIX)}={value}"
        for dest, value in vars(args).items()
        if dest.startswith(OPTION_PREFIX)
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The arguments of one stage run; `--section.field VALUE` options join `args.overrides`
    after the `--set` ones (so they win)."""
    selected = argv[0] if argv and argv[0] in STAGES else None
    args = build_parser(selected, argv).parse_args(argv)
    args.overrides = [*args.overrides, *config_options_as_overrides(args)]
    for dest in [d for d in vars(args) if d.startswith(OPTION_PREFIX)]:
        delattr(args, dest)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
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
