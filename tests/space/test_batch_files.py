"""Batch files read and tabulated (`space.batch`): columns, limits and clear refusals."""

from __future__ import annotations

import re

import pytest

from pipeline.core.schema import ATTRIBUTE_NAMES
from space.batch import (
    MAX_BATCH_ROWS,
    BatchFileError,
    batch_frame,
    batch_summary,
    read_batch_file,
    summary_markdown,
)
from tests.space.planted import planted


def test_csv_batch_reads_the_text_column_and_keeps_the_others(tmp_path):
    path = tmp_path / "cmds.csv"
    path.write_text(
        'id,Text,note\n1,open my mail,a\n2,"delete it, now",b\n3,,c\n', encoding="utf-8"
    )
    batch = read_batch_file(path)
    assert batch.texts == ["open my mail", "delete it, now", ""]
    assert list(batch.extra.columns) == ["id", "note"]


def test_txt_batch_has_one_command_per_line(tmp_path):
    path = tmp_path / "cmds.txt"
    path.write_text("\ufeffopen my mail\n\n  \nاحذف الملف\r\n", encoding="utf-8")
    assert read_batch_file(path).texts == ["open my mail", "احذف الملف"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cmds.xlsx", b"PK", "upload a .csv or .txt"),
        ("cmds.csv", b"text\nok\n\xff\xfe bad\n", "line 3 is not valid UTF-8"),
        ("cmds.csv", b"id,command_text\n1,open\n", "no 'text' column (found: id, command_text)"),
        ("cmds.csv", b"", "no commands"),
        ("cmds.txt", b"\n\n", "no commands"),
        ("cmds.csv", b'text\n"open my mail\n', "not a valid CSV"),
    ],
)
def test_bad_batch_files_get_a_clear_message(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BatchFileError, match=re.escape(message)) as info:
        read_batch_file(path)
    assert name in str(info.value)


def test_batch_over_the_row_limit_is_refused(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("open my mail\n" * (MAX_BATCH_ROWS + 1), encoding="utf-8")
    with pytest.raises(BatchFileError, match="5,001 commands; the limit is 5,000"):
        read_batch_file(path)


def test_batch_frame_has_every_output_and_renames_clashing_columns(tmp_path):
    path = tmp_path / "cmds.csv"
    path.write_text("text,decision,id\nx,allow,1\ny,block,2\n", encoding="utf-8")
    batch = read_batch_file(path)
    frame = batch_frame(batch, [planted("confirm"), planted("block")])
    assert frame["decision"].tolist() == ["confirm", "block"]
    assert frame["input_decision"].tolist() == ["allow", "block"]
    assert frame["id"].tolist() == ["1", "2"]
    for column in [
        *ATTRIBUTE_NAMES,
        "reasons",
        "uncertain",
        "p_legal_yes",
        "p_risk_low",
        "p_risk_medium",
        "p_risk_high",
    ]:
        assert column in frame.columns
    assert frame.loc[0, "reasons"] == "irreversible and high risk: ask the user first"
    assert frame.loc[0, "p_risk_high"] == pytest.approx(0.92)
    summary = batch_summary("cmds.csv", [planted("confirm"), planted("block")])
    assert summary["counts"] == {"allow": 0, "confirm": 1, "cannot_do": 0, "block": 1}
    assert "1 confirm" in summary_markdown(summary) and "1 block" in summary_markdown(summary)

