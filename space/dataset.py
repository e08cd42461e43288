"""The loaded dataset: its splits as frames, statistics for the About tab and example commands
for the Classify tab."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.decision import DECISIONS, decisions_from_frame
from pipeline.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, LANG, TEXT
from space.sources import LoadedFrom

log = logging.getLogger(__name__)

EXAMPLES_PER_DECISION = 2
EXAMPLE_MAX_WORDS = 25

# ---------------------------------------------------------------------------------------------
# Dataset, reports and the model card for the About tab


@dataclass
class DatasetView:
    """The loaded dataset's splits as frames, or why there are none."""

    splits: dict[str, pd.DataFrame]
    source: LoadedFrom
    note: str = ""

    @property
    def example_split(self) -> str | None:
        for name in ("test", "validation", "train"):
            if name in self.splits:
                return name
        return next(iter(self.splits), None)


def load_dataset_view(source: LoadedFrom) -> DatasetView:
    """Load every split with `datasets.load_dataset`; a missing or unreadable dataset gives an
    empty view with a note (the Space still classifies)."""
    if not source.path.is_dir():
        return DatasetView(
            {}, source, f"No dataset at `{source.ref}`: examples and statistics are unavailable."
        )
    import datasets

    try:
        loaded = datasets.load_dataset(str(source.path))
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        log.warning("cannot load dataset %s: %s", source.ref, exc)
        return DatasetView(
            {}, source, f"The dataset at `{source.ref}` could not be loaded ({exc})."
        )
    splits = {name: _frame_of(split) for name, split in loaded.items()}
    missing = sorted(
        {TEXT, *ATTRIBUTE_NAMES} - set.intersection(*(set(f.columns) for f in splits.values()))
    )
    if missing:
        return DatasetView({}, source, f"The dataset lacks the column(s) {', '.join(missing)}.")
    for split, frame in splits.items():
        for attribute in ATTRIBUTES_BY_NAME.values():
            bad = sorted(set(frame[attribute.name].astype(str)) - set(attribute.values))
            if bad:
                return DatasetView(
                    {},
                    source,
                    f"The dataset's {split} split has {attribute.name} values {bad} outside "
                    f"{list(attribute.values)}.",
                )
    return DatasetView(splits, source)


def _frame_of(split) -> pd.DataFrame:
    """A split as a frame with `ClassLabel` columns (the Hub dataset's labels) as their names."""
    import datasets

    frame = split.to_pandas()
    for name, feature in split.features.items():
        if isinstance(feature, datasets.ClassLabel):
            frame[name] = [feature.int2str(int(i)) for i in frame[name]]
    return frame


def decision_examples(
    view: DatasetView, per_decision: int = EXAMPLES_PER_DECISION, seed: int = 0
) -> list[tuple[str, str]]:
    """(decision, command) pairs from the test split, `per_decision` of each decision,
    languages alternating where the split has several; short commands preferred."""
    split = view.example_split
    if split is None:
        return []
    frame = view.splits[split].copy()
    frame["_decision"] = decisions_from_frame(frame)
    frame["_words"] = frame[TEXT].str.split().str.len()
    frame = frame.sample(frac=1.0, random_state=seed)
    short = frame[frame["_words"] <= EXAMPLE_MAX_WORDS]
    out: list[tuple[str, str]] = []
    for decision in DECISIONS:
        rows = short[short["_decision"] == decision]
        if rows.empty:
            rows = frame[frame["_decision"] == decision]
        if LANG in rows.columns:
            # round-robin over languages so Arabic appears beside English
            rows = rows.assign(_rank=rows.groupby(LANG).cumcount()).sort_values(
                "_rank", kind="stable"
            )
        out.extend((decision, text) for text in rows[TEXT].head(per_decision))
    return out


def dataset_statistics(view: DatasetView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows per split and language, and decisions per split, computed from the loaded data."""
    size_rows, decision_rows = [], []
    for name, frame in view.splits.items():
        row: dict[str, Any] = {"split": name, "rows": len(frame)}
        if LANG in frame.columns:
            for lang, n in frame[LANG].value_counts().sort_index().items():
                row[f"lang: {lang}"] = int(n)
        size_rows.append(row)
        counts = pd.Series(decisions_from_frame(frame)).value_counts()
        decision_rows.append({"split": name, **{d: int(counts.get(d, 0)) for d in DECISIONS}})
    sizes = pd.DataFrame(size_rows).fillna(0)
    return sizes, pd.DataFrame(decision_rows)

