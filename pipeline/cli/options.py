"""What every command shares: `--preset`, `--set`, `--build-dir`, `-v`, one
`--section.field VALUE` option per field of the preset tables a command reads, and running a
command's `main(args)` with its errors printed as one line.

Used by `python -m pipeline <stage>` and by the benchmarks (`python -m benchmarks.bench_infer`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from pipeline.core.config import DEFAULT_PRESET, ConfigError, field_help, load_preset, show_value
from pipeline.core.io import StageInputError
from pipeline.core.schema import CorpusError

# Preset table -> the config dataclass that reads it.
SECTIONS: dict[str, str] = {
    "generate": "pipeline.llm.generate.config:GenerateConfig",
    "clean": "pipeline.data.clean:CleanConfig",
    "dedup": "pipeline.data.dedup:DedupConfig",
    "split": "pipeline.data.split:SplitConfig",
    "train": "pipeline.model.train:TrainConfig",
    "evaluate": "pipeline.model.evaluate:EvaluateConfig",
    "stage": "pipeline.hub.stage:StageConfig",
    "publish": "pipeline.hub.publish:PublishConfig",
}
OPTION_PREFIX = "config:"
# Longer defaults (the generation profiles) are summarized in `--help`.
HELP_VALUE_CHARS = 100


def show_table(table: str, block: str, readme: Path | None = None) -> int:
    """A benchmark's `--table` command: print `table`, or with `readme` put it in that file's
    `block` (`report.markdown.rewrite_block`); a file without the block exits with an error."""
    from pipeline.report.markdown import rewrite_block

    if readme is None:
        print(table)
        return 0
    try:
        rewrite_block(readme, block, table)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    return 0


def section_class(section: str) -> type:
    """The config dataclass of preset table `section`."""
    module_name, _, class_name = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """`--preset`, `--set`, `--build-dir` and `-v`, which every command takes."""
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="preset name in configs/ or a TOML/YAML path")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field (repeatable)",
    )
    parser.add_argument("--build-dir", type=Path, default=Path("build"), help="output root")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


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


def add_section_options(parser: argparse.ArgumentParser, sections: Sequence[str], argv: Sequence[str]) -> None:
    """The `--section.field VALUE` options of `sections`, with the values of the preset `argv`
    names shown in the help."""
    if not sections:
        return
    usage = parser.format_usage().removeprefix("usage: ").rstrip()
    parser.usage = f"{usage} [--SECTION.FIELD VALUE ...]"
    preset = preset_named(list(argv))
    for section in sections:
        add_config_options(parser, section, preset)


def help_value(value: object) -> str:
    """A default or preset value as `--help` shows it: as `--set` takes it, or its length."""
    shown = show_value(value)
    if len(shown) > HELP_VALUE_CHARS and isinstance(value, (list, tuple, dict)):
        return f"{len(value)} entries"
    return shown


def preset_named(argv: list[str]) -> tuple[str, dict]:
    """The name and tables of the preset `argv` names (or the default one), for `--help`."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=DEFAULT_PRESET)
    name = pre.parse_known_args(argv)[0].preset
    try:
        return Path(name).stem, load_preset(name)
    except ConfigError:
        return name, {}


def config_options_as_overrides(args: argparse.Namespace) -> list[str]:
    """The `--section.field VALUE` options given, as `section.field=VALUE` overrides."""
    return [
        f"{dest.removeprefix(OPTION_PREFIX)}={value}"
        for dest, value in vars(args).items()
        if dest.startswith(OPTION_PREFIX)
    ]


def fold_config_options(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with its `--section.field VALUE` options joined to `args.overrides` after the
    `--set` ones (so they win)."""
    args.overrides = [*args.overrides, *config_options_as_overrides(args)]
    for dest in [d for d in vars(args) if d.startswith(OPTION_PREFIX)]:
        delattr(args, dest)
    return args


def run_main(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command's `main(args)` with logging set up; a config, corpus or input error is one
    line on stderr and exit status 2."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(main(args) or 0)
    except (ConfigError, CorpusError, StageInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: work done so far is kept; run the same command to resume", file=sys.stderr)
        return 130


def script_main(
    prog: str,
    description: str,
    configure_parser: Callable[[argparse.ArgumentParser], None],
    main: Callable[[argparse.Namespace], int | None],
    sections: Sequence[str] = (),
    argv: Sequence[str] | None = None,
) -> int:
    """A command outside `python -m pipeline` (a benchmark) with the stages' shared options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_run_options(parser)
    configure_parser(parser)
    add_section_options(parser, sections, argv)
    return run_main(main, fold_config_options(parser.parse_args(argv)))
