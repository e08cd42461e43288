"""The `clean` stage: normalization, drop reasons, exact duplicates, conflicts, bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli.clean import main
from pipeline.core.config import BuildLayout
from pipeline.core.schema import CORPUS_COLUMNS, CorpusError, load_corpus
from pipeline.data.clean import (
    EXACT_DUPLICATE,
    TOO_LONG,
    TOO_SHORT,
    CleanConfig,
    clean,
    duplicate_key,
    normalize_text,
    read_inputs,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PLANTED = FIXTURES / "data_planted.csv"
HEADER = ",".join(CORPUS_COLUMNS)
ROW = "x-1,archive the newsletters from last month,en,email_messaging,yes,yes,yes,yes,yes,low,seed,"


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return load_corpus([PLANTED])


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('  1. "Book a table for two"  ', "Book a table for two"),
        ("- \u201crename the report file\u201d", "rename the report file"),
        ("• send the invoice\tto   Karen\n", "send the invoice to Karen"),
        ('say "hi" and "bye" to the team', 'say "hi" and "bye" to the team'),
        ("\uff21\uff22\uff23 backup now", "ABC backup now"),
        ("\u200eاحذف ملفات .tmp\u200f", "احذف ملفات .tmp"),
        ("2.5 GB left on my drive", "2.5 GB left on my drive"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_duplicate_key_ignores_case_punctuation_and_diacritics() -> None:
    assert duplicate_key("Find the cheapest flight, Boston -> Denver!") == duplicate_key("find the cheapest flight boston denver")
    assert duplicate_key("رتّب الملفـات") == duplicate_key("رتب الملفات")
    assert duplicate_key("delete the file") != duplicate_key("delete the files")


def test_exact_duplicates_with_same_labels_are_removed_and_logged(planted: pd.DataFrame) -> None:
    result = clean(planted)
    dups = result.removed[result.removed["reason"] == EXACT_DUPLICATE].set_index("id")
    # en-0002 only differs from the seed row en-0001 in case and punctuation.
    assert dups.loc["en-0002", "duplicate_of"] == "en-0001"
    assert "en-0002" not in set(result.frame["id"])
    assert "en-0002" in result.frame.set_index("id").loc["en-0001", "merged_ids"].split(";")


def test_exact_duplicates_with_conflicting_labels_are_kept_and_reported(planted: pd.DataFrame) -> None:
    result = clean(planted)
    kept = set(result.frame["id"])
    # en-0018 / en-0019 agree (one removed); en-0020 says risk=medium: kept and reported.
    assert {"en-0018", "en-0020"} <= kept and "en-0019" not in kept
    assert set(result.conflicts["id"]) == {"en-0018", "en-0019", "en-0020"}
    assert result.summary()["exact_duplicate_conflict_groups"] == 1


def test_too_short_and_too_long_texts_are_dropped_with_reasons(planted: pd.DataFrame) -> None:
    config = CleanConfig(min_words=6, max_words=12)
    result = clean(planted, config)
    reasons = result.removed.set_index("id")["reason"]
    words = planted.set_index("id")["text"].str.split().str.len()
    for row_id, n in words.items():
        if n < 6:
            assert reasons[row_id] == TOO_SHORT
        elif n > 12:
            assert reasons[row_id] == TOO_LONG
    assert result.summary()["removed"][TOO_SHORT] == int((words < 6).sum())


def test_contrast_reference_to_a_removed_duplicate_moves_to_its_representative() -> None:
    frame = pd.DataFrame(
        [
            ["a-1", "Stop the backup job tonight", "seed", ""],
            ["a-2", "stop the backup job tonight!", "gen", ""],
            ["a-3", "delete the backup job tonight", "seed", "a-2"],
        ],
        columns=["id", "text", "source", "contrast_of"],
    ).assign(lang="en", domain="files", feasible="yes", legal="yes", ethical="yes", within_boundaries="yes", reversible="yes", risk="low")
    frame.loc[2, "reversible"] = "no"
    result = clean(frame)
    assert result.frame.set_index("id").loc["a-3", "contrast_of"] == "a-1"


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.csv:1: .*file is empty"):
        read_inputs(CleanConfig(seed_dir=str(tmp_path)), BuildLayout(tmp_path / "build"))


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    header = HEADER.replace(",risk", "")
    row = ROW.replace(",low,", ",")
    (tmp_path / "no_risk.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no_risk\.csv:1: column 'risk' .*required column missing"):
        read_inputs(CleanConfig(seed_dir=str(tmp_path)), BuildLayout(tmp_path / "build"))


def test_non_utf8_bytes_are_a_clear_error(tmp_path: Path) -> None:
    content = f"{HEADER}\n{ROW}\n".encode("utf-8") + "x-2,caf\u00e9 order for pickup now,en,shopping,yes,yes,yes,yes,yes,low,seed,\n".encode("latin-1")
    (tmp_path / "latin.csv").write_bytes(content)
    with pytest.raises(CorpusError, match=r"latin\.csv:3: .*not valid UTF-8"):
        read_inputs(CleanConfig(seed_dir=str(tmp_path)), BuildLayout(tmp_path / "build"))


def test_generated_rows_are_read_and_marked_agreed_by_verdict(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "s.csv").write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    layout = BuildLayout(tmp_path / "build")
    layout.generated.mkdir(parents=True)
    gen = "g-1,archive old newsletters from my inbox please,en,email_messaging,yes,yes,yes,yes,yes,low,gen-a,,agreed\n"
    gen += "g-2,unsubscribe me from every marketing list,en,email_messaging,yes,yes,yes,yes,yes,low,gen-a,,\n"
    (layout.generated / "generated.csv").write_text(f"{HEADER},verdict\n{gen}", encoding="utf-8")
    frame = read_inputs(CleanConfig(seed_dir=str(seed)), layout)
    agreed = frame.set_index("id")["labeler_agreed"]
    assert agreed.to_dict() == {"x-1": False, "g-1": True, "g-2": False}
    assert frame.set_index("id").loc["g-1", "origin"].endswith("generated.csv:2")


def test_cli_writes_clean_outputs(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "planted.csv").write_bytes(PLANTED.read_bytes())
    args = argparse.Namespace(
        preset="cpu-quick", overrides=[f"clean.seed_dir={seed}"], build_dir=tmp_path / "build", json=False
    )
    assert main(args) == 0
    layout = BuildLayout(tmp_path / "build")
    out = pd.read_parquet(layout.cleaned)
    assert len(out) == 24 and out["id"].is_unique
    removed = pd.read_csv(layout.reports / "clean_removed.csv")
    assert set(removed["id"]) == {"en-0002", "en-0019"}
    assert (layout.reports / "clean.json").is_file() and (layout.reports / "clean_conflicts.csv").is_file()
