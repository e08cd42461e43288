"""Markdown for the reports and cards: one number formatter and one table."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence


def fmt(value: Any, digits: int = 4) -> str:
    """A value as a table cell: floats to `digits` places, None and NaN as n/a, booleans as
    yes/no, lists and tuples joined by " / "."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return " / ".join(fmt(v, digits) for v in value)
    return str(value)


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], right_aligned: Iterable[int] = ()
) -> str:
    """A GitHub-flavoured Markdown table of `fmt` cells; `|` and newlines inside cells are
    escaped; the columns at the `right_aligned` positions are aligned right (numbers)."""

    def cell(value: Any) -> str:
        return fmt(value).replace("|", "\\|").replace("\n", " ")

    right = set(right_aligned)
    rule = "|" + "|".join(" ---: " if i in right else " --- " for i in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """`markdown_table` as report lines, with the blank line that ends the table."""
    return [markdown_table(header, rows), ""]


def block_markers(name: str) -> tuple[str, str]:
    """The comment lines around a generated block of a Markdown file."""
    return f"<!-- {name}: start -->", f"<!-- {name}: end -->"


def rewrite_block(path: str | Path, name: str, body: str) -> None:
    """Replace what stands between the `name` markers of `path` with `body`; a file without
    that block is an error naming it, and is left as it was."""
    path = Path(path)
    start, end = block_markers(name)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path}: no {start} ... {end} block to rewrite")
    path.write_text(pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text, count=1), encoding="utf-8")
