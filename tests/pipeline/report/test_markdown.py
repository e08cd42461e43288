"""The one number formatter and Markdown table of the reports and cards."""

import math

from pipeline.report.markdown import fmt, markdown_table


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
