"""The command line: every field of the preset tables a stage reads is listed by the stage's
`--help` with its default and help text, and can be set as `--section.field VALUE`."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.__main__ import STAGE_SECTIONS, main, parse_args
from pipeline.cli.options import SECTIONS, help_value, section_class
from pipeline.core.config import field_help, load_preset, stage_config
from pipeline.data.clean import CleanConfig


def stage_help(stage: str, capsys, monkeypatch, *extra: str) -> str:
    # Wide enough that argparse wraps no help line.
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit) as exited:
        main([stage, *extra, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def help_line(out: str, option: str) -> str:
    """The help of `option`: its line and the one below when argparse moves the text there."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{option} "))
    below = lines[at + 1] if at + 1 < len(lines) and not lines[at + 1].lstrip().startswith("-") else ""
    return f"{lines[at]} {below.strip()}"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_config_field_has_help_text(section):
    missing = [f.name for f in field_help(section_class(section)) if not f.help.strip()]
    assert missing == []


@pytest.mark.parametrize("stage", sorted(STAGE_SECTIONS))
def test_stage_help_lists_each_field_with_its_help_and_default(stage, capsys, monkeypatch):
    out = stage_help(stage, capsys, monkeypatch)
    for section in STAGE_SECTIONS[stage]:
        assert f"[{section}] settings" in out
        for item in field_help(section_class(section)):
            line = help_line(out, f"--{section}.{item.name}")
            assert item.help in line
            assert f"default: {help_value(item.default)}" in line


def test_train_help_names_the_backbone_and_the_presets_value(capsys, monkeypatch):
    out = stage_help("train", capsys, monkeypatch, "--preset", "cpu-quick")
    line = help_line(out, "--train.epochs")
    preset_epochs = load_preset("cpu-quick")["train"]["epochs"]
    assert "passes over the (augmented) training split" in line
    assert f"default: 3.0; cpu-quick: {preset_epochs}" in line


def test_a_config_option_sets_the_field_and_wins_over_set(tmp_path):
    args = parse_args(["clean", "--set", "clean.min_words=4", "--clean.min_words", "5", "--clean.strip_quotes", "false"])
    config = stage_config(CleanConfig, "clean", None, args.overrides)
    assert (config.min_words, config.strip_quotes) == (5, False)
    assert args.overrides == ["clean.min_words=4", "clean.min_words=5", "clean.strip_quotes=false"]


def test_field_help_reads_setting_metadata():
    (item,) = [f for f in field_help(CleanConfig) if f.name == "seed_dir"]
    assert item.type == "str" and item.default == ""
    assert item.help == dataclasses.fields(CleanConfig)[-1].metadata["help"]


def test_list_defaults_are_copied_per_instance():
    from pipeline.data.split import SplitConfig

    first, second = SplitConfig(), SplitConfig()
    first.fractions.append(0.0)
    assert second.fractions == [0.8, 0.1, 0.1]
