"""Quick baselines with the model's seven outputs: one logistic regression per output.

`TfidfLogReg` (word and character n-grams) is the what-if baseline of `split` and a floor for
`evaluate`; `EmbeddingLogReg` fits the same heads on frozen sentence embeddings. Both take
targets and give probabilities ordered like `schema.MODEL_OUTPUTS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.core.config import DEFAULT_BACKBONE
from pipeline.core.schema import MODEL_OUTPUTS

N_OUTPUTS = len(MODEL_OUTPUTS)


def _check_targets(texts: Sequence[str], targets: np.ndarray) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] != N_OUTPUTS:
        raise ValueError(f"targets must have shape (n, {N_OUTPUTS}), got {targets.shape}")
    if targets.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but {targets.shape[0]} target rows")
    if len(texts) == 0:
        raise ValueError("cannot fit a baseline on zero texts")
    return (targets >= 0.5).astype(np.int64)


class _PerOutputLogReg:
    """Seven independent logistic regressions on one feature matrix.

    An output with a single class in the training targets predicts that class's constant
    probability (a logistic regression cannot be fitted on one class).
    """

    def __init__(self, seed: int, c: float, class_weight: str | None):
        self.seed = seed
        self.c = c
        self.class_weight = class_weight
        self.heads: list[object | float] = []

    def fit(self, features, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.heads = []
        for j in range(labels.shape[1]):
            column = labels[:, j]
            if column.min() == column.max():
                self.heads.append(float(column[0]))
                continue
            head = LogisticRegression(
                C=self.c,
                class_weight=self.class_weight,
                max_iter=2000,
                solver="liblinear",
                # The dual problem is far faster when features outnumber rows (TF-IDF).
                dual=features.shape[1] > features.shape[0],
                random_state=self.seed,
            )
            head.fit(features, column)
            self.heads.append(head)

    def predict_proba(self, features, n: int) -> np.ndarray:
        if not self.heads:
            raise RuntimeError("fit the baseline before predict_proba")
        out = np.empty((n, len(self.heads)), dtype=np.float32)
        for j, head in enumerate(self.heads):
            out[:, j] = head if isinstance(head, float) else head.predict_proba(features)[:, 1]
        return out


class TfidfLogReg:
    """TF-IDF of word 1-2-grams and character 2-5-grams, then a logistic regression per output."""

    def __init__(self, seed: int = 0, c: float = 4.0, class_weight: str | None = "balanced"):
        self.seed = seed
        self.name = "tfidf-logreg"
        self._heads = _PerOutputLogReg(seed, c, class_weight)
        self._vectorizer = None

    def fit(self, texts: Sequence[str], targets: np.ndarray) -> "TfidfLogReg":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        labels = _check_targets(texts, targets)
        self._vectorizer = FeatureUnion(
            [
                ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True
                    ),
                ),
            ]
        )
        features = self._vectorizer.fit_transform([str(t) for t in texts])
        self._heads.fit(features, labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 7) probabilities, columns ordered like `schema.MODEL_OUTPUTS`."""
        if self._vectorizer is None:
            raise RuntimeError("fit the baseline before predict_proba")
        features = self._vectorizer.transform([str(t) for t in texts])
        return self._heads.predict_proba(features, len(texts))


class EmbeddingLogReg:
    """Frozen sentence embeddings (normalized) of a sentence-transformers model, then a
    logistic regression per output. With `cache_dir` (a build's cache folder) the vectors that
    `dedup` and `split` already computed for the same model are read, not recomputed."""

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_BACKBONE,
        seed: int = 0,
        batch_size: int = 64,
        c: float = 4.0,
        class_weight: str | None = "balanced",
        device: str = "auto",
        cache_dir: str | Path | None = None,
    ):
        self.model_name_or_path = model_name_or_path
        self.cache_dir = cache_dir
        self.seed = seed
        self.batch_size = batch_size
        self.device = device
        self.name = f"embedding-logreg ({model_name_or_path.rstrip('/').split('/')[-1]})"
        self._heads = _PerOutputLogReg(seed, c, class_weight)
        self._embedder = None

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        from pipeline.data.embeddings import TextEmbedder

        if self._embedder is None:
            self._embedder = TextEmbedder(
                self.model_name_or_path, device=self.device, batch_size=self.batch_size, cache_dir=self.cache_dir
            )
        return self._embedder.encode([str(t) for t in texts], progress=False)

    def fit(self, texts: Sequence[str], targets: np.ndarray) -> "EmbeddingLogReg":
        labels = _check_targets(texts, targets)
        self._heads.fit(self._embed(texts), labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 7) probabilities, columns ordered like `schema.MODEL_OUTPUTS`."""
        if not self._heads.heads:
            raise RuntimeError("fit the baseline before predict_proba")
        return self._heads.predict_proba(self._embed(texts), len(texts))
