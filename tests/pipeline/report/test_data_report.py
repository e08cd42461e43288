"""The data report: what-if table, count tables, and the clean -> dedup -> split CLI chain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.config import BuildLayout
from pipeline.core.schema import ATTRIBUTES, CORPUS_COLUMNS, load_corpus
from pipeline.data.clean import clean
from pipeline.data.dedup import EMBEDDING, LEXICAL, DedupConfig, build_spaces
from pipeline.data.split import SPLIT, SPLITS, SplitConfig
from pipeline.report.data_report import split_tables, what_if_table

PLANTED = Path(__file__).resolve().parents[2] / "fixtures" / "data_planted.csv"
LEXICAL_ONLY = DedupConfig(embedding_languages=[], lexical_threshold=0.75)


@pytest.fixture(scope="module")
def small_corpus(seed_corpus: pd.DataFrame) -> pd.DataFrame:
    planted = load_corpus([PLANTED])
    sample = seed_corpus[~seed_corpus["id"].isin(planted["id"])].sample(n=250, random_state=2).copy()
    sample.loc[~sample["contrast_of"].isin(sample["id"]), "contrast_of"] = ""
    return pd.concat([sample, planted], ignore_index=True)


def test_what_if_table_removes_fewer_rows_at_higher_thresholds(small_corpus: pd.DataFrame) -> None:
    frame = clean(small_corpus).frame
    spaces = build_spaces(frame, LEXICAL_ONLY)
    pairs = spaces.search({EMBEDDING: 0.5, LEXICAL: 0.5}, LEXICAL_ONLY)
    config = SplitConfig(what_if_thresholds=[0.6, 0.75, 0.9], what_if_lexical_thresholds=[0.6, 0.75, 0.9])
    rows = what_if_table(frame, pairs, spaces, config, LEXICAL_ONLY)
    assert [r.threshold for r in rows] == ["0.60", "0.75", "0.90", "none"]
    removed = [r.rows_removed for r in rows]
    assert removed == sorted(removed, reverse=True) and removed[-1] == 0 and removed[0] > 0
    assert all(r.rows_left + r.rows_removed == len(frame) for r in rows)
    assert all(r.cross_split_pairs == 0 for r in rows)
    assert all(0.0 < r.val_macro_f1 <= 1.0 and r.val_macro_f1_std > 0 for r in rows)
    # A random split leaks: the planted near-duplicates of the `none` row cross splits.
    assert rows[-1].random_cross_split_pairs is not None


def test_count_tables_add_up(small_corpus: pd.DataFrame) -> None:
    frame = clean(small_corpus).frame
    frame[SPLIT] = [SPLITS[i % 3] for i in range(len(frame))]
    tables = split_tables(frame)
    for attribute in ATTRIBUTES:
        table = tables[attribute.name]
        assert list(table.index) == list(attribute.values)
        assert table["all"].sum() == len(frame)
        assert (table[list(SPLITS)].sum(axis=1) == table["all"]).all()
    for title in ("domain", "language", "length (words)", "source"):
        assert tables[title]["all"].sum() == len(frame)


@pytest.mark.slow
def test_clean_dedup_split_chain_writes_report_and_dataset(tmp_path: Path, small_corpus: pd.DataFrame, backbone_dir) -> None:
    import datasets

    from pipeline.cli import clean as clean_stage
    from pipeline.cli import dedup as dedup_stage
    from pipeline.cli import split as split_stage

    seed = tmp_path / "seed"
    seed.mkdir()
    small_corpus[list(CORPUS_COLUMNS)].to_csv(seed / "sample.csv", index=False)
    build = tmp_path / "build"
    overrides = [f"clean.seed_dir={seed}", "dedup.device=cpu"]
    common = dict(preset="cpu-quick", overrides=overrides, build_dir=build)
    assert clean_stage.main(argparse.Namespace(**common, json=False)) == 0
    assert dedup_stage.main(argparse.Namespace(**common, json=False)) == 0
    assert split_stage.main(argparse.Namespace(**common, no_report=False)) == 0

    layout = BuildLayout(build)
    data = json.loads((layout.reports / "data.json").read_text(encoding="utf-8"))
    assert data["cross_split_pairs_above_dedup_threshold"] == 0
    assert data["groups_straddling_splits"] == 0
    assert [r["threshold"] for r in data["what_if"]] == ["0.85", "0.90", "0.95", "none"]
    assert data["removed_by_reason"]["dedup: near_duplicate"] >= 4
    assert sum(data["rows"].values()) == data["rows_total"]
    md = (layout.reports / "data.md").read_text(encoding="utf-8")
    assert "## Dedup threshold: what-if" in md and "## Counts per split" in md
    for name in ("data_label_shares.png", "data_dup_clusters.png", "data_split_groups.png", "data_projection.png"):
        assert (layout.reports / name).stat().st_size > 1000
        assert f"]({name})" in md
    for name in SPLITS:
        assert len(pd.read_parquet(layout.splits / f"{name}.parquet")) == data["rows"][name]
    loaded = datasets.load_dataset(str(layout.hub_dataset))
    assert {k: len(v) for k, v in loaded.items()} == data["rows"]
    assert isinstance(loaded["test"].features["within_boundaries"], datasets.ClassLabel)
