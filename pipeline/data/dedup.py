"""`dedup`: remove near-duplicate commands found by cosine similarity.

Texts are compared within their language only (a translation is never a duplicate of its
source). Languages the embedding model was trained on (`embedding_languages`) use normalized
sentence embeddings (`pipeline.data.embeddings`, cached on disk); the others use TF-IDF vectors of
character 2-4-grams, because an English-only model such as all-MiniLM-L6-v2 maps unrelated
Arabic commands to high cosines, so its similarities there say nothing.

All pairs above the threshold are found by blockwise matrix products (exact; on the GPU when
there is one) or, past `ann_min_rows` vectors, with a FAISS IVF index (range search over the
`ann_nprobe` nearest cells; its similarities are exact, only recall is approximate). FAISS is
the maintained ANN library with range search by inner product, so "every pair above t" is one
call, and it runs on CPU without a server. Without faiss installed the exact search is used.

Only pairs whose six labels are identical are merged: their connected components (union-find)
are the duplicate clusters, each keeping one representative (`clean.representative_order`:
seed rows first, then labeler-agreed rows, then the shortest text, then the smallest id).
Above-threshold pairs with different labels (contrast pairs included) keep both rows and are
reported for review.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from pipeline.core.config import DEFAULT_BACKBONE, ConfigError, setting
from pipeline.core.io import ID_SEPARATOR, MERGED_IDS
from pipeline.core.schema import ATTRIBUTE_NAMES, CONTRAST_OF, ID, LANG, SOURCE, TEXT
from pipeline.data.clean import label_combination, representative_order

log = logging.getLogger(__name__)

EMBEDDING, LEXICAL = "embedding", "lexical"
SPACE_KINDS: tuple[str, ...] = (EMBEDDING, LEXICAL)
DUP_CLUSTER = "dup_cluster"


@dataclass(frozen=True)
class DedupConfig:
    """The `[dedup]` table of a preset.

    The thresholds are chosen with the what-if table of the data report (`data.md`), which scores
    each pair of them; `python -m benchmarks.bench_dedup` times the exact and the ANN search per size, to find the
    crossover for `ann_min_rows` on the machine at hand (exact search is quadratic in the rows).
    """

    model: str = setting(DEFAULT_BACKBONE, "sentence-transformers model id or folder")
    device: str = setting("auto", "`auto` (a GPU when present), `cpu`, `cuda`, ...")
    batch_size: int = setting(0, "texts per embedding batch; 0: auto (1024 on GPU, 64 on CPU)")
    embedding_languages: list[str] = setting(
        ["en"], "languages compared with the model; the others with character n-gram TF-IDF"
    )
    threshold: float = setting(0.85, "embedding cosine at or above which two same-language texts are near-duplicates")
    lexical_threshold: float = setting(
        0.70, "TF-IDF cosine for the same (meant as the embedding threshold's counterpart on the same pairs)"
    )
    search: str = setting("auto", "`auto`, `exact` or `ann`")
    ann_min_rows: int = setting(50_000, "`auto` uses the ANN index from this many vectors on CPU")
    ann_min_rows_gpu: int = setting(4_000_000, "`auto` uses the ANN index from this many vectors on a GPU")
    ann_cell_rows: int = setting(256, "average vectors per IVF cell of the ANN index")
    ann_nprobe: int = setting(16, "IVF cells searched per query")
    block_rows: int = setting(0, "rows per block of the exact search; 0: auto from memory")
    cache: bool = setting(True, "keep embeddings under build/cache")
    seed: int = setting(0, "k-means seed of the ANN index")

    def __post_init__(self) -> None:
        if self.search not in ("auto", "exact", "ann"):
            raise ConfigError(f"[dedup] search must be auto, exact or ann, got {self.search!r}")
        for name in ("threshold", "lexical_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"[dedup] {name} must be in (0, 1], got {getattr(self, name)}")

    def thresholds(self) -> dict[str, float]:
        return {EMBEDDING: self.threshold, LEXICAL: self.lexical_threshold}


# ---------------------------------------------------------------------------------------------
# Pair search on one matrix of normalized vectors


def _auto_block_rows(n: int, device: str) -> int:
    """Rows per block so one block's similarities (and their mask) fit in memory: a sixth of
    the free GPU memory, or 32M elements (128 MB) on CPU."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = free // 6 // 3  # float16 similarities + bool mask, with headroom
    else:
        budget = 1 << 25
    return int(max(256, min(16_384, budget // max(n, 1))))


def exact_pairs(
    vectors: np.ndarray, threshold: float, block_rows: int = 0, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) with cosine >= `threshold`, by blockwise products of the upper
    triangle; returns (i, j, similarity) sorted by (i, j). On a GPU the products run in float16
    and candidates are re-scored in float32."""
    import torch

    n = len(vectors)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    on_gpu = device.startswith("cuda")
    block = block_rows or _auto_block_rows(n, device)
    full = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
    matrix = full.half() if on_gpu else full
    margin = 4e-3 if on_gpu else 0.0
    found_i, found_j, found_s = [], [], []
    with torch.inference_mode():
        for start in range(0, n, block):
            stop = min(start + block, n)
            sims = matrix[start:stop] @ matrix[start:].T
            hit = sims >= (threshold - margin)
            # Within the diagonal block keep only j > i.
            hit[:, : stop - start] &= torch.ones(stop - start, stop - start, dtype=torch.bool, device=device).triu(1)
            rows, cols = hit.nonzero(as_tuple=True)
            i, j = rows + start, cols + start
            if on_gpu:  # re-score the float16 candidates in float32, in slices to bound memory
                step = 1 << 20
                parts = [(full[i[k : k + step]] * full[j[k : k + step]]).sum(dim=1) for k in range(0, len(i), step)]
                sim = torch.cat(parts) if parts else full.new_zeros(0)
            else:
                sim = sims[rows, cols]
            keep = sim >= threshold
            found_i.append(i[keep].cpu())
            found_j.append(j[keep].cpu())
            found_s.append(sim[keep].float().cpu())
            del sims, hit
    i = torch.cat(found_i).numpy().astype(np.int64)
    j = torch.cat(found_j).numpy().astype(np.int64)
    return i, j, torch.cat(found_s).numpy().astype(np.float32)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def ann_pairs(
    vectors: np.ndarray,
    threshold: float,
    cell_rows: int = 256,
    nprobe: int = 16,
    seed: int = 0,
    query_rows: int = 16_384,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) with cosine >= `threshold` from a FAISS IVF-Flat inner-product index:
    about n / `cell_rows` cells (k-means on a sample), `nprobe` cells searched per query, an HNSW
    coarse quantizer from 1024 cells so assignment stays near-linear. Similarities are exact."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    nlist = int(max(1, round(n / cell_rows)))
    if nlist < 2 or n < 4 * cell_rows:
        return exact_pairs(x, threshold)
    if nlist >= 1024:
        quantizer = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        quantizer.hnsw.efSearch = max(64, 2 * nprobe)
    else:
        quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    # k-means on 16 points per cell (not faiss's 39+) keeps training cost from growing with n².
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(n, size=min(n, max(16 * nlist, 10_000)), replace=False))]
    index.cp.seed = seed
    index.cp.niter = 8
    index.cp.min_points_per_centroid = 8
    index.train(sample)
    index.add(x)
    index.nprobe = min(nprobe, nlist)
    found_i, found_j, found_s = [], [], []
    # range_search returns similarities strictly above the radius.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-1)))
    for start in range(0, n, query_rows):
        lims, sims, labels = index.range_search(x[start : start + query_rows], radius)
        counts = np.diff(lims).astype(np.int64)
        queries = np.repeat(np.arange(start, start + len(counts), dtype=np.int64), counts)
        keep = labels > queries
        found_i.append(queries[keep])
        found_j.append(labels[keep].astype(np.int64))
        found_s.append(sims[keep].astype(np.float32))
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    order = np.lexsort((j, i))
    return i[order], j[order], s[order]


def sparse_pairs(matrix, threshold: float, block_rows: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) with cosine >= `threshold` among the L2-normalized rows of a sparse matrix."""
    from scipy import sparse

    matrix = sparse.csr_matrix(matrix)
    n = matrix.shape[0]
    found_i, found_j, found_s = [], [], []
    transposed = matrix.T.tocsc()
    for start in range(0, n, block_rows):
        sims = (matrix[start : start + block_rows] @ transposed).tocoo()
        rows = sims.row.astype(np.int64) + start
        keep = (sims.col > rows) & (sims.data >= threshold)
        found_i.append(rows[keep])
        found_j.append(sims.col[keep].astype(np.int64))
        found_s.append(sims.data[keep].astype(np.float32))
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    order = np.lexsort((j, i))
    return i[order], j[order], s[order]


def lexical_vectors(texts: Sequence[str]):
    """L2-normalized TF-IDF vectors of character 2-4-grams (within word boundaries)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, dtype=np.float32)
    return vectorizer.fit_transform(list(texts))


# ---------------------------------------------------------------------------------------------
# Similarity spaces of a frame and the pairs found in them


@dataclass
class SimilarityPairs:
    """Same-language pairs of frame rows (a < b) with their cosine and the space it came from."""

    a: np.ndarray
    b: np.ndarray
    similarity: np.ndarray
    space: np.ndarray  # EMBEDDING or LEXICAL per pair

    @classmethod
    def empty(cls) -> "SimilarityPairs":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=object))

    def __len__(self) -> int:
        return len(self.a)

    def select(self, mask: np.ndarray) -> "SimilarityPairs":
        return SimilarityPairs(self.a[mask], self.b[mask], self.similarity[mask], self.space[mask])

    def above(self, thresholds: dict[str, float]) -> "SimilarityPairs":
        """The pairs at or above their space's threshold (`None` threshold: no pair)."""
        mask = np.zeros(len(self), dtype=bool)
        for kind, t in thresholds.items():
            if t is not None:
                mask |= (self.space == kind) & (self.similarity >= t)
        return self.select(mask)

    def within(self, positions: np.ndarray) -> "SimilarityPairs":
        """The pairs between the given rows, renumbered to positions in `positions`."""
        index = np.full(max(int(self.a.max(initial=-1)), int(self.b.max(initial=-1)), int(positions.max(initial=-1))) + 1, -1)
        index[positions] = np.arange(len(positions))
        a, b = index[self.a], index[self.b]
        keep = (a >= 0) & (b >= 0)
        return SimilarityPairs(a[keep], b[keep], self.similarity[keep], self.space[keep])


@dataclass
class SpaceSet:
    """The vectors of every language of a frame: embeddings or TF-IDF, one matrix each."""

    languages: dict[str, tuple[str, np.ndarray, object]]  # lang -> (kind, frame positions, vectors)
    n_rows: int
    timings: dict[str, float] = field(default_factory=dict)

    def pair_similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine of rows a[k] and b[k] (same language; NaN across languages)."""
        out = np.full(len(a), np.nan, dtype=np.float32)
        for kind, positions, vectors in self.languages.values():
            local = np.full(self.n_rows, -1, dtype=np.int64)
            local[positions] = np.arange(len(positions))
            la, lb = local[a], local[b]
            ok = (la >= 0) & (lb >= 0)
            if not ok.any():
                continue
            if kind == LEXICAL:
                left, right = vectors[la[ok]], vectors[lb[ok]]
                out[ok] = np.asarray(left.multiply(right).sum(axis=1)).ravel()
            else:
                out[ok] = np.einsum("ij,ij->i", vectors[la[ok]], vectors[lb[ok]])
        return out

    def search(self, thresholds: dict[str, float], config: "DedupConfig", device: str = "cpu") -> SimilarityPairs:
        """Every same-language pair at or above its space's threshold."""
        parts: list[SimilarityPairs] = []
        for lang, (kind, positions, vectors) in sorted(self.languages.items()):
            started = time.perf_counter()
            threshold = thresholds[kind]
            if kind == LEXICAL:
                i, j, s = sparse_pairs(vectors, threshold)
                method = "sparse-exact"
            else:
                method = choose_search(len(positions), config, device)
                if method == "ann":
                    i, j, s = ann_pairs(vectors, threshold, config.ann_cell_rows, config.ann_nprobe, config.seed)
                else:
                    i, j, s = exact_pairs(vectors, threshold, config.block_rows, device)
            elapsed = time.perf_counter() - started
            self.timings[f"search_{lang}"] = self.timings.get(f"search_{lang}", 0.0) + elapsed
            log.info("%s (%s, %d rows): %d pair(s) >= %.2f by %s search in %.1fs", lang, kind, len(positions), len(i), threshold, method, elapsed)
            a, b = positions[i], positions[j]
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            parts.append(SimilarityPairs(lo, hi, s, np.full(len(i), kind, dtype=object)))
        if not parts:
            return SimilarityPairs.empty()
        pairs = SimilarityPairs(
            np.concatenate([p.a for p in parts]),
            np.concatenate([p.b for p in parts]),
            np.concatenate([p.similarity for p in parts]),
            np.concatenate([p.space for p in parts]),
        )
        order = np.lexsort((pairs.b, pairs.a))
        return pairs.select(order)


def choose_search(n: int, config: DedupConfig, device: str = "cpu") -> str:
    """`exact` or `ann` for `n` vectors under `config.search` (ANN needs faiss). On a GPU the
    exact search stays faster than the CPU index up to `ann_min_rows_gpu` (see `python -m benchmarks.bench_dedup`)."""
    wanted = config.search
    if wanted == "auto":
        crossover = config.ann_min_rows_gpu if device.startswith("cuda") else config.ann_min_rows
        wanted = "ann" if n >= crossover else "exact"
    if wanted == "ann" and not faiss_available():
        log.warning("faiss is not installed: exact search instead of the ANN index")
        return "exact"
    return wanted


def make_embedder(config: DedupConfig, cache_dir: Path | None = None):
    """The sentence embedder of `config` (dedup, split and the data report share it); its
    vectors are cached under `cache_dir` when given and `config.cache` is on."""
    from pipeline.data.embeddings import TextEmbedder

    return TextEmbedder(
        config.model,
        device=config.device,
        batch_size=config.batch_size,
        cache_dir=cache_dir if config.cache else None,
    )


def build_spaces(frame: pd.DataFrame, config: DedupConfig, embedder=None) -> SpaceSet:
    """Vectors of every row: `embedder` (a `TextEmbedder`) for `embedding_languages`, TF-IDF
    character n-grams for the other languages."""
    languages: dict[str, tuple[str, np.ndarray, object]] = {}
    timings: dict[str, float] = {}
    texts = frame[TEXT].astype(str).to_numpy()
    for lang in sorted(frame[LANG].unique()):
        positions = np.flatnonzero(frame[LANG].to_numpy() == lang)
        started = time.perf_counter()
        if lang in config.embedding_languages:
            if embedder is None:
                embedder = make_embedder(config)
            vectors: object = embedder.encode(texts[positions].tolist())
            kind = EMBEDDING
        else:
            vectors = lexical_vectors(texts[positions])
            kind = LEXICAL
        timings[f"vectors_{lang}"] = time.perf_counter() - started
        languages[lang] = (kind, positions, vectors)
    return SpaceSet(languages, len(frame), timings)


# ---------------------------------------------------------------------------------------------
# Clusters, representatives, removal log


@dataclass
class DedupResult:
    """Kept rows (with `dup_cluster`), the removal log, label conflicts and the clusters."""

    frame: pd.DataFrame
    removed: pd.DataFrame
    conflicts: pd.DataFrame
    cluster_sizes: dict[int, int]
    input_rows: int
    pairs_above: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        contrast = int(self.conflicts["contrast_pair"].sum()) if len(self.conflicts) else 0
        return {
            "input_rows": self.input_rows,
            "output_rows": len(self.frame),
            "removed_near_duplicates": len(self.removed),
            "removed_by_language": {k: int(v) for k, v in Counter(self.removed[LANG]).items()} if len(self.removed) else {},
            "clusters_with_duplicates": int(sum(c for s, c in self.cluster_sizes.items() if s > 1)),
            "cluster_size_histogram": {str(k): int(v) for k, v in sorted(self.cluster_sizes.items())},
            "pairs_above_threshold": self.pairs_above,
            "label_conflict_pairs": len(self.conflicts),
            "label_conflict_contrast_pairs": contrast,
            "label_conflict_other_pairs": len(self.conflicts) - contrast,
            "min_similarity_to_representative": float(self.removed["similarity"].min()) if len(self.removed) else None,
        }


def differing_attributes(frame: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> list[str]:
    left = frame[list(ATTRIBUTE_NAMES)].to_numpy()[a]
    right = frame[list(ATTRIBUTE_NAMES)].to_numpy()[b]
    return [",".join(n for n, x, y in zip(ATTRIBUTE_NAMES, l, r) if x != y) for l, r in zip(left, right)]


def merge_near_duplicates(
    frame: pd.DataFrame, pairs: SimilarityPairs, spaces: SpaceSet | None, thresholds: dict[str, float]
) -> DedupResult:
    """Merge same-label near-duplicates of `frame` given its same-language `pairs` (positions in
    `frame`) and per-space `thresholds` (`None`: merge nothing in that space); `spaces` gives
    member-to-representative similarities (NaN without it)."""
    frame = frame.reset_index(drop=True)
    n = len(frame)
    above = pairs.above(thresholds)
    labels = label_combination(frame).to_numpy()
    same = labels[above.a] == labels[above.b]
    dup, conflict = above.select(same), above.select(~same)

    from pipeline.core.io import components

    cluster = components(n, dup.a, dup.b)
    sizes = np.bincount(cluster)
    keep = np.ones(n, dtype=bool)
    representative = np.arange(n)
    order = representative_order(frame)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    multi = np.flatnonzero(sizes[cluster] > 1)
    if len(multi):
        members = pd.DataFrame({"row": multi, "cluster": cluster[multi], "rank": rank[multi]})
        best = members.sort_values(["cluster", "rank"]).groupby("cluster")["row"].first()
        representative[multi] = best.loc[cluster[multi]].to_numpy()
        keep[multi] = representative[multi] == multi
    removed_rows = np.flatnonzero(~keep)
    reps = representative[removed_rows]

    # The pair that linked each removed row: its most similar same-label neighbour.
    link = pd.DataFrame(
        {"row": np.concatenate([dup.a, dup.b]), "other": np.concatenate([dup.b, dup.a]), "sim": np.concatenate([dup.similarity, dup.similarity])}
    ).sort_values(["row", "sim", "other"], ascending=[True, False, True]).drop_duplicates("row")
    link = link.set_index("row")
    rep_sim = spaces.pair_similarity(removed_rows, reps) if spaces is not None and len(removed_rows) else np.full(len(removed_rows), np.nan)
    ids = frame[ID].to_numpy()
    removed = pd.DataFrame(
        {
            ID: ids[removed_rows],
            "duplicate_of": ids[reps],
            "similarity": np.round(rep_sim.astype(np.float64), 4),
            "matched_id": ids[link.loc[removed_rows, "other"].to_numpy()] if len(removed_rows) else [],
            "matched_similarity": np.round(link.loc[removed_rows, "sim"].to_numpy(dtype=np.float64), 4) if len(removed_rows) else [],
            DUP_CLUSTER: cluster[removed_rows],
            LANG: frame[LANG].to_numpy()[removed_rows],
            SOURCE: frame[SOURCE].to_numpy()[removed_rows],
            TEXT: frame[TEXT].to_numpy()[removed_rows],
            "duplicate_text": frame[TEXT].to_numpy()[reps],
        }
    )

    kept = frame.copy()
    kept[DUP_CLUSTER] = cluster
    merged = {int(r): [] for r in np.unique(reps)}
    for row, rep in zip(removed_rows, reps):
        merged[int(rep)] += [ids[row]] + [m for m in str(frame.at[row, MERGED_IDS]).split(ID_SEPARATOR) if m]
    for rep, extra in merged.items():
        current = [m for m in str(kept.at[rep, MERGED_IDS]).split(ID_SEPARATOR) if m]
        kept.at[rep, MERGED_IDS] = ID_SEPARATOR.join(current + extra)
    replaced = dict(zip(ids[removed_rows], ids[reps]))
    kept = kept[keep].copy()
    if replaced:
        kept[CONTRAST_OF] = kept[CONTRAST_OF].map(lambda c: replaced.get(c, c))
        kept.loc[kept[CONTRAST_OF] == kept[ID], CONTRAST_OF] = ""

    contrast_of = frame[CONTRAST_OF].to_numpy()
    conflicts = pd.DataFrame(
        {
            "id_a": ids[conflict.a],
            "id_b": ids[conflict.b],
            "similarity": np.round(conflict.similarity.astype(np.float64), 4),
            "space": conflict.space,
            "contrast_pair": (contrast_of[conflict.a] == ids[conflict.b]) | (contrast_of[conflict.b] == ids[conflict.a]),
            "differs_in": differing_attributes(frame, conflict.a, conflict.b),
            "labels_a": labels[conflict.a],
            "labels_b": labels[conflict.b],
            "text_a": frame[TEXT].to_numpy()[conflict.a],
            "text_b": frame[TEXT].to_numpy()[conflict.b],
        }
    )
    counts = Counter(sizes.tolist())
    pairs_above = {kind: int((above.space == kind).sum()) for kind in SPACE_KINDS}
    return DedupResult(kept.reset_index(drop=True), removed, conflicts, dict(counts), n, pairs_above)


def dedup(frame: pd.DataFrame, config: DedupConfig, embedder=None) -> DedupResult:
    """Vectors, pairs and merge in one call: `frame` has the `clean` columns; `embedder` (a
    `TextEmbedder`, e.g. with a cache) is made from `config` when not given."""
    spaces = build_spaces(frame, config, embedder)
    device = embedder.device if embedder is not None else "cpu"
    pairs = spaces.search(config.thresholds(), config, device)
    return merge_near_duplicates(frame, pairs, spaces, config.thresholds())
