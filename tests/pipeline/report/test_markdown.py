"""The one number formatter and Markdown table of the reports and cards."""

import math

import pytest

from pipeline.report.markdown import fmt, markdown_table, rewrite_block


def test_fmt_shows_none_and_nan_as_not_available():
    assert fmt(None) == "n/a" and fmt(math.nan) == "n/a" and fmt([0.5, math.nan], 2) == "0.50 / n/a"


def test_fmt_rounds_floats_and_spells_booleans():
    assert (fmt(0.123456), fmt(0.5, 1), fmt(True), fmt(3)) == ("0.1235", "0.5", "yes", "3")


def test_table_escapes_pipes_and_newlines_and_aligns_numbers_right():
    table = markdown_table(["name", "rows"], [["a|b\nc", 3], ["d", math.nan]], right_aligned=[1])
    assert table.splitlines() == [
        "| name | rows |",
        "| --- | ---: |",
        "| a\\|b c | 3 |",
        "| d | n/a |",
    ]


def test_rewrite_block_replaces_only_the_named_block(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("a\n<!-- t: start -->\nold\n<!-- t: end -->\nb\n<!-- u: start -->\nkeep\n<!-- u: end -->\n")
    rewrite_block(path, "t", "| new |\n")
    assert path.read_text() == "a\n<!-- t: start -->\n| new |\n<!-- t: end -->\nb\n<!-- u: start -->\nkeep\n<!-- u: end -->\n"


def test_rewrite_block_names_a_missing_block_and_leaves_the_file(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("no markers\n")
    with pytest.raises(ValueError, match=r"README\.md: no <!-- t: start --> \.\.\. <!-- t: end --> block"):
        rewrite_block(path, "t", "x")
    assert path.read_text() == "no markers\n"
