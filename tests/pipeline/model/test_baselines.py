"""The quick baselines: seven outputs in schema order, and they learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import DEFAULT_BACKBONE
from pipeline.core.schema import LABEL2ID, MODEL_OUTPUTS, targets_from_frame
from pipeline.model.baselines import EmbeddingLogReg, TfidfLogReg


def _split(seed_sample: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return seed_sample.iloc[:240], seed_sample.iloc[240:]


def test_tfidf_logreg_outputs_are_probabilities_in_schema_order(seed_corpus: pd.DataFrame) -> None:
    shuffled = seed_corpus.sample(n=min(2500, len(seed_corpus)), random_state=0)
    train, test = shuffled.iloc[:2000], shuffled.iloc[2000:]
    model = TfidfLogReg(seed=0).fit(train["text"].tolist(), targets_from_frame(train))
    probs = model.predict_proba(test["text"].tolist())
    assert probs.shape == (len(test), len(MODEL_OUTPUTS))
    assert ((probs >= 0) & (probs <= 1)).all()
    # The legal output separates legal from illegal commands better than chance.
    from sklearn.metrics import roc_auc_score

    gold = targets_from_frame(test)[:, LABEL2ID["legal"]]
    assert roc_auc_score(gold, probs[:, LABEL2ID["legal"]]) > 0.7


def test_tfidf_logreg_is_deterministic(seed_sample: pd.DataFrame) -> None:
    train, test = _split(seed_sample)
    a = TfidfLogReg(seed=3).fit(train["text"].tolist(), targets_from_frame(train)).predict_proba(test["text"].tolist())
    b = TfidfLogReg(seed=3).fit(train["text"].tolist(), targets_from_frame(train)).predict_proba(test["text"].tolist())
    np.testing.assert_array_equal(a, b)


def test_single_class_output_predicts_that_class() -> None:
    texts = ["delete my files", "hack my neighbor", "book a table", "steal a password"] * 3
    targets = np.zeros((len(texts), len(MODEL_OUTPUTS)), dtype=np.float32)
    targets[:, LABEL2ID["feasible"]] = 1.0
    targets[1::2, LABEL2ID["legal"]] = 0.0
    targets[0::2, LABEL2ID["legal"]] = 1.0
    probs = TfidfLogReg().fit(texts, targets).predict_proba(["hack my neighbor"])
    assert probs[0, LABEL2ID["feasible"]] == 1.0 and probs[0, LABEL2ID["ethical"]] == 0.0
    assert probs[0, LABEL2ID["legal"]] < 0.5


def test_bad_targets_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 7\)"):
        TfidfLogReg().fit(["a b c"], np.zeros((1, 6)))
    with pytest.raises(RuntimeError, match="fit the baseline"):
        TfidfLogReg().predict_proba(["a b c"])


def test_embedding_logreg_learns(seed_sample: pd.DataFrame, backbone_dir) -> None:
    train, test = _split(seed_sample)
    model = EmbeddingLogReg(DEFAULT_BACKBONE, seed=0, batch_size=32, device="cpu")
    probs = model.fit(train["text"].tolist(), targets_from_frame(train)).predict_proba(test["text"].tolist())
    assert probs.shape == (len(test), len(MODEL_OUTPUTS))
    assert model.name.startswith("embedding-logreg")
    from sklearn.metrics import roc_auc_score

    gold = targets_from_frame(test)[:, LABEL2ID["ethical"]]
    assert roc_auc_score(gold, probs[:, LABEL2ID["ethical"]]) > 0.7


def test_embedding_logreg_reads_the_build_cache(seed_sample: pd.DataFrame, backbone_dir, tmp_path) -> None:
    from pipeline.data.embeddings import TextEmbedder

    train, test = _split(seed_sample)
    texts = train["text"].tolist()
    TextEmbedder(DEFAULT_BACKBONE, device="cpu", cache_dir=tmp_path).encode(texts, progress=False)  # as dedup does
    model = EmbeddingLogReg(DEFAULT_BACKBONE, seed=0, batch_size=32, device="cpu", cache_dir=tmp_path)
    model.fit(texts, targets_from_frame(train))
    assert model._embedder.stats == {"embedded": 0, "cached": len(texts)}
    model.predict_proba(test["text"].tolist())
    assert model._embedder.stats["embedded"] == len(set(test["text"]) - set(texts))
