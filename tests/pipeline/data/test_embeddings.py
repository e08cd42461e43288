"""Fast embedding (same vectors as sentence-transformers) and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.config import DEFAULT_BACKBONE, resolve_model
from pipeline.data.embeddings import EmbeddingCache, TextEmbedder, text_digest

TEXTS = [
    "move all the PDFs in my Downloads folder into a folder called Receipts",
    "turn off the living room lights",
    "hack into my neighbor's wifi network and read their traffic",
    "رتب ملفات مجلد التنزيلات حسب النوع",
    "book a table for two at an Italian restaurant near me on Friday at 7pm, and text Karen the address",
    "ok",
]


@pytest.fixture(scope="module")
def embedder(backbone_dir: Path) -> TextEmbedder:
    return TextEmbedder(DEFAULT_BACKBONE, device="cpu", batch_size=4)


def test_vectors_match_sentence_transformers_encode(embedder: TextEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(resolve_model(DEFAULT_BACKBONE), device="cpu").encode(
        TEXTS, normalize_embeddings=True, show_progress_bar=False
    )
    vectors = embedder.encode(TEXTS, progress=False)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_cache_embeds_only_new_texts(tmp_path: Path, backbone_dir: Path) -> None:
    first = TextEmbedder(DEFAULT_BACKBONE, device="cpu", cache_dir=tmp_path)
    vectors = first.encode(TEXTS[:4], progress=False)
    assert first.stats == {"embedded": 4, "cached": 0}

    again = TextEmbedder(DEFAULT_BACKBONE, device="cpu", cache_dir=tmp_path)
    same = again.encode(TEXTS[:4], progress=False)
    assert again.stats == {"embedded": 0, "cached": 4}
    assert again._model is None, "a fully cached run must not load the model"
    np.testing.assert_array_equal(same, vectors)

    mixed = again.encode(TEXTS[2:] + [TEXTS[0]], progress=False)
    assert again.stats == {"embedded": 2, "cached": 7}
    np.testing.assert_allclose(mixed[-1], vectors[0], atol=1e-6)


def test_cache_is_keyed_by_model(tmp_path: Path, backbone_dir: Path) -> None:
    TextEmbedder(DEFAULT_BACKBONE, device="cpu", cache_dir=tmp_path).encode(TEXTS[:2], progress=False)
    other = TextEmbedder(str(backbone_dir), device="cpu", cache_dir=tmp_path)
    other.encode(TEXTS[:2], progress=False)
    assert other.stats["embedded"] == 2
    assert len(list((tmp_path / "embeddings").iterdir())) == 2


def test_cache_keeps_keys_with_trailing_zero_bytes(tmp_path: Path) -> None:
    digests = [b"\x01" * 15 + b"\x00", b"\x00" * 16, text_digest("a")]
    vectors = np.eye(3, 4, dtype=np.float32)
    EmbeddingCache(tmp_path).put(digests, vectors)
    reopened = EmbeddingCache(tmp_path)
    assert all(d in reopened for d in digests)
    np.testing.assert_array_equal(reopened.get(digests[::-1]), vectors[::-1])


@pytest.mark.slow
def test_worker_process_tokenizing_gives_the_same_vectors(embedder: TextEmbedder, backbone_dir: Path) -> None:
    texts = [f"{t} number {i}" for i in range(8) for t in TEXTS]
    pooled = TextEmbedder(DEFAULT_BACKBONE, device="cpu", batch_size=8, tokenizer_processes=2, process_min_texts=10, chunk_size=12)
    try:
        vectors = pooled.encode(texts, progress=False)
        assert pooled._pool is not None, "the worker processes must have been used"
    finally:
        pooled.close()
    np.testing.assert_allclose(vectors, embedder.encode(texts, progress=False), atol=1e-5)
