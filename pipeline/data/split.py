"""`split`: leakage-free train / validation / test splits, the Hub dataset and the data report.

Rows are grouped before splitting and a group never straddles splits. A group joins rows that
are (1) similar at the looser `link_threshold` (same language, same vectors as `dedup`),
(2) translations of each other (same `schema.group_of(id)`), including the ids `clean` and
`dedup` merged into a row, and (3) contrast pairs (`contrast_of`). Whole groups are assigned greedily, stratified on the label
combination (`assign_splits`; scikit-learn's `StratifiedGroupKFold` does the same in whole folds,
and fractions need not be whole folds). Afterwards every pair above the dedup
threshold that crosses splits is counted; the stage fails if there is one.

The challenge split (`challenge_dir`, data/challenge) is written by a writer who wrote no
training rows; it is cleaned like the corpus and never trained on or tuned on. A challenge row
similar to a corpus row at the link threshold (or to an earlier challenge row at the dedup
threshold) is left out, so it measures commands the model never saw.

Writes build/data/splits/{train,validation,test,challenge}.parquet, the `datasets.DatasetDict` as
Parquet under build/hub/dataset/data/, and the report (`pipeline.report.data_report`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import ConfigError, setting
from pipeline.core.io import MERGED_IDS, components, split_ids
from pipeline.core.schema import ATTRIBUTES, CONTRAST_OF, DOMAIN, ID, LANG, SOURCE, TEXT, group_of
from pipeline.data.clean import label_combination
from pipeline.data.dedup import EMBEDDING, LEXICAL, SimilarityPairs

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
CHALLENGE = "challenge"
BUNDLED_CHALLENGE = "data/challenge"
SPLIT, CLUSTER_ID = "split", "cluster_id"
HUB_COLUMNS: tuple[str, ...] = (ID, TEXT, LANG, DOMAIN) + tuple(a.name for a in ATTRIBUTES) + (SOURCE, CONTRAST_OF, CLUSTER_ID)


@dataclass(frozen=True)
class SplitConfig:
    """The `[split]` table of a preset."""

    fractions: list[float] = setting([0.8, 0.1, 0.1], "train, validation and test shares (sum 1)")
    link_threshold: float = setting(0.80, "embedding cosine at or above which two rows must share a split")
    lexical_link_threshold: float = setting(0.50, "TF-IDF cosine at or above which two rows must share a split")
    link_contrast_pairs: bool = setting(True, "keep contrast pairs in one split")
    seed: int = setting(0, "group shuffling and the baselines")
    what_if_thresholds: list[float] = setting(
        [0.85, 0.90, 0.95], "embedding dedup thresholds compared in the report (a `none` row is always added)"
    )
    what_if_lexical_thresholds: list[float] = setting(
        [0.70, 0.75, 0.85], "TF-IDF dedup thresholds paired with them in the report"
    )
    what_if_random_split: bool = setting(
        True, "also score a plain random split (no groups) to show what leakage does"
    )
    projection: str = setting("pca", "`pca` or `tsne` for the 2-D embedding plot")
    report: bool = setting(True, "write the data report")
    # The bundled data/challenge goes with the bundled corpus: a build whose `clean.seed_dir`
    # names another corpus has no challenge split unless this names one.
    challenge_dir: str = setting(
        BUNDLED_CHALLENGE, "folder of the challenge split's corpus files (relative to the repository); empty: none"
    )

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or not math.isclose(sum(self.fractions), 1.0, abs_tol=1e-6):
            raise ConfigError(f"[split] fractions must be three non-negative shares summing to 1, got {self.fractions}")
        if len(self.what_if_thresholds) != len(self.what_if_lexical_thresholds):
            raise ConfigError("[split] what_if_thresholds and what_if_lexical_thresholds must have the same length")
        if self.projection not in ("pca", "tsne"):
            raise ConfigError(f"[split] projection must be pca or tsne, got {self.projection!r}")

    def link_thresholds(self) -> dict[str, float]:
        return {EMBEDDING: self.link_threshold, LEXICAL: self.lexical_link_threshold}


@dataclass
class SplitResult:
    """The frame with `split` and `cluster_id` columns, and what the split checks found."""

    frame: pd.DataFrame
    group_sizes: dict[int, int]
    cross_split_pairs: int
    straddling_groups: int

    def counts(self) -> dict[str, int]:
        return {s: int((self.frame[SPLIT] == s).sum()) for s in SPLITS}


def split_groups(frame: pd.DataFrame, link_pairs: SimilarityPairs, link_contrast: bool = True) -> np.ndarray:
    """A group number per row: connected components of similar, translated, merged and
    contrast-paired rows (see the module docstring)."""
    n = len(frame)
    a = [link_pairs.a]
    b = [link_pairs.b]
    first_with: dict[str, int] = {}
    ids = frame[ID].astype(str).tolist()
    merged = frame[MERGED_IDS].tolist() if MERGED_IDS in frame else [""] * n
    token_a, token_b = [], []
    for row, (row_id, extra) in enumerate(zip(ids, merged)):
        for token in {group_of(row_id), *(group_of(m) for m in split_ids(extra))}:
            first = first_with.setdefault(token, row)
            if first != row:
                token_a.append(row)
                token_b.append(first)
    a.append(np.asarray(token_a, dtype=np.int64))
    b.append(np.asarray(token_b, dtype=np.int64))
    if link_contrast:
        position = {row_id: i for i, row_id in enumerate(ids)}
        contrast = [(i, position[c]) for i, c in enumerate(frame[CONTRAST_OF].astype(str)) if c in position]
        if contrast:
            a.append(np.array([x for x, _ in contrast], dtype=np.int64))
            b.append(np.array([y for _, y in contrast], dtype=np.int64))
    return components(n, np.concatenate(a), np.concatenate(b))


def assign_splits(groups: np.ndarray, strata: np.ndarray, fractions: list[float], seed: int) -> np.ndarray:
    """The split name of every row: whole groups, stratified on `strata` where possible.

    Greedy, largest groups first (ties in seeded random order): each group goes to the split
    whose stratum counts and size lag furthest behind their targets (`fractions` of each
    stratum and of all rows), relative to the stratum's size. A stratum rarer than the number of
    splits cannot be spread and goes where its deficit is largest (usually train).
    """
    fractions_arr = np.asarray(fractions, dtype=np.float64)
    _, group_index = np.unique(groups, return_inverse=True)
    _, stratum_index, stratum_totals = np.unique(strata, return_inverse=True, return_counts=True)
    n_groups = int(group_index.max()) + 1 if len(groups) else 0
    n_strata = len(stratum_totals)
    cells, cell_counts = np.unique(group_index * n_strata + stratum_index, return_counts=True)
    cell_group, cell_stratum = cells // n_strata, cells % n_strata
    bounds = np.searchsorted(cell_group, np.arange(n_groups + 1))
    sizes = np.bincount(group_index, minlength=n_groups)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]
    need = np.outer(fractions_arr, stratum_totals.astype(np.float64))
    have = np.zeros_like(need)
    target_size = fractions_arr * len(groups)
    size = np.zeros(len(fractions_arr))
    closed = fractions_arr <= 0
    assigned = np.empty(n_groups, dtype=np.int64)
    for g in order:
        classes = cell_stratum[bounds[g] : bounds[g + 1]]
        counts = cell_counts[bounds[g] : bounds[g + 1]].astype(np.float64)
        stratum_gap = ((need[:, classes] - have[:, classes]) * counts / stratum_totals[classes]).sum(axis=1)
        size_gap = (target_size - size) / max(len(groups), 1) * len(fractions_arr)
        score = stratum_gap / counts.sum() + size_gap
        score[closed] = -np.inf
        best = int(np.argmax(score))
        assigned[g] = best
        have[best, classes] += counts
        size[best] += sizes[g]
    return np.array(SPLITS, dtype=object)[assigned[group_index]]


def cross_split_pairs(splits: np.ndarray, pairs: SimilarityPairs) -> int:
    """How many of `pairs` join rows of different splits."""
    return int((splits[pairs.a] != splits[pairs.b]).sum())


def split(frame: pd.DataFrame, link_pairs: SimilarityPairs, dedup_pairs: SimilarityPairs, config: SplitConfig) -> SplitResult:
    """Assign every row of `frame` to a split. `link_pairs` (at the link thresholds) form the
    groups; `dedup_pairs` (at the dedup thresholds) are counted across splits (must be 0)."""
    frame = frame.reset_index(drop=True).copy()
    groups = split_groups(frame, link_pairs, config.link_contrast_pairs)
    splits = assign_splits(groups, label_combination(frame).to_numpy(), list(config.fractions), config.seed)
    frame[SPLIT] = splits
    frame[CLUSTER_ID] = groups
    per_group = pd.DataFrame({"g": groups, "s": splits}).groupby("g")["s"].nunique()
    sizes = pd.Series(groups).value_counts().value_counts().sort_index()
    return SplitResult(
        frame,
        {int(k): int(v) for k, v in sizes.items()},
        cross_split_pairs(splits, dedup_pairs),
        int((per_group > 1).sum()),
    )


@dataclass
class ChallengeResult:
    """The kept challenge rows and, per reason, the rows left out."""

    frame: pd.DataFrame
    left_out: dict[str, list[str]]


def challenge_split(
    corpus: pd.DataFrame, challenge: pd.DataFrame, pairs: SimilarityPairs, link: dict[str, float], dedup: dict[str, float]
) -> ChallengeResult:
    """Keep the challenge rows that no corpus row resembles. `pairs` are positions in
    `corpus` followed by `challenge` (one joint search at the looser thresholds)."""
    n = len(corpus)
    linked = pairs.above(link)
    cross = (linked.a < n) != (linked.b < n)
    leaking = set(np.maximum(linked.a[cross], linked.b[cross]).tolist())
    close = pairs.above(dedup)
    inner = (close.a >= n) & (close.b >= n)
    repeated = set(np.maximum(close.a[inner], close.b[inner]).tolist()) - leaking
    dropped = leaking | repeated
    keep = [i for i in range(n, n + len(challenge)) if i not in dropped]
    frame = challenge.iloc[[i - n for i in keep]].reset_index(drop=True).copy()
    frame[SPLIT] = CHALLENGE
    frame[CLUSTER_ID] = np.arange(len(frame), dtype=np.int64) + int(corpus[CLUSTER_ID].max()) + 1 if len(corpus) else 0
    ids = challenge[ID].to_numpy()
    return ChallengeResult(
        frame,
        {
            "similar_to_a_corpus_row": sorted(ids[i - n] for i in leaking),
            "repeats_a_challenge_row": sorted(ids[i - n] for i in repeated),
        },
    )


def read_challenge(config: SplitConfig, clean_config, bundled_corpus: bool = True) -> pd.DataFrame | None:
    """The challenge corpus, validated and cleaned like the corpus; None when there is none.
    `bundled_corpus`: the build read the bundled corpus (the bundled challenge goes with it)."""
    from pipeline.core.config import REPO_ROOT
    from pipeline.core.schema import corpus_files, load_corpus
    from pipeline.data.clean import clean

    if not config.challenge_dir or (not bundled_corpus and config.challenge_dir == BUNDLED_CHALLENGE):
        return None
    folder = Path(config.challenge_dir)
    folder = folder if folder.is_absolute() else REPO_ROOT / folder
    files = corpus_files(folder)
    if not files:
        return None
    return clean(load_corpus(files), clean_config).frame


# ---------------------------------------------------------------------------------------------
# The Hub dataset


def dataset_features():
    """`datasets.Features` of the exported splits: a `ClassLabel` per attribute."""
    from datasets import ClassLabel, Features, Value

    features = {ID: Value("string"), TEXT: Value("string"), LANG: Value("string"), DOMAIN: Value("string")}
    for attribute in ATTRIBUTES:
        features[attribute.name] = ClassLabel(names=list(attribute.values))
    features[SOURCE] = Value("string")
    features[CONTRAST_OF] = Value("string")
    features[CLUSTER_ID] = Value("int64")
    return Features(features)


def to_dataset_dict(frame: pd.DataFrame):
    """The splits as a `datasets.DatasetDict` with `dataset_features()`."""
    from datasets import Dataset, DatasetDict

    features = dataset_features()
    out = {}
    names = list(SPLITS) + ([CHALLENGE] if (frame[SPLIT] == CHALLENGE).any() else [])
    for name in names:
        part = frame[frame[SPLIT] == name].sort_values(ID, kind="stable")
        records = part[list(HUB_COLUMNS)].reset_index(drop=True).copy()
        for attribute in ATTRIBUTES:
            records[attribute.name] = records[attribute.name].map(attribute.values.index)
        records[CLUSTER_ID] = records[CLUSTER_ID].astype("int64")
        out[name] = Dataset.from_pandas(records, features=features, preserve_index=False)
    return DatasetDict(out)


def write_hub_dataset(dataset_dict, directory: Path) -> list[Path]:
    """Write each split to `directory/data/<split>-00000-of-00001.parquet` (the layout that
    `datasets.load_dataset(directory)` reads as named splits, features kept in the metadata)."""
    data_dir = directory / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("*.parquet"):
        if old.name.split("-")[0] in SPLITS + (CHALLENGE,):
            old.unlink()
    paths = []
    for name, dataset in dataset_dict.items():
        path = data_dir / f"{name}-00000-of-00001.parquet"
        dataset.to_parquet(str(path))
        paths.append(path)
    return paths
