"""The `dedup` stage: planted near-duplicates, representatives, conflicts, exact vs ANN search."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli.dedup import main
from pipeline.core.config import BuildLayout
from pipeline.core.io import write_frame
from pipeline.core.schema import load_corpus
from pipeline.data.clean import clean
from pipeline.data.dedup import (
    EMBEDDING,
    LEXICAL,
    DedupConfig,
    SimilarityPairs,
    ann_pairs,
    build_spaces,
    dedup,
    merge_near_duplicates,
    exact_pairs,
    sparse_pairs,
)
from tests.generate_fixtures import ALLOW

PLANTED = Path(__file__).resolve().parents[2] / "fixtures" / "data_planted.csv"
CONFIG = DedupConfig(device="cpu", cache=False)


@pytest.fixture(scope="module")
def cleaned(backbone_dir) -> pd.DataFrame:
    return clean(load_corpus([PLANTED])).frame


@pytest.fixture(scope="module")
def spaces(cleaned: pd.DataFrame):
    return build_spaces(cleaned, CONFIG)


@pytest.fixture(scope="module")
def result(cleaned: pd.DataFrame, spaces):
    pairs = spaces.search(CONFIG.thresholds(), CONFIG)
    return merge_near_duplicates(cleaned, pairs, spaces, CONFIG.thresholds())


def test_planted_near_duplicates_are_removed(result) -> None:
    removed = result.removed.set_index("id")["duplicate_of"].to_dict()
    assert removed == {
        "en-0003": "en-0001",  # a word swapped ("my" -> "the")
        "en-0004": "en-0005",  # a paraphrase (the shorter one is kept)
        "en-0007": "en-0006",  # "on" -> "this"
        "ar-0002": "ar-0001",  # Arabic, an added phrase (TF-IDF space)
    }
    assert (result.removed["similarity"] >= 0.75).all()


def test_unrelated_commands_are_kept(result, cleaned: pd.DataFrame) -> None:
    kept = set(result.frame["id"])
    unrelated = {"en-0010", "en-0011", "en-0012", "en-0013", "en-0014", "en-0016", "en-0017", "ar-0003", "ar-0004", "ar-0005"}
    assert unrelated <= kept
    # ar-0003 / ar-0004 share nothing but script: the English model puts them at cosine 0.95;
    # the TF-IDF space used for Arabic does not pair them at all.
    assert len(result.frame) == len(cleaned) - 4


def test_label_different_pairs_are_kept_and_reported(result) -> None:
    conflicts = result.conflicts
    pair = conflicts[(conflicts["id_a"] == "en-0008") & (conflicts["id_b"] == "en-0009")]
    assert len(pair) == 1 and bool(pair["contrast_pair"].iloc[0])
    assert "reversible" in pair["differs_in"].iloc[0]
    assert {"en-0008", "en-0009", "en-0018", "en-0020"} <= set(result.frame["id"])
    assert result.summary()["label_conflict_other_pairs"] == 1  # en-0018 vs en-0020


def test_merged_ids_record_removed_rows(result) -> None:
    merged = result.frame.set_index("id")["merged_ids"]
    assert set(merged["en-0001"].split(";")) == {"en-0002", "en-0003"}  # exact (clean) + near


def _frame(rows: list[tuple[str, str, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "source": [r[2] for r in rows],
            "labeler_agreed": [r[3] for r in rows],
            "lang": "en",
            "domain": "files",
            **ALLOW,
            "contrast_of": "",
            "merged_ids": "",
        }
    )


def _chain(n: int) -> SimilarityPairs:
    a = np.arange(n - 1)
    return SimilarityPairs(a, a + 1, np.full(n - 1, 0.95, np.float32), np.full(n - 1, EMBEDDING, dtype=object))


@pytest.mark.parametrize(
    "rows, keeper",
    [
        # seed beats a shorter generated row
        ([("g-1", "zip it", "gen", True), ("s-1", "zip the whole folder", "seed", False)], "s-1"),
        # among generated rows a labeler-agreed one beats a shorter one
        ([("g-1", "zip it", "gen", False), ("g-2", "zip the whole folder", "gen", True)], "g-2"),
        # then the shortest text
        ([("g-1", "zip the whole folder", "gen", False), ("g-2", "zip folder", "gen", False), ("g-3", "zip up the whole folder now", "gen", False)], "g-2"),
        # then the smallest id
        ([("g-2", "zip it", "gen", False), ("g-1", "zip up", "gen", False)], "g-1"),
    ],
)
def test_cluster_representative_follows_policy(rows, keeper: str) -> None:
    frame = _frame(rows)
    out = merge_near_duplicates(frame, _chain(len(frame)), None, {EMBEDDING: 0.9, LEXICAL: 0.9})
    assert out.frame["id"].tolist() == [keeper]
    assert set(out.removed["duplicate_of"]) == {keeper}


def test_chained_cluster_keeps_one_row_and_logs_the_linking_pair() -> None:
    frame = _frame([("g-1", "aaaa", "gen", False), ("g-2", "bb", "gen", False), ("g-3", "ccc", "gen", False)])
    out = merge_near_duplicates(frame, _chain(3), None, {EMBEDDING: 0.9, LEXICAL: 0.9})
    assert out.frame["id"].tolist() == ["g-2"]
    assert out.cluster_sizes == {3: 1}
    log = out.removed.set_index("id")
    assert log.loc["g-1", "matched_id"] == "g-2" and log.loc["g-3", "matched_id"] == "g-2"


def _planted_vectors(n: int = 3000, d: int = 48, planted: int = 200, seed: int = 0) -> tuple[np.ndarray, set]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sources = rng.choice(n, planted, replace=False)
    targets = rng.choice(np.setdiff1d(np.arange(n), sources), planted, replace=False)
    for s, t in zip(sources, targets):
        v = x[s] + rng.standard_normal(d).astype(np.float32) * 0.03  # cosine about 0.98
        x[t] = v / np.linalg.norm(v)
    return x, {(min(s, t), max(s, t)) for s, t in zip(sources, targets)}


def test_exact_search_finds_exactly_the_planted_pairs() -> None:
    x, planted = _planted_vectors()
    i, j, s = exact_pairs(x, 0.9, block_rows=512)
    assert set(zip(i.tolist(), j.tolist())) == planted
    np.testing.assert_allclose(s, np.einsum("ij,ij->i", x[i], x[j]), atol=1e-5)


def test_ann_and_exact_search_agree_on_planted_set() -> None:
    x, planted = _planted_vectors()
    ei, ej, es = exact_pairs(x, 0.9)
    ai, aj, as_ = ann_pairs(x, 0.9, cell_rows=64, nprobe=8)
    assert set(zip(ai.tolist(), aj.tolist())) == set(zip(ei.tolist(), ej.tolist())) == planted
    np.testing.assert_allclose(as_, es, atol=1e-5)


def test_sparse_search_matches_dense() -> None:
    from scipy import sparse

    x, planted = _planted_vectors(n=500, planted=30)
    i, j, _ = sparse_pairs(sparse.csr_matrix(x), 0.9, block_rows=100)
    assert set(zip(i.tolist(), j.tolist())) == planted


def test_cli_writes_outputs_and_uses_the_cache(tmp_path: Path, cleaned: pd.DataFrame) -> None:
    layout = BuildLayout(tmp_path)
    write_frame(layout.cleaned, cleaned)
    args = argparse.Namespace(preset="cpu-quick", overrides=["dedup.device=cpu"], build_dir=tmp_path, json=False)
    assert main(args) == 0
    removed = pd.read_csv(layout.reports / "dedup_removed.csv")
    assert set(removed["id"]) == {"en-0003", "en-0004", "en-0007", "ar-0002"}
    assert {"duplicate_of", "similarity", "text", "duplicate_text"} <= set(removed.columns)
    assert len(pd.read_parquet(layout.deduped)) == len(cleaned) - 4
    assert main(args) == 0
    summary = pd.read_json(layout.reports / "dedup.json", typ="series")
    assert summary["embedding"]["embedded"] == 0 and summary["embedding"]["cached"] > 0


def test_dedup_entry_point_gives_the_same_result(cleaned: pd.DataFrame, result) -> None:
    again = dedup(cleaned, CONFIG)
    assert again.frame["id"].tolist() == result.frame["id"].tolist()
    pd.testing.assert_frame_equal(again.removed, result.removed)
