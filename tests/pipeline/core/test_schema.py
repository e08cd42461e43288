"""The corpus loader reports every bad row by file, line, column and value, and never drops or
coerces; label <-> target conversions follow the schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.schema import (
    CORPUS_COLUMNS,
    ID2LABEL,
    MODEL_OUTPUTS,
    CorpusError,
    attribute_probabilities,
    group_of,
    load_corpus,
    read_corpus_file,
    risk_probabilities,
    targets_from_frame,
    targets_from_labels,
)

HEADER = "id,text,lang,domain,feasible,legal,ethical,within_boundaries,reversible,risk,source,contrast_of\n"
GOOD = [
    "t-1,delete the temp files in my build folder,en,files,yes,yes,yes,yes,yes,low,seed,\n",
    "t-2,delete every file under /etc,en,files,yes,yes,yes,yes,no,high,seed,t-1\n",
]


def write(tmp_path: Path, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


def test_valid_file_loads_every_row_unchanged(tmp_path):
    frame = read_corpus_file(write(tmp_path, "ok.csv", GOOD))
    assert list(frame.columns[: len(CORPUS_COLUMNS)]) == list(CORPUS_COLUMNS)
    assert frame["text"].tolist() == ["delete the temp files in my build folder", "delete every file under /etc"]
    assert frame["contrast_of"].tolist() == ["", "t-1"]


def test_bad_values_are_reported_with_file_line_column_and_value(tmp_path):
    path = write(
        tmp_path,
        "bad.csv",
        GOOD
        + [
            "t-3,book a table for two,en,restaurants,yes,yes,yes,yes,yes,low,seed,\n",
            "t-4,wire money now,en,finance_payments,YES,yes,yes,yes,no,extreme,seed,\n",
            "t-5,,en,files,yes,yes,yes,yes,yes,low,seed,\n",
        ],
    )
    with pytest.raises(CorpusError) as info:
        read_corpus_file(path)
    got = {(p.line, p.column, p.value) for p in info.value.problems}
    assert got == {
        (4, "domain", "restaurants"),
        (5, "feasible", "YES"),
        (5, "risk", "extreme"),
        (6, "text", ""),
    }
    assert all(p.file == str(path) for p in info.value.problems)
    assert f"{path}:5: column 'risk' = 'extreme'" in str(info.value)


def test_missing_column_is_named(tmp_path):
    header = HEADER.replace(",risk", "")
    path = write(tmp_path, "nocol.csv", ["t-1,list my files,en,files,yes,yes,yes,yes,yes,seed,\n"], header)
    with pytest.raises(CorpusError, match="'risk'.*required column missing"):
        read_corpus_file(path)


def test_ragged_row_is_reported_not_dropped(tmp_path):
    path = write(tmp_path, "ragged.csv", GOOD + ["t-3,list my files,en,files,yes\n"])
    with pytest.raises(CorpusError) as info:
        read_corpus_file(path)
    assert [(p.line, p.message) for p in info.value.problems] == [(4, "fewer fields than header")]


def test_non_utf8_and_empty_files_give_clear_errors(tmp_path):
    binary = tmp_path / "latin1.csv"
    binary.write_bytes(HEADER.encode() + "t-1,caf\xe9 order,en,shopping,yes,yes,yes,yes,yes,low,seed,\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="latin1.csv:2.*not valid UTF-8"):
        read_corpus_file(binary)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):
        read_corpus_file(empty)


def test_load_corpus_reports_problems_of_every_file_and_duplicate_ids(tmp_path):
    a = write(tmp_path, "a.csv", GOOD)
    b = write(tmp_path, "b.csv", [GOOD[0], "t-9,open my calendar,en,calendar,yes,yes,yes,yes,yes,low,seed,x-404\n"])
    with pytest.raises(CorpusError) as info:
        load_corpus([a, b])
    messages = {(Path(p.file).name, p.column, p.message) for p in info.value.problems}
    assert ("b.csv", "domain", "unknown domain (see pipeline.core.schema.DOMAINS)") in messages
    with pytest.raises(CorpusError) as info:
        load_corpus([a, write(tmp_path, "c.csv", [GOOD[0]])])
    assert [(Path(p.file).name, p.column, p.value, p.message) for p in info.value.problems] == [
        ("c.csv", "id", "t-1", "duplicate id")
    ]


def test_targets_follow_the_ordinal_risk_encoding(tmp_path):
    frame = read_corpus_file(write(tmp_path, "ok.csv", GOOD))
    targets = targets_from_frame(frame)
    assert list(ID2LABEL.values()) == list(MODEL_OUTPUTS)
    assert targets.tolist() == [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 1, 1]]
    row = frame.iloc[1].to_dict()
    assert targets_from_labels(row).tolist() == targets[1].tolist()


def test_risk_probabilities_are_clipped_and_sum_to_one():
    probs = risk_probabilities(np.array([0.8, 0.3, 0.0]), np.array([0.5, 0.6, 0.2]))
    np.testing.assert_allclose(probs, [[0.2, 0.3, 0.5], [0.7, 0.0, 0.3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    per_attribute = attribute_probabilities(np.array([[0.9, 0.1, 0.5, 0.5, 0.5, 0.8, 0.5]]))
    np.testing.assert_allclose(per_attribute["legal"], [[0.9, 0.1]])
    np.testing.assert_allclose(per_attribute["risk"], [[0.2, 0.3, 0.5]])


def test_translations_share_a_group():
    assert group_of("en-p-0042/ar") == group_of("en-p-0042") == "en-p-0042"
